//! The emulated VM with every default filled in: the config first, then the
//! host's built-in EC2 facts (so that the instance's GCE and EC2 faces show
//! the same address, mac and id), then fixed GCE-like values.

use crate::config::{is_gce_name, is_mac, AccountConfig, Config};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub struct Machine {
    pub project_id: String,
    pub numeric_project_id: u64,
    pub project_attributes: BTreeMap<String, String>,
    pub universe_domain: String,
    pub id: u64,
    pub name: String,
    pub hostname: String,
    /// Short, like `us-central1-a`; the tree serves the full resource path.
    pub zone: String,
    pub machine_type: String,
    pub cpu_platform: String,
    pub description: String,
    pub image: String,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub licenses: Vec<String>,
    pub creation_timestamp: u64,
    pub nic: Nic,
    pub accounts: Vec<Account>,
    /// The host's lifecycle events as GCE shows them: a spot notice is a
    /// preemption, a scheduled maintenance event a host maintenance.
    pub preempted: bool,
    pub maintenance_event: &'static str,
}

pub struct Nic {
    pub ip: String,
    pub mac: String,
    pub external_ip: Option<String>,
    pub network: String,
    pub subnetmask: String,
    pub gateway: String,
}

pub struct Account {
    pub email: String,
    pub aliases: Vec<String>,
    pub scopes: Vec<String>,
    pub token: String,
    pub unique_id: String,
}

/// The EC2 facts a default may come from, as `host::lookup` paths.
const INSTANCE_ID: &str = "meta-data/instance-id";
const LOCAL_IPV4: &str = "meta-data/local-ipv4";
const MAC: &str = "meta-data/mac";
const PUBLIC_IPV4: &str = "meta-data/public-ipv4";
/// The lifecycle events (`ersatz event`), always looked up: they change.
const SPOT_NOTICE: &str = "meta-data/spot/instance-action";
const MAINTENANCE: &str = "meta-data/events/maintenance/scheduled";

/// EC2 facts by path; only those the config leaves unset are looked up.
pub type Ec2 = BTreeMap<&'static str, String>;

/// The paths `resolve` must look up for this config (one host call for all).
pub fn ec2_paths(config: &Config) -> Vec<&'static str> {
    let (instance, nic) = (&config.instance, &config.instance.network_interface);
    let wanted = [
        (
            INSTANCE_ID,
            instance.id.is_none() || instance.name.is_none(),
        ),
        (LOCAL_IPV4, nic.ip.is_none()),
        (MAC, nic.mac.is_none()),
        (PUBLIC_IPV4, nic.external_ip.is_none()),
        (SPOT_NOTICE, true),
        (MAINTENANCE, true),
    ];
    wanted.iter().filter(|(_, w)| *w).map(|(p, _)| *p).collect()
}

impl Machine {
    pub fn new(config: Config, ec2: &Ec2) -> Machine {
        let Config {
            project_id,
            numeric_project_id,
            project_attributes,
            universe_domain,
            instance,
            service_accounts,
        } = config;
        let ec2_id = ec2.get(INSTANCE_ID).map(String::as_str);
        let name = instance.name.unwrap_or_else(|| default_name(ec2_id));
        let hostname = instance
            .hostname
            .unwrap_or_else(|| format!("{name}.{}.c.{project_id}.internal", instance.zone));
        let accounts = accounts(service_accounts, numeric_project_id);
        let maintenance = ec2.get(MAINTENANCE).is_some_and(|list| list.trim() != "[]");
        Machine {
            preempted: ec2.contains_key(SPOT_NOTICE),
            maintenance_event: if maintenance {
                "MIGRATE_ON_HOST_MAINTENANCE"
            } else {
                "NONE"
            },
            id: instance.id.unwrap_or_else(|| default_id(ec2_id)),
            nic: nic(instance.network_interface, ec2, numeric_project_id),
            name,
            hostname,
            zone: instance.zone,
            machine_type: instance.machine_type,
            cpu_platform: instance.cpu_platform,
            description: instance.description,
            image: instance.image,
            tags: instance.tags,
            attributes: instance.attributes,
            licenses: instance.licenses,
            creation_timestamp: instance.creation_timestamp,
            accounts,
            project_id,
            numeric_project_id,
            project_attributes,
            universe_domain,
        }
    }
}

