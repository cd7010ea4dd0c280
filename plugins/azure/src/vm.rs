//! The virtual machine being impersonated: the config's values, else the
//! host's EC2 tree's (so the address, MAC, hostname and SSH keys a client
//! sees agree with what the rest of ersatz serves), else fixed defaults.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::config::{parse_cidr, Config, COMPUTE_FIELDS};
use crate::grants::{Found, Grants};
use crate::ids::{guid, hash};

pub const DEFAULT_SUBSCRIPTION: &str = "3f2b9c4e-1a7d-4e2b-8c5f-6d9e0a1b2c3d";

pub struct Vm {
    /// Every string field of `instance/compute`, overrides applied.
    pub compute: BTreeMap<&'static str, String>,
    pub nic: Nic,
    /// OpenSSH public keys, from the EC2 tree's `public-keys`.
    pub public_keys: Vec<String>,
}

pub struct Nic {
    pub private_ip: String,
    pub public_ip: String,
    /// Azure's spelling: 12 upper-case hex digits, no separators.
    pub mac: String,
    pub subnet: (Ipv4Addr, u8),
}

/// What the EC2 tree says, read in one host call.
#[derive(Default)]
struct Ec2 {
    instance_id: Option<String>,
    local_ipv4: Option<String>,
    public_ipv4: Option<String>,
    mac: Option<String>,
    hostname: Option<String>,
    zone: Option<String>,
    life_cycle: Option<String>,
    key_names: Vec<String>,
}

const EC2_PATHS: [&str; 8] = [
    "meta-data/instance-id",
    "meta-data/local-ipv4",
    "meta-data/public-ipv4",
    "meta-data/mac",
    "meta-data/local-hostname",
    "meta-data/placement/availability-zone",
    "meta-data/instance-life-cycle",
    "meta-data/public-keys",
];

impl Ec2 {
    fn read(grants: &dyn Grants) -> Self {
        let paths: Vec<String> = EC2_PATHS.iter().map(|p| (*p).to_owned()).collect();
        let mut values = grants.lookup_many(&paths).into_iter();
        let mut leaf = || match values.next().flatten() {
            Some(Found::Leaf(text)) => Some(text.trim().to_owned()).filter(|t| !t.is_empty()),
            _ => None,
        };
        let mut ec2 = Self {
            instance_id: leaf(),
            local_ipv4: leaf(),
            public_ipv4: leaf(),
            mac: leaf(),
            hostname: leaf(),
            zone: leaf(),
            life_cycle: leaf(),
            key_names: Vec::new(),
        };
        if let Some(Some(Found::Listing(entries))) = values.next() {
            ec2.key_names = entries;
        }
        ec2
    }
}

impl Vm {
    pub fn gather(config: &Config, grants: &dyn Grants) -> Self {
        let ec2 = Ec2::read(grants);
        let compute = compute(config, &ec2);
        let (nic, keys) = nic_and_keys(config, &ec2, &compute["vmId"], grants);
        Self {
            compute,
            nic,
            public_keys: keys,
        }
    }

    pub fn get(&self, field: &str) -> &str {
        self.compute.get(field).map_or("", String::as_str)
    }

    pub fn name(&self) -> &str {
        self.get("name")
    }
}

/// The compute fields: overrides, else derived, else fixed defaults. The
/// resource id is derived last, from the (possibly overridden) parts.
fn compute(config: &Config, ec2: &Ec2) -> BTreeMap<&'static str, String> {
    let spot = ec2.life_cycle.as_deref() == Some("spot");
    let instance_id = ec2.instance_id.as_deref().unwrap_or("ersatz");
    let name = ec2
        .hostname
        .as_deref()
        .and_then(|h| h.split('.').next())
        .unwrap_or("ersatz-vm");
    let defaults: [(&str, String); 18] = [
        ("azEnvironment", "AzurePublicCloud".into()),
        (
            "evictionPolicy",
            if spot { "Deallocate" } else { "" }.into(),
        ),
        ("isHostCompatibilityLayerVm", "false".into()),
        ("location", "eastus".into()),
        ("name", name.into()),
        ("offer", "0001-com-ubuntu-server-jammy".into()),
        ("osType", "Linux".into()),
        ("platformFaultDomain", "0".into()),
        ("platformUpdateDomain", "0".into()),
        ("priority", if spot { "Spot" } else { "Regular" }.into()),
        ("provider", "Microsoft.Compute".into()),
        ("publisher", "Canonical".into()),
        ("resourceGroupName", "ersatz-rg".into()),
        ("sku", "22_04-lts-gen2".into()),
        ("subscriptionId", DEFAULT_SUBSCRIPTION.into()),
        ("version", "22.04.202501010".into()),
        ("vmId", guid("vmId", instance_id)),
        ("vmSize", "Standard_D2s_v3".into()),
    ];
    let mut fields: BTreeMap<&'static str, String> =
        COMPUTE_FIELDS.iter().map(|f| (*f, String::new())).collect();
    for (field, value) in defaults {
        fields.insert(field_name(field), value);
    }
    fields.insert("zone", zone_of(ec2.zone.as_deref()));
    for (field, value) in &config.compute {
        fields.insert(field_name(field), value.clone());
    }
    if !config.compute.contains_key("resourceId") {
        let id = vm_resource_id(&fields);
        fields.insert("resourceId", id);
    }
    fields
}

/// The `'static` spelling of a compute field (config keys are checked
/// against the same list at load).
fn field_name(field: &str) -> &'static str {
    COMPUTE_FIELDS
        .iter()
        .find(|f| **f == field)
        .copied()
        .unwrap_or("customData")
}

