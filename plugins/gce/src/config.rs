//! The plugin's `config` table: what an operator may set, with a default for
//! everything, and the checks `init` runs so that a bad value stops the load
//! with the key's name rather than surfacing as a strange answer later.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub project_id: String,
    pub numeric_project_id: u64,
    pub project_attributes: BTreeMap<String, String>,
    pub universe_domain: String,
    pub instance: InstanceConfig,
    /// None: one account, the project's default compute account.
    pub service_accounts: Option<Vec<AccountConfig>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            project_id: "ersatz-project".into(),
            numeric_project_id: 123_456_789_012,
            project_attributes: BTreeMap::new(),
            universe_domain: "googleapis.com".into(),
            instance: InstanceConfig::default(),
            service_accounts: None,
        }
    }
}

/// Every `None` is derived (see `machine.rs`), mostly from the built-in EC2
/// tree so that both faces of the emulated instance agree.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstanceConfig {
    pub id: Option<u64>,
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub zone: String,
    pub machine_type: String,
    pub cpu_platform: String,
    pub description: String,
    pub image: String,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub licenses: Vec<String>,
    pub creation_timestamp: u64,
    pub network_interface: NicConfig,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig {
            id: None,
            name: None,
            hostname: None,
            zone: "us-central1-a".into(),
            machine_type: "n2-standard-2".into(),
            cpu_platform: "Intel Cascade Lake".into(),
            description: String::new(),
            image: "projects/debian-cloud/global/images/debian-12-bookworm-v20240709".into(),
            tags: Vec::new(),
            attributes: BTreeMap::new(),
            licenses: Vec::new(),
            // 2024-01-01T00:00:00Z: a fixed, plausible creation time.
            creation_timestamp: 1_704_067_200,
            network_interface: NicConfig::default(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NicConfig {
    pub ip: Option<String>,
    pub mac: Option<String>,
    /// `""` for none, even when the EC2 tree has a public address.
    pub external_ip: Option<String>,
    pub network: Option<String>,
    pub subnetmask: Option<String>,
    pub gateway: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AccountConfig {
    pub email: Option<String>,
    pub aliases: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub token: Option<String>,
    pub unique_id: Option<String>,
}

impl Config {
    /// Parses without the checks: `resolve` runs on a config `init` passed.
    pub fn parse(json: &str) -> Result<Config, String> {
        serde_json::from_str(json).map_err(|e| format!("gce: invalid config: {e}"))
    }

    /// Parses and checks, for `init`.
    pub fn load(json: &str) -> Result<Config, String> {
        let config = Config::parse(json)?;
        config
            .check()
            .map_err(|e| format!("gce: invalid config: {e}"))?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        check_project_id(&self.project_id)?;
        if self.numeric_project_id == 0 {
            return Err("numeric_project_id: must be a positive number".into());
        }
        check_attributes("project_attributes", &self.project_attributes)?;
        check_segment("universe_domain", &self.universe_domain)?;
        self.instance.check()?;
        if let Some(accounts) = &self.service_accounts {
            check_accounts(accounts)?;
        }
        Ok(())
    }
}

impl InstanceConfig {
    fn check(&self) -> Result<(), String> {
        if let Some(name) = &self.name {
            if !is_gce_name(name) {
                return Err(format!(
                    "instance.name: {name:?} is not a GCE name (lower-case letter, then \
                     letters, digits or '-', at most 63, not ending in '-')"
                ));
            }
        }
        if let Some(hostname) = &self.hostname {
            check_segment("instance.hostname", hostname)?;
        }
        check_segment("instance.zone", &self.zone)?;
        check_segment("instance.machine_type", &self.machine_type)?;
        check_line("instance.cpu_platform", &self.cpu_platform)?;
        check_line("instance.image", &self.image)?;
        for tag in &self.tags {
            if !is_gce_name(tag) {
                return Err(format!("instance.tags: {tag:?} is not a valid network tag"));
            }
        }
        for license in &self.licenses {
            check_digits("instance.licenses", license)?;
        }
        check_attributes("instance.attributes", &self.attributes)?;
        self.network_interface.check()
    }
}

impl NicConfig {
    fn check(&self) -> Result<(), String> {
        let nic = "instance.network_interface";
        if let Some(ip) = &self.ip {
            check_ipv4(&format!("{nic}.ip"), ip)?;
        }
        if let Some(ip) = self.external_ip.as_ref().filter(|ip| !ip.is_empty()) {
            check_ipv4(&format!("{nic}.external_ip"), ip)?;
        }
        if let Some(mask) = &self.subnetmask {
            check_ipv4(&format!("{nic}.subnetmask"), mask)?;
        }
        if let Some(gateway) = &self.gateway {
            check_ipv4(&format!("{nic}.gateway"), gateway)?;
        }
        if let Some(network) = &self.network {
            check_line(&format!("{nic}.network"), network)?;
        }
        match &self.mac {
            Some(mac) if !is_mac(mac) => Err(format!(
                "{nic}.mac: {mac:?} must be six lower-case hex pairs, like 42:01:0a:80:00:02"
            )),
            _ => Ok(()),
        }
    }
}

fn check_accounts(accounts: &[AccountConfig]) -> Result<(), String> {
    // Every email and alias is a directory under `service-accounts/`.
    let mut names: Vec<&str> = Vec::new();
    for (i, account) in accounts.iter().enumerate() {
        let key = format!("service_accounts[{i}]");
        let email = account.email.as_deref();
        match email {
            None if i > 0 => return Err(format!("{key}.email: required after the first account")),
            Some(email) if !email.contains('@') => {
                return Err(format!("{key}.email: {email:?} is not an email address"))
            }
            _ => {}
        }
        let aliases = account.aliases.iter().flatten().map(String::as_str);
        for name in email.into_iter().chain(aliases) {
            check_segment(&key, name)?;
            if names.contains(&name) {
                return Err(format!("{key}: {name:?} names two accounts"));
            }
            names.push(name);
        }
        account.check_values(&key)?;
    }
    Ok(())
}

impl AccountConfig {
    fn check_values(&self, key: &str) -> Result<(), String> {
        for scope in self.scopes.iter().flatten() {
            check_line(&format!("{key}.scopes"), scope)?;
        }
        if let Some(token) = &self.token {
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "{key}.token: must be non-empty printable ASCII, no spaces"
                ));
            }
        }
        match &self.unique_id {
            Some(id) => check_digits(&format!("{key}.unique_id"), id),
            None => Ok(()),
        }
    }
}

