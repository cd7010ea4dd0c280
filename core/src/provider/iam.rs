//! `meta-data/iam`: `info` and `security-credentials/ROLE`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{Provider, Request, Resolved};
use crate::awsjson;
use crate::config::{Cidr, ClientRole};
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
    /// From `[[clients]]`; a bad block names its key.
    pub fn from_config(clients: &[ClientRole]) -> Result<Self, (String, String)> {
        let entry = |(i, client): (usize, &ClientRole)| {
            Cidr::parse(&client.cidr)
                .map(|cidr| (cidr, client.role.clone()))
                .map_err(|reason| (format!("clients.{i}.cidr"), reason))
        };
        clients
            .iter()
            .enumerate()
            .map(entry)
            .collect::<Result<_, _>>()
            .map(Self)
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
