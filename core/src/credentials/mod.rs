//! Credential sources: where the keys a role path serves come from. Each kind
//! is a small type behind [`CredentialSource`]; [`Cached`] adds single-flight
//! fetching and background refresh to the ones that call out (STS, profiles).

mod assume_role;
mod bootstrap;
pub mod build;
mod cache;
mod document;
pub mod https;
pub mod roles;
mod sdk;
mod static_source;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

pub use assume_role::{AssumeParams, AssumeRole};
pub use bootstrap::BootstrapSource;
pub use cache::{Cached, RefreshPolicy};
pub use document::{ecs_document, failure_document, success_document};
pub use roles::Roles;
pub use sdk::SdkSource;
pub use static_source::StaticSource;

use crate::secret::Secret;

#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// `None` for long-lived keys (static sources).
    pub expiration: Option<SystemTime>,
    /// When these were obtained.
    pub issued: SystemTime,
}

impl Credentials {
    /// The expiry as served: whole seconds, rounded down, so nothing is ever
    /// served past the `Expiration` clients were shown.
    pub fn whole_seconds(expiration: SystemTime) -> SystemTime {
        crate::timefmt::floor(expiration, std::time::Duration::from_secs(1))
    }

    pub fn is_valid_at(&self, at: SystemTime) -> bool {
        self.expiration.is_none_or(|expiration| expiration > at)
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// Why a source has no credentials to give; shown to clients in the Failure
/// document and logged, so it must never contain a secret.
#[derive(Debug, Clone)]
pub struct SourceError(pub String);

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An error and its causes as one line of text, each cause once, without
/// the debug dumps that `DisplayErrorContext` appends.
pub fn sentence(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut cause = error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        cause = next.source();
    }
    parts.join(": ")
}

#[async_trait]
pub trait CredentialSource: Send + Sync {
    /// Current credentials. Sources that call out return fresh ones on every
    /// call; wrap them in [`Cached`] to share and refresh.
    async fn credentials(&self) -> Result<Arc<Credentials>, SourceError>;
}
