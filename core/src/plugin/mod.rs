//! WebAssembly plugins: components built against `wit/plugin.wit`, each
//! instantiated fresh per call in a sandbox: no files, environment or
//! network (WASI deny-by-default), a memory limit, and a deadline. A trap,
//! deadline or limit answers that one request 500 and is logged and counted
//! under the plugin's name; the server keeps serving.

mod bindings;
mod engine;
mod provider;
mod source;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use bindings::credential::CredentialPluginPre;
use bindings::metadata::{MetadataPlugin, MetadataPluginPre};
pub use bindings::types;
pub use bindings::{WIT_PACKAGE, WIT_VERSION};
pub use engine::{PluginEngine, MAX_PLUGIN_MEMORY};
pub use provider::{resolved, WasmProvider};
pub use source::PluginSource;

/// Read-only access to the built-in tree (`host.lookup`).
pub trait Lookup: Send + Sync {
    fn text(&self, path: &str) -> Option<String>;
}

/// What `[[plugins]]` says about one plugin.
pub struct PluginSpec {
    pub name: String,
    pub wasm: std::path::PathBuf,
    /// The `config` table, as JSON.
    pub config: String,
    pub timeout: Duration,
    pub memory: usize,
}

/// Why a call produced no answer.
#[derive(Debug)]
pub enum Failure {
    /// The guest trapped (a panic, an out-of-bounds access, the memory limit).
    Trap(String),
    /// It ran past `limits.timeout`.
    Timeout(Duration),
    /// It returned an error.
    Guest(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Trap(cause) => write!(f, "trapped: {cause}"),
            Failure::Timeout(limit) => write!(f, "ran past its {} ms deadline", limit.as_millis()),
            Failure::Guest(message) => write!(f, "returned an error: {message}"),
        }
    }
}

/// Calls and failures, by kind.
#[derive(Default)]
pub struct PluginStats {
    pub calls: AtomicU64,
    pub traps: AtomicU64,
    pub timeouts: AtomicU64,
    pub errors: AtomicU64,
}

enum Pre {
    Metadata(MetadataPluginPre<State>),
    Credential(CredentialPluginPre<State>),
}

pub struct Plugin {
    pub name: String,
    /// One per engine shard, in shard order.
    pres: Vec<Pre>,
    shared: Arc<Shared>,
    timeout: Duration,
    memory: usize,
    pub stats: PluginStats,
}

struct Shared {
    name: String,
    config: String,
    lookup: Arc<dyn Lookup>,
}

/// A call's store data: WASI with nothing granted, the limits, and what
/// `host` hands out.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    shared: Arc<Shared>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for State {}

