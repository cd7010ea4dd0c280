//! Values derived for interfaces the config leaves incomplete, in EC2's
//! formats: hostnames, addresses in a subnet, MACs.

use std::net::Ipv4Addr;

use crate::ersatz::plugin::host;

/// The instance's region and domain, which EC2's hostnames are made of.
pub struct Place {
    region: String,
    domain: String,
}

impl Place {
    pub fn lookup() -> Self {
        Place {
            region: host::lookup("meta-data/placement/region").unwrap_or("us-east-1".into()),
            domain: host::lookup("meta-data/services/domain").unwrap_or("amazonaws.com".into()),
        }
    }

    pub fn local_hostname(&self, ip: &str) -> String {
        let dashed = ip.replace('.', "-");
        match self.region.as_str() {
            "us-east-1" => format!("ip-{dashed}.ec2.internal"),
            region => format!("ip-{dashed}.{region}.compute.internal"),
        }
    }

    pub fn public_hostname(&self, ip: &str) -> String {
        let (dashed, domain) = (ip.replace('.', "-"), &self.domain);
        match self.region.as_str() {
            "us-east-1" => format!("ec2-{dashed}.compute-1.{domain}"),
            region => format!("ec2-{dashed}.{region}.compute.{domain}"),
        }
    }
}

/// `anchor + offset`, moved into `subnet` (`a.b.c.d/n`) when there is one.
pub fn beside(anchor: Ipv4Addr, offset: u32, subnet: Option<&str>) -> String {
    let ip = u32::from(anchor).wrapping_add(offset);
    let in_subnet = subnet.and_then(|cidr| {
        let (network, length) = cidr.split_once('/')?;
        let network = u32::from(network.parse::<Ipv4Addr>().ok()?);
        let length: u32 = length.parse().ok().filter(|l| *l <= 32)?;
        let mask = u32::MAX.checked_shl(32 - length).unwrap_or(0);
        Some((network & mask) | (ip & !mask))
    });
    Ipv4Addr::from(in_subnet.unwrap_or(ip)).to_string()
}

/// `0e:49:61:0f:c3:11` as a number; `None` unless six lower-case hex pairs,
/// the only form IMDS uses (it is part of the path).
pub fn mac_number(mac: &str) -> Option<u64> {
    let pairs: Vec<&str> = mac.split(':').collect();
    let hex = |p: &&str| p.len() == 2 && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if pairs.len() != 6 || !pairs.iter().all(hex) {
        return None;
    }
    u64::from_str_radix(&pairs.concat(), 16).ok()
}

/// The next MAC after `after` that no interface has, claimed in `taken`.
pub fn next_mac(after: &str, taken: &mut Vec<String>) -> String {
    let mut number = mac_number(after).unwrap_or(0x0e00_0000_0000);
    loop {
        number = (number + 1) & 0xffff_ffff_ffff;
        let bytes = number.to_be_bytes();
        let pairs: Vec<String> = bytes[2..].iter().map(|b| format!("{b:02x}")).collect();
        let mac = pairs.join(":");
        if !taken.contains(&mac) {
            taken.push(mac.clone());
            return mac;
        }
    }
}
