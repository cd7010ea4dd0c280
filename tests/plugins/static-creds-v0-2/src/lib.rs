//! A credential source on contract 0.2.0 handing out exactly the keys and
//! expiration in its config, so a test can compare what a client receives
//! with what the plugin returned. It serves no paths.

wit_bindgen::generate!({ world: "credential-plugin", path: "../../../wit/v0.2.0" });

use ersatz::plugin::host;
use ersatz::plugin::types::{Answer, Credentials, Request, Response};
use exports::ersatz::plugin::{credential_source, provider};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    /// Seconds since the Unix epoch, passed on as given.
    expiration: Option<u64>,
}

struct StaticCreds;

impl provider::Guest for StaticCreds {
    fn resolve(_: Request) -> Result<Answer, String> {
        Ok(Answer {
            response: Response::NotFound,
            max_age: 0,
        })
    }
}

impl credential_source::Guest for StaticCreds {
    fn fetch() -> Result<Credentials, String> {
        let config: Config = serde_json::from_str(&host::config())
            .map_err(|e| format!("static-creds-v0-2: invalid config: {e}"))?;
        Ok(Credentials {
            access_key_id: config.access_key_id,
            secret_access_key: config.secret_access_key,
            session_token: config.session_token,
            expiration: config.expiration,
        })
    }
}

export!(StaticCreds);
