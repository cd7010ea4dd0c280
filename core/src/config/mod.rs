//! Configuration: embedded defaults < file < `ERSATZ_` env < flags (figment).
//!
//! Every error names where the bad value came from (file or variable), the
//! key, and the reason; see [`ConfigError`].

mod cidr;
mod error;
mod faults;
mod finto;
mod listeners;
mod sections;
mod validate;
pub use finto::FINTO_SOURCE;
mod secret;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Json, Serialized, Toml, Yaml};
use figment::Figment;
use serde::Deserialize;

use crate::secret::Secret;
pub use cidr::Cidr;
pub use error::ConfigError;
pub use faults::{
    Arrived, FaultAction, FaultMatch, FaultRule, FaultSpec, FaultWhen, DEFAULT_HANG, PRESETS,
};
pub use listeners::{listener_mount, GateRule};
use secret::SecretEnv;
pub use sections::*;
use validate::validate;
pub use validate::{fault_rules, mount_path};

use crate::instance::InstanceConfig;

/// The largest memory any plugin may be given (`limits.memory`); the
/// plugin engine sizes its pool slots by it.
pub const MAX_PLUGIN_MEMORY: usize = 256 << 20;

/// The embedded default configuration (`ersatz serve` with no `--config`).
pub const DEFAULTS: &str = include_str!("default.toml");

/// Top-level sections an `ERSATZ_…` variable may set. Other `ERSATZ_`
/// variables (`ERSATZ_LOG`, `ERSATZ_TEST_…`) are not configuration.
const SECTIONS: &[&str] = &[
    "server",
    "imds",
    "instance",
    "metadata",
    "sources",
    "roles",
    "default_role",
    "credentials",
    "plugins",
    "events",
    "identity",
    "snapshot",
    "clients",
    "faults",
    "journal",
];

/// Name of the role (and its source) served when a config defines no roles.
pub const FAKE_ROLE: &str = "ersatz-default";
const FAKE_SOURCE: &str = "ersatz-fake";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub imds: ImdsConfig,
    #[serde(default)]
    pub instance: InstanceConfig,
    /// Extra or overriding leaves under `meta-data/`: `"path/under" = "value"`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    #[serde(default)]
    pub roles: BTreeMap<String, RoleConfig>,
    #[serde(default)]
    pub default_role: Option<String>,
    /// Defaulted in `default.toml`, as every server setting is.
    pub credentials: CredentialsConfig,
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
    /// Other clouds' metadata services, each on listeners of its own.
    #[serde(default)]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Per-client roles: when any are given, a client sees only the role of
    /// the first entry its address matches, and no credentials at all if
    /// none matches (fail closed).
    #[serde(default)]
    pub clients: Vec<ClientRole>,
    /// Replay this `ersatz snapshot` document instead of the `[instance]`
    /// tree (`[metadata]`, roles and plugins still apply on top).
    #[serde(default)]
    pub snapshot: Option<PathBuf>,
    /// Fault rules in force from start-up; more come and go over the admin API.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
    /// Defaulted in `default.toml`.
    pub journal: JournalConfig,
}

/// `[journal]`: the recent requests kept for `GET /requests`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Requests kept, newest last; 0 keeps none (the IMDSv1 audit still counts).
    pub capacity: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub admin_listen: SocketAddr,
    #[serde(default)]
    pub admin_token: Secret,
    /// Access log file (finto's `-log`); empty for none.
    #[serde(default)]
    pub access_log: PathBuf,
    pub allowed_hosts: Vec<String>,
    /// Where the token key lives; empty for `$XDG_STATE_HOME/ersatz`.
    #[serde(default)]
    pub state_dir: PathBuf,
    /// Open connections per listener; more are answered 503 and closed.
    pub max_connections: usize,
    /// Open connections one client address may hold per listener (at most
    /// `max_connections`), so one client cannot take every slot.
    pub max_connections_per_client: usize,
    /// How long a client may take to send a request head, and how long an
    /// idle keep-alive connection stays open.
    pub client_timeout: HumanDuration,
    /// Also serve finto's `/roles` API on the metadata listener (finto did);
    /// on by default for a `.fintorc`, off for everything else.
    #[serde(default)]
    pub finto_routes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum V1Policy {
    Allowed,
    Disabled,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImdsConfig {
    pub v1: V1Policy,
    /// The IP TTL (hop limit) of token answers, as EC2's
    /// `HttpPutResponseHopLimit`: a client more routers from IMDS than this
    /// less one never receives its token (a client not on this host counts
    /// one router, the host, as a container behind an instance does).
    pub hop_limit: u8,
}

/// A named credential source (`[sources.NAME]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Keys written here (or, better, in `ERSATZ_SOURCES__NAME__…`).
    Static {
        access_key_id: String,
        secret_access_key: Secret,
        #[serde(default)]
        session_token: Option<Secret>,
    },
    /// A shared credentials file profile (finto's `credentials.file/profile`).
    Profile {
        #[serde(default)]
        file: Option<PathBuf>,
        #[serde(default)]
        profile: Option<String>,
    },
    /// aws-config's chain: environment, profile (SSO, credential_process), web identity.
    Chain {},
    /// Posted at run time to the admin API; memory only.
    Bootstrap {},
    /// A `[[plugins]]` entry (by name) built for the credential-plugin world.
    Plugin { plugin: String },
    /// STS AssumeRole called with another source's credentials. (The same
    /// keys as a role; spelled out because serde cannot deny unknown keys
    /// through `flatten`.)
    AssumeRole {
        caller: String,
        arn: String,
        #[serde(default)]
        duration: Option<HumanDuration>,
        #[serde(default)]
        session_name: Option<String>,
        #[serde(default)]
        external_id: Option<String>,
        #[serde(default)]
        region: Option<String>,
        #[serde(default)]
        sts_endpoint: Option<String>,
    },
}