fn vm_resource_id(fields: &BTreeMap<&'static str, String>) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}",
        fields["subscriptionId"], fields["resourceGroupName"], fields["name"]
    )
}

/// EC2's `eu-west-2b` is the region's second zone: Azure calls it "2".
fn zone_of(availability_zone: Option<&str>) -> String {
    match availability_zone.and_then(|z| z.chars().last()) {
        Some(letter @ 'a'..='c') => (letter as u8 - b'a' + 1).to_string(),
        _ => String::new(),
    }
}

fn nic_and_keys(
    config: &Config,
    ec2: &Ec2,
    vm_id: &str,
    grants: &dyn Grants,
) -> (Nic, Vec<String>) {
    let net = &config.network;
    let mac_ec2 = ec2.mac.as_deref().unwrap_or("");
    let mut paths = vec![format!(
        "meta-data/network/interfaces/macs/{mac_ec2}/subnet-ipv4-cidr-block"
    )];
    paths.extend(ec2.key_names.iter().filter_map(|entry| {
        let index = entry.split('=').next()?;
        Some(format!("meta-data/public-keys/{index}/openssh-key"))
    }));
    let mut values = grants.lookup_many(&paths).into_iter().map(|v| match v {
        Some(Found::Leaf(text)) => Some(text.trim().to_owned()),
        _ => None,
    });
    let ec2_subnet = values.next().flatten();
    let keys = values.flatten().collect();
    let private_ip = first([&net.private_ip, &ec2.local_ipv4]).unwrap_or("10.0.0.4");
    let subnet = first([&net.subnet, &ec2_subnet])
        .and_then(parse_cidr)
        .unwrap_or_else(|| slash_24(private_ip));
    let mac = first([&net.mac, &ec2.mac])
        .and_then(azure_mac)
        .unwrap_or_else(|| format!("000D3A{:06X}", hash("mac", vm_id) & 0xff_ffff));
    let nic = Nic {
        private_ip: private_ip.to_owned(),
        public_ip: first([&net.public_ip, &ec2.public_ipv4])
            .unwrap_or("")
            .to_owned(),
        mac,
        subnet,
    };
    (nic, keys)
}

fn first(candidates: [&Option<String>; 2]) -> Option<&str> {
    candidates.into_iter().find_map(|c| c.as_deref())
}

fn slash_24(ip: &str) -> (Ipv4Addr, u8) {
    let address: Ipv4Addr = ip.parse().unwrap_or(Ipv4Addr::new(10, 0, 0, 4));
    (Ipv4Addr::from(u32::from(address) & 0xffff_ff00), 24)
}

/// `02:4a:7c:11:22:33` (or with '-', or none) → `024A7C112233`.
pub fn azure_mac(text: &str) -> Option<String> {
    let hex: String = text.chars().filter(|c| !matches!(c, ':' | '-')).collect();
    let ok = hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit());
    ok.then(|| hex.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::fake::Host;

    #[test]
    fn the_ec2_tree_supplies_the_defaults() {
        let host = Host::new("{}");
        host.set(
            "meta-data/network/interfaces/macs/02:4a:7c:11:22:33/subnet-ipv4-cidr-block",
            "10.20.0.0/16",
        );
        let vm = Vm::gather(&Config::load("{}").unwrap(), &host);
        assert_eq!(vm.name(), "ip-10-20-30-40");
        assert_eq!(vm.get("zone"), "2");
        assert_eq!(vm.get("priority"), "Regular");
        assert_eq!(vm.nic.private_ip, "10.20.30.40");
        assert_eq!(vm.nic.public_ip, "198.51.100.7");
        assert_eq!(vm.nic.mac, "024A7C112233");
        assert_eq!(vm.nic.subnet, ([10, 20, 0, 0].into(), 16));
        assert_eq!(vm.get("vmId"), guid("vmId", "i-0fedcba9876543210"));
        assert!(vm
            .get("resourceId")
            .ends_with("/virtualMachines/ip-10-20-30-40"));
    }

    #[test]
    fn the_config_overrides_and_the_resource_id_follows() {
        let config = Config::load(
            r#"{"compute":{"name":"web-1","resourceGroupName":"prod"},
                "network":{"private_ip":"172.16.0.5","mac":"00-0d-3a-aa-bb-cc"}}"#,
        )
        .unwrap();
        let vm = Vm::gather(&config, &Host::new("{}"));
        assert_eq!(
            vm.get("resourceId"),
            format!("/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/prod/providers/Microsoft.Compute/virtualMachines/web-1")
        );
        assert_eq!(vm.nic.private_ip, "172.16.0.5");
        assert_eq!(vm.nic.subnet, ([172, 16, 0, 0].into(), 24));
        assert_eq!(vm.nic.mac, "000D3AAABBCC");
    }

    #[test]
    fn an_empty_tree_still_makes_a_machine() {
        let host = Host::default();
        let vm = Vm::gather(&Config::load("{}").unwrap(), &host);
        assert_eq!(vm.name(), "ersatz-vm");
        assert_eq!(vm.get("zone"), "");
        assert!(vm.nic.mac.starts_with("000D3A") && vm.nic.mac.len() == 12);
    }

    #[test]
    fn spot_instances_are_spot_vms() {
        let host = Host::new("{}");
        host.set("meta-data/instance-life-cycle", "spot");
        let vm = Vm::gather(&Config::load("{}").unwrap(), &host);
        assert_eq!(vm.get("priority"), "Spot");
        assert_eq!(vm.get("evictionPolicy"), "Deallocate");
    }
}
