//! The static instance tree: every leaf and listing is computed once, at
//! start, from the instance facts and `[metadata]` overrides.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use http::HeaderValue;
use serde_json::Value;

use super::{Provider, Request, Resolved, OCTETS, TEXT};
use crate::awsjson;
use crate::instance::Instance;

enum Node {
    Leaf {
        body: Bytes,
        content_type: HeaderValue,
    },
    Dir(Bytes),
}

pub struct StaticTree {
    nodes: HashMap<Box<str>, Node>,
}

impl StaticTree {
    fn at(&self, path: &str) -> Resolved {
        match self.nodes.get(path) {
            Some(Node::Leaf { body, content_type }) => Resolved::Leaf {
                body: body.clone(),
                content_type: content_type.clone(),
            },
            Some(Node::Dir(listing)) => Resolved::Dir(listing.clone()),
            None => Resolved::NotFound,
        }
    }
}

#[async_trait]
impl Provider for StaticTree {
    async fn resolve(&self, request: &Request<'_>) -> Resolved {
        self.at(request.path)
    }
}

impl super::Lookup for StaticTree {
    fn value(&self, path: &str) -> Option<super::TreeValue> {
        super::TreeValue::of(self.at(path))
    }
}

/// A `[metadata]` key that cannot be placed in the tree.
#[derive(Debug)]
pub struct OverrideError {
    pub key: String,
    pub reason: String,
}

/// Collects leaves by path, then derives every directory listing from them.
#[derive(Default)]
pub struct TreeBuilder {
    leaves: BTreeMap<String, (Bytes, HeaderValue)>,
    /// Paths served by other providers: listed as directories here.
    mounts: BTreeSet<String>,
    /// How a child appears in its parent's listing when not by its name
    /// (`public-keys/0` is listed as `0=key-name`).
    shown_as: HashMap<String, String>,
    /// Listings served exactly as given (a replayed snapshot's).
    listings: BTreeMap<String, String>,
}

impl TreeBuilder {
    pub fn leaf(&mut self, path: impl Into<String>, value: impl Into<Bytes>) -> &mut Self {
        self.leaves.insert(path.into(), (value.into(), TEXT));
        self
    }

    pub fn binary_leaf(&mut self, path: impl Into<String>, value: impl Into<Bytes>) -> &mut Self {
        self.leaves.insert(path.into(), (value.into(), OCTETS));
        self
    }

    pub fn mount(&mut self, path: impl Into<String>) -> &mut Self {
        self.mounts.insert(path.into());
        self
    }

    pub fn shown_as(&mut self, path: impl Into<String>, entry: impl Into<String>) -> &mut Self {
        self.shown_as.insert(path.into(), entry.into());
        self
    }

    /// Serves `path`'s listing exactly as `text`, whatever lies below it.
    pub fn listing(&mut self, path: impl Into<String>, text: impl Into<String>) -> &mut Self {
        self.listings.insert(path.into(), text.into());
        self
    }

