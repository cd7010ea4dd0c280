//! The metadata tree as GCE lays it out, built from a `Machine` for each
//! request (it is small). Directories list their entries in byte order, as
//! GCE does.

use crate::machine::{Account, Machine};

pub enum Node {
    Text(String),
    /// GCE gives some values as JSON numbers (`id`, `numeric-project-id`).
    Number(u64),
    /// Several values in one leaf: a line each as text, an array as JSON.
    /// `json` when GCE answers it as JSON by default (only `tags`).
    List {
        items: Vec<String>,
        json: bool,
    },
    /// Entries in listing order. `fixed`: names are GCE's own and are
    /// camelCased in recursive JSON; otherwise (attribute keys, account
    /// emails) they are kept verbatim.
    Dir {
        entries: Vec<(String, Node)>,
        fixed: bool,
    },
    /// A directory of `0/`, `1/`, …: an array in recursive JSON.
    Indexed(Vec<Node>),
    /// A service account's `token` and `identity`: listed, computed per
    /// request, and left out of recursive answers (as GCE does).
    Token(usize),
    Identity(usize),
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self, Node::Dir { .. } | Node::Indexed(_))
    }

    pub fn is_endpoint(&self) -> bool {
        matches!(self, Node::Token(_) | Node::Identity(_))
    }

    /// The node at these path segments.
    pub fn find(&self, segments: &[&str]) -> Option<&Node> {
        let Some((first, rest)) = segments.split_first() else {
            return Some(self);
        };
        let child = match self {
            Node::Dir { entries, .. } => entries.iter().find(|(n, _)| n == first).map(|e| &e.1),
            Node::Indexed(items) => index(first).and_then(|i| items.get(i)),
            _ => None,
        };
        child?.find(rest)
    }
}

/// A list index as GCE writes it: `01` or `+1` is not `1`.
fn index(segment: &str) -> Option<usize> {
    let i: usize = segment.parse().ok()?;
    (i.to_string() == segment).then_some(i)
}

fn dir(mut entries: Vec<(&str, Node)>) -> Node {
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let entries = entries
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
    Node::Dir {
        entries,
        fixed: true,
    }
}

/// A directory of user-chosen names (already in order: a `BTreeMap`'s keys).
fn free_dir(entries: Vec<(String, Node)>) -> Node {
    Node::Dir {
        entries,
        fixed: false,
    }
}

fn text(value: &str) -> Node {
    Node::Text(value.to_string())
}

fn list(items: &[String]) -> Node {
    Node::List {
        items: items.to_vec(),
        json: false,
    }
}

fn attributes(map: &std::collections::BTreeMap<String, String>) -> Node {
    free_dir(map.iter().map(|(k, v)| (k.clone(), text(v))).collect())
}

/// `/`: the whole tree.
pub fn build(m: &Machine) -> Node {
    let v1 = dir(vec![
        ("instance", instance(m)),
        ("project", project(m)),
        (
            "universe",
            dir(vec![("universe-domain", text(&m.universe_domain))]),
        ),
    ]);
    dir(vec![("computeMetadata", dir(vec![("v1", v1)]))])
}

fn project(m: &Machine) -> Node {
    dir(vec![
        ("attributes", attributes(&m.project_attributes)),
        ("numeric-project-id", Node::Number(m.numeric_project_id)),
        ("project-id", text(&m.project_id)),
    ])
}

fn instance(m: &Machine) -> Node {
    let project = m.numeric_project_id;
    let licenses = m.licenses.iter().map(|id| dir(vec![("id", text(id))]));
    dir(vec![
        ("attributes", attributes(&m.attributes)),
        ("cpu-platform", text(&m.cpu_platform)),
        ("description", text(&m.description)),
        ("disks", Node::Indexed(vec![boot_disk()])),
        ("hostname", text(&m.hostname)),
        ("id", Node::Number(m.id)),
        ("image", text(&m.image)),
        ("licenses", Node::Indexed(licenses.collect())),
        (
            "machine-type",
            Node::Text(format!(
                "projects/{project}/machineTypes/{}",
                m.machine_type
            )),
        ),
        ("maintenance-event", text(m.maintenance_event)),
        ("name", text(&m.name)),
        ("network-interfaces", Node::Indexed(vec![nic(m)])),
        (
            "preempted",
            text(if m.preempted { "TRUE" } else { "FALSE" }),
        ),
        ("scheduling", scheduling()),
        ("service-accounts", service_accounts(m)),
        (
            "tags",
            Node::List {
                items: m.tags.clone(),
                json: true,
            },
        ),
        ("virtual-clock", dir(vec![("drift-token", text("0"))])),
        (
            "zone",
            Node::Text(format!("projects/{project}/zones/{}", m.zone)),
        ),
    ])
}

fn boot_disk() -> Node {
    dir(vec![
        ("device-name", text("persistent-disk-0")),
        ("index", Node::Number(0)),
        ("interface", text("SCSI")),
        ("mode", text("READ_WRITE")),
        ("type", text("PERSISTENT")),
    ])
}

fn scheduling() -> Node {
    dir(vec![
        ("automatic-restart", text("TRUE")),
        ("on-host-maintenance", text("MIGRATE")),
        ("preemptible", text("FALSE")),
    ])
}

fn nic(m: &Machine) -> Node {
    let nic = &m.nic;
    let access = nic.external_ip.iter().map(|ip| {
        dir(vec![
            ("external-ip", text(ip)),
            ("type", text("ONE_TO_ONE_NAT")),
        ])
    });
    dir(vec![
        ("access-configs", Node::Indexed(access.collect())),
        ("dns-servers", list(&["169.254.169.254".to_string()])),
        ("forwarded-ips", Node::Indexed(Vec::new())),
        ("gateway", text(&nic.gateway)),
        ("ip", text(&nic.ip)),
        ("ip-aliases", Node::Indexed(Vec::new())),
        ("mac", text(&nic.mac)),
        ("mtu", Node::Number(1460)),
        ("network", text(&nic.network)),
        ("subnetmask", text(&nic.subnetmask)),
        ("target-instance-ips", Node::Indexed(Vec::new())),
    ])
}

/// One directory per email and per alias (`default/`), each the account's.
fn service_accounts(m: &Machine) -> Node {
    let mut entries: Vec<(String, Node)> = Vec::new();
    for (i, a) in m.accounts.iter().enumerate() {
        for name in std::iter::once(&a.email).chain(&a.aliases) {
            entries.push((name.clone(), account(i, a)));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    free_dir(entries)
}

fn account(i: usize, a: &Account) -> Node {
    dir(vec![
        ("aliases", list(&a.aliases)),
        ("email", text(&a.email)),
        ("identity", Node::Identity(i)),
        ("scopes", list(&a.scopes)),
        ("token", Node::Token(i)),
    ])
}
