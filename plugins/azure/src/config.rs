//! The plugin's `config` table (documented in `lib.rs` and the README):
//! parsed strictly, every key optional, and checked once at load (`init`)
//! so that a mistake stops the start with the key's name instead of
//! surfacing as a strange answer later.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Deserialize;

use crate::ids::is_guid;

/// The tenant when none is configured: a fixed, made-up directory.
pub const DEFAULT_TENANT: &str = "7e0c6c56-5d2f-4e4b-9a0c-2f6a1d3b8e91";
/// Managed identity tokens live 24 hours.
const DAY: u64 = 86_400;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_tenant")]
    pub tenant_id: String,
    /// Overrides of `instance/compute`'s string fields, by their IMDS name.
    #[serde(default)]
    pub compute: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Served base64-encoded as `compute/userData`, as Azure does.
    #[serde(default)]
    pub user_data: Option<String>,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub system_identity: SystemIdentity,
    #[serde(default)]
    pub user_identities: Vec<UserIdentity>,
    /// Seconds a token is valid for.
    #[serde(default = "default_lifetime")]
    pub token_lifetime: u64,
}

/// The VM's one interface; each field defaults to the EC2 tree's value.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub private_ip: Option<String>,
    pub public_ip: Option<String>,
    pub mac: Option<String>,
    /// `10.0.0.0/24`.
    pub subnet: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemIdentity {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub client_id: Option<String>,
    pub object_id: Option<String>,
    /// Defaults to the VM's own resource id, as Azure's `xms_mirid` is.
    pub resource_id: Option<String>,
}

impl Default for SystemIdentity {
    fn default() -> Self {
        Self {
            enabled: true,
            client_id: None,
            object_id: None,
            resource_id: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserIdentity {
    pub client_id: String,
    pub object_id: Option<String>,
    /// The identity's resource name (default `identity-N`, N from 1).
    pub name: Option<String>,
    pub resource_id: Option<String>,
}

fn default_tenant() -> String {
    DEFAULT_TENANT.to_owned()
}

fn default_lifetime() -> u64 {
    DAY
}

fn yes() -> bool {
    true
}

/// The string fields of `instance/compute` an operator may set.
pub const COMPUTE_FIELDS: &[&str] = &[
    "azEnvironment",
    "customData",
    "evictionPolicy",
    "isHostCompatibilityLayerVm",
    "licenseType",
    "location",
    "name",
    "offer",
    "osType",
    "physicalZone",
    "placementGroupId",
    "platformFaultDomain",
    "platformSubFaultDomain",
    "platformUpdateDomain",
    "priority",
    "provider",
    "publisher",
    "resourceGroupName",
    "resourceId",
    "sku",
    "subscriptionId",
    "version",
    "vmId",
    "vmScaleSetName",
    "vmSize",
    "zone",
];

impl Config {
    /// Parses and checks; the error names the key and what is wrong.
    pub fn load(json: &str) -> Result<Self, String> {
        let config: Self =
            serde_json::from_str(json).map_err(|e| format!("azure: invalid config: {e}"))?;
        config
            .validate()
            .map_err(|e| format!("azure: invalid config: {e}"))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        guid("tenant_id", &self.tenant_id)?;
        self.validate_compute()?;
        self.validate_tags()?;
        self.network.validate()?;
        self.validate_identities()?;
        if !(60..=DAY).contains(&self.token_lifetime) {
            return Err(format!(
                "token_lifetime: {} is not between 60 and {DAY} seconds",
                self.token_lifetime
            ));
        }
        Ok(())
    }

    fn validate_compute(&self) -> Result<(), String> {
        for (key, value) in &self.compute {
            if !COMPUTE_FIELDS.contains(&key.as_str()) {
                return Err(format!(
                    "compute.{key}: not a string field of instance/compute (one of {})",
                    COMPUTE_FIELDS.join(", ")
                ));
            }
            if matches!(key.as_str(), "subscriptionId" | "vmId") {
                guid(&format!("compute.{key}"), value)?;
            }
            if key == "resourceId" {
                resource_id(&format!("compute.{key}"), value)?;
            }
        }
        Ok(())
    }

    /// Tags are served as `name:value;name:value`, so a name may hold
    /// neither separator.
    fn validate_tags(&self) -> Result<(), String> {
        let bad = |name: &String| name.is_empty() || name.contains([':', ';']);
        match self.tags.keys().find(|name| bad(name)) {
            Some(name) => Err(format!(
                "tags: name {name:?} must be non-empty, without ':' or ';'"
            )),
            None => Ok(()),
        }
    }

    fn validate_identities(&self) -> Result<(), String> {
        let system = &self.system_identity;
        let mut seen: Vec<(String, String)> = Vec::new();
        let mut claim = |key: String, value: &str| -> Result<(), String> {
            let folded = value.to_ascii_lowercase();
            if let Some((other, _)) = seen.iter().find(|(_, v)| *v == folded) {
                return Err(format!("{key}: {value:?} is also {other}"));
            }
            seen.push((key, folded));
            Ok(())
        };
        for (field, value) in [
            ("client_id", &system.client_id),
            ("object_id", &system.object_id),
        ] {
            if let Some(value) = value {
                let key = format!("system_identity.{field}");
                guid(&key, value)?;
                claim(key, value)?;
            }
        }
        if let Some(value) = &system.resource_id {
            resource_id("system_identity.resource_id", value)?;
        }
        for (i, user) in self.user_identities.iter().enumerate() {
            let at = format!("user_identities[{i}]");
            guid(&format!("{at}.client_id"), &user.client_id)?;
            claim(format!("{at}.client_id"), &user.client_id)?;
            if let Some(value) = &user.object_id {
                guid(&format!("{at}.object_id"), value)?;
                claim(format!("{at}.object_id"), value)?;
            }
            if let Some(value) = &user.resource_id {
                resource_id(&format!("{at}.resource_id"), value)?;
                claim(format!("{at}.resource_id"), value)?;
            }
            if let Some(name) = &user.name {
                resource_name(&format!("{at}.name"), name)?;
            }
        }
        Ok(())
    }
}

impl Network {
    fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            ("private_ip", &self.private_ip),
            ("public_ip", &self.public_ip),
        ] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                ipv4(&format!("network.{key}"), value)?;
            }
        }
        if let Some(mac) = &self.mac {
            if crate::vm::azure_mac(mac).is_none() {
                return Err(format!(
                    "network.mac: {mac:?} is not a MAC address (six hex pairs)"
                ));
            }
        }
        if let Some(subnet) = &self.subnet {
            if parse_cidr(subnet).is_none() {
                return Err(format!(
                    "network.subnet: {subnet:?} is not an IPv4 CIDR block (10.0.0.0/24)"
                ));
            }
        }
        Ok(())
    }
}

