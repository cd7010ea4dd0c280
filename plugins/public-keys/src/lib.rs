//! `/latest/meta-data/public-keys`: configured OpenSSH keys, listed and served
//! the way IMDS does (`0=name`, then `0/openssh-key`).

wit_bindgen::generate!({ world: "metadata-plugin", path: "../../wit/v0.2.0" });

// Every call is a fresh instance: allocation only moves a pointer on.
use bump_alloc as _;

use ersatz::plugin::host;
use ersatz::plugin::types::{Answer, Leaf, Request, Response};
use exports::ersatz::plugin::provider::Guest;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    keys: Vec<Key>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Key {
    name: String,
    openssh: String,
}

fn load() -> Result<Vec<Key>, String> {
    let config: Config = serde_json::from_str(&host::config())
        .map_err(|e| format!("public-keys: invalid config: {e}"))?;
    for key in &config.keys {
        // The name ends up in a newline-separated listing and in `N=name`.
        if key.name.is_empty() || key.name.contains(['\n', '/']) {
            return Err(format!(
                "public-keys: key name {:?} must be non-empty, without '/' or newlines",
                key.name
            ));
        }
    }
    Ok(config.keys)
}

/// The key at a listing index, written as IMDS writes it: `"01"` or `"+1"`
/// are not `1`.
fn key_at<'a>(keys: &'a [Key], index: &str) -> Option<&'a Key> {
    let i: usize = index.parse().ok()?;
    (i.to_string() == index).then(|| keys.get(i))?
}

fn answer(keys: &[Key], path: &str) -> Response {
    if path.is_empty() {
        let entries = keys.iter().enumerate();
        return Response::Directory(entries.map(|(i, k)| format!("{i}={}", k.name)).collect());
    }
    let (index, rest) = path.split_once('/').unwrap_or((path, ""));
    match (key_at(keys, index), rest) {
        (Some(_), "") => Response::Directory(vec!["openssh-key".into()]),
        (Some(key), "openssh-key") => Response::Leaf(Leaf {
            // Keys pasted from a file usually carry its final newline.
            body: key.openssh.trim_end().as_bytes().to_vec(),
            content_type: "text/plain".into(),
        }),
        _ => Response::NotFound,
    }
}

/// The answers depend only on the config, which change only with a
/// configuration reload (and a reload drops reused answers): the host may
/// reuse each for an hour.
const MAX_AGE: u32 = 3600;

struct PublicKeys;

impl Guest for PublicKeys {
    fn resolve(request: Request) -> Result<Answer, String> {
        Ok(Answer {
            response: answer(&load()?, &request.path),
            max_age: MAX_AGE,
        })
    }
}

export!(PublicKeys);
