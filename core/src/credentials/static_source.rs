use async_trait::async_trait;

use super::{CredentialSource, Credentials, SourceError};
use crate::config::Secret;

/// Keys written in the configuration.
pub struct StaticSource {
    credentials: Credentials,
}

impl StaticSource {
    pub fn new(
        access_key_id: &str,
        secret_access_key: &Secret,
        session_token: Option<&Secret>,
    ) -> Self {
        Self {
            credentials: Credentials {
                access_key_id: access_key_id.to_owned(),
                secret_access_key: secret_access_key.clone(),
                session_token: session_token.cloned(),
                expiration: None,
            },
        }
    }
}

#[async_trait]
impl CredentialSource for StaticSource {
    async fn credentials(&self) -> Result<Credentials, SourceError> {
        Ok(self.credentials.clone())
    }
}
