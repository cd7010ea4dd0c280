use std::fmt;

use figment::error::Kind;
use figment::{Figment, Metadata, Source};

use super::secret::is_secret_key;

/// A configuration mistake: where it was made (file, environment variable,
/// flag), the key, and why it is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, variable or flag that set the value.
    pub origin: String,
    /// The dotted key, e.g. `roles.web.source`; empty for a whole-file error.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin, self.reason)
        } else {
            write!(f, "{}: key `{}`: {}", self.origin, self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn file(file: &str, reason: impl Into<String>) -> Self {
        Self {
            origin: file.to_owned(),
            key: String::new(),
            reason: reason.into(),
        }
    }

    pub fn flag(flag: &str, reason: impl Into<String>) -> Self {
        Self {
            origin: format!("flag {flag}"),
            key: String::new(),
            reason: reason.into(),
        }
    }

    /// An error about `key`, attributed to whichever layer set it last.
    /// `key` may quote a segment that holds slashes (`metadata."tags/x"`).
    pub fn at(figment: &Figment, key: &str, reason: impl Into<String>) -> Self {
        let lookup = key.replace('"', "");
        let segments: Vec<&str> = lookup.split('.').collect();
        // Figment finds tables, not array items (`plugins.0.wasm`): fall back
        // to the nearest enclosing key it knows.
        let metadata = (1..=segments.len())
            .rev()
            .find_map(|n| figment.find_metadata(&segments[..n].join(".")));
        Self {
            origin: origin(metadata, &segments),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// Figment reports every failure it found; we report them all, one per line.
    pub fn from_figment(error: figment::Error) -> Self {
        let mut all = error.into_iter().map(|e| Self::from_one(&e));
        let first = all
            .next()
            .expect("a figment error holds at least one error");
        all.fold(first, |mut acc, next| {
            acc.reason = format!("{}\n{next}", acc.reason);
            acc
        })
    }

    fn from_one(error: &figment::Error) -> Self {
        let mut path = error.path.clone();
        let reason = match &error.kind {
            Kind::UnknownField(field, expected) => {
                if path.last() != Some(field) {
                    path.push(field.clone());
                }
                if field == "default_role" {
                    "default_role is a top-level key: in TOML, write it above the first [table], since every key after a table header belongs to that table".to_owned()
                } else {
                    format!("unknown key; expected one of: {}", expected.join(", "))
                }
            }
            Kind::MissingField(field) => {
                if path.last().map(String::as_str) != Some(field.as_ref()) {
                    path.push(field.to_string());
                }
                "missing; this key is required".to_owned()
            }
            Kind::UnknownVariant(value, expected) => {
                format!(
                    "unknown value `{value}`; expected one of: {}",
                    expected.join(", ")
                )
            }
            Kind::InvalidType(_, expected) if is_secret_key(&path.join(".")) => {
                format!("must be {expected}; the value is not shown, as this key holds a secret")
            }
            _ if is_secret_key(&path.join(".")) => {
                "invalid; the value is not shown, as this key holds a secret".to_owned()
            }
            Kind::InvalidType(_, expected)
                if expected == "a sequence"
                    && error
                        .metadata
                        .as_ref()
                        .is_some_and(|m| m.name.contains("environment")) =>
            {
                let variable = format!("ERSATZ_{}", path.join("__").to_ascii_uppercase());
                format!("must be a list: write {variable}='[\"127.0.0.1:16925\"]' (TOML's syntax, quotes included)")
            }
            other => without_quoted_source(&other.to_string()),
        };
        Self {
            origin: origin(error.metadata.as_ref(), &path),
            key: path.join("."),
            reason,
        }
    }
}

/// A parse error without the lines of the file it quotes (`3 | key = "…`):
/// the line may hold a secret, and the line and column are kept.
fn without_quoted_source(message: &str) -> String {
    let quoted = |line: &str| {
        let rest = line
            .trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit());
        rest.trim_start().starts_with('|')
    };
    message
        .lines()
        .filter(|line| !quoted(line))
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn origin<K: AsRef<str>>(metadata: Option<&Metadata>, path: &[K]) -> String {
    let Some(metadata) = metadata else {
        return "configuration".to_owned();
    };
    match &metadata.source {
        Some(Source::File(file)) => file.display().to_string(),
        // The one TOML string merged is the embedded defaults.
        _ if metadata.name == "TOML source string" => "embedded defaults".to_owned(),
        // Name the variable as the user wrote it: ERSATZ_ and keys split on `__`.
        _ if metadata.name.contains("environment") && !path.is_empty() => {
            let keys: Vec<String> = path
                .iter()
                .map(|k| k.as_ref().to_ascii_uppercase())
                .collect();
            format!("environment variable ERSATZ_{}", keys.join("__"))
        }
        // Values serialized from code are the flags' (`apply_overrides`).
        Some(Source::Code(_)) => "command-line flag".to_owned(),
        _ => metadata.name.to_string(),
    }
}
