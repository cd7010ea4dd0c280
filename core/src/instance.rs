//! The facts of the emulated instance. Every fact left unset is derived from
//! the others so that the whole tree agrees with itself (region = AZ minus its
//! letter, hostnames from the IP and region, the partition from the region).

use std::net::Ipv4Addr;

use serde::Deserialize;

/// The metadata API versions an EC2 instance answers to (IMDS lists them at
/// `/`), oldest first; `latest` comes last.
pub const VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
    "2011-01-01",
    "2011-05-01",
    "2012-01-12",
    "2014-02-25",
    "2014-11-05",
    "2015-10-20",
    "2016-04-19",
    "2016-06-30",
    "2016-09-02",
    "2018-03-28",
    "2018-08-17",
    "2018-09-24",
    "2019-10-01",
    "2020-10-27",
    "2021-01-03",
    "2021-03-23",
    "2021-07-15",
    "2022-09-24",
    "latest",
];

/// `[instance]`: each field optional; see [`Instance::resolve`] for defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub instance_type: Option<String>,
    pub region: Option<String>,
    pub availability_zone: Option<String>,
    pub account_id: Option<String>,
    pub ami_id: Option<String>,
    pub ami_launch_index: Option<u32>,
    pub ami_manifest_path: Option<String>,
    pub architecture: Option<String>,
    pub local_ipv4: Option<Ipv4Addr>,
    pub public_ipv4: Option<Ipv4Addr>,
    pub mac: Option<String>,
    pub security_groups: Option<Vec<String>>,
    pub security_group_ids: Option<Vec<String>>,
    pub reservation_id: Option<String>,
    pub life_cycle: Option<String>,
    pub interface_id: Option<String>,
    pub subnet_id: Option<String>,
    pub subnet_cidr: Option<String>,
    pub vpc_id: Option<String>,
    pub vpc_cidr: Option<String>,
    pub pending_time: Option<String>,
    /// User data, exactly these bytes (UTF-8 text); or `user_data_file`.
    pub user_data: Option<String>,
    /// A file whose bytes are the user data (binary and gzip safe).
    pub user_data_file: Option<std::path::PathBuf>,
    /// Instance tags (`Name = "web-1"`), served under `tags/instance/` when
    /// `tags_in_metadata` is set, as on EC2.
    pub tags: Option<std::collections::BTreeMap<String, String>>,
    pub tags_in_metadata: Option<bool>,
}

/// The resolved, self-consistent facts.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub instance_type: String,
    pub region: String,
    pub availability_zone: String,
    pub availability_zone_id: String,
    pub partition: &'static str,
    pub domain: &'static str,
    pub account_id: String,
    pub ami_id: String,
    pub ami_launch_index: u32,
    pub ami_manifest_path: String,
    pub architecture: String,
    pub local_ipv4: Ipv4Addr,
    pub local_hostname: String,
    pub public_ipv4: Ipv4Addr,
    pub public_hostname: String,
    pub mac: String,
    pub security_groups: Vec<String>,
    pub security_group_ids: Vec<String>,
    pub reservation_id: String,
    pub life_cycle: String,
    pub interface_id: String,
    pub subnet_id: String,
    pub subnet_cidr: String,
    pub vpc_id: String,
    pub vpc_cidr: String,
    pub pending_time: String,
    pub user_data: Option<Vec<u8>>,
    /// Served under `tags/instance/` only when `tags_in_metadata`.
    pub tags: std::collections::BTreeMap<String, String>,
    pub tags_in_metadata: bool,
}

/// A bad fact: the key under `instance.` and the reason.
#[derive(Debug)]
pub struct FactError {
    pub key: String,
    pub reason: String,
}

fn bad(key: &str, reason: impl Into<String>) -> FactError {
    FactError {
        key: format!("instance.{key}"),
        reason: reason.into(),
    }
}

