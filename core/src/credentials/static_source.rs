use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use super::{CredentialSource, Credentials, SourceError};
use crate::secret::Secret;

/// Keys written in the configuration.
pub struct StaticSource {
    credentials: Arc<Credentials>,
}

impl StaticSource {
    pub fn new(
        access_key_id: &str,
        secret_access_key: &Secret,
        session_token: Option<&Secret>,
    ) -> Self {
        Self {
            credentials: Arc::new(Credentials {
                access_key_id: access_key_id.to_owned(),
                secret_access_key: secret_access_key.clone(),
                session_token: session_token.filter(|t| !t.is_empty()).cloned(),
                expiration: None,
                issued: SystemTime::now(),
            }),
        }
    }
}

#[async_trait]
impl CredentialSource for StaticSource {
    async fn credentials(&self) -> Result<Arc<Credentials>, SourceError> {
        Ok(self.credentials.clone())
    }
}
