//! The wasmtime engines: one per worker thread (up to `MAX_SHARDS`), each
//! with its own pooling allocator (on-demand when the machine cannot reserve
//! the pool's address space), epoch interruption driven by a 2 ms ticker,
//! and compiled components cached on disk by content hash; and the slots
//! that bound plugin calls to what the pools hold.
//!
//! Why several: every call takes and returns pool slots under the pool's
//! locks and shared counters. Calling from two threads at once, a call cost
//! 1.7x the CPU it costs alone with one shared pool, 1.2x with a pool per
//! thread (plugin GETs: 6% more requests per second on 2 cores).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::state::StateDir;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances, and so how often a running plugin yields:
/// the granularity of deadlines, and how long one runaway call can hold a
/// worker thread before the others get a turn. At 10 ms, 50 runaway calls
/// on two cores ended at p99 850 ms for a 50 ms deadline; at 2 ms, 220 ms
/// (1 ms: 160 ms, for twice the idle wake-ups).
pub const EPOCH_TICK: Duration = Duration::from_millis(2);
/// Plugin calls that may run at once in one engine's pool.
const POOL_INSTANCES: u32 = 256;
/// How long a call waits for a slot when every one is taken, before its
/// request is answered 503 (which IMDS clients retry). Twice the default
/// deadline (50 ms), so slots held by calls at that deadline turn over
/// within it; far inside the 1 s after which the SDKs' IMDS clients
/// (botocore, aws-sdk-rust) give up on a request, so they get the 503 and
/// retry rather than time out. Not the plugin's own timeout: that may be
/// up to 10 s.
pub const SLOT_WAIT: Duration = Duration::from_millis(100);
/// Bytes of a pooled memory or table reset in place (only the pages a call
/// dirtied, which PAGEMAP_SCAN finds) instead of returned to the kernel:
/// unmapping costs a TLB shootdown across every core on every call (plugin
/// GETs measured 4x faster without it). Resident memory is bounded by the
/// calls that ran at once, times what each dirtied.
const KEEP_RESIDENT: usize = 2 << 20;
/// Each engine reserves about 1 TiB of address space for its pool (none of
/// it resident until used).
const MAX_SHARDS: usize = 8;

pub struct PluginEngine {
    /// Identically configured, so one compilation serves them all.
    engines: Vec<Engine>,
    /// Where compiled plugins are kept; `None` keeps none (`config check`).
    cache_dir: Option<PathBuf>,
    slots: Slots,
}

impl PluginEngine {
    pub fn new(cache_dir: Option<PathBuf>) -> wasmtime::Result<Self> {
        let shards = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_SHARDS));
        let pooling = match Engine::new(&config(true)) {
            Ok(first) => Some(first),
            Err(error) => {
                tracing::warn!(%error, "pooling allocator unavailable; instantiating plugins on demand");
                None
            }
        };
        let engines = match pooling {
            Some(first) => {
                let mut engines = vec![first];
                for _ in 1..shards {
                    // Address space may run out after the first pool: fewer
                    // shards only cost speed.
                    match Engine::new(&config(true)) {
                        Ok(engine) => engines.push(engine),
                        Err(_) => break,
                    }
                }
                engines
            }
            None => vec![Engine::new(&config(false))?],
        };
        let tickers: Vec<_> = engines.iter().map(Engine::weak).collect();
        std::thread::Builder::new()
            .name("ersatz-epoch".into())
            .spawn(move || loop {
                let mut alive = false;
                for engine in tickers.iter().filter_map(|ticker| ticker.upgrade()) {
                    engine.increment_epoch();
                    alive = true;
                }
                if !alive {
                    return;
                }
                std::thread::sleep(EPOCH_TICK);
            })
            .expect("the epoch thread starts");
        // On demand there is no pool to fill, but the same bound keeps
        // memory bounded alike.
        let slots = Slots::new(engines.len(), POOL_INSTANCES as usize);
        Ok(Self {
            engines,
            cache_dir,
            slots,
        })
    }

    /// Room for calls, shared by every plugin of these engines.
    pub fn slots(&self) -> Slots {
        self.slots.clone()
    }

    /// The engine that compiles plugins; the others load its compilation.
    pub fn first(&self) -> &Engine {
        &self.engines[0]
    }

    /// `wasm` compiled for every engine, in engine order: compiled once, or
    /// loaded from the compilation a previous start cached.
    pub fn components(&self, wasm: &[u8]) -> wasmtime::Result<Vec<Component>> {
        let name = cache_name(self.first(), wasm);
        // A cached compilation is native code that runs in this process: it
        // is loaded only from a directory and file this user alone may write.
        let cache = match &self.cache_dir {
            Some(dir) => StateDir::open(dir),
            None => Err(std::io::Error::other("no cache for this run")),
        };
        if let Ok(dir) = &cache {
            match self.load_cached(dir, &name) {
                Ok(Some(components)) => {
                    tracing::info!(file = %name, "compiled plugin loaded from the cache");
                    return Ok(components);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(file = %name, %error, "ignoring a bad compiled-plugin cache entry; compiling again")
                }
            }
        }
        let compiled = Component::new(self.first(), wasm)?;
        // One serialization feeds both the cache and the other engines.
        let bytes = compiled.serialize()?;
        if let Some(dir) = &self.cache_dir {
            let stored = cache.and_then(|cache| cache.lock()?.write(&name, &bytes, true));
            if let Err(error) = stored {
                tracing::warn!(dir = %dir.display(), %error, "cannot cache the compiled plugin");
            }
        }
        let mut components = vec![compiled];
        for engine in &self.engines[1..] {
            // SAFETY: our own serialization, made a moment ago by an
            // identically configured engine.
            components.push(unsafe { Component::deserialize(engine, &bytes)? });
        }
        Ok(components)
    }

    fn load_cached(&self, dir: &StateDir, name: &str) -> wasmtime::Result<Option<Vec<Component>>> {
        let Some(bytes) = dir.lock()?.read_up_to(name, MAX_COMPILED_PLUGIN)? else {
            return Ok(None);
        };
        self.engines
            .iter()
            // SAFETY: our own serialization, read from a file only this
            // user may write, named by the hash of the wasm and of the
            // engines' settings; wasmtime checks its header and version.
            .map(|engine| unsafe { Component::deserialize(engine, &bytes) })
            .collect::<wasmtime::Result<_>>()
            .map(Some)
    }
}

