use std::fmt;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};
use serde::Deserialize;

/// Whether the dotted key holds a secret: its value is never shown in an
/// error, and is read from the environment as written.
pub fn is_secret_key(key: &str) -> bool {
    let segments: Vec<&str> = key.split('.').collect();
    matches!(
        segments.as_slice(),
        ["server", "admin_token"] | ["sources", _, "secret_access_key" | "session_token"]
    )
}

/// `ERSATZ_…` variables that hold secrets, taken as the exact text written:
/// figment's own parsing would turn `000123` into the number 123.
pub struct SecretEnv {
    /// (variable, dotted key, value)
    found: Vec<(String, String, String)>,
}

impl SecretEnv {
    pub fn from_process() -> Self {
        let found = std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                let key = name
                    .strip_prefix("ERSATZ_")?
                    .to_ascii_lowercase()
                    .replace("__", ".");
                is_secret_key(&key).then(|| (name, key, value.to_string_lossy().into_owned()))
            })
            .collect();
        Self { found }
    }
}

impl Provider for SecretEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (_, key, value) in &self.found {
            let nested = figment::util::nest(key, Value::from(value.clone()));
            if let Some(nested) = nested.into_dict() {
                dict = merge(dict, nested);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn merge(mut into: Dict, from: Dict) -> Dict {
    for (key, value) in from {
        let merged = match (into.remove(&key), value) {
            (Some(Value::Dict(_, old)), Value::Dict(tag, new)) => Value::Dict(tag, merge(old, new)),
            (_, value) => value,
        };
        into.insert(key, merged);
    }
    into
}

/// A string that never shows itself in `Debug` or `Display`, so secrets
/// cannot leak through logs, errors or panics by accident, and is zeroed
/// when dropped.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    /// A string; anything else is refused without showing the value (serde's
    /// own message would quote it). Secrets from `ERSATZ_…` variables arrive
    /// as the text written, through [`SecretEnv`].
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Secret;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Secret, E> {
                Ok(Secret::new(text))
            }

            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(not_a_string())
            }

            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(not_a_string())
            }

            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(not_a_string())
            }

            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(not_a_string())
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

fn not_a_string<E: serde::de::Error>() -> E {
    E::custom("expected a string (the value is not shown: it is a secret)")
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: call only where it must go on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Secret {
    /// Overwrites the bytes (keeping the allocation) and empties it.
    fn wipe(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl Drop for Secret {
    /// Overwrites the bytes so a freed secret does not linger in memory.
    fn drop(&mut self) {
        self.wipe();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "\"<redacted>\""
        })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_itself() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "\"<redacted>\"");
        assert_eq!(format!("{secret}"), "\"<redacted>\"");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn wiping_overwrites_every_byte() {
        let mut secret = Secret::new(String::from("hunter2-and-more"));
        let (bytes, len) = (secret.0.as_ptr(), secret.0.len());
        secret.wipe();
        assert!(secret.is_empty());
        // SAFETY: zeroize clears a String without freeing its buffer, and
        // `secret` still owns it here.
        let kept = unsafe { std::slice::from_raw_parts(bytes, len) };
        assert!(kept.iter().all(|b| *b == 0), "{kept:?}");
    }

    #[test]
    fn secret_keys_are_known_by_path() {
        for secret in [
            "server.admin_token",
            "sources.vault.secret_access_key",
            "sources.x.session_token",
        ] {
            assert!(is_secret_key(secret), "{secret}");
        }
        for plain in [
            "server.listen",
            "sources.vault.access_key_id",
            "roles.x.session_token",
        ] {
            assert!(!is_secret_key(plain), "{plain}");
        }
    }
}
