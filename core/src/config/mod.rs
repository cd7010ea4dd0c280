//! Configuration: embedded defaults < file < `ERSATZ_` env < flags (figment).
//!
//! Every error names where the bad value came from (file or variable), the
//! key, and the reason; see [`ConfigError`].

mod error;
mod finto;
pub use finto::FINTO_SOURCE;
mod secret;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Json, Serialized, Toml, Yaml};
use figment::Figment;
use serde::Deserialize;

pub use error::ConfigError;
pub use secret::Secret;

use crate::instance::InstanceConfig;

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
    #[serde(default)]
    pub credentials: CredentialsConfig,
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
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
}

/// `[identity]`: the key and certificate that sign the identity document;
/// by default generated on first use and kept in the state directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// PEM private key (RSA recommended).
    pub key: Option<PathBuf>,
    /// PEM certificate for that key.
    pub certificate: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRole {
    /// `10.1.0.0/16`, `127.0.0.2/32`, `fd00::/8`, or one address.
    pub cidr: String,
    pub role: String,
}

/// `[events]`: lifecycle events on timelines counted from start-up (`after`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    pub spot: Option<SpotConfig>,
    pub rebalance: Option<RebalanceConfig>,
    #[serde(default)]
    pub maintenance: Vec<MaintenanceConfig>,
    pub autoscaling: Option<AutoscalingConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpotAction {
    Terminate,
    Stop,
    Hibernate,
}

/// A spot interruption notice, `after` start-up, for an action `warning`
/// later (AWS gives two minutes).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpotConfig {
    #[serde(default = "zero")]
    pub after: HumanDuration,
    #[serde(default = "terminate")]
    pub action: SpotAction,
    #[serde(default = "two_minutes")]
    pub warning: HumanDuration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebalanceConfig {
    #[serde(default = "zero")]
    pub after: HumanDuration,
}

/// A scheduled maintenance event, listed from `after`, due `not_before`
/// after start-up, lasting `duration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    pub code: String,
    #[serde(default = "zero")]
    pub after: HumanDuration,
    pub not_before: HumanDuration,
    #[serde(default = "two_hours")]
    pub duration: HumanDuration,
    #[serde(default)]
    pub description: Option<String>,
    /// `active`, or `completed`/`canceled` (then under `history`).
    #[serde(default = "active")]
    pub state: String,
}

/// `autoscaling/target-lifecycle-state`: `state`, then `target` from `after`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscalingConfig {
    #[serde(default = "in_service")]
    pub state: String,
    #[serde(default = "terminated")]
    pub target: String,
    pub after: HumanDuration,
}

fn default_max_connections() -> usize {
    1024
}

fn zero() -> HumanDuration {
    HumanDuration(Duration::ZERO)
}
fn two_minutes() -> HumanDuration {
    HumanDuration(Duration::from_secs(120))
}
fn two_hours() -> HumanDuration {
    HumanDuration(Duration::from_secs(7200))
}
fn terminate() -> SpotAction {
    SpotAction::Terminate
}
fn active() -> String {
    "active".into()
}
fn in_service() -> String {
    "InService".into()
}
fn terminated() -> String {
    "Terminated".into()
}

/// The maintenance event codes EC2 uses.
pub const MAINTENANCE_CODES: &[&str] = &[
    "instance-reboot",
    "system-reboot",
    "system-maintenance",
    "instance-retirement",
    "instance-stop",
];
/// The states `autoscaling/target-lifecycle-state` takes.
pub const LIFECYCLE_STATES: &[&str] = &[
    "InService",
    "Terminated",
    "Warmed:Stopped",
    "Warmed:Running",
    "Warmed:Hibernated",
    "Warmed:Terminated",
];

/// `[[plugins]]`: a WebAssembly component, mounted at a path and/or used as
/// a credential source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Default: the file name without its extension.
    #[serde(default)]
    pub name: Option<String>,
    /// Where it serves, e.g. `/latest/meta-data/public-keys`; none for a
    /// plugin used only as a credential source.
    #[serde(default)]
    pub mount: Option<String>,
    pub wasm: PathBuf,
    /// Handed to the plugin as JSON (`host.config`).
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    #[serde(default)]
    pub limits: PluginLimits,
}

impl PluginConfig {
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.wasm
                .file_stem()
                .map_or_else(|| "plugin".into(), |s| s.to_string_lossy().into_owned())
        })
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLimits {
    /// Per call, from instantiation to answer.
    #[serde(default = "default_plugin_timeout")]
    pub timeout: HumanDuration,
    /// `"16MiB"`, `"512KiB"` or bytes.
    #[serde(default = "default_plugin_memory")]
    pub memory: ByteSize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            timeout: default_plugin_timeout(),
            memory: default_plugin_memory(),
        }
    }
}

fn default_plugin_timeout() -> HumanDuration {
    HumanDuration(Duration::from_millis(50))
}

fn default_plugin_memory() -> ByteSize {
    ByteSize(16 << 20)
}

