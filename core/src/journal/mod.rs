//! The request journal and the IMDSv1 audit.
//!
//! The journal keeps the last `journal.capacity` metadata requests: when,
//! from where, what, which IMDS version, how it was answered, the role
//! served and the fault applied. Never a token or a secret: only the path
//! (the query is left out) and names. The audit counts, per client, the
//! requests made without a token, and the paths; for loopback clients it
//! also names the process (see [`process`]).

mod process;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use http::Method;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

pub use process::Process;

/// How a request asked: with a token (IMDSv2, and the token PUT itself),
/// without one (IMDSv1), or at the container-credentials endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
    Container,
    /// On another cloud's listener (`[[listeners]]`).
    Flavour,
}

/// One request, as the journal keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Counts up from 1 over the server's life: `after=ID` follows on.
    pub id: u64,
    #[serde(serialize_with = "iso_millis")]
    pub time: SystemTime,
    pub client: SocketAddr,
    #[serde(serialize_with = "method_name")]
    pub method: Method,
    pub path: String,
    pub version: Version,
    /// `None`: the connection was closed without an answer (a fault).
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

/// A request as the handler knows it when it has answered.
pub struct Answered<'a> {
    pub client: SocketAddr,
    pub method: &'a Method,
    pub path: &'a str,
    pub version: Version,
    /// `None`: closed without an answer.
    pub status: Option<u16>,
    pub role: Option<String>,
    pub fault: Option<String>,
}

impl Answered<'_> {
    /// Writes this request into `entry`, keeping its path's buffer (unless
    /// a long path made it large).
    fn fill(self, entry: &mut Entry, id: u64, time: SystemTime) {
        entry.id = id;
        entry.time = time;
        entry.client = self.client;
        entry.method.clone_from(self.method);
        if entry.path.capacity() > 2 * MAX_PATH {
            entry.path = String::new();
        }
        entry.path.clear();
        entry.path.push_str(kept_path(self.path));
        entry.version = self.version;
        entry.status = self.status;
        entry.role = self.role;
        entry.fault = self.fault;
    }
}

impl Entry {
    fn empty() -> Self {
        Entry {
            id: 0,
            time: SystemTime::UNIX_EPOCH,
            client: SocketAddr::from(([0, 0, 0, 0], 0)),
            method: Method::GET,
            path: String::new(),
            version: Version::V1,
            status: None,
            role: None,
            fault: None,
        }
    }
}

fn iso_millis<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::timefmt::iso_millis(*time))
}

fn method_name<S: serde::Serializer>(method: &Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(method.as_str())
}

/// Which entries a reader wants.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub path_prefix: Option<String>,
    pub client: Option<crate::config::Cidr>,
    pub status: Option<u16>,
    pub since: Option<SystemTime>,
    pub after: Option<u64>,
    /// The newest this many.
    pub limit: Option<usize>,
}

impl Filter {
    pub fn admits(&self, entry: &Entry) -> bool {
        self.path_prefix
            .as_deref()
            .is_none_or(|p| entry.path.starts_with(p))
            && self.client.is_none_or(|c| c.contains(entry.client.ip()))
            && self.status.is_none_or(|s| Some(s) == entry.status)
            && self.since.is_none_or(|t| entry.time >= t)
            && self.after.is_none_or(|id| entry.id > id)
    }
}

/// The most of a path kept (request heads may be 16 KiB): IMDS paths are
/// far shorter, and a longer one is cut.
const MAX_PATH: usize = 256;

