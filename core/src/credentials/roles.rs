//! Roles: the credential paths `iam/security-credentials/ALIAS`. Each is
//! bound to a source (re-bindable at run time); a role with an ARN serves
//! what STS AssumeRole returns when called with that source's credentials.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::{
    failure_document, success_document, AssumeParams, AssumeRole, Cached, CredentialSource,
    Credentials, RefreshPolicy, SourceError,
};
use crate::timefmt;

/// Long-lived keys are served as if rotated every hour and valid for six:
/// clients always see an expiry comfortably ahead (botocore refreshes inside
/// 15 minutes) and the document stays byte-identical within the hour.
const ROTATION: Duration = Duration::from_secs(3600);
const LONG_LIVED_VALIDITY: Duration = Duration::from_secs(6 * 3600);

/// A role as configured.
pub struct RoleSpec {
    pub alias: String,
    pub source: String,
    pub assume: Option<AssumeParams>,
}

/// What a role path is bound to right now.
pub struct Binding {
    pub source: String,
    served: Arc<dyn CredentialSource>,
    /// Set when this binding calls STS itself (the role has an ARN).
    cached: Option<Arc<Cached>>,
}

pub struct Role {
    pub alias: String,
    pub assume: Option<AssumeParams>,
    binding: RwLock<Arc<Binding>>,
    rendered: Mutex<Option<Rendered>>,
}

struct Rendered {
    credentials: Arc<Credentials>,
    window: SystemTime,
    body: Bytes,
}

pub struct Roles {
    sources: BTreeMap<String, Arc<dyn CredentialSource>>,
    roles: BTreeMap<String, Role>,
    active: RwLock<String>,
    policy: RefreshPolicy,
}

impl Roles {
    /// `specs` must name existing sources and `active` an existing role
    /// (the configuration checks both).
    pub fn new(
        sources: BTreeMap<String, Arc<dyn CredentialSource>>,
        specs: Vec<RoleSpec>,
        active: &str,
        policy: RefreshPolicy,
    ) -> Self {
        let mut roles = BTreeMap::new();
        for spec in specs {
            let binding = bind(
                &spec.alias,
                spec.assume.as_ref(),
                &spec.source,
                &sources[&spec.source],
                policy,
            );
            roles.insert(
                spec.alias.clone(),
                Role {
                    alias: spec.alias,
                    assume: spec.assume,
                    binding: RwLock::new(Arc::new(binding)),
                    rendered: Mutex::new(None),
                },
            );
        }
        Self {
            sources,
            roles,
            active: RwLock::new(active.to_owned()),
            policy,
        }
    }

    /// Aliases, sorted.
    pub fn aliases(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    pub fn active(&self) -> String {
        self.active.read().clone()
    }

    pub fn get(&self, alias: &str) -> Option<&Role> {
        self.roles.get(alias)
    }

    pub fn source(&self, name: &str) -> Option<&Arc<dyn CredentialSource>> {
        self.sources.get(name)
    }

    pub fn set_active(&self, alias: &str) -> Result<(), String> {
        let role = self.roles.get(alias).ok_or_else(|| self.unknown(alias))?;
        *self.active.write() = alias.to_owned();
        role.prefetch();
        Ok(())
    }

    /// Serves `alias` from `source` from now on; its old credentials go.
    pub fn rebind(&self, alias: &str, source: &str) -> Result<(), String> {
        let role = self.roles.get(alias).ok_or_else(|| self.unknown(alias))?;
        let served = self.sources.get(source).ok_or_else(|| {
            let known: Vec<&str> = self.sources.keys().map(String::as_str).collect();
            format!(
                "no source named \"{source}\" (defined: {})",
                known.join(", ")
            )
        })?;
        let binding = bind(alias, role.assume.as_ref(), source, served, self.policy);
        *role.binding.write() = Arc::new(binding);
        *role.rendered.lock() = None;
        tracing::info!(role = alias, source, "role re-bound");
        role.prefetch();
        Ok(())
    }

    /// A source changed (bootstrapped): failures held back from it are stale.
    pub fn source_changed(&self) {
        for role in self.roles.values() {
            if let Some(cached) = &role.binding().cached {
                cached.forget_failure();
            }
        }
    }

    pub fn prefetch_active(&self) {
        if let Some(role) = self.roles.get(&self.active()) {
            role.prefetch();
        }
    }

    fn unknown(&self, alias: &str) -> String {
        format!(
            "no role named \"{alias}\" (defined: {})",
            self.aliases().join(", ")
        )
    }
}

fn bind(
    alias: &str,
    assume: Option<&AssumeParams>,
    source_name: &str,
    source: &Arc<dyn CredentialSource>,
    policy: RefreshPolicy,
) -> Binding {
    match assume {
        Some(params) => {
            let sts = Arc::new(AssumeRole::new(params.clone(), source.clone()));
            let cached = Cached::new(format!("role {alias}"), sts, policy);
            Binding {
                source: source_name.to_owned(),
                served: cached.clone(),
                cached: Some(cached),
            }
        }
        None => Binding {
            source: source_name.to_owned(),
            served: source.clone(),
            cached: None,
        },
    }
}

impl Role {
    pub fn binding(&self) -> Arc<Binding> {
        self.binding.read().clone()
    }

    pub async fn credentials(&self) -> Result<Arc<Credentials>, SourceError> {
        self.binding().served.credentials().await
    }

    /// Whether valid credentials are held now, without calling STS.
    pub async fn is_valid(&self) -> bool {
        let binding = self.binding();
        match &binding.cached {
            Some(cached) => cached.peek().is_some(),
            None => binding.served.credentials().await.is_ok(),
        }
    }

    /// How many times this role's binding has called STS.
    pub fn sts_calls(&self) -> u64 {
        self.binding().cached.as_ref().map_or(0, |c| c.fetches())
    }

    fn prefetch(&self) {
        if let Some(cached) = &self.binding().cached {
            cached.prefetch();
        }
    }

    /// The IMDS credential document, or the Failure document.
    pub async fn document(&self) -> Bytes {
        let now = SystemTime::now();
        let credentials = match self.credentials().await {
            Ok(credentials) => credentials,
            Err(error) => return Bytes::from(failure_document("Failure", &error.0, now)),
        };
        let (last_updated, expiration) = served_times(&credentials, now);
        let mut rendered = self.rendered.lock();
        if let Some(r) = rendered.as_ref() {
            if Arc::ptr_eq(&r.credentials, &credentials) && r.window == last_updated {
                return r.body.clone();
            }
        }
        let body = Bytes::from(success_document(&credentials, last_updated, expiration));
        *rendered = Some(Rendered {
            credentials,
            window: last_updated,
            body: body.clone(),
        });
        body
    }
}

/// (LastUpdated, Expiration) as served: as issued, or the rolling window for
/// long-lived keys.
pub fn served_times(credentials: &Credentials, now: SystemTime) -> (SystemTime, SystemTime) {
    match credentials.expiration {
        Some(expiration) => (credentials.issued, expiration),
        None => {
            let window = timefmt::floor(now, ROTATION);
            (window, window + LONG_LIVED_VALIDITY)
        }
    }
}