impl bindings::host::Host for State {
    fn log(&mut self, level: bindings::host::Level, message: String) {
        use bindings::host::Level;
        let plugin = self.shared.name.as_str();
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn config(&mut self) -> String {
        self.shared.config.clone()
    }

    fn lookup(&mut self, path: String) -> Option<String> {
        self.shared.lookup.text(path.trim_matches('/'))
    }
}

impl Plugin {
    /// Compiles (or loads from the cache), checks the WIT version and
    /// prepares instantiation. The error names the reason; the caller names
    /// the file and key.
    pub fn load(
        engine: &PluginEngine,
        spec: PluginSpec,
        lookup: Arc<dyn Lookup>,
    ) -> Result<Self, String> {
        let wasm = std::fs::read(&spec.wasm)
            .map_err(|e| format!("cannot read {}: {e}", spec.wasm.display()))?;
        if !wasm.starts_with(b"\0asm") {
            return Err(format!("{} is not WebAssembly", spec.wasm.display()));
        }
        let components = engine.components(&wasm).map_err(|e| {
            format!(
                "{} is not a WebAssembly component ({e:#})",
                spec.wasm.display()
            )
        })?;
        let credential = check_contract(engine.first(), &components[0])
            .map_err(|reason| format!("{}: {reason}", spec.wasm.display()))?;
        let pres = components
            .iter()
            .map(|component| prepare(component, credential))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            shared: Arc::new(Shared {
                name: spec.name.clone(),
                config: spec.config,
                lookup,
            }),
            name: spec.name,
            pres,
            timeout: spec.timeout,
            memory: spec.memory,
            stats: PluginStats::default(),
        })
    }

    pub fn is_credential_source(&self) -> bool {
        matches!(self.pres[0], Pre::Credential(_))
    }

    /// This thread's instantiation, and a fresh store for it.
    fn start(&self) -> (&Pre, Store<State>) {
        let pre = &self.pres[engine::shard(self.pres.len())];
        let engine = match pre {
            Pre::Metadata(pre) => pre.engine(),
            Pre::Credential(pre) => pre.engine(),
        };
        let state = State {
            wasi: WasiCtx::builder().allow_tcp(false).allow_udp(false).build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.memory)
                .trap_on_grow_failure(true)
                .build(),
            shared: self.shared.clone(),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limits);
        // Yield to tokio at every epoch tick; the deadline itself is the
        // timeout around the call, which drops (and so stops) the instance.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        (pre, store)
    }

    pub async fn resolve(&self, request: &types::Request) -> Result<types::Response, Failure> {
        let (pre, mut store) = self.start();
        let call = async {
            match pre {
                Pre::Metadata(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .ersatz_plugin_provider()
                        .call_resolve(&mut store, request)
                        .await
                }
                Pre::Credential(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .ersatz_plugin_provider()
                        .call_resolve(&mut store, request)
                        .await
                }
            }
        };
        self.finish(tokio::time::timeout(self.timeout, call).await)
    }

    pub async fn credentials(&self) -> Result<types::Credentials, Failure> {
        let (Pre::Credential(pre), mut store) = self.start() else {
            return Err(Failure::Guest(
                "not a credential source (built for the metadata-plugin world)".into(),
            ));
        };
        let call = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance
                .ersatz_plugin_credential_source()
                .call_fetch(&mut store)
                .await
        };
        self.finish(tokio::time::timeout(self.timeout, call).await)
    }

    fn finish<T>(
        &self,
        outcome: Result<wasmtime::Result<Result<T, String>>, tokio::time::error::Elapsed>,
    ) -> Result<T, Failure> {
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        let failure = match outcome {
            Ok(Ok(Ok(answer))) => return Ok(answer),
            Ok(Ok(Err(message))) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                Failure::Guest(message)
            }
            Ok(Err(trap)) => {
                self.stats.traps.fetch_add(1, Ordering::Relaxed);
                // The root cause ("wasm `unreachable` instruction executed",
                // "forcing trap when growing memory…"), without the backtrace.
                Failure::Trap(trap.root_cause().to_string())
            }
            Err(_) => {
                self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                Failure::Timeout(self.timeout)
            }
        };
        tracing::warn!(plugin = %self.name, cause = %failure, "plugin call failed");
        Err(failure)
    }
}

/// Links what the host grants and prepares instantiation.
fn prepare(component: &wasmtime::component::Component, credential: bool) -> Result<Pre, String> {
    let mut linker = Linker::<State>::new(component.engine());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| e.to_string())?;
    MetadataPlugin::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)
        .map_err(|e| e.to_string())?;
    let instance_pre = linker
        .instantiate_pre(component)
        .map_err(|e| format!("it imports something ersatz does not grant ({e:#})"))?;
    Ok(if credential {
        Pre::Credential(CredentialPluginPre::new(instance_pre).map_err(|e| e.to_string())?)
    } else {
        Pre::Metadata(MetadataPluginPre::new(instance_pre).map_err(|e| e.to_string())?)
    })
}

/// Refuses components built against another version of the contract, or
/// for no ersatz world at all, before anything is instantiated. Returns
/// whether the component is also a credential source.
fn check_contract(
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> Result<bool, String> {
    let ty = component.component_type();
    let names: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .chain(ty.exports(engine).map(|(name, _)| name.to_owned()))
        .filter(|name| name.starts_with(&format!("{WIT_PACKAGE}/")))
        .collect();
    let expected = format!("@{WIT_VERSION}");
    if let Some(other) = names.iter().find(|name| !name.ends_with(&expected)) {
        let version = other.rsplit_once('@').map_or("no version", |(_, v)| v);
        return Err(format!(
            "built against {WIT_PACKAGE}@{version} ({other}); this ersatz implements {WIT_PACKAGE}@{WIT_VERSION}: rebuild the plugin against wit/ of this version"
        ));
    }
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    if !exports.contains(&format!("{WIT_PACKAGE}/provider{expected}")) {
        return Err(format!(
            "exports no {WIT_PACKAGE}/provider{expected}: not an ersatz plugin (exports: {})",
            exports.join(", ")
        ));
    }
    Ok(exports.contains(&format!("{WIT_PACKAGE}/credential-source{expected}")))
}