/// A role served at `iam/security-credentials/ALIAS` (`[roles.ALIAS]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// The credential source: served as is, or the caller of AssumeRole
    /// when `arn` is set.
    pub source: String,
    #[serde(default)]
    pub arn: Option<String>,
    #[serde(default)]
    pub duration: Option<HumanDuration>,
    /// Default `ersatz-ALIAS`.
    #[serde(default)]
    pub session_name: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub sts_endpoint: Option<String>,
}

/// Values given on the command line; each replaces the layers below it.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub addr: Option<String>,
    pub port: Option<u16>,
    pub log: Option<PathBuf>,
    pub admin_addr: Option<SocketAddr>,
    /// `--snapshot FILE`: the `snapshot` key.
    pub snapshot: Option<PathBuf>,
}

/// finto's defaults for `--addr` and `--port`.
const DEFAULT_ADDR: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 16925;

/// A loaded, validated configuration and the figment it came from (kept so
/// later checks can say which file or variable set a key).
pub struct Loaded {
    pub config: Config,
    figment: Figment,
}

/// Keys a running server cannot change: its sockets and limits, its state
/// directory, and what its roles, credentials and events were built from
/// (bootstrapped and cached credentials, and events set at run time, live on
/// across reloads). A reload that changes one is refused, naming it.
const RESTART_KEYS: &[&str] = &[
    "server.listen",
    "server.admin_listen",
    "server.max_connections",
    "server.max_connections_per_client",
    "server.client_timeout",
    "server.state_dir",
    "sources",
    "roles",
    "default_role",
    "credentials",
    "events",
    "instance.life_cycle",
    "journal.capacity",
];

impl Loaded {
    /// Where `key` was set, for error messages.
    pub fn error(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::at(&self.figment, key, reason)
    }

    /// The keys whose values differ in `next` and need a restart: the
    /// [`RESTART_KEYS`], and the `[[plugins]]` entries that back a
    /// credential source (its roles keep the plugin they were built with).
    pub fn needs_restart(&self, next: &Loaded) -> Vec<String> {
        let mut changed: Vec<String> = RESTART_KEYS
            .iter()
            .filter(|key| self.json_at(key) != next.json_at(key))
            .map(|key| (*key).to_owned())
            .collect();
        let bound = |loaded: &Loaded| -> Vec<_> {
            let listeners = loaded.config.listeners.iter();
            listeners
                .map(|l| (l.name.clone(), l.listen.clone()))
                .collect()
        };
        if bound(self) != bound(next) {
            changed.push("the names or addresses of [[listeners]]".into());
        }
        for (name, source) in &self.config.sources {
            let SourceConfig::Plugin { plugin } = source else {
                continue;
            };
            let entry = |loaded: &Loaded| {
                let index = loaded
                    .config
                    .plugins
                    .iter()
                    .position(|p| &p.name() == plugin)?;
                loaded.json_at(&format!("plugins.{index}"))
            };
            if entry(self) != entry(next) {
                changed.push(format!(
                    "the [[plugins]] entry \"{plugin}\" (behind sources.{name})"
                ));
            }
        }
        changed
    }