    /// Applies `[metadata]`: each key is a path under `meta-data/`.
    pub fn overrides(
        &mut self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<&mut Self, OverrideError> {
        for (key, value) in overrides {
            let fail = |reason: &str| OverrideError {
                key: format!("metadata.\"{key}\""),
                reason: reason.to_owned(),
            };
            let path = key.trim_matches('/');
            if path.is_empty()
                || path
                    .split('/')
                    .any(|s| s.is_empty() || s == "." || s == "..")
            {
                return Err(fail(
                    "must be a path like tags/instance/Name (no empty, . or .. segments)",
                ));
            }
            let full = format!("meta-data/{path}");
            let prefix = format!("{full}/");
            if self.leaves.keys().any(|p| p.starts_with(&prefix)) {
                return Err(fail(
                    "is a directory in the instance tree; set its leaves instead",
                ));
            }
            if self
                .mounts
                .iter()
                .any(|m| m == &full || full.starts_with(&format!("{m}/")))
            {
                return Err(fail(
                    "is served by another provider (iam, a plugin); configure that instead",
                ));
            }
            self.leaf(full, value.clone());
        }
        Ok(self)
    }

    pub fn build(&self) -> Result<StaticTree, OverrideError> {
        // Every ancestor of a leaf or mount is a directory; record its children.
        let mut dirs: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
        dirs.insert(String::new(), BTreeMap::new());
        let paths = self
            .leaves
            .keys()
            .map(|p| (p, false))
            .chain(self.mounts.iter().map(|p| (p, true)));
        for (path, is_mount) in paths {
            let mut parent = String::new();
            let segments: Vec<&str> = path.split('/').collect();
            for (i, segment) in segments.iter().enumerate() {
                let last = i + 1 == segments.len();
                let is_dir = !last || is_mount;
                dirs.entry(parent.clone())
                    .or_default()
                    .entry((*segment).to_owned())
                    .and_modify(|d| *d |= is_dir)
                    .or_insert(is_dir);
                if !parent.is_empty() {
                    parent.push('/');
                }
                parent.push_str(segment);
            }
        }
        for path in self.listings.keys() {
            dirs.entry(path.clone()).or_default();
        }
        let mut nodes = HashMap::new();
        for (path, (body, content_type)) in &self.leaves {
            if dirs.contains_key(path) {
                return Err(OverrideError {
                    key: path.clone(),
                    reason: "is both a value and a directory".into(),
                });
            }
            nodes.insert(
                path.as_str().into(),
                Node::Leaf {
                    body: body.clone(),
                    content_type: content_type.clone(),
                },
            );
        }
        for (path, children) in &dirs {
            if let Some(listing) = self.listings.get(path) {
                nodes.insert(
                    path.as_str().into(),
                    Node::Dir(Bytes::from(listing.clone())),
                );
                continue;
            }
            let entries: Vec<String> = children
                .iter()
                .map(|(name, is_dir)| {
                    let child = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}/{name}")
                    };
                    if let Some(shown) = self.shown_as.get(&child) {
                        shown.clone()
                    } else if *is_dir && !path.is_empty() {
                        // The version-level listing (`/latest/`) names its
                        // children without a slash, as IMDS does.
                        format!("{name}/")
                    } else {
                        name.clone()
                    }
                })
                .collect();
            nodes.insert(
                path.as_str().into(),
                Node::Dir(Bytes::from(entries.join("\n"))),
            );
        }
        Ok(StaticTree { nodes })
    }
}

/// The tree of an instance: every category amazon-ec2-metadata-mock serves,
/// derived from one set of facts so that all paths agree.
pub fn instance_tree(instance: &Instance) -> TreeBuilder {
    let mut tree = TreeBuilder::default();
    let i = instance;
    let md = |leaf: &str| format!("meta-data/{leaf}");
    tree.leaf(md("ami-id"), i.ami_id.clone())
        .leaf(md("ami-launch-index"), i.ami_launch_index.to_string())
        .leaf(md("ami-manifest-path"), i.ami_manifest_path.clone())
        .leaf(md("block-device-mapping/ami"), "/dev/xvda")
        .leaf(md("block-device-mapping/root"), "/dev/xvda")
        .leaf(md("hostname"), i.local_hostname.clone())
        .leaf(md("instance-action"), "none")
        .leaf(md("instance-id"), i.id.clone())
        .leaf(md("instance-life-cycle"), i.life_cycle.clone())
        .leaf(md("instance-type"), i.instance_type.clone())
        .leaf(md("local-hostname"), i.local_hostname.clone())
        .leaf(md("local-ipv4"), i.local_ipv4.to_string())
        .leaf(md("mac"), i.mac.clone())
        .leaf(
            md("placement/availability-zone"),
            i.availability_zone.clone(),
        )
        .leaf(
            md("placement/availability-zone-id"),
            i.availability_zone_id.clone(),
        )
        .leaf(md("placement/region"), i.region.clone())
        .leaf(md("profile"), "default-hvm")
        .leaf(md("public-hostname"), i.public_hostname.clone())
        .leaf(md("public-ipv4"), i.public_ipv4.to_string())
        .leaf(md("reservation-id"), i.reservation_id.clone())
        .leaf(md("security-groups"), i.security_groups.join("\n"))
        .leaf(md("services/domain"), i.domain)
        .leaf(md("services/partition"), i.partition)
        .leaf(md("system"), "nitro");

    let nic = format!("meta-data/network/interfaces/macs/{}", i.mac);
    let nic_leaf = |leaf: &str| format!("{nic}/{leaf}");
    tree.leaf(nic_leaf("device-number"), "0")
        .leaf(nic_leaf("interface-id"), i.interface_id.clone())
        .leaf(
            nic_leaf(&format!("ipv4-associations/{}", i.public_ipv4)),
            i.local_ipv4.to_string(),
        )
        .leaf(nic_leaf("local-hostname"), i.local_hostname.clone())
        .leaf(nic_leaf("local-ipv4s"), i.local_ipv4.to_string())
        .leaf(nic_leaf("mac"), i.mac.clone())
        .leaf(nic_leaf("owner-id"), i.account_id.clone())
        .leaf(nic_leaf("public-hostname"), i.public_hostname.clone())
        .leaf(nic_leaf("public-ipv4s"), i.public_ipv4.to_string())
        .leaf(
            nic_leaf("security-group-ids"),
            i.security_group_ids.join("\n"),
        )
        .leaf(nic_leaf("security-groups"), i.security_groups.join("\n"))
        .leaf(nic_leaf("subnet-id"), i.subnet_id.clone())
        .leaf(nic_leaf("subnet-ipv4-cidr-block"), i.subnet_cidr.clone())
        .leaf(nic_leaf("vpc-id"), i.vpc_id.clone())
        .leaf(nic_leaf("vpc-ipv4-cidr-block"), i.vpc_cidr.clone())
        .leaf(nic_leaf("vpc-ipv4-cidr-blocks"), i.vpc_cidr.clone());

    tree.leaf(md("public-keys/0/openssh-key"), default_public_key())
        .shown_as(md("public-keys/0"), "0=ersatz-key");

    tree.leaf("dynamic/instance-identity/document", identity_document(i));
    if let Some(user_data) = &i.user_data {
        tree.binary_leaf("user-data", user_data.clone());
    }
    if i.tags_in_metadata {
        for (key, value) in &i.tags {
            tree.leaf(md(&format!("tags/instance/{key}")), value.clone());
        }
    }
    tree
}

