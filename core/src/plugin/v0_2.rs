//! Contract 0.2.0, the newest: the host works in its types and implements
//! its `host` interface here; older versions convert to and from these.

use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store};

use super::State;

bindings!("wit/v0.2.0");

pub const VERSION: &str = "0.2.0";

/// A prepared instantiation of a 0.2.0 plugin, of either world.
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

    fn lookup(&mut self, path: String) -> Option<String> {
        self.shared.lookup.text(path.trim_matches('/'))
    }
}
