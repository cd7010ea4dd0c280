//! Stands in for the plugin host when ersatz is built without it (the
//! `plugins` cargo feature off, which leaves wasmtime and cranelift out of
//! the build): the same names, but no engine can start, so a configuration
//! with `[[plugins]]` is refused before anything binds, saying how to get
//! the host. Nothing here can be called: a [`Plugin`] cannot exist.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::credentials::{CredentialSource, Credentials, SourceError};
use crate::provider::{Provider, Request, Resolved};

#[path = "spec.rs"]
mod spec;
#[path = "store.rs"]
mod store;
pub use spec::{PluginSpec, PluginStats};
pub use store::{Grants, Stores};

/// Why no engine starts.
const ABSENT: &str = "this ersatz was built without the plugin host (cargo feature `plugins`); build it with default features to use [[plugins]]";

pub struct PluginEngine(Infallible);

impl PluginEngine {
    pub fn new(_cache_dir: Option<PathBuf>) -> Result<Self, &'static str> {
        Err(ABSENT)
    }
}

pub struct Plugin {
    pub name: String,
    pub stats: PluginStats,
    never: Infallible,
}

impl Plugin {
    pub fn load(engine: &PluginEngine, _spec: PluginSpec, _grants: Grants) -> Result<Self, String> {
        match engine.0 {}
    }

    pub async fn init(&self) -> Result<Option<Shape>, String> {
        match self.never {}
    }

    pub fn is_credential_source(&self) -> bool {
        match self.never {}
    }

    pub fn can_sign(&self) -> bool {
        match self.never {}
    }
}

/// What a mount is, as the listing above it shows it.
pub enum Shape {
    Leaf,
    Directory,
}

pub struct WasmProvider(Infallible);

impl WasmProvider {
    pub fn new(plugin: Arc<Plugin>) -> Self {
        match plugin.never {}
    }
}

#[async_trait]
impl Provider for WasmProvider {
    async fn resolve(&self, _request: &Request<'_>) -> Resolved {
        match self.0 {}
    }
}

pub struct PluginSource {
    pub plugin: Arc<Plugin>,
}

#[async_trait]
impl CredentialSource for PluginSource {
    async fn credentials(&self) -> Result<Arc<Credentials>, SourceError> {
        match self.plugin.never {}
    }
}
