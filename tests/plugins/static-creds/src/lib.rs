//! A credential source handing out the keys in its config, with a fresh
//! expiration on every call when a lifetime is given. It serves no paths.

wit_bindgen::generate!({ world: "credential-plugin", path: "../../../wit/v0.1.0" });

use std::time::{SystemTime, UNIX_EPOCH};

use ersatz::plugin::host;
use ersatz::plugin::types::{Credentials, Request, Response};
use exports::ersatz::plugin::{credential_source, provider};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    /// None: long-lived keys, without an expiration.
    lifetime_seconds: Option<u64>,
}

struct StaticCreds;

impl provider::Guest for StaticCreds {
    fn resolve(_: Request) -> Result<Response, String> {
        Ok(Response::NotFound)
    }
}

impl credential_source::Guest for StaticCreds {
    fn fetch() -> Result<Credentials, String> {
        let config: Config = serde_json::from_str(&host::config())
            .map_err(|e| format!("static-creds: invalid config: {e}"))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?;
        Ok(Credentials {
            access_key_id: config.access_key_id,
            secret_access_key: config.secret_access_key,
            session_token: config.session_token,
            expiration: config.lifetime_seconds.map(|s| now.as_secs() + s),
        })
    }
}

export!(StaticCreds);
