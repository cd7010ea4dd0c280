//! Which local process holds the other end of a loopback connection: its
//! socket's inode from `/proc/net/tcp` or `tcp6`, then the process whose
//! `/proc/PID/fd` holds that socket.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// A process, as the audit shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Process {
    pub pid: u32,
    /// Its arguments joined by spaces (`/proc/PID/cmdline`).
    pub command: String,
}

/// Socket inodes to their processes, from one walk of `/proc`, reused while
/// fresh: the clients that connect together are found by one walk.
#[derive(Default)]
pub struct Owners {
    walked: Option<Instant>,
    by_inode: HashMap<u64, Process>,
}

/// How long one walk of `/proc` answers for sockets it saw.
const FRESH: Duration = Duration::from_secs(2);

impl Owners {
    /// The process on the client side of `client` (a loopback peer), if
    /// it can be found (it may have closed the connection already, or be
    /// another user's process that we may not look into).
    pub fn of(&mut self, client: SocketAddr) -> Option<Process> {
        let inode = socket_inode(client)?;
        let fresh = self.walked.is_some_and(|at| at.elapsed() < FRESH);
        if !fresh || !self.by_inode.contains_key(&inode) {
            self.by_inode = walk_processes();
            self.walked = Some(Instant::now());
        }
        self.by_inode.get(&inode).cloned()
    }
}

/// The inode of the socket whose local end is `client`.
fn socket_inode(client: SocketAddr) -> Option<u64> {
    let table = match client.ip().to_canonical() {
        IpAddr::V4(_) => "/proc/net/tcp",
        IpAddr::V6(_) => "/proc/net/tcp6",
    };
    let text = std::fs::read_to_string(table).ok()?;
    let wanted = proc_address(client);
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, inode) = (fields.get(1)?, fields.get(9)?);
        if !local.eq_ignore_ascii_case(&wanted) {
            return None;
        }
        inode.parse().ok().filter(|inode| *inode != 0)
    })
}

/// `client` as `/proc/net/tcp*` writes addresses: the address as 32-bit
/// words in host byte order, in hex, then `:` and the port in hex.
fn proc_address(client: SocketAddr) -> String {
    let port = client.port();
    match client.ip().to_canonical() {
        IpAddr::V4(v4) => format!("{:08X}:{port:04X}", u32::from_ne_bytes(v4.octets())),
        IpAddr::V6(v6) => {
            let words: String = v6
                .octets()
                .chunks_exact(4)
                .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
                .collect();
            format!("{words}:{port:04X}")
        }
    }
}

/// Every socket held by a process we may look into, by inode.
fn walk_processes() -> HashMap<u64, Process> {
    let mut owners = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let mut command = None;
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = link
                .to_str()
                .and_then(|l| l.strip_prefix("socket:["))
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|l| l.parse::<u64>().ok())
            else {
                continue;
            };
            let command = command.get_or_insert_with(|| command_line(pid));
            owners.insert(
                inode,
                Process {
                    pid,
                    command: command.clone(),
                },
            );
        }
    }
    owners
}

/// `/proc/PID/cmdline`, its NUL-separated arguments joined by spaces, at
/// most 4 KiB of it.
fn command_line(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let shown = &raw[..raw.len().min(4096)];
    let words: Vec<String> = shown
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_the_kernel_writes_them() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let expected = if cfg!(target_endian = "little") {
            "0100007F:1F90"
        } else {
            "7F000001:1F90"
        };
        assert_eq!(proc_address(v4), expected);
    }

    /// This test process connects to itself and finds itself.
    #[test]
    fn a_loopback_client_is_found_by_its_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let found = Owners::default().of(peer).expect("this process");
        assert_eq!(found.pid, std::process::id());
        assert!(!found.command.is_empty());
    }
}