/// A size written as `"16MiB"`, `"512KiB"`, `"1GiB"` or bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(usize),
            Text(String),
        }
        let text = match Raw::deserialize(deserializer)? {
            Raw::Bytes(bytes) => return Ok(Self(bytes)),
            Raw::Text(text) => text,
        };
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let scale = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => 0,
        };
        match number.parse::<usize>() {
            Ok(n) if scale > 0 => Ok(Self(n * scale)),
            _ => Err(serde::de::Error::custom(format!(
                "\"{text}\" is not a size like 16MiB, 512KiB or a number of bytes"
            ))),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// Refresh STS credentials this long before they expire (at most half
    /// their lifetime). Above botocore's 15-minute advisory refresh, so SDKs
    /// asking for new credentials get new ones.
    pub refresh_margin: HumanDuration,
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        Self {
            refresh_margin: HumanDuration(Duration::from_secs(20 * 60)),
        }
    }
}

/// A duration written as `"1h"`, `"90s"`, `"15m"` or whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(seconds) => Ok(Self(Duration::from_secs(seconds))),
            Raw::Text(text) => humantime::parse_duration(&text).map(Self).map_err(|e| {
                serde::de::Error::custom(format!(
                    "\"{text}\" is not a duration like 1h or 90s ({e})"
                ))
            }),
        }
    }
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
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
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

impl Loaded {
    /// Where `key` was set, for error messages.
    pub fn error(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::at(&self.figment, key, reason)
    }
}

pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Loaded, ConfigError> {
    let mut figment = Figment::new().merge(Toml::string(DEFAULTS));
    if let Some(file) = file {
        figment = figment.merge(file_provider(file)?);
    }
    figment = figment.merge(env_provider());
    figment = apply_overrides(figment, overrides)?;

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

fn env_provider() -> Env {
    Env::prefixed("ERSATZ_").split("__").filter(|key| {
        let section = key.as_str().split('.').next().unwrap_or_default();
        SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(section))
    })
}

