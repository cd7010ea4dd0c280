//! The plugin host's floor: what wasmtime alone costs for one fresh instance
//! of the benchmark's plugin, its call and its teardown, in-process with
//! ersatz's engines and no HTTP. No host answers a fresh-instance GET for
//! less than its HTTP path plus this.

use std::path::Path;
use std::time::Instant;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::Store;

wasmtime::component::bindgen!({
    world: "metadata-plugin",
    path: "../wit/v0.2.0",
    exports: { default: async },
});

use self::ersatz::plugin::{host, types};

/// A host doing as little as a host can: it hands over the configuration.
struct Bare {
    config: String,
}

impl host::Host for Bare {
    fn log(&mut self, _level: host::Level, _message: String) {}

    fn config(&mut self) -> String {
        self.config.clone()
    }

    fn lookup(&mut self, _path: String) -> Option<String> {
        None
    }
}

impl types::Host for Bare {}

const WARM_UP: u32 = 2_000;
const CALLS: u32 = 20_000;
const RUNS: usize = 5;

/// Microseconds per call (median of runs): a new store and instance, the
/// GET the benchmark sends, and dropping both.
pub fn micros_per_call(wasm: &Path, config: &str, path: &str) -> f64 {
    let engines = ::ersatz::plugin::PluginEngine::new(None).expect("an engine");
    let engine = engines.first();
    let component = engines
        .components(&std::fs::read(wasm).expect("the plugin reads"))
        .expect("the plugin compiles")
        .swap_remove(0);
    let mut linker = Linker::<Bare>::new(engine);
    MetadataPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |bare| bare).unwrap();
    let pre = MetadataPluginPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
    let request = types::Request {
        method: "GET".into(),
        path: path.into(),
        query: None,
        headers: vec![("host".into(), "127.0.0.1".into())],
        client: "127.0.0.1".into(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let call = || async {
        let mut store = Store::new(
            engine,
            Bare {
                config: config.to_owned(),
            },
        );
        // As ersatz does: the engines interrupt by epoch.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
        let plugin = pre.instantiate_async(&mut store).await.unwrap();
        let provider = plugin.ersatz_plugin_provider();
        let answer = provider.call_resolve(&mut store, &request).await.unwrap();
        assert!(answer.is_ok(), "the plugin answers the benchmark's GET");
    };
    runtime.block_on(async {
        for _ in 0..WARM_UP {
            call().await;
        }
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            for _ in 0..CALLS {
                call().await;
            }
            runs.push(started.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS));
        }
        super::median(runs)
    })
}