/// The EC2 instance id is also a valid GCE name (`i-0123…`), so the two faces
/// name the machine alike.
fn default_name(ec2_id: Option<&str>) -> String {
    match ec2_id {
        Some(id) if is_gce_name(id) => id.to_string(),
        _ => "ersatz-instance".into(),
    }
}

/// A 19-digit id, like GCE's, read from the EC2 id's hex digits (hashed when
/// it has none) so that it is stable for the same instance.
fn default_id(ec2_id: Option<&str>) -> u64 {
    let ec2_id = ec2_id.unwrap_or("ersatz-instance");
    let hex = ec2_id.trim_start_matches("i-");
    let seed = u128::from_str_radix(hex, 16).unwrap_or_else(|_| fnv(ec2_id) as u128);
    1_000_000_000_000_000_000 + (seed % 8_000_000_000_000_000_000) as u64
}

fn nic(config: crate::config::NicConfig, ec2: &Ec2, project: u64) -> Nic {
    let fact = |path| ec2.get(path).cloned();
    let ip = config
        .ip
        .or_else(|| fact(LOCAL_IPV4))
        .filter(|ip| is_ipv4(ip));
    let ip = ip.unwrap_or_else(|| "10.128.0.2".into());
    // GCE's auto-mode subnets are /20s whose gateway is their first address.
    let subnetmask = config.subnetmask.unwrap_or_else(|| "255.255.240.0".into());
    let gateway = config
        .gateway
        .unwrap_or_else(|| first_address(&ip, &subnetmask));
    let ec2_mac = fact(MAC).map(|mac| mac.to_ascii_lowercase());
    let mac = config.mac.or(ec2_mac).filter(|mac| is_mac(mac));
    let external_ip = match config.external_ip {
        Some(ip) => Some(ip).filter(|ip| !ip.is_empty()),
        None => fact(PUBLIC_IPV4).filter(|ip| is_ipv4(ip)),
    };
    Nic {
        mac: mac.unwrap_or_else(|| "42:01:0a:80:00:02".into()),
        network: config
            .network
            .unwrap_or_else(|| format!("projects/{project}/networks/default")),
        ip,
        external_ip,
        subnetmask,
        gateway,
    }
}

fn is_ipv4(text: &str) -> bool {
    text.parse::<Ipv4Addr>().is_ok()
}

fn first_address(ip: &str, mask: &str) -> String {
    let parse = |text: &str| text.parse::<Ipv4Addr>().map_or(0, u32::from);
    Ipv4Addr::from((parse(ip) & parse(mask)).wrapping_add(1)).to_string()
}

fn accounts(config: Option<Vec<AccountConfig>>, project: u64) -> Vec<Account> {
    let config = config.unwrap_or_else(|| vec![AccountConfig::default()]);
    let default_email = || format!("{project}-compute@developer.gserviceaccount.com");
    let account = |(i, a): (usize, AccountConfig)| {
        let email = a.email.unwrap_or_else(default_email);
        let first = i == 0;
        let aliases = a.aliases.unwrap_or_else(|| match first {
            true => vec!["default".into()],
            false => Vec::new(),
        });
        let scopes = a
            .scopes
            .unwrap_or_else(|| vec!["https://www.googleapis.com/auth/cloud-platform".into()]);
        let hash = fnv(&email);
        Account {
            token: a
                .token
                .unwrap_or_else(|| format!("ya29.ersatz-{hash:016x}")),
            // GCE's unique ids are 21 digits starting with 1.
            unique_id: a.unique_id.unwrap_or_else(|| format!("1{:020}", hash)),
            email,
            aliases,
            scopes,
        }
    };
    config.into_iter().enumerate().map(account).collect()
}

/// FNV-1a: a stable hash for derived ids (no randomness, no state).
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