/// GCE's rule: 6 to 30 of lower-case letters, digits and '-', starting with a
/// letter and not ending with '-'.
fn check_project_id(id: &str) -> Result<(), String> {
    let ok = (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "project_id: {id:?} is not a GCE project id (6 to 30 lower-case letters, digits \
             or '-', starting with a letter)"
        ))
    }
}

/// GCE's rule for metadata keys; they also become path segments and lines.
fn check_attributes(key: &str, attributes: &BTreeMap<String, String>) -> Result<(), String> {
    for name in attributes.keys() {
        let ok = (1..=128).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "{key}: key {name:?} must be 1 to 128 letters, digits, '-' or '_'"
            ));
        }
    }
    Ok(())
}

/// A value that is also a path segment or a listing line.
fn check_segment(key: &str, value: &str) -> Result<(), String> {
    check_line(key, value)?;
    if value.is_empty() || value.contains('/') || value == "." || value == ".." {
        return Err(format!("{key}: {value:?} must be non-empty, without '/'"));
    }
    Ok(())
}

/// A value served on its own line (a listing entry, a scope).
fn check_line(key: &str, value: &str) -> Result<(), String> {
    if value.chars().any(char::is_control) {
        return Err(format!(
            "{key}: {value:?} must not contain control characters"
        ));
    }
    Ok(())
}

fn check_digits(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{key}: {value:?} must be a decimal number"));
    }
    Ok(())
}

fn check_ipv4(key: &str, value: &str) -> Result<(), String> {
    match value.parse::<std::net::Ipv4Addr>() {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("{key}: {value:?} is not an IPv4 address")),
    }
}

/// A GCE resource name: `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`.
pub fn is_gce_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub fn is_mac(mac: &str) -> bool {
    let pairs: Vec<&str> = mac.split(':').collect();
    pairs.len() == 6
        && pairs.iter().all(|p| {
            p.len() == 2
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_takes_every_default() {
        let config = Config::load("{}").unwrap();
        assert_eq!(config.project_id, "ersatz-project");
        assert_eq!(config.instance.zone, "us-central1-a");
        assert!(config.service_accounts.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (r#"{"bogus":1}"#, "unknown field `bogus`"),
            (r#"{"project_id":"Bad_Id"}"#, "project_id"),
            (r#"{"numeric_project_id":0}"#, "numeric_project_id"),
            (
                r#"{"project_attributes":{"a/b":"c"}}"#,
                "project_attributes",
            ),
            (r#"{"project_attributes":{"a":1}}"#, "invalid type"),
            (r#"{"instance":{"name":"Web"}}"#, "instance.name"),
            (r#"{"instance":{"zone":"a/b"}}"#, "instance.zone"),
            (r#"{"instance":{"tags":["A"]}}"#, "instance.tags"),
            (r#"{"instance":{"licenses":["x"]}}"#, "instance.licenses"),
            (
                r#"{"instance":{"network_interface":{"ip":"10.0.0"}}}"#,
                "network_interface.ip",
            ),
            (
                r#"{"instance":{"network_interface":{"mac":"zz"}}}"#,
                "network_interface.mac",
            ),
            (r#"{"instance":{"extra":1}}"#, "unknown field `extra`"),
            (
                r#"{"service_accounts":[{},{}]}"#,
                "service_accounts[1].email",
            ),
            (
                r#"{"service_accounts":[{"email":"nope"}]}"#,
                "service_accounts[0].email",
            ),
            (
                r#"{"service_accounts":[{"email":"a@b","aliases":["a@b"]}]}"#,
                "names two accounts",
            ),
            (
                r#"{"service_accounts":[{"token":"a b"}]}"#,
                "service_accounts[0].token",
            ),
            (
                r#"{"service_accounts":[{"unique_id":"x1"}]}"#,
                "service_accounts[0].unique_id",
            ),
        ];
        for (json, expected) in cases {
            let error = Config::load(json).err().unwrap();
            assert!(error.contains(expected), "{json}: {error}");
        }
    }
}
