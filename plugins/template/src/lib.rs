//! The smallest useful ersatz plugin: answers its mount with a greeting from
//! its config. Copy this crate to start a plugin of your own.

wit_bindgen::generate!({ world: "metadata-plugin", path: "../../wit/v0.2.0" });

use ersatz::plugin::host::{self, Level};
use ersatz::plugin::types::{Answer, Leaf, Request, Response};
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
    // Each call gets a fresh instance, so there is no state to keep.
    fn resolve(request: Request) -> Result<Answer, String> {
        let config: Config = serde_json::from_str(&host::config())
            .map_err(|e| format!("plugin-template: invalid config: {e}"))?;
        host::log(
            Level::Debug,
            &format!("{} /{}", request.method, request.path),
        );
        let response = match request.path.as_str() {
            "" => Response::Leaf(Leaf {
                body: config.greeting.into_bytes(),
                content_type: "text/plain".into(),
            }),
            _ => Response::NotFound,
        };
        // The answer depends only on the config, so the host may give it
        // again for a minute without calling the plugin. Say 0 for answers
        // that depend on headers, the time or chance.
        Ok(Answer {
            response,
            max_age: 60,
        })
    }
}

export!(Template);
