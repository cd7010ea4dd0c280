//! `meta-data/iam`: `info` and `security-credentials/ROLE`.

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
    partition: &'static str,
    account_id: String,
    started: SystemTime,
}

impl IamProvider {
    pub fn new(roles: Arc<Roles>, instance: &Instance) -> Self {
        Self {
            roles,
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

#[async_trait]
impl Provider for IamProvider {
    async fn resolve(&self, request: &Request<'_>) -> Resolved {
        match request.path {
            "" => Resolved::Dir(Bytes::from_static(b"info\nsecurity-credentials/")),
            "info" => Resolved::text(self.info(&self.roles.active())),
            "security-credentials" => Resolved::Dir(Bytes::from(self.roles.active())),
            path => match path
                .strip_prefix("security-credentials/")
                .and_then(|alias| self.roles.get(alias))
            {
                Some(role) => Resolved::text(role.document().await),
                None => Resolved::NotFound,
            },
        }
    }
}
