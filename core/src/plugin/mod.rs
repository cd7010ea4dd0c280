//! WebAssembly plugins: components built against a version of the contract
//! in `wit/`, each instantiated fresh per call in a sandbox: no files,
//! environment or network (WASI deny-by-default), a memory limit, and a
//! deadline. A trap, deadline or limit answers that one request 500 and is
//! logged and counted under the plugin's name; the server keeps serving.
//! The host speaks the newest contract; older plugins are adapted to it.

mod bindings;
mod cache;
pub mod contract;
mod engine;
mod provider;
mod source;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::provider::Lookup;
/// The newest contract's types, which the host works in.
pub use bindings::v0_2::types;
use bindings::{v0_1, v0_2};
pub use bindings::{WIT_PACKAGE, WIT_VERSIONS};
use contract::Contract;
pub use engine::PluginEngine;
pub use provider::{resolved, WasmProvider};
pub use source::PluginSource;

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
    /// Requests answered with an earlier answer, without a call.
    pub cache_hits: AtomicU64,
}

/// A prepared instantiation, by contract version and world.
enum Pre {
    MetadataV0_1(v0_1::metadata::MetadataPluginPre<State>),
    CredentialV0_1(v0_1::credential::CredentialPluginPre<State>),
    MetadataV0_2(v0_2::metadata::MetadataPluginPre<State>),
    CredentialV0_2(v0_2::credential::CredentialPluginPre<State>),
}

impl Pre {
    fn engine(&self) -> &wasmtime::Engine {
        match self {
            Pre::MetadataV0_1(pre) => pre.engine(),
            Pre::CredentialV0_1(pre) => pre.engine(),
            Pre::MetadataV0_2(pre) => pre.engine(),
            Pre::CredentialV0_2(pre) => pre.engine(),
        }
    }
}

pub struct Plugin {
    pub name: String,
    /// One per engine shard, in shard order.
    pres: Vec<Pre>,
    shared: Arc<Shared>,
    timeout: Duration,
    memory: usize,
    pub max_age: Option<Duration>,
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

/// `host`, the same in every version of the contract.
macro_rules! grant_host {
    ($version:ident) => {
        impl $version::types::Host for State {}

        impl $version::host::Host for State {
            fn log(&mut self, level: $version::host::Level, message: String) {
                use $version::host::Level;
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
    };
}

grant_host!(v0_1);
grant_host!(v0_2);

impl Plugin {
    /// Checks the contract version, compiles (or loads from the cache) and
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
        let contract =
            contract::read(&wasm).map_err(|reason| format!("{} {reason}", spec.wasm.display()))?;
        let components = engine.components(&wasm).map_err(|e| {
            format!(
                "{} is not a valid WebAssembly component ({e:#})",
                spec.wasm.display()
            )
        })?;
        let pres = components
            .iter()
            .map(|component| prepare(component, contract))
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
            max_age: spec.max_age,
            stats: PluginStats::default(),
        })
    }

    pub fn is_credential_source(&self) -> bool {
        matches!(
            self.pres[0],
            Pre::CredentialV0_1(_) | Pre::CredentialV0_2(_)
        )
    }

    /// This thread's instantiation, and a fresh store for it.
    fn start(&self) -> (&Pre, Store<State>) {
        let pre = &self.pres[engine::shard(self.pres.len())];
        let state = State {
            wasi: WasiCtx::builder().allow_tcp(false).allow_udp(false).build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.memory)
                .trap_on_grow_failure(true)
                .build(),
            shared: self.shared.clone(),
        };
        let mut store = Store::new(pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        // Yield to tokio at every epoch tick; the deadline itself is the
        // timeout around the call, which drops (and so stops) the instance.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        (pre, store)
    }

    pub async fn resolve(&self, request: types::Request) -> Result<types::Answer, Failure> {
        let (pre, mut store) = self.start();
        let call = async {
            let old = |answer: Result<v0_1::types::Response, String>| answer.map(Into::into);
            wasmtime::Result::Ok(match pre {
                Pre::MetadataV0_1(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let provider = instance.ersatz_plugin_provider();
                    old(provider.call_resolve(&mut store, &request.into()).await?)
                }
                Pre::CredentialV0_1(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let provider = instance.ersatz_plugin_provider();
                    old(provider.call_resolve(&mut store, &request.into()).await?)
                }
                Pre::MetadataV0_2(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let provider = instance.ersatz_plugin_provider();
                    provider.call_resolve(&mut store, &request).await?
                }
                Pre::CredentialV0_2(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let provider = instance.ersatz_plugin_provider();
                    provider.call_resolve(&mut store, &request).await?
                }
            })
        };
        self.finish(tokio::time::timeout(self.timeout, call).await)
    }

    pub async fn credentials(&self) -> Result<types::Credentials, Failure> {
        let (pre, mut store) = self.start();
        let call = async {
            wasmtime::Result::Ok(match pre {
                Pre::CredentialV0_1(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let source = instance.ersatz_plugin_credential_source();
                    source.call_fetch(&mut store).await?.map(Into::into)
                }
                Pre::CredentialV0_2(pre) => {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let source = instance.ersatz_plugin_credential_source();
                    source.call_fetch(&mut store).await?
                }
                Pre::MetadataV0_1(_) | Pre::MetadataV0_2(_) => {
                    return Ok(Err(
                        "not a credential source (built for the metadata-plugin world)".into(),
                    ))
                }
            })
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
fn prepare(component: &wasmtime::component::Component, contract: Contract) -> Result<Pre, String> {
    let mut linker = Linker::<State>::new(component.engine());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| e.to_string())?;
    // Both worlds import the same `host`; the metadata world's linking serves both.
    match contract.version {
        0 => v0_1::metadata::MetadataPlugin::add_to_linker::<State, HasSelf<State>>(
            &mut linker,
            |state| state,
        ),
        _ => v0_2::metadata::MetadataPlugin::add_to_linker::<State, HasSelf<State>>(
            &mut linker,
            |state| state,
        ),
    }
    .map_err(|e| e.to_string())?;
    let instance_pre = linker
        .instantiate_pre(component)
        .map_err(|e| format!("it imports something ersatz does not grant ({e:#})"))?;
    let pre = match (contract.version, contract.credential) {
        (0, false) => v0_1::metadata::MetadataPluginPre::new(instance_pre).map(Pre::MetadataV0_1),
        (0, true) => {
            v0_1::credential::CredentialPluginPre::new(instance_pre).map(Pre::CredentialV0_1)
        }
        (_, false) => v0_2::metadata::MetadataPluginPre::new(instance_pre).map(Pre::MetadataV0_2),
        (_, true) => {
            v0_2::credential::CredentialPluginPre::new(instance_pre).map(Pre::CredentialV0_2)
        }
    };
    pre.map_err(|e| e.to_string())
}
