//! WebAssembly plugins: components built against a version of the contract
//! in `wit/`, each instantiated fresh per call in a sandbox: no files,
//! environment or network (WASI deny-by-default), a memory limit, and a
//! deadline. A trap, deadline or limit answers that one request 500 and is
//! logged and counted under the plugin's name; the server keeps serving.
//! Calls at once are bounded by what the engines' pools hold; past that a
//! request waits briefly, then is answered 503 and counted as busy.
//! The host speaks the newest contract; older plugins are adapted to it.
//! Each version is a module (`v0_1`, `v0_2`, `v0_3`) holding its bindings, its
//! conversions to the newest types and its linking; [`Version`] names them,
//! and every match over it is exhaustive, so a new version is a new module
//! and one more arm in each.

/// One contract version's host bindings, in the module that invokes it:
/// `metadata` and `credential` (the worlds; the second reuses the first's
/// types and host interface), and `host` and `types`.
macro_rules! bindings {
    ($path:literal $(, imports: { $($imports:tt)* })?) => {
        pub mod metadata {
            wasmtime::component::bindgen!({
                world: "metadata-plugin",
                path: $path,
                $(imports: { $($imports)* },)?
                exports: { default: async },
            });
        }

        pub mod credential {
            wasmtime::component::bindgen!({
                world: "credential-plugin",
                path: $path,
                exports: { default: async },
                with: {
                    "ersatz:plugin/types": super::metadata::ersatz::plugin::types,
                    "ersatz:plugin/host": super::metadata::ersatz::plugin::host,
                },
            });
        }

        pub use metadata::ersatz::plugin::{host, types};
    };
}

mod cache;
pub mod contract;
mod engine;
mod provider;
mod source;
mod spec;
mod store;
mod v0_1;
mod v0_2;
mod v0_3;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use contract::Contract;
pub use contract::{Version, WIT_PACKAGE};
pub use engine::PluginEngine;
pub use latest::types;
pub use latest::types::Shape;
pub use provider::{resolved, WasmProvider};
pub use source::PluginSource;
pub use spec::{PluginSpec, PluginStats};
pub use store::{Grants, PluginStore, Stores};
/// The newest contract, whose types the host works in and whose `host`
/// interface it implements; older versions convert to it.
use v0_3 as latest;

/// Why a call produced no answer.
#[derive(Debug)]
pub enum Failure {
    /// No room: every slot stayed taken for `SLOT_WAIT` (100 ms), or the
    /// pool was full at instantiation all the same. Not a call.
    Busy,
    /// It could not be instantiated (its memory's minimum above
    /// `limits.memory`, a trap in its start-up code).
    Instantiation(String),
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
            Failure::Busy => write!(f, "had no room: every instance slot was taken"),
            Failure::Instantiation(cause) => write!(f, "could not be instantiated: {cause}"),
            Failure::Trap(cause) => write!(f, "trapped: {cause}"),
            Failure::Timeout(limit) => write!(f, "ran past its {} ms deadline", limit.as_millis()),
            Failure::Guest(message) => write!(f, "returned an error: {message}"),
        }
    }
}

impl Failure {
    /// An instantiation error: a full pool is busy, like a full set of
    /// slots (same cause, same remedy: retry); anything else is the plugin's.
    fn instantiation(error: wasmtime::Error) -> Self {
        if error.is::<wasmtime::PoolConcurrencyLimitError>() {
            Failure::Busy
        } else {
            Failure::Instantiation(error.root_cause().to_string())
        }
    }

    /// The root cause ("wasm `unreachable` instruction executed", "forcing
    /// trap when growing memory…"), without the backtrace.
    fn trap(error: wasmtime::Error) -> Self {
        Failure::Trap(error.root_cause().to_string())
    }
}

/// What a metadata plugin answers when asked for credentials.
const NOT_A_CREDENTIAL_SOURCE: &str =
    "not a credential source (built for the metadata-plugin world)";

/// A prepared instantiation, of the version the plugin was built against.
enum Pre {
    V0_1(v0_1::Pre),
    V0_2(v0_2::Pre),
    V0_3(v0_3::Pre),
}

/// One call's instance.
enum Instance {
    V0_1(v0_1::Instance),
    V0_2(v0_2::Instance),
    V0_3(v0_3::Instance),
}

