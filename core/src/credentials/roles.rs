//! Roles: the credential paths `iam/security-credentials/ALIAS`, each bound
//! to a source, and which one is active (listed, and named by `iam/info`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::{failure_document, success_document, CredentialSource};
use crate::timefmt;

/// Long-lived keys are served as if rotated every hour and valid for six:
/// clients always see an expiry comfortably ahead (botocore refreshes inside
/// 15 minutes) and the document stays byte-identical within the hour.
const ROTATION: Duration = Duration::from_secs(3600);
const LONG_LIVED_VALIDITY: Duration = Duration::from_secs(6 * 3600);

pub struct Role {
    source: Arc<dyn CredentialSource>,
    rendered: Mutex<Option<Rendered>>,
}

struct Rendered {
    window: SystemTime,
    body: Bytes,
}

pub struct Roles {
    roles: BTreeMap<String, Role>,
    active: RwLock<String>,
}

impl Roles {
    pub fn new(bindings: BTreeMap<String, Arc<dyn CredentialSource>>, active: &str) -> Self {
        let roles = bindings
            .into_iter()
            .map(|(alias, source)| {
                (
                    alias,
                    Role {
                        source,
                        rendered: Mutex::new(None),
                    },
                )
            })
            .collect();
        Self {
            roles,
            active: RwLock::new(active.to_owned()),
        }
    }

    pub fn active(&self) -> String {
        self.active.read().expect("role lock").clone()
    }

    pub fn get(&self, alias: &str) -> Option<&Role> {
        self.roles.get(alias)
    }
}

impl Role {
    /// The credential document, or the Failure document when the source has
    /// nothing to give.
    pub async fn document(&self) -> Bytes {
        let now = SystemTime::now();
        let window = timefmt::floor(now, ROTATION);
        if let Some(rendered) = self.rendered.lock().expect("render lock").as_ref() {
            if rendered.window == window {
                return rendered.body.clone();
            }
        }
        match self.source.credentials().await {
            Ok(credentials) => match credentials.expiration {
                Some(expiration) => Bytes::from(success_document(&credentials, now, expiration)),
                None => {
                    let body = Bytes::from(success_document(
                        &credentials,
                        window,
                        window + LONG_LIVED_VALIDITY,
                    ));
                    *self.rendered.lock().expect("render lock") = Some(Rendered {
                        window,
                        body: body.clone(),
                    });
                    body
                }
            },
            Err(error) => Bytes::from(failure_document("Failure", &error.0, now)),
        }
    }

    /// Whether the source currently has unexpired credentials.
    pub async fn is_valid(&self) -> bool {
        match self.source.credentials().await {
            Ok(credentials) => credentials.expiration.is_none_or(|e| e > SystemTime::now()),
            Err(_) => false,
        }
    }
}
