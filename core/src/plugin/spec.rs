//! What the rest of ersatz sees of a plugin whether or not the plugin host
//! is built in (the `plugins` cargo feature): its specification from
//! `[[plugins]]`, and its counters.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::config::PluginConfig;

/// What `[[plugins]]` says about one plugin.
pub struct PluginSpec {
    pub name: String,
    pub wasm: std::path::PathBuf,
    /// The `config` table, as JSON.
    pub config: String,
    pub timeout: Duration,
    pub memory: usize,
    /// The longest an answer is reused, whatever the plugin says.
    pub max_age: Option<Duration>,
}

impl PluginSpec {
    /// From its `[[plugins]]` entry.
    pub fn from_config(plugin: &PluginConfig) -> Self {
        Self {
            name: plugin.name(),
            wasm: plugin.wasm.clone(),
            config: plugin
                .config
                .as_ref()
                .map_or_else(|| "{}".into(), |c| c.to_string()),
            timeout: plugin.limits.timeout.0,
            memory: plugin.limits.memory.0,
            max_age: plugin.limits.max_age.map(|age| age.0),
        }
    }
}

/// Calls and failures, by kind.
#[derive(Default)]
pub struct PluginStats {
    /// Calls made, whatever their outcome (busy requests made none).
    pub calls: AtomicU64,
    /// Requests answered 503 for want of room, without a call.
    pub busy: AtomicU64,
    pub instantiation_failures: AtomicU64,
    pub traps: AtomicU64,
    pub timeouts: AtomicU64,
    pub errors: AtomicU64,
    /// Requests answered with an earlier answer, without a call.
    pub cache_hits: AtomicU64,
}
