//! The configured interfaces, completed with defaults that agree with the
//! instance: the primary one takes the core's facts, the others share its
//! owner, subnet, VPC and security groups and get their own MAC, id and IP.

use std::net::Ipv4Addr;

use serde::Deserialize;

use crate::derive::{beside, mac_number, next_mac, Place};
use crate::ersatz::plugin::host;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    interfaces: Vec<Settings>,
}

/// One interface's values; `None` means "use the default".
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    mac: Option<String>,
    device_number: Option<u32>,
    interface_id: Option<String>,
    local_hostname: Option<String>,
    local_ipv4s: Option<Vec<String>>,
    owner_id: Option<String>,
    public_hostname: Option<String>,
    public_ipv4s: Option<Vec<String>>,
    security_group_ids: Option<Vec<String>>,
    security_groups: Option<Vec<String>>,
    subnet_id: Option<String>,
    subnet_ipv4_cidr_block: Option<String>,
    vpc_id: Option<String>,
    vpc_ipv4_cidr_block: Option<String>,
    vpc_ipv4_cidr_blocks: Option<Vec<String>>,
    vpc_ipv6_cidr_blocks: Option<Vec<String>>,
}

/// An interface as served.
pub struct Interface {
    pub mac: String,
    /// `(leaf, text)` in listing order; leaves without a value are left out.
    pub leaves: Vec<(&'static str, String)>,
    /// `(public IP, local IP)`, for `ipv4-associations/`.
    pub ipv4_associations: Vec<(String, String)>,
}

/// The interfaces in device order. With no `interfaces` configured there is
/// still the primary one, entirely from the core's facts.
pub fn load() -> Result<Vec<Interface>, String> {
    let config: Config = serde_json::from_str(&host::config())
        .map_err(|e| format!("network-interfaces: invalid config: {e}"))?;
    let mut taken: Vec<String> = config
        .interfaces
        .iter()
        .filter_map(|s| s.mac.clone())
        .collect();
    let place = Place::lookup();
    let mut configured = config.interfaces.into_iter();
    let primary = configured
        .next()
        .unwrap_or_default()
        .over(builtin())
        .filled(0, None, &place);
    let primary_mac = primary.mac.clone().unwrap_or_default();
    taken.push(primary_mac.clone());
    let anchor = first(&primary.local_ipv4s).and_then(|ip| ip.parse().ok());
    let mut all = vec![primary.clone()];
    for (settings, index) in configured.zip(1..) {
        let mac = match &settings.mac {
            Some(mac) => mac.clone(),
            None => next_mac(&primary_mac, &mut taken),
        };
        let base = Settings {
            mac: Some(mac),
            device_number: None,
            interface_id: None,
            local_hostname: None,
            local_ipv4s: None,
            public_hostname: None,
            public_ipv4s: None,
            ..primary.clone()
        };
        all.push(settings.over(base).filled(index, anchor, &place));
    }
    let mut seen = Vec::new();
    for mac in all.iter().map(|s| s.mac.as_deref().unwrap_or_default()) {
        if mac_number(mac).is_none() {
            return Err(format!(
                "network-interfaces: mac {mac:?} must be six lower-case hex pairs, e.g. 0e:49:61:0f:c3:11"
            ));
        }
        if seen.contains(&mac) {
            return Err(format!("network-interfaces: mac {mac} is used twice"));
        }
        seen.push(mac);
    }
    Ok(all.into_iter().map(Settings::into_interface).collect())
}

/// The primary interface as the core serves it, falling back to the
/// instance-wide leaves when the core has no interface of its own there.
fn builtin() -> Settings {
    let meta = |leaf: &str| host::lookup(&format!("meta-data/{leaf}"));
    let mac = meta("mac").unwrap_or_else(|| "0e:00:00:00:00:01".into());
    let nic = |leaf: &str| meta(&format!("network/interfaces/macs/{mac}/{leaf}"));
    let list = |text: Option<String>| text.map(|t| t.lines().map(String::from).collect());
    Settings {
        device_number: Some(0),
        interface_id: nic("interface-id"),
        local_hostname: nic("local-hostname").or_else(|| meta("local-hostname")),
        local_ipv4s: list(nic("local-ipv4s").or_else(|| meta("local-ipv4"))),
        owner_id: nic("owner-id").or_else(account_id),
        public_hostname: nic("public-hostname").or_else(|| meta("public-hostname")),
        public_ipv4s: list(nic("public-ipv4s").or_else(|| meta("public-ipv4"))),
        security_group_ids: list(nic("security-group-ids")),
        security_groups: list(nic("security-groups").or_else(|| meta("security-groups"))),
        subnet_id: nic("subnet-id"),
        subnet_ipv4_cidr_block: nic("subnet-ipv4-cidr-block"),
        vpc_id: nic("vpc-id"),
        vpc_ipv4_cidr_block: nic("vpc-ipv4-cidr-block"),
        vpc_ipv4_cidr_blocks: list(nic("vpc-ipv4-cidr-blocks")),
        vpc_ipv6_cidr_blocks: list(nic("vpc-ipv6-cidr-blocks")),
        mac: Some(mac),
    }
}

fn account_id() -> Option<String> {
    let document = host::lookup("dynamic/instance-identity/document")?;
    let document: serde_json::Value = serde_json::from_str(&document).ok()?;
    Some(document["accountId"].as_str()?.to_string())
}

impl Settings {
    /// These settings over `base`. A base value is dropped when a value it
    /// must agree with is configured differently: another VPC has none of
    /// the base's subnets, blocks or security groups; another subnet id
    /// makes the base's CIDR wrong; other IPs the base's hostnames.
    fn over(self, mut base: Settings) -> Settings {
        let other_vpc = differs(&self.vpc_id, &base.vpc_id);
        if other_vpc {
            (base.vpc_id, base.vpc_ipv6_cidr_blocks) = (None, None);
        }
        if other_vpc
            || differs(&self.subnet_id, &base.subnet_id)
            || differs(&self.subnet_ipv4_cidr_block, &base.subnet_ipv4_cidr_block)
        {
            (base.subnet_id, base.subnet_ipv4_cidr_block) = (None, None);
        }
        if other_vpc
            || differs(&self.vpc_ipv4_cidr_block, &base.vpc_ipv4_cidr_block)
            || differs(&self.vpc_ipv4_cidr_blocks, &base.vpc_ipv4_cidr_blocks)
        {
            (base.vpc_ipv4_cidr_block, base.vpc_ipv4_cidr_blocks) = (None, None);
        }
        if other_vpc
            || differs(&self.security_group_ids, &base.security_group_ids)
            || differs(&self.security_groups, &base.security_groups)
        {
            (base.security_group_ids, base.security_groups) = (None, None);
        }
        if differs(&self.local_ipv4s, &base.local_ipv4s) {
            base.local_hostname = None;
        }
        if differs(&self.public_ipv4s, &base.public_ipv4s) {
            base.public_hostname = None;
        }
        Settings {
            mac: self.mac.or(base.mac),
            device_number: self.device_number.or(base.device_number),
            interface_id: self.interface_id.or(base.interface_id),
            local_hostname: self.local_hostname.or(base.local_hostname),
            local_ipv4s: self.local_ipv4s.or(base.local_ipv4s),
            owner_id: self.owner_id.or(base.owner_id),
            public_hostname: self.public_hostname.or(base.public_hostname),
            public_ipv4s: self.public_ipv4s.or(base.public_ipv4s),
            security_group_ids: self.security_group_ids.or(base.security_group_ids),
            security_groups: self.security_groups.or(base.security_groups),
            subnet_id: self.subnet_id.or(base.subnet_id),
            subnet_ipv4_cidr_block: self.subnet_ipv4_cidr_block.or(base.subnet_ipv4_cidr_block),
            vpc_id: self.vpc_id.or(base.vpc_id),
            vpc_ipv4_cidr_block: self.vpc_ipv4_cidr_block.or(base.vpc_ipv4_cidr_block),
            vpc_ipv4_cidr_blocks: self.vpc_ipv4_cidr_blocks.or(base.vpc_ipv4_cidr_blocks),
            vpc_ipv6_cidr_blocks: self.vpc_ipv6_cidr_blocks.or(base.vpc_ipv6_cidr_blocks),
        }
    }