    /// Every value of the merged configuration, one `key = value` line
    /// each with the layer that set it, secrets redacted (`config show`).
    pub fn show(&self) -> String {
        let mut lines = Vec::new();
        if let Ok(root) = self.figment.extract::<figment::value::Value>() {
            self.show_value("", &root, &mut lines);
        }
        let width = lines.iter().map(|(line, _)| line.len()).max().unwrap_or(0);
        lines
            .iter()
            .map(|(line, origin)| format!("{line:width$}  # {origin}\n"))
            .collect()
    }

    fn show_value(
        &self,
        key: &str,
        value: &figment::value::Value,
        lines: &mut Vec<(String, String)>,
    ) {
        use figment::value::Value;
        let child = |name: &str| {
            if key.is_empty() {
                name.to_owned()
            } else {
                format!("{key}.{name}")
            }
        };
        match value {
            Value::Dict(_, dict) => {
                for (name, value) in dict {
                    self.show_value(&child(name), value, lines);
                }
            }
            Value::Array(_, items) if items.iter().any(|item| matches!(item, Value::Dict(..))) => {
                for (index, item) in items.iter().enumerate() {
                    self.show_value(&child(&index.to_string()), item, lines);
                }
            }
            leaf => {
                let shown = if secret::is_secret_key(key) {
                    "\"<redacted>\"".to_owned()
                } else {
                    serde_json::to_string(leaf).unwrap_or_default()
                };
                let origin = ConfigError::at(&self.figment, key, "").origin;
                lines.push((format!("{key} = {shown}"), origin));
            }
        }
    }

    /// The value at `key` as JSON: figment's own values carry tags that
    /// differ between two loads of the same file.
    fn json_at(&self, key: &str) -> Option<serde_json::Value> {
        self.figment
            .find_value(key)
            .ok()
            .and_then(|v| serde_json::to_value(v).ok())
    }
}

pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Loaded, ConfigError> {
    let mut figment = Figment::new().merge(Toml::string(DEFAULTS));
    if let Some(file) = file {
        figment = figment.merge(file_provider(file)?);
    }
    figment = figment
        .merge(env_provider())
        .merge(SecretEnv::from_process());
    finish(apply_overrides(figment, overrides)?)
}

/// A layer of configuration given in code, as the library's builder takes
/// it. No `Debug`: the text may hold secrets.
#[derive(Clone)]
pub enum Layer {
    /// A file, as `--config` reads it.
    File(PathBuf),
    /// TOML text.
    Toml(String),
    /// Any value shaped like the configuration (a JSON object).
    Value(serde_json::Value),
    /// The library's own choices (a private state directory): right above
    /// the embedded defaults, below every layer the caller gives.
    Fallback(serde_json::Value),
}

/// Embedded defaults < each layer in order < `overrides`. No `ERSATZ_…`
/// variable applies: a test suite's servers must not change with the
/// environment of whoever runs it.
pub fn load_layers(layers: &[Layer], overrides: &Overrides) -> Result<Loaded, ConfigError> {
    let mut figment = Figment::new().merge(Toml::string(DEFAULTS));
    for layer in layers {
        if let Layer::Fallback(value) = layer {
            let name = "the embedded server's own default".to_owned();
            figment = figment.merge(Named::new(name, Serialized::globals(value)));
        }
    }
    let given = layers.iter().filter(|l| !matches!(l, Layer::Fallback(_)));
    for (i, layer) in given.enumerate() {
        // Errors name the layer as the caller counts them, from 1.
        let name = |kind: &str| format!("builder layer {} ({kind})", i + 1);
        figment = match layer {
            Layer::File(file) => figment.merge(file_provider(file)?),
            Layer::Toml(text) => figment.merge(Named::new(name("TOML"), Toml::string(text))),
            Layer::Value(value) => {
                figment.merge(Named::new(name("value"), Serialized::globals(value)))
            }
            Layer::Fallback(_) => figment,
        };
    }
    finish(apply_overrides(figment, overrides)?)
}

/// A provider under a name of our choosing, so errors say which layer.
struct Named<P> {
    name: String,
    inner: P,
}

impl<P> Named<P> {
    fn new(name: String, inner: P) -> Self {
        Self { name, inner }
    }
}

impl<P: figment::Provider> figment::Provider for Named<P> {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(self.name.clone())
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        self.inner.data()
    }
}

/// The merged layers as a checked configuration.
fn finish(figment: Figment) -> Result<Loaded, ConfigError> {
    let mut config: Config = figment.extract().map_err(ConfigError::from_figment)?;
    add_fake_role(&mut config);
    let loaded = Loaded { config, figment };
    validate(&loaded)?;
    Ok(loaded)
}