impl Instance {
    pub fn resolve(c: &InstanceConfig) -> Result<Self, FactError> {
        let (region, availability_zone) = region_and_zone(c)?;
        let (partition, domain) = partition_of(&region);
        let id = checked_id(c.id.as_deref(), "id", "i-", "i-0123456789abcdef0")?;
        let account_id = c
            .account_id
            .clone()
            .unwrap_or_else(|| "123456789012".into());
        if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("account_id", "must be 12 digits"));
        }
        let mac = c.mac.clone().unwrap_or_else(|| "0e:49:61:0f:c3:11".into());
        if !is_mac(&mac) {
            return Err(bad(
                "mac",
                "must be six lower-case hex pairs, e.g. 0e:49:61:0f:c3:11",
            ));
        }
        let life_cycle = c.life_cycle.clone().unwrap_or_else(|| "on-demand".into());
        if !matches!(life_cycle.as_str(), "on-demand" | "spot" | "scheduled") {
            return Err(bad("life_cycle", "must be on-demand, spot or scheduled"));
        }
        let local_ipv4 = c.local_ipv4.unwrap_or(Ipv4Addr::new(172, 31, 16, 10));
        // TEST-NET-3: plausible, and never someone's real address.
        let public_ipv4 = c.public_ipv4.unwrap_or(Ipv4Addr::new(203, 0, 113, 25));
        let security_groups = c
            .security_groups
            .clone()
            .unwrap_or_else(|| vec!["default".into()]);
        let security_group_ids = c
            .security_group_ids
            .clone()
            .unwrap_or_else(|| vec!["sg-0123456789abcdef0".into()]);
        if security_groups.len() != security_group_ids.len() {
            return Err(bad(
                "security_group_ids",
                "needs one id per name in instance.security_groups",
            ));
        }
        Ok(Self {
            availability_zone_id: zone_id(&region, &availability_zone),
            local_hostname: local_hostname(local_ipv4, &region),
            public_hostname: public_hostname(public_ipv4, &region, domain),
            id,
            instance_type: c.instance_type.clone().unwrap_or_else(|| "t3.micro".into()),
            partition,
            domain,
            account_id,
            ami_id: checked_id(
                c.ami_id.as_deref(),
                "ami_id",
                "ami-",
                "ami-0abcdef1234567890",
            )?,
            ami_launch_index: c.ami_launch_index.unwrap_or(0),
            ami_manifest_path: c
                .ami_manifest_path
                .clone()
                .unwrap_or_else(|| "(unknown)".into()),
            architecture: c.architecture.clone().unwrap_or_else(|| "x86_64".into()),
            local_ipv4,
            public_ipv4,
            mac,
            security_groups,
            security_group_ids,
            reservation_id: checked_id(
                c.reservation_id.as_deref(),
                "reservation_id",
                "r-",
                "r-0123456789abcdef0",
            )?,
            life_cycle,
            interface_id: checked_id(
                c.interface_id.as_deref(),
                "interface_id",
                "eni-",
                "eni-0123456789abcdef0",
            )?,
            subnet_id: checked_id(
                c.subnet_id.as_deref(),
                "subnet_id",
                "subnet-",
                "subnet-0123456789abcdef0",
            )?,
            subnet_cidr: c
                .subnet_cidr
                .clone()
                .unwrap_or_else(|| "172.31.16.0/20".into()),
            vpc_id: checked_id(
                c.vpc_id.as_deref(),
                "vpc_id",
                "vpc-",
                "vpc-0123456789abcdef0",
            )?,
            vpc_cidr: c.vpc_cidr.clone().unwrap_or_else(|| "172.31.0.0/16".into()),
            pending_time: c
                .pending_time
                .clone()
                .unwrap_or_else(|| "2026-01-01T00:00:00Z".into()),
            user_data: user_data(c)?,
            tags: checked_tags(c)?,
            tags_in_metadata: c.tags_in_metadata.unwrap_or(false),
            region,
            availability_zone,
        })
    }
}

fn user_data(c: &InstanceConfig) -> Result<Option<Vec<u8>>, FactError> {
    match (&c.user_data, &c.user_data_file) {
        (Some(_), Some(_)) => Err(bad(
            "user_data_file",
            "set user_data or user_data_file, not both",
        )),
        (Some(text), None) => Ok(Some(text.as_bytes().to_vec())),
        (None, Some(file)) => std::fs::read(file).map(Some).map_err(|e| {
            bad(
                "user_data_file",
                format!("cannot read {}: {e}", file.display()),
            )
        }),
        (None, None) => Ok(None),
    }
}

/// EC2 refuses tag keys with `/` in metadata (they would be paths), and
/// empty ones.
fn checked_tags(
    c: &InstanceConfig,
) -> Result<std::collections::BTreeMap<String, String>, FactError> {
    let tags = c.tags.clone().unwrap_or_default();
    if let Some(key) = tags
        .keys()
        .find(|k| k.is_empty() || k.contains('/') || k == &"." || k == &"..")
    {
        return Err(bad(
            "tags",
            format!("tag key {key:?} cannot be a metadata path segment"),
        ));
    }
    Ok(tags)
}

fn region_and_zone(c: &InstanceConfig) -> Result<(String, String), FactError> {
    let region = match (&c.region, &c.availability_zone) {
        (Some(region), _) => region.clone(),
        (None, Some(zone)) => zone_region(zone)
            .ok_or_else(|| {
                bad(
                    "availability_zone",
                    "must be a region plus a letter, e.g. us-east-1a",
                )
            })?
            .to_owned(),
        (None, None) => "us-east-1".to_owned(),
    };
    if !is_region(&region) {
        return Err(bad("region", "must look like us-east-1"));
    }
    let zone = c
        .availability_zone
        .clone()
        .unwrap_or_else(|| format!("{region}a"));
    if zone_region(&zone) != Some(region.as_str()) {
        return Err(bad(
            "availability_zone",
            format!("\"{zone}\" is not a zone of region \"{region}\" (expected {region}a, {region}b, …)"),
        ));
    }
    Ok((region, zone))
}

