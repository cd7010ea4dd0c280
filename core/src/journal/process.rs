//! Which local process holds the other end of a loopback connection: its
//! socket's inode from the kernel (a `sock_diag` query for that one
//! connection), then the process whose `/proc/PID/fd` holds that socket.

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
/// The least time between two walks: a client opening connection after
/// connection must not make ersatz walk `/proc` for each (its later
/// connections may then go without a process in the audit).
const BETWEEN_WALKS: Duration = Duration::from_millis(250);

impl Owners {
    /// The process holding the socket `inode`, if one we may look into does.
    pub fn of(&mut self, inode: u64) -> Option<Process> {
        if let Some(process) = self.by_inode.get(&inode) {
            if self.walked.is_some_and(|at| at.elapsed() < FRESH) {
                return Some(process.clone());
            }
        }
        if self.walked.is_some_and(|at| at.elapsed() < BETWEEN_WALKS) {
            return None;
        }
        self.by_inode = walk_processes();
        self.walked = Some(Instant::now());
        self.by_inode.get(&inode).cloned()
    }
}

/// The inode of the socket connected from `client` to `server` (the
/// client's end), asked of the kernel for that one connection: reading
/// all of `/proc/net/tcp` costs milliseconds once it holds thousands of
/// closed connections.
pub fn socket_inode(client: SocketAddr, server: SocketAddr) -> Option<u64> {
    let (family, src, dst) = match (client.ip().to_canonical(), server.ip().to_canonical()) {
        (IpAddr::V4(c), IpAddr::V4(s)) => (libc::AF_INET, v4_words(c), v4_words(s)),
        (IpAddr::V6(c), IpAddr::V6(s)) => (libc::AF_INET6, c.octets(), s.octets()),
        _ => return None,
    };
    let mut request = [0u8; REQUEST_LEN];
    // nlmsghdr: length, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, sequence, port.
    request[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    request[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    // inet_diag_req_v2: family, protocol, extensions, pad, states.
    request[16] = family as u8;
    request[17] = libc::IPPROTO_TCP as u8;
    request[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
    // inet_diag_sockid: the socket's own end (source), then its peer.
    request[24..26].copy_from_slice(&client.port().to_be_bytes());
    request[26..28].copy_from_slice(&server.port().to_be_bytes());
    request[28..44].copy_from_slice(&src);
    request[44..60].copy_from_slice(&dst);
    // Interface: any; cookie: none (INET_DIAG_NOCOOKIE).
    request[64..72].copy_from_slice(&[0xff; 8]);
    let answer = netlink_exchange(&request)?;
    // nlmsghdr, then inet_diag_msg whose inode is at offset 68.
    let kind = u16::from_ne_bytes(answer.get(4..6)?.try_into().ok()?);
    if kind != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    let inode = u32::from_ne_bytes(answer.get(16 + 68..16 + 72)?.try_into().ok()?);
    (inode != 0).then_some(u64::from(inode))
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// nlmsghdr (16) + inet_diag_req_v2 (56).
const REQUEST_LEN: usize = 72;

/// An IPv4 address where sock_diag wants it: the first of four words.
fn v4_words(ip: std::net::Ipv4Addr) -> [u8; 16] {
    let mut words = [0u8; 16];
    words[..4].copy_from_slice(&ip.octets());
    words
}

/// One request to the kernel's sock_diag netlink socket, one answer.
fn netlink_exchange(request: &[u8]) -> Option<Vec<u8>> {
    // SAFETY: plain socket calls on a descriptor this function owns and
    // closes; buffers are valid for the lengths given.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        );
        if fd < 0 {
            return None;
        }
        // The kernel answers at once, even "no such socket"; this bounds a
        // surprise, since the caller is answering a request.
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
        let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
        kernel.nl_family = libc::AF_NETLINK as u16;
        let sent = libc::sendto(
            fd,
            request.as_ptr().cast(),
            request.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        );
        let mut answer = vec![0u8; 8192];
        let received = if sent == request.len() as isize {
            libc::recv(fd, answer.as_mut_ptr().cast(), answer.len(), 0)
        } else {
            -1
        };
        libc::close(fd);
        let received = usize::try_from(received).ok()?;
        answer.truncate(received);
        Some(answer)
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

    /// This test process connects to itself and finds itself.
    #[test]
    fn a_loopback_client_is_found_by_its_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let inode = socket_inode(peer, listener.local_addr().unwrap()).expect("the socket");
        let found = Owners::default().of(inode).expect("this process");
        assert_eq!(found.pid, std::process::id());
        assert!(!found.command.is_empty());
    }
}
