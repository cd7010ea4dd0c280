//! `meta-data/iam`: `info` and `security-credentials/ROLE`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{Provider, Request, Resolved};
use crate::awsjson;
use crate::credentials::Roles;
use crate::instance::Instance;
use crate::timefmt;

pub const MOUNT: &str = "meta-data/iam";

pub struct IamProvider {
    roles: Arc<Roles>,
    clients: ClientRoles,
    partition: &'static str,
    account_id: String,
    started: SystemTime,
}

impl IamProvider {
    pub fn new(roles: Arc<Roles>, instance: &Instance, clients: ClientRoles) -> Self {
        Self {
            roles,
            clients,
            partition: instance.partition,
            account_id: instance.account_id.clone(),
            started: timefmt::floor(SystemTime::now(), Duration::from_secs(1)),
        }
    }

    fn info(&self, role: &str) -> String {
        awsjson::object(&[
            ("Code", "Success".into()),
            ("LastUpdated", timefmt::iso_seconds(self.started).into()),
            (
                "InstanceProfileArn",
                format!(
                    "arn:{}:iam::{}:instance-profile/{role}",
                    self.partition, self.account_id
                )
                .into(),
            ),
            ("InstanceProfileId", instance_profile_id(role).into()),
        ])
    }
}

/// `AIPA` and 17 characters, stable for a role name.
fn instance_profile_id(role: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(role.as_bytes());
    let tail: String = digest
        .iter()
        .take(17)
        .map(|b| ALPHABET[(*b & 31) as usize] as char)
        .collect();
    format!("AIPA{tail}")
}

/// `[[clients]]`: which role each client address may see. Empty: every
/// client sees the active role. Shared by `iam/` and the container endpoint,
/// so both fail closed the same way.
#[derive(Clone, Default)]
pub struct ClientRoles(Vec<(Cidr, String)>);

impl ClientRoles {
    /// Entries as checked by the configuration.
    pub fn new(entries: Vec<(Cidr, String)>) -> Self {
        Self(entries)
    }

    /// The role `peer` may see: its first matching entry's, or the active
    /// role when there are no entries; `None` (nothing) for an unlisted client.
    pub fn role_for(&self, peer: IpAddr, roles: &Roles) -> Option<String> {
        if self.0.is_empty() {
            return Some(roles.active());
        }
        self.entry_for(peer).map(str::to_owned)
    }

    /// Whether `peer` may read `alias` by name: any role without entries,
    /// else only its own.
    pub fn allows(&self, peer: IpAddr, alias: &str) -> bool {
        self.0.is_empty() || self.entry_for(peer) == Some(alias)
    }

    /// The role of the first entry `peer` matches.
    fn entry_for(&self, peer: IpAddr) -> Option<&str> {
        self.0
            .iter()
            .find(|(cidr, _)| cidr.contains(peer))
            .map(|(_, role)| role.as_str())
    }
}

#[async_trait]
impl Provider for IamProvider {
    async fn resolve(&self, request: &Request<'_>) -> Resolved {
        let peer = request.peer.ip();
        let Some(visible) = self.clients.role_for(peer, &self.roles) else {
            return Resolved::NotFound;
        };
        match request.path {
            "" => Resolved::Dir(Bytes::from_static(b"info\nsecurity-credentials/")),
            "info" => Resolved::text(self.info(&visible)),
            "security-credentials" => Resolved::Dir(Bytes::from(visible)),
            path => match path.strip_prefix("security-credentials/") {
                // With [[clients]], a client reads its own role's path only.
                Some(alias) if self.clients.allows(peer, alias) => match self.roles.get(alias) {
                    Some(role) => Resolved::text(role.document().await),
                    None => Resolved::NotFound,
                },
                _ => Resolved::NotFound,
            },
        }
    }
}

/// An address block: `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Debug, Clone, Copy)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("\"{text}\" is not an address block like 10.1.0.0/16 or 127.0.0.2");
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix.parse::<u8>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let network: IpAddr = address.parse().map_err(|_| bad())?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(bits);
        if prefix > bits {
            return Err(bad());
        }
        Ok(Self { network, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let mask = |bits: u32| {
            if self.prefix == 0 {
                0
            } else {
                u128::MAX << (bits - u32::from(self.prefix))
            }
        };
        match (self.network, address) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask(32) as u32;
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask(128);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            (IpAddr::V4(net), IpAddr::V6(ip)) => ip.to_ipv4_mapped().is_some_and(|ip| {
                let mask = mask(32) as u32;
                u32::from(net) & mask == u32::from(ip) & mask
            }),
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks_match_by_prefix() {
        let block = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(block.contains("10.1.255.7".parse().unwrap()));
        assert!(!block.contains("10.2.0.1".parse().unwrap()));
        assert!(block.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(Cidr::parse("127.0.0.2")
            .unwrap()
            .contains("127.0.0.2".parse().unwrap()));
        assert!(!Cidr::parse("127.0.0.2")
            .unwrap()
            .contains("127.0.0.3".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8")
            .unwrap()
            .contains("fd12::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
