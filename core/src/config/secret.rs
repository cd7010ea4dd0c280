use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

/// Whether the dotted key holds a secret: its value is never shown in an
/// error, and is read from the environment as written.
pub fn is_secret_key(key: &str) -> bool {
    let segments: Vec<&str> = key.split('.').collect();
    match segments.as_slice() {
        ["server", "admin_token"] | ["sources", _, "secret_access_key" | "session_token"] => true,
        // A plugin's own settings: ersatz cannot know which are secret, so
        // it goes by the name (GCE's fake `token`s, a `client_secret`).
        ["plugins", _, "config", .., last] => {
            let last = last.to_ascii_lowercase();
            ["token", "secret", "password", "key", "credential"]
                .iter()
                .any(|word| last.contains(word))
        }
        _ => false,
    }
}

/// `ERSATZ_…` variables that hold secrets ([`crate::secret::Secret`] values), taken as the exact text written:
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

#[cfg(test)]
mod tests {
    use super::*;

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