/// `10.0.0.0/24` → (network address, prefix length).
pub fn parse_cidr(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (address, prefix) = text.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    let address: Ipv4Addr = address.parse().ok()?;
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    Some((Ipv4Addr::from(u32::from(address) & mask), prefix))
}

fn guid(key: &str, value: &str) -> Result<(), String> {
    if is_guid(value) {
        Ok(())
    } else {
        Err(format!(
            "{key}: {value:?} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
        ))
    }
}

fn ipv4(key: &str, value: &str) -> Result<(), String> {
    match value.parse::<Ipv4Addr>() {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("{key}: {value:?} is not an IPv4 address")),
    }
}

fn resource_id(key: &str, value: &str) -> Result<(), String> {
    let path = value.to_ascii_lowercase();
    if path.starts_with("/subscriptions/") && path.contains("/providers/") {
        Ok(())
    } else {
        Err(format!(
            "{key}: {value:?} is not an Azure resource id (/subscriptions/…/providers/…)"
        ))
    }
}

/// A name that goes into a resource id unescaped.
fn resource_name(key: &str, value: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if !value.is_empty() && value.chars().all(ok) {
        Ok(())
    } else {
        Err(format!(
            "{key}: {value:?} must be letters, digits, '-' or '_'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_takes_every_default() {
        let config = Config::load("{}").unwrap();
        assert_eq!(config.tenant_id, DEFAULT_TENANT);
        assert!(config.system_identity.enabled);
        assert!(config.user_identities.is_empty());
        assert_eq!(config.token_lifetime, 86_400);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (r#"{"bogus":1}"#, "unknown field `bogus`"),
            (r#"{"tenant_id":"x"}"#, "tenant_id"),
            (r#"{"compute":{"cpu":"8"}}"#, "compute.cpu"),
            (r#"{"compute":{"vmId":"nope"}}"#, "compute.vmId"),
            (r#"{"tags":{"a:b":"c"}}"#, "tags"),
            (
                r#"{"network":{"private_ip":"10.0.0"}}"#,
                "network.private_ip",
            ),
            (r#"{"network":{"mac":"zz"}}"#, "network.mac"),
            (r#"{"network":{"subnet":"10.0.0.0/33"}}"#, "network.subnet"),
            (
                r#"{"user_identities":[{"client_id":"x"}]}"#,
                "user_identities[0].client_id",
            ),
            (r#"{"user_identities":[{}]}"#, "missing field `client_id`"),
            (r#"{"token_lifetime":5}"#, "token_lifetime"),
            (
                r#"{"system_identity":{"enabled":true,"extra":1}}"#,
                "unknown field `extra`",
            ),
        ];
        for (json, expected) in cases {
            let error = Config::load(json).err().unwrap();
            assert!(error.contains(expected), "{json}: {error}");
        }
    }

    #[test]
    fn identities_are_unique() {
        let id = "11111111-2222-4333-8444-555555555555";
        let json = format!(
            r#"{{"system_identity":{{"client_id":"{id}"}},"user_identities":[{{"client_id":"{}"}}]}}"#,
            id.to_uppercase()
        );
        let error = Config::load(&json).err().unwrap();
        assert!(error.contains("user_identities[0].client_id"), "{error}");
        assert!(error.contains("system_identity.client_id"), "{error}");
    }

    #[test]
    fn cidr_blocks_are_normalised() {
        assert_eq!(parse_cidr("10.1.2.3/24"), Some(([10, 1, 2, 0].into(), 24)));
        assert_eq!(parse_cidr("10.1.2.3/0"), Some(([0, 0, 0, 0].into(), 0)));
        assert_eq!(parse_cidr("10.1.2.3"), None);
    }
}
