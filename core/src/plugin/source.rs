//! A plugin as a credential source (`[sources.X] type = "plugin"`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::Plugin;
use crate::credentials::{CredentialSource, Credentials, SourceError};
use crate::secret::Secret;
use crate::timefmt;

pub struct PluginSource {
    pub plugin: Arc<Plugin>,
}

#[async_trait]
impl CredentialSource for PluginSource {
    async fn credentials(&self) -> Result<Arc<Credentials>, SourceError> {
        let issued = SystemTime::now();
        let c =
            self.plugin.credentials().await.map_err(|failure| {
                SourceError(format!("plugin {}: {failure}", self.plugin.name))
            })?;
        Ok(Arc::new(Credentials {
            access_key_id: c.access_key_id,
            secret_access_key: Secret::new(c.secret_access_key),
            session_token: c.session_token.map(Secret::new),
            // A plugin's number: checked, as any input (u64::MAX must not panic).
            expiration: c
                .expiration
                .map(|s| timefmt::add(UNIX_EPOCH, Duration::from_secs(s))),
            issued,
        }))
    }
}
