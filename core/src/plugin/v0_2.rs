//! Contract 0.2.0: its plugins get the newest request converted down, and
//! their answers and credentials are converted up; `host` is the newest
//! one's, with 0.2.0's types.

use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::{Engine, Store};

use super::{latest, State};

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
        request: latest::types::Request,
    ) -> wasmtime::Result<Result<latest::types::Answer, String>> {
        let request = request.into();
        let answer = match self {
            Self::Metadata(instance) => {
                let provider = instance.ersatz_plugin_provider();
                provider.call_resolve(store, &request).await?
            }
            Self::Credential(instance) => {
                let provider = instance.ersatz_plugin_provider();
                provider.call_resolve(store, &request).await?
            }
        };
        Ok(answer.map(Into::into))
    }

    pub async fn fetch(
        &self,
        store: &mut Store<State>,
    ) -> wasmtime::Result<Result<latest::types::Credentials, String>> {
        match self {
            Self::Credential(instance) => {
                let source = instance.ersatz_plugin_credential_source();
                Ok(source.call_fetch(store).await?.map(Into::into))
            }
            Self::Metadata(_) => Ok(Err(super::NOT_A_CREDENTIAL_SOURCE.into())),
        }
    }
}

impl types::Host for State {}

impl host::Host for State {
    fn log(&mut self, level: host::Level, message: String) {
        latest::host::Host::log(self, level.into(), message);
    }

    fn config(&mut self) -> String {
        latest::host::Host::config(self)
    }

    fn lookup(&mut self, path: String) -> Option<String> {
        latest::lookup_text(self, path)
    }
}

impl From<host::Level> for latest::host::Level {
    fn from(level: host::Level) -> Self {
        match level {
            host::Level::Trace => Self::Trace,
            host::Level::Debug => Self::Debug,
            host::Level::Info => Self::Info,
            host::Level::Warn => Self::Warn,
            host::Level::Error => Self::Error,
        }
    }
}

/// A 0.2.0 plugin sees the request without its body or trailing slash...
impl From<latest::types::Request> for types::Request {
    fn from(r: latest::types::Request) -> Self {
        Self {
            method: r.method,
            path: r.path,
            query: r.query,
            headers: r.headers,
            client: r.client,
        }
    }
}

/// ...and answers with the listener's status and headers.
impl From<types::Answer> for latest::types::Answer {
    fn from(answer: types::Answer) -> Self {
        Self {
            response: answer.response.into(),
            status: None,
            headers: Vec::new(),
            max_age: answer.max_age,
        }
    }
}

impl From<types::Response> for latest::types::Response {
    fn from(response: types::Response) -> Self {
        match response {
            types::Response::Leaf(leaf) => Self::Leaf(latest::types::Leaf {
                body: leaf.body,
                content_type: leaf.content_type,
            }),
            types::Response::Directory(entries) => Self::Directory(entries),
            types::Response::NotFound => Self::NotFound,
        }
    }
}

impl From<types::Credentials> for latest::types::Credentials {
    fn from(c: types::Credentials) -> Self {
        Self {
            access_key_id: c.access_key_id,
            secret_access_key: c.secret_access_key,
            session_token: c.session_token,
            expiration: c.expiration,
        }
    }
}