/// `us-east-1a` → `us-east-1`.
fn zone_region(zone: &str) -> Option<&str> {
    let region = zone.strip_suffix(|c: char| c.is_ascii_lowercase())?;
    is_region(region).then_some(region)
}

/// `xx-direction-N`, e.g. `us-east-1`, `ap-southeast-2`, `us-gov-west-1`.
fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok_and(|n| n > 0)
}

fn partition_of(region: &str) -> (&'static str, &'static str) {
    if region.starts_with("cn-") {
        ("aws-cn", "amazonaws.com.cn")
    } else if region.starts_with("us-gov-") {
        ("aws-us-gov", "amazonaws.com")
    } else {
        ("aws", "amazonaws.com")
    }
}

/// AWS's zone ids: `us-east-1a` → `use1-az1` (the real mapping differs per
/// account; this keeps the shape and is stable).
fn zone_id(region: &str, zone: &str) -> String {
    let mut short = String::new();
    for part in region.split('-') {
        let abbreviation = match part {
            "east" => "e",
            "west" => "w",
            "north" => "n",
            "south" => "s",
            "central" => "c",
            "northeast" => "ne",
            "northwest" => "nw",
            "southeast" => "se",
            "southwest" => "sw",
            other => other,
        };
        short.push_str(abbreviation);
    }
    let letter = zone.bytes().last().unwrap_or(b'a');
    format!("{short}-az{}", letter - b'a' + 1)
}

fn local_hostname(ip: Ipv4Addr, region: &str) -> String {
    let dashed = ip.to_string().replace('.', "-");
    if region == "us-east-1" {
        format!("ip-{dashed}.ec2.internal")
    } else {
        format!("ip-{dashed}.{region}.compute.internal")
    }
}

fn public_hostname(ip: Ipv4Addr, region: &str, domain: &str) -> String {
    let dashed = ip.to_string().replace('.', "-");
    if region == "us-east-1" {
        format!("ec2-{dashed}.compute-1.{domain}")
    } else {
        format!("ec2-{dashed}.{region}.compute.{domain}")
    }
}

fn is_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts.iter().all(|p| {
            p.len() == 2
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// An AWS resource id: a prefix and 8 or 17 lower-case hex digits.
fn checked_id(
    value: Option<&str>,
    key: &str,
    prefix: &str,
    default: &str,
) -> Result<String, FactError> {
    let Some(value) = value else {
        return Ok(default.to_owned());
    };
    let ok = value.strip_prefix(prefix).is_some_and(|hex| {
        matches!(hex.len(), 8 | 17)
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(value.to_owned())
    } else {
        Err(bad(
            key,
            format!("\"{value}\" is not an id like {default} ({prefix} and 8 or 17 hex digits)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(c: InstanceConfig) -> Result<Instance, FactError> {
        Instance::resolve(&c)
    }

    #[test]
    fn region_follows_zone_and_zone_follows_region() {
        let from_zone = resolve(InstanceConfig {
            availability_zone: Some("eu-west-2c".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(from_zone.region, "eu-west-2");
        assert_eq!(from_zone.availability_zone_id, "euw2-az3");
        assert_eq!(
            from_zone.local_hostname,
            "ip-172-31-16-10.eu-west-2.compute.internal"
        );

        let from_region = resolve(InstanceConfig {
            region: Some("ap-southeast-1".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(from_region.availability_zone, "ap-southeast-1a");
        assert_eq!(from_region.availability_zone_id, "apse1-az1");
    }

    #[test]
    fn a_zone_outside_its_region_is_refused_by_key() {
        let err = resolve(InstanceConfig {
            region: Some("us-east-1".into()),
            availability_zone: Some("eu-west-1a".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(err.key, "instance.availability_zone");
        assert!(err.reason.contains("us-east-1"), "{}", err.reason);
    }

    #[test]
    fn partitions_follow_regions() {
        assert_eq!(partition_of("cn-north-1"), ("aws-cn", "amazonaws.com.cn"));
        assert_eq!(partition_of("us-gov-west-1").0, "aws-us-gov");
        assert_eq!(partition_of("eu-central-1").0, "aws");
    }

    #[test]
    fn malformed_ids_are_refused() {
        for (config, key) in [
            (
                InstanceConfig {
                    id: Some("i-xyz".into()),
                    ..Default::default()
                },
                "instance.id",
            ),
            (
                InstanceConfig {
                    mac: Some("0E:49".into()),
                    ..Default::default()
                },
                "instance.mac",
            ),
            (
                InstanceConfig {
                    account_id: Some("12".into()),
                    ..Default::default()
                },
                "instance.account_id",
            ),
        ] {
            assert_eq!(resolve(config).unwrap_err().key, key);
        }
    }
}