impl Pre {
    /// Links what the host grants and prepares instantiation.
    fn new(component: &wasmtime::component::Component, contract: Contract) -> Result<Self, String> {
        let mut linker = Linker::<State>::new(component.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| e.to_string())?;
        match contract.version {
            Version::V0_1 => v0_1::add_to_linker(&mut linker),
            Version::V0_2 => v0_2::add_to_linker(&mut linker),
            Version::V0_3 => v0_3::add_to_linker(&mut linker),
        }
        .map_err(|e| e.to_string())?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| format!("it imports something ersatz does not grant ({e:#})"))?;
        let credential = contract.credential;
        match contract.version {
            Version::V0_1 => v0_1::Pre::new(pre, credential).map(Pre::V0_1),
            Version::V0_2 => v0_2::Pre::new(pre, credential).map(Pre::V0_2),
            Version::V0_3 => v0_3::Pre::new(pre, credential).map(Pre::V0_3),
        }
        .map_err(|e| e.to_string())
    }

    fn engine(&self) -> &wasmtime::Engine {
        match self {
            Pre::V0_1(pre) => pre.engine(),
            Pre::V0_2(pre) => pre.engine(),
            Pre::V0_3(pre) => pre.engine(),
        }
    }

    /// Whether its contract has `init` (0.3.0 on).
    fn has_init(&self) -> bool {
        match self {
            Pre::V0_1(_) | Pre::V0_2(_) => false,
            Pre::V0_3(_) => true,
        }
    }

    fn is_credential_source(&self) -> bool {
        match self {
            Pre::V0_1(pre) => pre.is_credential_source(),
            Pre::V0_2(pre) => pre.is_credential_source(),
            Pre::V0_3(pre) => pre.is_credential_source(),
        }
    }

    async fn instantiate(&self, store: &mut Store<State>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V0_1(pre) => Instance::V0_1(pre.instantiate(store).await?),
            Pre::V0_2(pre) => Instance::V0_2(pre.instantiate(store).await?),
            Pre::V0_3(pre) => Instance::V0_3(pre.instantiate(store).await?),
        })
    }
}

impl Instance {
    /// The mount's shape, or why the plugin refuses its configuration;
    /// `None` from plugins older than 0.3.0, which have no `init` (and
    /// are not instantiated to ask).
    async fn init(
        &self,
        store: &mut Store<State>,
        config: &str,
    ) -> wasmtime::Result<Result<Option<types::Shape>, String>> {
        match self {
            Instance::V0_1(_) | Instance::V0_2(_) => Ok(Ok(None)),
            Instance::V0_3(instance) => Ok(instance.init(store, config).await?.map(Some)),
        }
    }

    async fn resolve(
        &self,
        store: &mut Store<State>,
        request: types::Request,
    ) -> wasmtime::Result<Result<types::Answer, String>> {
        match self {
            Instance::V0_1(instance) => instance.resolve(store, request).await,
            Instance::V0_2(instance) => instance.resolve(store, request).await,
            Instance::V0_3(instance) => instance.resolve(store, request).await,
        }
    }

    async fn fetch(
        &self,
        store: &mut Store<State>,
    ) -> wasmtime::Result<Result<types::Credentials, String>> {
        match self {
            Instance::V0_1(instance) => instance.fetch(store).await,
            Instance::V0_2(instance) => instance.fetch(store).await,
            Instance::V0_3(instance) => instance.fetch(store).await,
        }
    }
}

pub struct Plugin {
    pub name: String,
    /// One per engine shard, in shard order.
    pres: Vec<Pre>,
    slots: engine::Slots,
    shared: Arc<Shared>,
    timeout: Duration,
    memory: usize,
    pub max_age: Option<Duration>,
    pub stats: PluginStats,
}

/// One call's store and its room in the pool. The store (and so the
/// instance) is dropped first, back into the pool, then the slot.
struct Call<'a> {
    store: Store<State>,
    pre: &'a Pre,
    _slot: engine::Slot,
}

impl Call<'_> {
    async fn instantiate(&mut self) -> Result<Instance, Failure> {
        let instance = self.pre.instantiate(&mut self.store).await;
        instance.map_err(Failure::instantiation)
    }
}

struct Shared {
    name: String,
    config: String,
    grants: Grants,
}