fn file_provider(file: &Path) -> Result<Figment, ConfigError> {
    let shown = file.display().to_string();
    if !file.is_file() {
        return Err(ConfigError::file(&shown, "no such file"));
    }
    if finto::is_fintorc(file) {
        return finto::provider(file).map(Figment::from);
    }
    let extension = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let figment = match extension.as_deref() {
        Some("toml") => Figment::from(Toml::file_exact(file)),
        Some("json") if is_snapshot(file) => {
            return Err(ConfigError::file(
                &shown,
                "this is an `ersatz snapshot` document, not a configuration: replay it with `ersatz serve --snapshot FILE` (or `snapshot = \"FILE\"` in a configuration)",
            ))
        }
        Some("json") => Figment::from(Json::file_exact(file)),
        Some("yaml" | "yml") => Figment::from(Yaml::file_exact(file)),
        _ => {
            return Err(ConfigError::file(
                &shown,
                "unknown format: use a .toml, .json, .yaml or .yml file, or a .fintorc",
            ))
        }
    };
    Ok(figment)
}

/// Whether `file` is a snapshot document (its own keys), which users give to
/// `--config` by mistake. Unreadable or not JSON: not a snapshot; the
/// configuration loader reports that.
fn is_snapshot(file: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .is_ok_and(|value| value.get("leaves").is_some() && value.get("listings").is_some())
}

/// The names of the `ERSATZ_…` variables that are configuration.
pub fn environment_variables() -> Vec<String> {
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| {
            let section = name
                .strip_prefix("ERSATZ_")
                .and_then(|rest| rest.split("__").next())
                .unwrap_or_default();
            SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(section))
        })
        .collect();
    names.sort();
    names
}

/// `ERSATZ_…` variables, but those holding secrets (see [`SecretEnv`]).
fn env_provider() -> Env {
    Env::prefixed("ERSATZ_").split("__").filter(|key| {
        let section = key.as_str().split('.').next().unwrap_or_default();
        SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(section))
            && !secret::is_secret_key(&key.as_str().to_ascii_lowercase())
    })
}

fn apply_overrides(mut figment: Figment, overrides: &Overrides) -> Result<Figment, ConfigError> {
    if overrides.addr.is_some() || overrides.port.is_some() {
        let addr = overrides.addr.as_deref().unwrap_or(DEFAULT_ADDR);
        let port = overrides.port.unwrap_or(DEFAULT_PORT);
        let listen =
            socket_addr(addr, port).map_err(|reason| ConfigError::flag("--addr", reason))?;
        figment = figment.merge(Serialized::global("server.listen", vec![listen]));
    }
    if let Some(log) = &overrides.log {
        figment = figment.merge(Serialized::global("server.access_log", log));
    }
    if let Some(admin) = overrides.admin_addr {
        figment = figment.merge(Serialized::global("server.admin_listen", admin));
    }
    if let Some(snapshot) = &overrides.snapshot {
        figment = figment.merge(Serialized::global("snapshot", snapshot));
    }
    Ok(figment)
}

/// With no roles configured, serve one role backed by clearly fake keys so
/// SDKs on the default instance find credentials.
fn add_fake_role(config: &mut Config) {
    if !config.roles.is_empty() {
        return;
    }
    config.sources.insert(
        FAKE_SOURCE.to_owned(),
        SourceConfig::Static {
            access_key_id: "ASIAERSATZFAKEKEY000".to_owned(),
            secret_access_key: Secret::new("ersatz/fake/secret/key/not/valid/on/aws"),
            session_token: Some(Secret::new(
                "ErsatzFakeSessionTokenThatNoAwsServiceWillAccept/IQoJb3JpZ2luX2VjEXAMPLE==",
            )),
        },
    );
    config.roles.insert(
        FAKE_ROLE.to_owned(),
        RoleConfig {
            source: FAKE_SOURCE.to_owned(),
            ..RoleConfig::default()
        },
    );
    config
        .default_role
        .get_or_insert_with(|| FAKE_ROLE.to_owned());
}

impl Config {
    /// The role served first: `default_role`, or the only role.
    pub fn initial_role(&self) -> &str {
        self.default_role
            .as_deref()
            .or_else(|| self.roles.keys().next().map(String::as_str))
            .unwrap_or(FAKE_ROLE)
    }
}
pub use finto::expand_home;

/// `addr` (an IP, `localhost`, or a bracketed IPv6) and `port` as one address.
fn socket_addr(addr: &str, port: u16) -> Result<SocketAddr, String> {
    let host = addr.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    host.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, port))
        .map_err(|_| format!("\"{addr}\" is not an IP address"))
}
