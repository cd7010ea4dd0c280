//! finto's `.fintorc` (JSON), accepted by `--config` as it is:
//! `{"credentials": {"file", "profile"}, "roles": {alias: arn}, "default_role"}`
//! becomes a `profile` source, one role per alias, and finto's `/roles` API
//! on the metadata listener.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map};
use figment::{Error, Metadata, Profile, Provider, Source};
use serde::Deserialize;
use serde_json::json;

use super::ConfigError;

/// The source every finto role is assumed with.
pub const FINTO_SOURCE: &str = "finto";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fintorc {
    #[serde(default)]
    credentials: Credentials,
    #[serde(default)]
    roles: BTreeMap<String, String>,
    #[serde(default)]
    default_role: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Credentials {
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    profile: Option<String>,
}

pub fn is_fintorc(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|name| name.ends_with("fintorc"))
}

pub struct FintoProvider {
    path: PathBuf,
    data: serde_json::Value,
}

pub fn provider(path: &Path) -> Result<FintoProvider, ConfigError> {
    let shown = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::file(&shown, e.to_string()))?;
    let finto: Fintorc = serde_json::from_str(&text)
        .map_err(|e| ConfigError::file(&shown, format!("not a finto configuration: {e}")))?;
    let roles: serde_json::Map<String, serde_json::Value> = finto
        .roles
        .iter()
        .map(|(alias, arn)| (alias.clone(), json!({ "arn": arn, "source": FINTO_SOURCE })))
        .collect();
    let mut source = json!({ "type": "profile" });
    if let Some(file) = finto.credentials.file.filter(|f| !f.is_empty()) {
        source["file"] = expand_home(&file).display().to_string().into();
    }
    if let Some(profile) = finto.credentials.profile.filter(|p| !p.is_empty()) {
        source["profile"] = profile.into();
    }
    let mut data = json!({
        "server": { "finto_routes": true },
        "sources": { FINTO_SOURCE: source },
        "roles": roles,
    });
    if let Some(default_role) = finto.default_role {
        data["default_role"] = default_role.into();
    }
    Ok(FintoProvider {
        path: path.to_owned(),
        data,
    })
}

/// `~/x` → `$HOME/x`, as finto's documentation writes paths.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

impl Provider for FintoProvider {
    fn metadata(&self) -> Metadata {
        Metadata::from("finto configuration", Source::File(self.path.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        figment::providers::Serialized::defaults(&self.data).data()
    }
}