/// Larger than any compiled plugin that fits the memory limits.
const MAX_COMPILED_PLUGIN: u64 = 256 << 20;

/// The cache file of `wasm`: the hash of its bytes and of the engine's
/// settings, so any change of wasmtime version or settings misses.
fn cache_name(engine: &Engine, wasm: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(wasm);
    let mut compatibility = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut compatibility);
    hash.update(std::hash::Hasher::finish(&compatibility).to_le_bytes());
    let digest = crate::hex::hex(&hash.finalize());
    format!("{digest}.cwasm")
}

/// Room in the engines' pools, one permit per instance a pool holds. A
/// call holds one until its store, and so its instance, is gone, so that
/// instantiation never finds a pool full.
///
/// Two levels: `any` counts room in every pool together, and is what a
/// call waits on, so that room freed in any engine ends a wait; a call
/// holding an `any` permit always finds an engine with room, since engine
/// permits in use never outnumber `any` permits in use.
#[derive(Clone)]
pub struct Slots {
    any: Arc<Semaphore>,
    engines: Arc<[Arc<Semaphore>]>,
}

/// Room for one call in one engine's pool, until dropped.
pub struct Slot {
    /// Which engine's pool.
    pub engine: usize,
    _permit: OwnedSemaphorePermit,
    _any: OwnedSemaphorePermit,
}

impl Slots {
    fn new(engines: usize, each: usize) -> Self {
        Self {
            any: Arc::new(Semaphore::new(engines * each)),
            engines: (0..engines)
                .map(|_| Arc::new(Semaphore::new(each)))
                .collect(),
        }
    }

    /// Room in this thread's engine, else in any engine with some (any
    /// engine serves any thread), waiting up to `wait` for room anywhere.
    /// `None`: no room.
    pub async fn take(&self, wait: Duration) -> Option<Slot> {
        let waiting = self.any.clone().acquire_owned();
        let any = tokio::time::timeout(wait, waiting).await.ok()?.ok()?;
        let engines = self.engines.len();
        let home = shard(engines);
        let (engine, permit) = (home..home + engines)
            .map(|i| i % engines)
            .find_map(|engine| {
                let permit = self.engines[engine].clone().try_acquire_owned().ok()?;
                Some((engine, permit))
            })?;
        Some(Slot {
            engine,
            _permit: permit,
            _any: any,
        })
    }
}

/// This thread's engine, by index: threads are spread over the engines in
/// the order they first call a plugin, so the runtime's workers (the first
/// and busiest callers) each get their own while there are enough.
pub fn shard(engines: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SHARD.with(|index| index % engines)
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
            .max_memory_size(crate::config::MAX_PLUGIN_MEMORY);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_engine_lends_from_another_and_then_calls_are_turned_away() {
        let slots = Slots::new(2, 1);
        let first = slots.take(SLOT_WAIT).await.expect("room at home");
        let second = slots
            .take(SLOT_WAIT)
            .await
            .expect("room in the other engine");
        assert_ne!(first.engine, second.engine);
        assert!(slots.take(SLOT_WAIT).await.is_none(), "both pools full");
        drop(second);
        assert!(slots.take(SLOT_WAIT).await.is_some(), "a slot given back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_call_takes_room_freed_in_any_engine() {
        let slots = Slots::new(2, 1);
        let home = slots.take(SLOT_WAIT).await.unwrap();
        let other = slots.take(SLOT_WAIT).await.unwrap();
        // Spawned on this same thread, so its home engine is `home`'s.
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take(SLOT_WAIT).await.map(|slot| slot.engine) }
        });
        tokio::time::sleep(SLOT_WAIT / 2).await;
        let freed = other.engine;
        drop(other);
        assert_eq!(
            waiting.await.unwrap(),
            Some(freed),
            "room in the other engine ends the wait"
        );
        drop(home);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_waits_for_a_slot_freed_within_the_wait_and_no_longer() {
        let slots = Slots::new(1, 1);
        let held = slots.take(SLOT_WAIT).await.unwrap();
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.take(SLOT_WAIT).await.map(|slot| slot.engine) }
        });
        tokio::time::sleep(SLOT_WAIT / 2).await;
        drop(held);
        assert_eq!(waiting.await.unwrap(), Some(0));

        let _held = slots.take(SLOT_WAIT).await.unwrap();
        let started = tokio::time::Instant::now();
        assert!(slots.take(SLOT_WAIT).await.is_none());
        assert_eq!(started.elapsed(), SLOT_WAIT, "gave up at the wait");
    }
}