fn apply_overrides(mut figment: Figment, overrides: &Overrides) -> Result<Figment, ConfigError> {
    if overrides.addr.is_some() || overrides.port.is_some() {
        let addr = overrides.addr.as_deref().unwrap_or(DEFAULT_ADDR);
        let port = overrides.port.unwrap_or(DEFAULT_PORT);
        let listen = crate::listener::socket_addr(addr, port)
            .map_err(|reason| ConfigError::flag("--addr", reason))?;
        figment = figment.merge(Serialized::global("server.listen", vec![listen]));
    }
    if let Some(log) = &overrides.log {
        figment = figment.merge(Serialized::global("server.access_log", log));
    }
    if let Some(admin) = overrides.admin_addr {
        figment = figment.merge(Serialized::global("server.admin_listen", admin));
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

fn validate(loaded: &Loaded) -> Result<(), ConfigError> {
    let config = &loaded.config;
    if config.server.listen.is_empty() {
        return Err(loaded.error("server.listen", "at least one address is needed"));
    }
    if config.server.max_connections == 0 {
        return Err(loaded.error("server.max_connections", "must be at least 1"));
    }
    let source_exists = |key: &str, name: &str| {
        if config.sources.contains_key(name) {
            return Ok(());
        }
        let known: Vec<&str> = config.sources.keys().map(String::as_str).collect();
        Err(loaded.error(
            key,
            format!("no source named \"{name}\" (defined: {})", known.join(", ")),
        ))
    };
    for (alias, role) in &config.roles {
        source_exists(&format!("roles.{alias}.source"), &role.source)?;
        if let Some(arn) = &role.arn {
            check_arn(loaded, &format!("roles.{alias}.arn"), arn)?;
        }
        check_duration(loaded, &format!("roles.{alias}.duration"), role.duration)?;
    }
    for (name, source) in &config.sources {
        if let SourceConfig::AssumeRole {
            caller,
            arn,
            duration,
            ..
        } = source
        {
            source_exists(&format!("sources.{name}.caller"), caller)?;
            check_arn(loaded, &format!("sources.{name}.arn"), arn)?;
            check_duration(loaded, &format!("sources.{name}.duration"), *duration)?;
            let mut seen = vec![name.as_str()];
            let mut next = caller.as_str();
            while let Some(SourceConfig::AssumeRole { caller, .. }) = config.sources.get(next) {
                if seen.contains(&next) {
                    return Err(loaded.error(
                        &format!("sources.{name}.caller"),
                        format!("callers form a cycle: {} → {next}", seen.join(" → ")),
                    ));
                }
                seen.push(next);
                next = caller;
            }
        }
    }
    if !config.clients.is_empty() && config.server.finto_routes {
        return Err(loaded.error(
            "clients",
            "per-client roles cannot be combined with server.finto_routes: finto's routes hand any client any role",
        ));
    }
    for (i, client) in config.clients.iter().enumerate() {
        crate::provider::iam::Cidr::parse(&client.cidr)
            .map_err(|reason| loaded.error(&format!("clients.{i}.cidr"), reason))?;
        if !config.roles.contains_key(&client.role) {
            return Err(loaded.error(
                &format!("clients.{i}.role"),
                format!("no role named \"{}\"", client.role),
            ));
        }
    }
    let identity = &config.identity;
    if identity.key.is_some() != identity.certificate.is_some() {
        let missing = if identity.key.is_some() {
            "identity.certificate"
        } else {
            "identity.key"
        };
        return Err(loaded.error(
            missing,
            "set both identity.key and identity.certificate, or neither",
        ));
    }
    for (i, event) in config.events.maintenance.iter().enumerate() {
        if !MAINTENANCE_CODES.contains(&event.code.as_str()) {
            return Err(loaded.error(
                &format!("events.maintenance.{i}.code"),
                format!(
                    "\"{}\" is not one of {}",
                    event.code,
                    MAINTENANCE_CODES.join(", ")
                ),
            ));
        }
        if !["active", "completed", "canceled"].contains(&event.state.as_str()) {
            return Err(loaded.error(
                &format!("events.maintenance.{i}.state"),
                "must be active, completed or canceled",
            ));
        }
    }
    if let Some(autoscaling) = &config.events.autoscaling {
        for (key, state) in [
            ("state", &autoscaling.state),
            ("target", &autoscaling.target),
        ] {
            if !LIFECYCLE_STATES.contains(&state.as_str()) {
                return Err(loaded.error(
                    &format!("events.autoscaling.{key}"),
                    format!("\"{state}\" is not one of {}", LIFECYCLE_STATES.join(", ")),
                ));
            }
        }
    }
    if config.events.spot.is_some()
        && config
            .instance
            .life_cycle
            .as_deref()
            .is_some_and(|l| l != "spot")
    {
        return Err(loaded.error(
            "events.spot",
            "spot notices need instance.life_cycle = \"spot\" (or leave it unset)",
        ));
    }
    let mut names = Vec::new();
    for (i, plugin) in config.plugins.iter().enumerate() {
        let name = plugin.name();
        if names.contains(&name) {
            return Err(loaded.error(
                &format!("plugins.{i}.name"),
                format!("a second plugin named \"{name}\": give each a distinct name"),
            ));
        }
        names.push(name);
        if let Some(mount) = &plugin.mount {
            mount_path(mount)
                .map_err(|reason| loaded.error(&format!("plugins.{i}.mount"), reason))?;
        }
        let limits = plugin.limits;
        if limits.timeout.0.is_zero() || limits.timeout.0 > Duration::from_secs(10) {
            return Err(loaded.error(
                &format!("plugins.{i}.limits.timeout"),
                "must be more than 0 and at most 10s",
            ));
        }
        if limits.memory.0 < (1 << 20) || limits.memory.0 > crate::plugin::MAX_PLUGIN_MEMORY {
            return Err(loaded.error(
                &format!("plugins.{i}.limits.memory"),
                "must be between 1MiB and 256MiB",
            ));
        }
    }
    for (name, source) in &config.sources {
        if let SourceConfig::Plugin { plugin } = source {
            if !names.contains(plugin) {
                return Err(loaded.error(
                    &format!("sources.{name}.plugin"),
                    format!(
                        "no [[plugins]] entry named \"{plugin}\" (defined: {})",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    match &config.default_role {
        Some(role) if !config.roles.contains_key(role) => {
            let known: Vec<&str> = config.roles.keys().map(String::as_str).collect();
            return Err(loaded.error(
                "default_role",
                format!("no role named \"{role}\" (defined: {})", known.join(", ")),
            ));
        }
        None if config.roles.len() > 1 => {
            return Err(loaded.error(
                "default_role",
                "several roles are defined: name the one to serve first",
            ));
        }
        _ => {}
    }
    Ok(())
}

fn check_arn(loaded: &Loaded, key: &str, arn: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() == 6 && parts[0] == "arn" && parts[2] == "iam" && parts[5].starts_with("role/") {
        Ok(())
    } else {
        Err(loaded.error(
            key,
            format!("\"{arn}\" is not a role ARN like arn:aws:iam::123456789012:role/NAME"),
        ))
    }
}

/// STS accepts 15 minutes to 12 hours; shorter is allowed for tests against
/// STS stand-ins, so only the upper bound and zero are refused.
fn check_duration(
    loaded: &Loaded,
    key: &str,
    duration: Option<HumanDuration>,
) -> Result<(), ConfigError> {
    match duration {
        Some(HumanDuration(d)) if d.is_zero() || d > Duration::from_secs(12 * 3600) => {
            Err(loaded.error(key, "must be more than 0 and at most 12h"))
        }
        _ => Ok(()),
    }
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

/// A mount as a tree path: `/latest/meta-data/x/` → `meta-data/x`. The
/// version prefix is optional; every version serves the same tree.
pub fn mount_path(mount: &str) -> Result<String, String> {
    let mut segments: Vec<&str> = mount.split('/').filter(|s| !s.is_empty()).collect();
    if segments
        .first()
        .is_some_and(|first| crate::normalise::VERSIONS.contains(first))
    {
        segments.remove(0);
    }
    match segments.first() {
        Some(&("meta-data" | "dynamic" | "user-data")) if !segments.contains(&"..") => Ok(segments.join("/")),
        _ => Err(format!(
            "\"{mount}\" is not a path under /latest/meta-data, /latest/dynamic or /latest/user-data"
        )),
    }
}