    /// Derives what is still missing: the id from the MAC, an IP next to
    /// `anchor` (the primary's) in this subnet, hostnames from the IPs.
    fn filled(mut self, index: u32, anchor: Option<Ipv4Addr>, place: &Place) -> Settings {
        self.device_number.get_or_insert(index);
        if self.interface_id.is_none() {
            let number = self.mac.as_deref().and_then(mac_number);
            self.interface_id = number.map(|n| format!("eni-{n:017x}"));
        }
        if self.local_ipv4s.is_none() {
            let subnet = self.subnet_ipv4_cidr_block.as_deref();
            self.local_ipv4s = anchor.map(|ip| vec![beside(ip, index, subnet)]);
        }
        if self.local_hostname.is_none() {
            self.local_hostname = first(&self.local_ipv4s).map(|ip| place.local_hostname(ip));
        }
        if self.public_hostname.is_none() {
            self.public_hostname = first(&self.public_ipv4s).map(|ip| place.public_hostname(ip));
        }
        if self.vpc_ipv4_cidr_block.is_none() {
            self.vpc_ipv4_cidr_block = first(&self.vpc_ipv4_cidr_blocks).cloned();
        }
        if self.vpc_ipv4_cidr_blocks.is_none() {
            self.vpc_ipv4_cidr_blocks = self.vpc_ipv4_cidr_block.clone().map(|b| vec![b]);
        }
        self
    }

