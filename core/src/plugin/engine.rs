//! The one wasmtime `Engine`: pooling allocator (on-demand when the machine
//! cannot reserve the pool's address space), epoch interruption driven by a
//! 10 ms ticker, and compiled components cached on disk by content hash.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: the granularity of plugin deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Plugin calls that may run at once with the pooling allocator.
const POOL_INSTANCES: u32 = 256;
/// The largest memory any plugin may be given (`limits.memory`).
pub const MAX_PLUGIN_MEMORY: usize = 256 << 20;
/// Bytes of a pooled memory or table reset in place (only the pages a call
/// dirtied, which PAGEMAP_SCAN finds) instead of returned to the kernel:
/// unmapping costs a TLB shootdown across every core on every call (plugin
/// GETs measured 4x faster without it). Resident memory is bounded by the
/// calls that ran at once, times what each dirtied.
const KEEP_RESIDENT: usize = 2 << 20;

pub struct PluginEngine {
    pub engine: Engine,
    cache_dir: PathBuf,
}

impl PluginEngine {
    pub fn new(cache_dir: PathBuf) -> wasmtime::Result<Self> {
        let engine = match Engine::new(&config(true)) {
            Ok(engine) => engine,
            Err(error) => {
                tracing::warn!(%error, "pooling allocator unavailable; instantiating plugins on demand");
                Engine::new(&config(false))?
            }
        };
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("ersatz-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .expect("the epoch thread starts");
        Ok(Self { engine, cache_dir })
    }

    /// Compiles `wasm`, or loads the compilation a previous start cached.
    pub fn component(&self, wasm: &[u8]) -> wasmtime::Result<Component> {
        let cached = self.cache_path(wasm);
        if cached.is_file() {
            // SAFETY: the file is our own serialization, in a 0700 directory,
            // named by the hash of the wasm and of this engine's settings.
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(component) => return Ok(component),
                Err(error) => {
                    tracing::warn!(file = %cached.display(), %error, "ignoring a bad compiled-plugin cache entry")
                }
            }
        }
        let component = Component::new(&self.engine, wasm)?;
        if let Err(error) = self.store(&cached, &component) {
            tracing::warn!(dir = %self.cache_dir.display(), %error, "cannot cache the compiled plugin");
        }
        Ok(component)
    }

    fn cache_path(&self, wasm: &[u8]) -> PathBuf {
        let mut hash = Sha256::new();
        hash.update(wasm);
        // Any change of wasmtime version or settings must miss the cache.
        let mut compatibility = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(
            &self.engine.precompile_compatibility_hash(),
            &mut compatibility,
        );
        hash.update(std::hash::Hasher::finish(&compatibility).to_le_bytes());
        let digest: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        self.cache_dir.join(format!("{digest}.cwasm"))
    }

    fn store(&self, path: &Path, component: &Component) -> std::io::Result<()> {
        crate::state::create_private_dir(&self.cache_dir)?;
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        let partial = path.with_extension("partial");
        std::io::Write::write_all(&mut crate::state::create_private_file(&partial)?, &bytes)?;
        std::fs::rename(partial, path)
    }
}

fn config(pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 4)
            .total_memories(POOL_INSTANCES)
            .total_tables(POOL_INSTANCES * 2)
            .max_memory_size(MAX_PLUGIN_MEMORY);
        // Without PAGEMAP_SCAN (Linux < 6.7) keeping memory resident means a
        // memset of all of it per call, worse than unmapping.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(KEEP_RESIDENT);
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}
