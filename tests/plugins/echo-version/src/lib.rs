//! Serves `version` from its config, so one wasm can stand for several
//! versions of a plugin (e.g. across a config reload).

wit_bindgen::generate!({ world: "metadata-plugin", path: "../../../wit" });

use ersatz::plugin::host;
use ersatz::plugin::types::{Leaf, Request, Response};
use exports::ersatz::plugin::provider::Guest;
use serde_json::Value;

struct EchoVersion;

impl Guest for EchoVersion {
    fn resolve(request: Request) -> Result<Response, String> {
        let config: Value = serde_json::from_str(&host::config())
            .map_err(|e| format!("echo-version: invalid config: {e}"))?;
        // TOML's `version = 2` arrives as a number; serve it as written.
        let version = match &config["version"] {
            Value::Null => return Err("echo-version: config has no `version`".into()),
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        Ok(match request.path.as_str() {
            "" => Response::Directory(vec!["version".into()]),
            "version" => Response::Leaf(Leaf {
                body: version.into_bytes(),
                content_type: "text/plain".into(),
            }),
            _ => Response::NotFound,
        })
    }
}

export!(EchoVersion);