    fn into_interface(self) -> Interface {
        let local = self.local_ipv4s.unwrap_or_default();
        let public = self.public_ipv4s.unwrap_or_default();
        // Several public IPs pair with the local ones in order; extra ones
        // with the first.
        let ipv4_associations = public
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((p.clone(), local.get(i).or(local.first())?.clone())))
            .collect();
        let public_hostname = self.public_hostname.filter(|_| !public.is_empty());
        let lines = |values: Option<Vec<String>>| values.map(|v| v.join("\n"));
        let leaves = [
            ("device-number", self.device_number.map(|n| n.to_string())),
            ("interface-id", self.interface_id),
            ("local-hostname", self.local_hostname),
            ("local-ipv4s", Some(local.join("\n"))),
            ("mac", self.mac.clone()),
            ("owner-id", self.owner_id),
            ("public-hostname", public_hostname),
            ("public-ipv4s", Some(public.join("\n"))),
            ("security-group-ids", lines(self.security_group_ids)),
            ("security-groups", lines(self.security_groups)),
            ("subnet-id", self.subnet_id),
            ("subnet-ipv4-cidr-block", self.subnet_ipv4_cidr_block),
            ("vpc-id", self.vpc_id),
            ("vpc-ipv4-cidr-block", self.vpc_ipv4_cidr_block),
            ("vpc-ipv4-cidr-blocks", lines(self.vpc_ipv4_cidr_blocks)),
            ("vpc-ipv6-cidr-blocks", lines(self.vpc_ipv6_cidr_blocks)),
        ];
        Interface {
            mac: self.mac.unwrap_or_default(),
            leaves: leaves
                .into_iter()
                .filter_map(|(name, text)| Some((name, text.filter(|t| !t.is_empty())?)))
                .collect(),
            ipv4_associations,
        }
    }
}

/// Whether a configured value replaces a different base value.
fn differs<T: PartialEq>(own: &Option<T>, base: &Option<T>) -> bool {
    own.is_some() && own != base
}

fn first(values: &Option<Vec<String>>) -> Option<&String> {
    values.as_ref()?.first()
}
