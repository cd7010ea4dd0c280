//! Serves `version` from its config, so one wasm can stand for several
//! versions of a plugin (e.g. across a config reload), and `nonce`, a
//! number drawn afresh by every instance, so a test can tell a reused
//! answer from a new call. `slow` answers the version after the config's
//! `slow_ms` (default 300), so a test can reload while requests are inside
//! a call, or fill the host's pool. Every answer carries the config's
//! `max_age` (default 0).

wit_bindgen::generate!({ world: "metadata-plugin", path: "../../../wit/v0.2.0" });

use std::hash::BuildHasher;

use ersatz::plugin::host;
use ersatz::plugin::types::{Answer, Leaf, Request, Response};
use exports::ersatz::plugin::provider::Guest;
use serde_json::Value;

struct EchoVersion;

fn text(body: String) -> Response {
    Response::Leaf(Leaf {
        body: body.into_bytes(),
        content_type: "text/plain".into(),
    })
}

impl Guest for EchoVersion {
    fn resolve(request: Request) -> Result<Answer, String> {
        let config: Value = serde_json::from_str(&host::config())
            .map_err(|e| format!("echo-version: invalid config: {e}"))?;
        // TOML's `version = 2` arrives as a number; serve it as written.
        let version = match &config["version"] {
            Value::Null => return Err("echo-version: config has no `version`".into()),
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        let max_age = config["max_age"].as_u64().unwrap_or(0) as u32;
        let response = match request.path.as_str() {
            "" => Response::Directory(vec!["version".into(), "nonce".into()]),
            "version" => text(version),
            "slow" => {
                let slow_ms = config["slow_ms"].as_u64().unwrap_or(300);
                std::thread::sleep(std::time::Duration::from_millis(slow_ms));
                text(version)
            }
            // Seeded from WASI's random source, new in every instance.
            "nonce" => text(
                std::collections::hash_map::RandomState::new()
                    .hash_one(0u8)
                    .to_string(),
            ),
            _ => Response::NotFound,
        };
        Ok(Answer { response, max_age })
    }
}

export!(EchoVersion);
