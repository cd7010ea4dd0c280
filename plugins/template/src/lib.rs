//! The smallest useful ersatz plugin: answers its mount with a greeting from
//! its config. Copy this crate to start a plugin of your own.

wit_bindgen::generate!({ world: "metadata-plugin", path: "../../wit/v0.3.0" });

// Every call is a fresh instance: allocation only moves a pointer on.
use bump_alloc as _;

use ersatz::plugin::host::{self, Level};
use ersatz::plugin::types::{Answer, Leaf, Request, Response, Shape};
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

fn config(json: &str) -> Result<Config, String> {
    serde_json::from_str(json).map_err(|e| format!("plugin-template: invalid config: {e}"))
}

impl Guest for Template {
    /// Called once at load: a bad config stops ersatz with this message.
    /// The mount is one value, so the listing above shows it as `hello`,
    /// not `hello/`.
    fn init(json: String) -> Result<Shape, String> {
        config(&json).map(|_| Shape::Leaf)
    }

    // Each call gets a fresh instance, so there is no state to keep.
    fn resolve(request: Request) -> Result<Answer, String> {
        let config = config(&host::config())?;
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
        // No status or headers of its own: 200 (or 404) with the
        // listener's headers.
        Ok(Answer {
            response,
            status: None,
            headers: Vec::new(),
            max_age: 60,
        })
    }
}

export!(Template);
