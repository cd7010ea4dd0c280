use std::sync::Arc;

use parking_lot::RwLock;
use std::time::SystemTime;

use async_trait::async_trait;

use super::{CredentialSource, Credentials, SourceError};
use crate::secret::Secret;

/// Source credentials posted at run time (`POST /bootstrap/creds`), held in
/// memory only: never written to disk, gone with the process.
#[derive(Default)]
pub struct BootstrapSource {
    held: RwLock<Option<Arc<Credentials>>>,
}

impl BootstrapSource {
    pub fn set(
        &self,
        access_key_id: String,
        secret_access_key: Secret,
        session_token: Option<Secret>,
    ) {
        let credentials = Credentials {
            access_key_id,
            secret_access_key,
            session_token: session_token.filter(|t| !t.is_empty()),
            expiration: None,
            issued: SystemTime::now(),
        };
        *self.held.write() = Some(Arc::new(credentials));
    }

    pub fn is_set(&self) -> bool {
        self.held.read().is_some()
    }
}

#[async_trait]
impl CredentialSource for BootstrapSource {
    async fn credentials(&self) -> Result<Arc<Credentials>, SourceError> {
        self.held.read().clone().ok_or_else(|| {
            SourceError("not bootstrapped yet: POST source credentials to /bootstrap/creds on the admin API".into())
        })
    }
}