/// The identity document, in AWS's field order and style.
pub fn identity_document(i: &Instance) -> String {
    awsjson::object(&[
        ("accountId", i.account_id.as_str().into()),
        ("architecture", i.architecture.as_str().into()),
        ("availabilityZone", i.availability_zone.as_str().into()),
        ("billingProducts", Value::Null),
        ("devpayProductCodes", Value::Null),
        ("marketplaceProductCodes", Value::Null),
        ("imageId", i.ami_id.as_str().into()),
        ("instanceId", i.id.as_str().into()),
        ("instanceType", i.instance_type.as_str().into()),
        ("kernelId", Value::Null),
        ("pendingTime", i.pending_time.as_str().into()),
        ("privateIp", i.local_ipv4.to_string().into()),
        ("ramdiskId", Value::Null),
        ("region", i.region.as_str().into()),
        ("version", "2017-09-30".into()),
    ])
}

/// A well-formed ed25519 public key whose private half nobody has.
fn default_public_key() -> String {
    let mut blob = Vec::new();
    for part in [&b"ssh-ed25519"[..], &[0x5a; 32][..]] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(blob);
    format!("ssh-ed25519 {encoded} ersatz-key")
}

/// The tree a snapshot describes: its leaves and listings as captured.
pub fn snapshot_tree(snapshot: &crate::snapshot::Snapshot) -> Result<TreeBuilder, String> {
    let mut tree = TreeBuilder::default();
    for (path, value) in &snapshot.leaves {
        tree.leaf(path.clone(), value.clone());
    }
    for (path, listing) in &snapshot.listings {
        tree.listing(path.clone(), listing.clone());
    }
    if let Some(user_data) = snapshot.user_data()? {
        tree.binary_leaf("user-data", user_data);
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(tree: &StaticTree, path: &str) -> String {
        match tree.nodes.get(path) {
            Some(Node::Dir(body)) => String::from_utf8(body.to_vec()).unwrap(),
            _ => panic!("{path} is not a directory"),
        }
    }

    #[test]
    fn listings_hold_direct_children_with_dirs_slashed() {
        let mut builder = TreeBuilder::default();
        builder
            .leaf("meta-data/a", "1")
            .leaf("meta-data/b/c", "2")
            .mount("meta-data/iam");
        let tree = builder.build().unwrap();
        assert_eq!(listing(&tree, ""), "meta-data");
        assert_eq!(listing(&tree, "meta-data"), "a\nb/\niam/");
        assert_eq!(listing(&tree, "meta-data/b"), "c");
    }

    #[test]
    fn overrides_replace_leaves_but_not_directories() {
        let mut builder = TreeBuilder::default();
        builder.leaf("meta-data/placement/region", "x");
        builder
            .overrides(&BTreeMap::from([(
                "tags/instance/Name".to_owned(),
                "web-1".to_owned(),
            )]))
            .unwrap();
        let err = builder
            .overrides(&BTreeMap::from([("placement".to_owned(), "x".to_owned())]))
            .err()
            .unwrap();
        assert_eq!(err.key, "metadata.\"placement\"");
        let tree = builder.build().unwrap();
        assert_eq!(listing(&tree, "meta-data/tags/instance"), "Name");
    }
}