/// `path`, or its first [`MAX_PATH`] bytes (at a character boundary).
fn kept_path(path: &str) -> &str {
    if path.len() <= MAX_PATH {
        return path;
    }
    let mut end = MAX_PATH;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// The most clients the audit tracks, paths per client and processes per
/// client: enough for a fleet, bounded against a flood of spoofed sources.
const AUDIT_CLIENTS: usize = 4096;
const AUDIT_PATHS: usize = 256;
const AUDIT_PROCESSES: usize = 32;
/// Sockets waiting for their process to be found; past this, new ones are
/// not looked up.
const PENDING_LOOKUPS: usize = 256;

pub struct Journal {
    capacity: usize,
    recent: parking_lot::Mutex<Recent>,
    follow: broadcast::Sender<Arc<Entry>>,
    /// Followers now: without any, nothing is sent (a sender's own count
    /// takes a lock).
    followers: AtomicUsize,
    stopping: watch::Sender<bool>,
    audit: parking_lot::Mutex<BTreeMap<IpAddr, AuditRow>>,
    /// Peers on this host already looked up, and the walk of `/proc` that
    /// finds them (one at a time: concurrent lookups share one walk).
    looked_up: parking_lot::Mutex<HashMap<SocketAddr, ()>>,
    owners: parking_lot::Mutex<process::Owners>,
    /// Sockets whose process is still to be found, for the one thread
    /// that finds them (started on first use).
    lookups: OnceLock<SyncSender<(SocketAddr, u64)>>,
}

/// One `?follow` stream: the entries to come, the server's stop, and its
/// place in the count of followers.
pub struct Follower {
    pub new: broadcast::Receiver<Arc<Entry>>,
    pub stopping: watch::Receiver<bool>,
    journal: Arc<Journal>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.journal.followers.fetch_sub(1, Relaxed);
    }
}

struct Recent {
    entries: VecDeque<Arc<Entry>>,
    next_id: u64,
}

#[derive(Default, Serialize)]
struct AuditRow {
    v1_requests: u64,
    paths: BTreeMap<String, u64>,
    /// Paths beyond [`AUDIT_PATHS`] are counted here.
    other_paths: u64,
    processes: Vec<Process>,
}

