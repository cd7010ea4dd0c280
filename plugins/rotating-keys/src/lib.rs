//! A credential source of fake keys that rotate on a schedule: every
//! `rotate_every` seconds a new set appears, and each set stays valid for
//! two periods, so the previous one still works while clients move on, as
//! EC2's role credentials do. For testing how software refreshes
//! credentials; AWS accepts none of them. It serves no paths.

wit_bindgen::generate!({ world: "credential-plugin", path: "../../wit/v0.3.0" });

// Every call is a fresh instance: allocation only moves a pointer on.
use bump_alloc as _;

use ersatz::plugin::host;
use ersatz::plugin::types::{Answer, Credentials, Request, Response, Shape};
use exports::ersatz::plugin::{credential_source, provider};
use serde::Deserialize;

/// The `config` table of this plugin's `[[plugins]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Seconds between two sets of keys (at least 2).
    #[serde(default = "one_hour")]
    rotate_every: u64,
    /// Mixed into every key, so two instances of the plugin differ.
    #[serde(default)]
    seed: String,
}

fn one_hour() -> u64 {
    3600
}

struct RotatingKeys;

/// The configuration, checked.
fn config(json: &str) -> Result<Config, String> {
    let config: Config =
        serde_json::from_str(json).map_err(|e| format!("rotating-keys: invalid config: {e}"))?;
    if config.rotate_every < 2 {
        return Err("rotating-keys: rotate_every must be at least 2 seconds".into());
    }
    Ok(config)
}

impl provider::Guest for RotatingKeys {
    /// A bad configuration stops start-up, not the first fetch.
    fn init(json: String) -> Result<Shape, String> {
        config(&json).map(|_| Shape::Directory)
    }

    fn resolve(_: Request) -> Result<Answer, String> {
        Ok(Answer {
            response: Response::NotFound,
            status: None,
            headers: Vec::new(),
            max_age: 0,
        })
    }
}

impl credential_source::Guest for RotatingKeys {
    fn fetch() -> Result<Credentials, String> {
        let config = config(&host::config())?;
        // The host's clock: this plugin imports no WASI.
        let now = host::now() / 1000;
        let period = now / config.rotate_every;
        let expiration = (period + 2)
            .checked_mul(config.rotate_every)
            .ok_or("rotating-keys: rotate_every is too large")?;
        let key = |purpose: &str, length: usize| derive(&config.seed, period, purpose, length);
        Ok(Credentials {
            access_key_id: format!("ASIA{}", key("access-key-id", 16)),
            secret_access_key: key("secret-access-key", 40),
            session_token: Some(format!("FAKE{}", key("session-token", 120))),
            expiration: Some(expiration),
        })
    }
}

/// `length` characters of A–Z and 2–7 from (seed, period, purpose): stable
/// within a period, different across periods. Not secret, only distinct.
fn derive(seed: &str, period: u64, purpose: &str, length: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut state = fnv1a(0xcbf2_9ce4_8422_2325, seed.as_bytes());
    state = fnv1a(state, &period.to_le_bytes());
    state = fnv1a(state, purpose.as_bytes());
    (0..length as u64)
        .map(|i| {
            // Stretched: the running state hashed again for each character.
            state = fnv1a(state, &i.to_le_bytes());
            ALPHABET[(state >> 59) as usize] as char
        })
        .collect()
}

/// FNV-1a over `bytes`, from `state`.
fn fnv1a(state: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(state, |state, byte| {
        (state ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

export!(RotatingKeys);
