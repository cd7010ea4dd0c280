//! The optional sections of the configuration and the value types they
//! share (durations, sizes).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[identity]`: the key and certificate that sign the identity document;
/// by default generated on first use and kept in the state directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// PEM RSA private key: PKCS #8 ("PRIVATE KEY") or PKCS #1 ("RSA PRIVATE KEY").
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
    /// The `[[listeners]]` entry it is mounted on; none for the EC2
    /// metadata listener. On a listener, `mount` is a path of its own
    /// (`/computeMetadata/v1`, or `/`).
    #[serde(default)]
    pub listener: Option<String>,
    /// Rules a request must pass before the plugin sees it, in order; the
    /// first it fails answers.
    #[serde(default)]
    pub gates: Vec<GateConfig>,
    /// What it may ask of the host beyond its configuration, the tree, the
    /// clock and its own store; nothing unless named.
    #[serde(default)]
    pub grants: Vec<HostGrant>,
}

/// A host capability a plugin has only when its `[[plugins]]` entry names
/// it in `grants`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostGrant {
    /// `host.sign-jwt`: tokens signed with the identity key, which verify
    /// against the keys the listeners publish.
    SignJwt,
}

/// One request rule of a mount: exactly one of `require_header` (with
/// `value`, compared without regard to case; any value when absent),
/// `refuse_header`, or `unique_query` (a query parameter given twice), and
/// the answer to a request that fails it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    #[serde(default)]
    pub require_header: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub refuse_header: Option<String>,
    #[serde(default)]
    pub unique_query: bool,
    pub status: u16,
    #[serde(default = "default_gate_content_type")]
    pub content_type: String,
    #[serde(default)]
    pub body: String,
}

fn default_gate_content_type() -> String {
    "text/plain".into()
}

/// `[[listeners]]`: a listener for another cloud's metadata service (a
/// flavour), served by the plugins mounted on it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub name: String,
    pub listen: Vec<std::net::SocketAddr>,
    /// Added to every answer, replacing a plugin's own of the same name.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// An `ETag` (of the body) on every 200.
    #[serde(default)]
    pub etags: bool,
    /// Long-polls: the query parameters that ask to wait for a change.
    #[serde(default)]
    pub long_poll: Option<LongPollConfig>,
    /// Where the signing key's public half is served.
    #[serde(default)]
    pub keys: Option<KeysConfig>,
    /// Host names its clients send besides `server.allowed_hosts` and its
    /// own addresses (`metadata.google.internal`): any other `Host` is
    /// refused, as on every listener (DNS rebinding).
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `wait_for_change=true&last_etag=E&timeout_sec=N`, GCE's names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongPollConfig {
    /// The parameter that asks to wait when `true`.
    pub flag: String,
    /// The ETag the client has; without it, waits for the next change.
    pub etag: String,
    /// Seconds to wait at most (capped at an hour, the default).
    pub timeout: String,
}

/// Paths of the public key, `pem` as a map of key id to certificate, `jwks`
/// as a JSON Web Key Set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    #[serde(default)]
    pub pem: Option<String>,
    #[serde(default)]
    pub jwks: Option<String>,
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
    /// The longest an answer is reused, whatever the plugin says (`"0s"`:
    /// never); none: as long as the plugin says.
    #[serde(default)]
    pub max_age: Option<HumanDuration>,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            timeout: default_plugin_timeout(),
            memory: default_plugin_memory(),
            max_age: None,
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
        // Checked: "17592186044432MiB" must not wrap around to a small size.
        match number
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
        {
            Some(bytes) if scale > 0 => Ok(Self(bytes)),
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

/// The longest duration ersatz accepts anywhere (config, admin API, CLI):
/// a year is longer than any timeline a test or a workstation needs, and
/// keeps every `now + duration` far from the limits of the clock.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// A duration written as `"1h"`, `"90s"`, `"15m"` or whole seconds, at most
/// [`MAX_DURATION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parses the text form, with the bound; the error is a sentence that
    /// shows the accepted forms.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parsed = humantime::parse_duration(text.trim()).map_err(|error| match error {
            humantime::DurationError::NumberOverflow => {
                format!("{text} is longer than the longest duration accepted, 365d")
            }
            _ => format!(
                "\"{text}\" is not a duration: write a number and a unit, like 5s, 2m or 1h"
            ),
        })?;
        Self::bounded(parsed, text)
    }

    fn bounded(duration: Duration, shown: &str) -> Result<Self, String> {
        if duration > MAX_DURATION {
            return Err(format!(
                "{shown} is longer than the longest duration accepted, 365d"
            ));
        }
        Ok(Self(duration))
    }
}

/// As it is written: `"1m 30s"` (whole units, as humantime shows them).
impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration like 5s, 2m or 1h, or whole seconds")
            }

            fn visit_u64<E: serde::de::Error>(self, seconds: u64) -> Result<Self::Value, E> {
                // Compared before building a Duration: any u64 is a valid
                // input, and none may overflow on the way.
                if seconds > MAX_DURATION.as_secs() {
                    return Err(E::custom(format!(
                        "{seconds} seconds is longer than the longest duration accepted, 365d"
                    )));
                }
                Ok(HumanDuration(Duration::from_secs(seconds)))
            }

            fn visit_i64<E: serde::de::Error>(self, seconds: i64) -> Result<Self::Value, E> {
                u64::try_from(seconds)
                    .map_err(|_| E::custom(format!("{seconds}: a duration cannot be negative")))
                    .and_then(|seconds| self.visit_u64(seconds))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                HumanDuration::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