/// A call's store data: WASI with nothing granted, the limits, and what
/// `host` hands out.
pub struct State {
    /// Made on a plugin's first WASI call: most make none (and one built
    /// for `wasm32-unknown-unknown` imports none), and making it is a good
    /// part of a call's cost.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    limits: StoreLimits,
    shared: Arc<Shared>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let ctx = self.wasi.get_or_insert_with(|| {
            // Deny-by-default: no files, environment, arguments or network.
            WasiCtx::builder().allow_tcp(false).allow_udp(false).build()
        });
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

impl Plugin {
    /// Checks the contract version, compiles (or loads from the cache) and
    /// prepares instantiation. The error names the reason; the caller names
    /// the file and key.
    pub fn load(engine: &PluginEngine, spec: PluginSpec, grants: Grants) -> Result<Self, String> {
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
            .map(|component| Pre::new(component, contract))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            shared: Arc::new(Shared {
                name: spec.name.clone(),
                config: spec.config,
                grants,
            }),
            name: spec.name,
            pres,
            slots: engine.slots(),
            timeout: spec.timeout,
            memory: spec.memory,
            max_age: spec.max_age,
            stats: PluginStats::default(),
        })
    }

    pub fn is_credential_source(&self) -> bool {
        self.pres[0].is_credential_source()
    }

    /// Whether it may ask for signatures: its contract has `sign-jwt`
    /// (0.3.0 on, as `init`) and its configuration grants it.
    pub fn can_sign(&self) -> bool {
        self.pres[0].has_init() && self.shared.grants.signer.is_some()
    }

    /// A slot (or [`Failure::Busy`] when none comes within
    /// [`engine::SLOT_WAIT`]), and a fresh store in its engine.
    async fn start(&self) -> Result<Call<'_>, Failure> {
        let Some(slot) = self.slots.take(engine::SLOT_WAIT).await else {
            return Err(self.failed(Failure::Busy));
        };
        let pre = &self.pres[slot.engine];
        let state = State {
            wasi: None,
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
        Ok(Call {
            store,
            pre,
            _slot: slot,
        })
    }

    /// Calls `init` (contract 0.3.0 on) with the plugin's configuration:
    /// the mount's shape, `None` for older plugins, or the plugin's reason
    /// for refusing its configuration (or its failure).
    pub async fn init(&self) -> Result<Option<types::Shape>, String> {
        if !self.pres[0].has_init() {
            return Ok(None);
        }
        let mut call = self.start().await.map_err(|f| f.to_string())?;
        let config = self.shared.config.clone();
        let run = async {
            let instance = call.instantiate().await?;
            let shape = instance.init(&mut call.store, &config).await;
            shape.map_err(Failure::trap)
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(Ok(shape))) => Ok(shape),
            Ok(Ok(Err(reason))) => Err(reason),
            Ok(Err(failure)) => Err(failure.to_string()),
            Err(_) => Err(Failure::Timeout(self.timeout).to_string()),
        }
    }

    pub async fn resolve(&self, request: types::Request) -> Result<types::Answer, Failure> {
        let mut call = self.start().await?;
        let run = async {
            let instance = call.instantiate().await?;
            let answer = instance.resolve(&mut call.store, request).await;
            answer.map_err(Failure::trap)
        };
        self.finish(tokio::time::timeout(self.timeout, run).await)
    }

    pub async fn credentials(&self) -> Result<types::Credentials, Failure> {
        let mut call = self.start().await?;
        let run = async {
            let instance = call.instantiate().await?;
            let credentials = instance.fetch(&mut call.store).await;
            credentials.map_err(Failure::trap)
        };
        self.finish(tokio::time::timeout(self.timeout, run).await)
    }

    fn finish<T>(
        &self,
        outcome: Result<Result<Result<T, String>, Failure>, tokio::time::error::Elapsed>,
    ) -> Result<T, Failure> {
        let failure = match outcome {
            Ok(Ok(Ok(answer))) => {
                self.stats.calls.fetch_add(1, Ordering::Relaxed);
                return Ok(answer);
            }
            Ok(Ok(Err(message))) => Failure::Guest(message),
            Ok(Err(failure)) => failure,
            Err(_) => Failure::Timeout(self.timeout),
        };
        Err(self.failed(failure))
    }

    /// Counts and logs a failure.
    fn failed(&self, failure: Failure) -> Failure {
        let stats = &self.stats;
        let counter = match failure {
            Failure::Busy => &stats.busy,
            Failure::Instantiation(_) => &stats.instantiation_failures,
            Failure::Trap(_) => &stats.traps,
            Failure::Timeout(_) => &stats.timeouts,
            Failure::Guest(_) => &stats.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Failure::Busy = failure {
            // Counted, not warned: under overload a line per refusal would
            // add to the load; the metric shows it.
            tracing::debug!(plugin = %self.name, cause = %failure, "plugin call refused");
        } else {
            stats.calls.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(plugin = %self.name, cause = %failure, "plugin call failed");
        }
        failure
    }
}
