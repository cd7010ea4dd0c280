//! The smallest useful ersatz plugin: answers its mount with a greeting from
//! its config. Copy this crate to start a plugin of your own.

wit_bindgen::generate!({ world: "metadata-plugin", path: "../../wit" });

use ersatz::plugin::host::{self, Level};
use ersatz::plugin::types::{Leaf, Request, Response};
use exports::ersatz::plugin::provider::Guest;
use serde::Deserialize;

/// The `config` table of this plugin's `[[plugins]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "hello")]
    greeting: String,
}

fn hello() -> String {
    "hello".into()
}

struct Template;

impl Guest for Template {
    // Each request gets a fresh instance, so there is no state to keep.
    fn resolve(request: Request) -> Result<Response, String> {
        let config: Config = serde_json::from_str(&host::config())
            .map_err(|e| format!("plugin-template: invalid config: {e}"))?;
        host::log(
            Level::Debug,
            &format!("{} /{}", request.method, request.path),
        );
        Ok(match request.path.as_str() {
            "" => Response::Leaf(Leaf {
                body: config.greeting.into_bytes(),
                content_type: "text/plain".into(),
            }),
            _ => Response::NotFound,
        })
    }
}

export!(Template);
