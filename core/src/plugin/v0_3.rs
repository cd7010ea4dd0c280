//! Contract 0.3.0, the newest: the host works in its types and implements
//! its `host` interface here; older versions convert to and from these.

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store};

use super::State;
use crate::provider::identity::off_the_async_threads;
use crate::provider::{jwt, TreeValue};

/// `sign-jwt`'s answer to a plugin whose configuration does not grant it.
const NOT_GRANTED_SIGNING: &str =
    "ersatz signs only for plugins granted it: grants = [\"sign-jwt\"] in their [[plugins]] entry";

// Signing is CPU work on a blocking thread, so it is the one async import.
bindings!("wit/v0.3.0", imports: { "ersatz:plugin/host.sign-jwt": async });

pub const VERSION: &str = "0.3.0";

/// A prepared instantiation of a 0.3.0 plugin, of either world.
pub enum Pre {
    Metadata(metadata::MetadataPluginPre<State>),
    Credential(credential::CredentialPluginPre<State>),
}

/// One call's instance.
pub enum Instance {
    Metadata(metadata::MetadataPlugin),
    Credential(credential::CredentialPlugin),
}

/// Grants `host`. Both worlds import the same one, so the metadata world's
/// linking serves both.
pub fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    metadata::MetadataPlugin::add_to_linker::<State, HasSelf<State>>(linker, |state| state)
}

impl Pre {
    pub fn new(pre: InstancePre<State>, credential: bool) -> wasmtime::Result<Self> {
        Ok(if credential {
            Self::Credential(credential::CredentialPluginPre::new(pre)?)
        } else {
            Self::Metadata(metadata::MetadataPluginPre::new(pre)?)
        })
    }

    pub fn engine(&self) -> &Engine {
        match self {
            Self::Metadata(pre) => pre.engine(),
            Self::Credential(pre) => pre.engine(),
        }
    }

    pub fn is_credential_source(&self) -> bool {
        matches!(self, Self::Credential(_))
    }

    pub async fn instantiate(&self, store: &mut Store<State>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Self::Metadata(pre) => Instance::Metadata(pre.instantiate_async(store).await?),
            Self::Credential(pre) => Instance::Credential(pre.instantiate_async(store).await?),
        })
    }
}

impl Instance {
    pub async fn init(
        &self,
        store: &mut Store<State>,
        config: &str,
    ) -> wasmtime::Result<Result<types::Shape, String>> {
        match self {
            Self::Metadata(instance) => {
                let provider = instance.ersatz_plugin_provider();
                provider.call_init(store, config).await
            }
            Self::Credential(instance) => {
                let provider = instance.ersatz_plugin_provider();
                provider.call_init(store, config).await
            }
        }
    }

    pub async fn resolve(
        &self,
        store: &mut Store<State>,
        request: types::Request,
    ) -> wasmtime::Result<Result<types::Answer, String>> {
        match self {
            Self::Metadata(instance) => {
                let provider = instance.ersatz_plugin_provider();
                provider.call_resolve(store, &request).await
            }
            Self::Credential(instance) => {
                let provider = instance.ersatz_plugin_provider();
                provider.call_resolve(store, &request).await
            }
        }
    }

    pub async fn fetch(
        &self,
        store: &mut Store<State>,
    ) -> wasmtime::Result<Result<types::Credentials, String>> {
        match self {
            Self::Credential(instance) => {
                let source = instance.ersatz_plugin_credential_source();
                source.call_fetch(store).await
            }
            Self::Metadata(_) => Ok(Err(super::NOT_A_CREDENTIAL_SOURCE.into())),
        }
    }
}

impl types::Host for State {}

/// A value of the tree, for every contract's `lookup`.
fn tree_value(state: &State, path: &str) -> Option<TreeValue> {
    state.shared.grants.lookup.value(path.trim_matches('/'))
}

/// A value as contracts before 0.3.0 gave it: a listing as its lines.
pub fn lookup_text(state: &mut State, path: String) -> Option<String> {
    tree_value(state, &path).map(TreeValue::into_text)
}

impl host::Host for State {
    fn log(&mut self, level: host::Level, message: String) {
        use host::Level;
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

    fn now(&mut self) -> u64 {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
        since_epoch.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn lookup(&mut self, path: String) -> Option<types::Value> {
        Some(match tree_value(self, &path)? {
            TreeValue::Leaf(text) => types::Value::Leaf(text),
            TreeValue::Listing(entries) => types::Value::Listing(entries),
        })
    }

    fn lookup_many(&mut self, paths: Vec<String>) -> Vec<Option<types::Value>> {
        paths.into_iter().map(|path| self.lookup(path)).collect()
    }

    async fn sign_jwt(&mut self, claims: String, key_id: Option<String>) -> Result<String, String> {
        let Some(signer) = &self.shared.grants.signer else {
            return Err(NOT_GRANTED_SIGNING.into());
        };
        let Some(key) = signer.get().await else {
            return Err("the host has no signing key (see its log)".into());
        };
        let signed = off_the_async_threads("a plugin's token could not be signed", move || {
            Ok(jwt::sign(&key, &claims, key_id.as_deref()))
        });
        signed
            .await
            .unwrap_or_else(|| Err("signing failed (see the host's log)".into()))
    }

    fn store_get(&mut self, key: String) -> Option<String> {
        self.shared.grants.store.get(&key)
    }

    fn store_put(&mut self, key: String, value: Option<String>) -> Result<(), String> {
        // A put that changes nothing wakes nobody: each wake-up costs
        // every parked long-poll a plugin call.
        if self.shared.grants.store.put(key, value)? {
            self.shared.grants.changes.notify();
        }
        Ok(())
    }
}