impl Journal {
    /// `capacity` 0 keeps nothing (the audit still counts).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            recent: parking_lot::Mutex::new(Recent {
                entries: VecDeque::with_capacity(capacity.min(4096)),
                next_id: 1,
            }),
            follow: broadcast::channel(1024).0,
            followers: AtomicUsize::new(0),
            stopping: watch::channel(false).0,
            audit: parking_lot::Mutex::default(),
            looked_up: parking_lot::Mutex::default(),
            owners: parking_lot::Mutex::default(),
            lookups: OnceLock::new(),
        }
    }

    /// Records one answered request. Once the journal is full, the oldest
    /// entry's memory (its path's too) takes the new one, unless a reader
    /// still holds it: no allocation per request.
    pub fn record(&self, answered: Answered<'_>) {
        if answered.version == Version::V1 {
            self.audit_v1(&answered);
        }
        if self.capacity == 0 {
            return;
        }
        let time = SystemTime::now();
        let entry = {
            let mut recent = self.recent.lock();
            let id = recent.next_id;
            recent.next_id += 1;
            let oldest = (recent.entries.len() == self.capacity)
                .then(|| recent.entries.pop_front())
                .flatten();
            let mut entry = match oldest {
                Some(oldest) if Arc::strong_count(&oldest) == 1 => oldest,
                _ => Arc::new(Entry::empty()),
            };
            match Arc::get_mut(&mut entry) {
                Some(slot) => answered.fill(slot, id, time),
                // Not reachable (a new or unshared entry), but no panic here.
                None => {
                    let mut fresh = Entry::empty();
                    answered.fill(&mut fresh, id, time);
                    entry = Arc::new(fresh);
                }
            }
            recent.entries.push_back(entry.clone());
            entry
        };
        if self.followers.load(Relaxed) > 0 {
            let _ = self.follow.send(entry);
        }
    }

    fn audit_v1(&self, entry: &Answered<'_>) {
        let mut audit = self.audit.lock();
        // By address, or by /64 for IPv6, as connections are counted: one
        // host cannot fill the table with addresses of its own.
        let client = crate::listener::client_of(entry.client.ip());
        if !audit.contains_key(&client) && audit.len() >= AUDIT_CLIENTS {
            return;
        }
        let row = audit.entry(client).or_default();
        row.v1_requests += 1;
        let known = row.paths.len();
        let path = kept_path(entry.path);
        match row.paths.get_mut(path) {
            Some(count) => *count += 1,
            None if known < AUDIT_PATHS => {
                row.paths.insert(path.to_owned(), 1);
            }
            None => row.other_paths += 1,
        }
    }

    /// For a request without a token from a client on this host: finds the
    /// process behind it, once per connection. The socket is found at once,
    /// while the connection is surely open (a query of microseconds); its
    /// process later, off the request's path, by a walk of `/proc`.
    pub fn note_v1_process(self: &Arc<Self>, peer: SocketAddr, local: SocketAddr) {
        if !crate::listener::client_on_host(peer.ip(), local.ip()) {
            return;
        }
        {
            let mut looked_up = self.looked_up.lock();
            if looked_up.len() >= AUDIT_CLIENTS * 4 {
                looked_up.clear();
            }
            if looked_up.insert(peer, ()).is_some() {
                return;
            }
        }
        let Some(inode) = process::socket_inode(peer, local) else {
            return;
        };
        // When the queue is full this connection's process goes unnamed:
        // a client opening connections by the thousand must not make ersatz
        // start a thread, or queue a walk of /proc, for each.
        let _ = self.owner_lookups().try_send((peer, inode));
    }

    /// The queue of the one thread that finds sockets' processes; it ends
    /// when the journal goes.
    fn owner_lookups(self: &Arc<Self>) -> &SyncSender<(SocketAddr, u64)> {
        self.lookups.get_or_init(|| {
            let (queue, pending) = std::sync::mpsc::sync_channel(PENDING_LOOKUPS);
            let journal = Arc::downgrade(self);
            let started = std::thread::Builder::new()
                .name("ersatz-audit".into())
                .spawn(move || {
                    for (peer, inode) in pending {
                        let Some(journal) = journal.upgrade() else {
                            return;
                        };
                        journal.note_process(peer, inode);
                    }
                });
            if let Err(error) = started {
                tracing::warn!(%error, "no thread for the audit: processes will not be named");
            }
            queue
        })
    }

    fn note_process(&self, peer: SocketAddr, inode: u64) {
        let Some(process) = self.owners.lock().of(inode) else {
            return;
        };
        let mut audit = self.audit.lock();
        let client = crate::listener::client_of(peer.ip());
        if !audit.contains_key(&client) && audit.len() >= AUDIT_CLIENTS {
            return;
        }
        let row = audit.entry(client).or_default();
        if !row.processes.contains(&process) && row.processes.len() < AUDIT_PROCESSES {
            row.processes.push(process);
        }
    }

    /// The entries `filter` admits, oldest first.
    pub fn read(&self, filter: &Filter) -> Vec<Arc<Entry>> {
        // Newest first, so that a limit ends the walk (requests wait on
        // this lock to be recorded).
        let recent = self.recent.lock();
        let mut admitted: Vec<Arc<Entry>> = recent
            .entries
            .iter()
            .rev()
            .filter(|e| filter.admits(e))
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        drop(recent);
        admitted.reverse();
        admitted
    }

    /// New entries as they are recorded, until the server stops.
    pub fn follow(self: &Arc<Self>) -> Follower {
        self.followers.fetch_add(1, Relaxed);
        Follower {
            new: self.follow.subscribe(),
            stopping: self.stopping.subscribe(),
            journal: self.clone(),
        }
    }

    /// The server is stopping: every follower's stream ends, and every held
    /// request lets go.
    pub fn stop(&self) {
        // Kept even with no receiver yet: a hold that starts later sees it.
        self.stopping.send_replace(true);
    }

    /// Resolves once the server has begun to stop.
    pub async fn until_stopping(&self) {
        let mut stopping = self.stopping.subscribe();
        let _ = stopping.wait_for(|stopping| *stopping).await;
    }

    /// Forgets every entry (ids keep counting up).
    pub fn clear(&self) -> usize {
        let mut recent = self.recent.lock();
        let cleared = recent.entries.len();
        recent.entries.clear();
        cleared
    }

    /// The IMDSv1 users: per client, its count, paths and processes.
    pub fn audit(&self) -> serde_json::Value {
        let audit = self.audit.lock();
        let clients: Vec<serde_json::Value> = audit
            .iter()
            .map(|(client, row)| {
                let mut shown = serde_json::to_value(row).unwrap_or_default();
                shown["client"] = client.to_string().into();
                shown
            })
            .collect();
        serde_json::json!({ "clients": clients })
    }

    /// Forgets the audit.
    pub fn clear_audit(&self) {
        self.audit.lock().clear();
        self.looked_up.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(path: &str, status: u16, version: Version) -> Answered<'_> {
        Answered {
            client: "10.0.0.7:4000".parse().unwrap(),
            method: &Method::GET,
            path,
            version,
            status: Some(status),
            role: None,
            fault: None,
        }
    }

    #[test]
    fn the_journal_keeps_the_newest_and_filters_them() {
        let journal = Journal::new(3);
        for (i, status) in [200, 404, 200, 401].into_iter().enumerate() {
            let path = format!("/latest/meta-data/{i}");
            journal.record(answered(&path, status, Version::V2));
        }
        let all = journal.read(&Filter::default());
        let ids: Vec<u64> = all.iter().map(|e| e.id).collect();
        assert_eq!(ids, [2, 3, 4], "the oldest went first");
        let ok = journal.read(&Filter {
            status: Some(200),
            ..Filter::default()
        });
        assert_eq!(ok.len(), 1);
        let newest = journal.read(&Filter {
            limit: Some(1),
            ..Filter::default()
        });
        assert_eq!(newest[0].id, 4);
        let after = journal.read(&Filter {
            after: Some(3),
            ..Filter::default()
        });
        assert_eq!(after.len(), 1);
        // The entries reused for new ones hold the new paths, not the old.
        assert_eq!(all[0].path, "/latest/meta-data/1");
        assert_eq!(all[2].path, "/latest/meta-data/3");
        // An entry a reader still holds is not reused under it.
        journal.record(answered("/latest/meta-data/4", 200, Version::V2));
        assert_eq!(all[0].path, "/latest/meta-data/1");
        assert_eq!(all[0].id, 2);
        assert_eq!(journal.clear(), 3);
        assert!(journal.read(&Filter::default()).is_empty());
    }

    #[test]
    fn long_paths_are_cut_in_the_journal_and_the_audit() {
        let journal = Journal::new(2);
        let long = format!("/latest/{}", "x".repeat(16 * 1024));
        journal.record(answered(&long, 404, Version::V1));
        assert_eq!(journal.read(&Filter::default())[0].path.len(), MAX_PATH);
        let audit = journal.audit();
        let paths = audit["clients"][0]["paths"].as_object().unwrap();
        assert!(paths.keys().all(|p| p.len() <= MAX_PATH));
    }

    #[test]
    fn the_audit_counts_requests_without_a_token_per_client_and_path() {
        let journal = Journal::new(0);
        journal.record(answered("/latest/meta-data/ami-id", 200, Version::V1));
        journal.record(answered("/latest/meta-data/ami-id", 200, Version::V1));
        journal.record(answered("/latest/meta-data/ami-id", 200, Version::V2));
        let audit = journal.audit();
        let client = &audit["clients"][0];
        assert_eq!(client["client"], "10.0.0.7");
        assert_eq!(client["v1_requests"], 2);
        assert_eq!(client["paths"]["/latest/meta-data/ami-id"], 2);
    }
}
