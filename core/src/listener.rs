//! Listeners: one tokio task per address, hyper HTTP/1 per connection, and a
//! graceful stop that lets in-flight requests finish.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::encoder::Body;

/// Whatever answers requests on a listener (the metadata service, the admin API).
/// The answer owns its handler, so hyper can hold it without borrowing.
pub trait Handler: Send + Sync + 'static {
    /// `peer` is the client's end of the connection, `local` ours.
    fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send + 'static;

    /// A request hyper refused before it reached [`Handler::handle`] (a
    /// malformed or oversized head, answered 400 or 431 by hyper).
    fn rejected(&self, _peer: SocketAddr, _error: &hyper::Error) {}

    /// Written to a connection over the caps before it is closed: a 503,
    /// which metadata clients retry, in the service's own dress (only
    /// EC2's says `Server: EC2ws`; another cloud's has its headers).
    fn over_capacity(&self) -> bytes::Bytes {
        bytes::Bytes::from_static(OVER_CAPACITY)
    }
}

/// One of at most `max` at once (requests held unanswered, parked
/// long-polls), counted in a shared counter and given back when dropped,
/// however the request ends: hyper drops a request's future when its
/// client goes.
pub struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Counted<'a> {
    /// A place, or `None` when `max` are taken.
    pub fn take(count: &'a std::sync::atomic::AtomicUsize, max: usize) -> Option<Self> {
        let taken = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < max).then_some(n + 1)
        });
        taken.ok().map(|_| Self(count))
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Holds a request that gets no answer (a fault rule's hang) for `hold`,
/// or until `stopping` ends: not at all while `max` are held already
/// (counted in `count`), so that no client can pin the listener's
/// connections with them. hyper drops this when the client closes its end
/// after a whole request, so a client that gives up is let go, as a lost
/// answer's would be.
pub async fn hold_unanswered(
    count: &std::sync::atomic::AtomicUsize,
    max: usize,
    hold: Duration,
    stopping: impl Future<Output = ()>,
) {
    let Some(_held) = Counted::take(count, max) else {
        return;
    };
    tokio::select! {
        () = tokio::time::sleep(hold) => {}
        () = stopping => {}
    }
}

/// The most of a request body any listener reads (admin API calls, a
/// plugin's POST on another cloud's listener).
pub const MAX_BODY: usize = 64 * 1024;

/// Why a request body was not read: its status and the reason.
pub struct BodyRefused(pub http::StatusCode, pub String);

/// A request body, at most [`MAX_BODY`] bytes, sent within `limit`
/// (`server.client_timeout`: the idle watch does not cover a body, which
/// arrives while the request is being answered).
pub async fn read_body(body: Incoming, limit: Duration) -> Result<bytes::Bytes, BodyRefused> {
    use http_body_util::BodyExt;
    let read = http_body_util::Limited::new(body, MAX_BODY).collect();
    let Ok(read) = tokio::time::timeout(limit, read).await else {
        let millis = limit.as_millis();
        let reason =
            format!("request body not received within {millis} ms (server.client_timeout)");
        return Err(BodyRefused(http::StatusCode::REQUEST_TIMEOUT, reason));
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            let reason = format!("request body over {MAX_BODY} bytes");
            Err(BodyRefused(http::StatusCode::PAYLOAD_TOO_LARGE, reason))
        }
        // Cut short by its client.
        Err(_) => {
            let reason = "could not read the request body".to_owned();
            Err(BodyRefused(http::StatusCode::BAD_REQUEST, reason))
        }
    }
}

/// A connection over the caps, refused without a server's dress.
pub const OVER_CAPACITY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Smallest buffer hyper allows; bounds the request head we accept.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Binds `addr`, or says which listener could not and where to move it:
/// `what` names the listener and its setting.
pub async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|error| {
        format!("cannot listen on {addr} for {what}: {error}; choose another address there")
    })
}

/// What a listener allows its clients.
#[derive(Clone, Copy)]
pub struct Limits {
    /// Open connections at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Open connections from one client address at once; more are answered
    /// 503 and closed, so one client cannot take every slot.
    pub max_connections_per_client: usize,
    /// To send a request head, counted from the end of the previous answer
    /// on a keep-alive connection, so idle connections close too.
    pub client_timeout: Duration,
}

impl Limits {
    pub fn of(server: &crate::config::ServerConfig) -> Self {
        Self {
            max_connections: server.max_connections,
            max_connections_per_client: server.max_connections_per_client,
            client_timeout: server.client_timeout.0,
        }
    }
}

/// Open connections per client address.
struct PerClient {
    limit: usize,
    open: parking_lot::Mutex<HashMap<IpAddr, usize>>,
}

/// Who a connection counts against: its IPv4 address (also when it arrives
/// IPv4-mapped), or its IPv6 /64, since one host holds a whole /64.
pub fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) if !v6.is_loopback() => {
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64)))
        }
        other => other,
    }
}

/// Whether `ip` is one of this host's own addresses, in ersatz's network
/// namespace: an address of one of its interfaces, 127.0.0.1 and ::1
/// included. A client there is a process on the host, however it addressed
/// ersatz (the link-local address, an interface's, or redirected by the
/// firewall). The rest of 127.0.0.0/8 is on no interface: tests use it to
/// stand for other hosts. IPv6 link-local addresses (`fe80::/10`) never
/// count: one is unique only on its own link, and a pod may take the one
/// the host has on another.
pub fn is_host_address(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip == IpAddr::from([127, 0, 0, 1])
        || ip == IpAddr::from(Ipv6Addr::LOCALHOST)
        || host_addresses().addresses.contains(&ip)
}

/// Whether the client at `peer`, connected to `local`, is a process on this
/// host: it spoke from the very address it reached, or from another of the
/// host's (one of them already read, the other not yet, say).
pub fn client_on_host(peer: IpAddr, local: IpAddr) -> bool {
    peer.to_canonical() == local.to_canonical() || is_host_address(peer)
}

/// The interfaces' addresses as last read, and when.
struct HostAddresses {
    read_at: std::time::Instant,
    addresses: std::collections::HashSet<IpAddr>,
}

static HOST_ADDRESSES: arc_swap::ArcSwapOption<HostAddresses> =
    arc_swap::ArcSwapOption::const_empty();
static READING_HOST_ADDRESSES: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The host's addresses, read again at most once a second (interfaces come
/// and go) by one caller at a time, while the others use the last reading:
/// no caller waits on a lock.
fn host_addresses() -> Arc<HostAddresses> {
    let cell = &HOST_ADDRESSES;
    let last = cell.load_full();
    let fresh = last
        .as_ref()
        .is_some_and(|last| last.read_at.elapsed() < Duration::from_secs(1));
    if !fresh
        && READING_HOST_ADDRESSES
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    {
        // A failed read (out of descriptors, say) keeps the last one.
        if let Some(addresses) = interface_addresses() {
            cell.store(Some(Arc::new(HostAddresses {
                read_at: std::time::Instant::now(),
                addresses,
            })));
        }
        READING_HOST_ADDRESSES.store(false, Ordering::Release);
        if let Some(read) = cell.load_full() {
            return read;
        }
    }
    last.unwrap_or_else(|| {
        Arc::new(HostAddresses {
            read_at: std::time::Instant::now(),
            addresses: Default::default(),
        })
    })
}

/// Every IPv4 and IPv6 address of this namespace's interfaces but IPv6
/// link-local ones; `None` when the system will not say.
fn interface_addresses() -> Option<std::collections::HashSet<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: on success getifaddrs points `list` at a list it allocated,
    // freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return None;
    }
    let mut addresses = std::collections::HashSet::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: a node of the list, valid until freeifaddrs.
        let entry = unsafe { &*cursor };
        if !entry.ifa_addr.is_null() {
            // SAFETY: `ifa_addr` points at a socket address of the family
            // it names, which decides the type it is read as.
            let address = unsafe {
                match i32::from((*entry.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*entry.ifa_addr.cast::<libc::sockaddr_in>();
                        Some(IpAddr::from(v4.sin_addr.s_addr.to_ne_bytes()))
                    }
                    libc::AF_INET6 => {
                        let v6 = &*entry.ifa_addr.cast::<libc::sockaddr_in6>();
                        Some(IpAddr::from(v6.sin6_addr.s6_addr))
                    }
                    _ => None,
                }
            };
            let link_local_v6 =
                |ip: &IpAddr| matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
            addresses.extend(address.filter(|ip| !link_local_v6(ip)));
        }
        cursor = entry.ifa_next;
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(list) };
    Some(addresses)
}

/// One open connection of a client; counted down when dropped.
struct ClientSlot {
    table: Arc<PerClient>,
    client: IpAddr,
}

impl PerClient {
    /// `None` when `client` holds its share already. The host's own
    /// processes arrive from its own addresses (loopback, the link-local
    /// address, an interface's): many clients behind one address, so they
    /// share `max_connections` alone. `Some(None)`: admitted without a count.
    fn admit(table: &Arc<Self>, peer: IpAddr) -> Option<Option<ClientSlot>> {
        if is_host_address(peer) {
            return Some(None);
        }
        let client = client_of(peer);
        let mut open = table.open.lock();
        let count = open.entry(client).or_insert(0);
        if *count >= table.limit {
            return None;
        }
        *count += 1;
        Some(Some(ClientSlot {
            table: table.clone(),
            client,
        }))
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock();
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// Refused connections, logged at most once per [`REFUSAL_LOG_EVERY`] with
/// their count: a flood must not become a flood of log lines.
struct Refusals {
    unlogged: u64,
    last_logged: Option<Instant>,
}

const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl Refusals {
    fn refused(&mut self, peer: SocketAddr, why: &'static str) {
        crate::metrics::METRICS
            .refused_connections
            .fetch_add(1, Ordering::Relaxed);
        self.unlogged += 1;
        if self
            .last_logged
            .is_some_and(|at| at.elapsed() < REFUSAL_LOG_EVERY)
        {
            return;
        }
        tracing::warn!(
            %peer,
            refused = self.unlogged,
            "connections refused ({why}) since the last such warning"
        );
        self.unlogged = 0;
        self.last_logged = Some(Instant::now());
    }
}

/// When a connection last had nothing to do: the client's time to send a
/// request head starts when the previous answer is ready (or at connect).
struct Activity {
    start: Instant,
    /// Milliseconds after `start` when the connection went idle, or `BUSY`.
    idle_since: AtomicU64,
}

const BUSY: u64 = u64::MAX;

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            idle_since: AtomicU64::new(0),
        }
    }

    fn busy(&self) {
        self.idle_since.store(BUSY, Ordering::Relaxed);
    }

    fn idle(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.idle_since.store(now, Ordering::Relaxed);
    }

    /// Returns once the connection has been idle for `limit`: a slow request
    /// head, or a keep-alive connection nobody uses. Wakes once per `limit`
    /// at most, instead of arming a timer for every request.
    async fn until_idle_for(&self, limit: Duration) {
        let mut deadline = self.start + limit;
        loop {
            tokio::time::sleep_until(deadline).await;
            match self.idle_since.load(Ordering::Relaxed) {
                // Answering is ersatz's time, not the client's.
                BUSY => deadline = Instant::now() + limit,
                since => {
                    let idle_deadline = self.start + Duration::from_millis(since) + limit;
                    if idle_deadline <= Instant::now() {
                        return;
                    }
                    deadline = idle_deadline;
                }
            }
        }
    }
}

type Answering = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// Marks a response that must not be sent: its connection is closed
/// without an answer instead (a fault rule's `drop` or `hang`).
#[derive(Clone, Copy, Debug)]
pub struct CloseUnanswered;

impl CloseUnanswered {
    /// A response that closes its connection unanswered.
    pub fn response() -> Response<Body> {
        let mut response = Response::new(Body::default());
        response.extensions_mut().insert(CloseUnanswered);
        response
    }
}

impl std::fmt::Display for CloseUnanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("closed without an answer")
    }
}

impl std::error::Error for CloseUnanswered {}

/// The response for hyper, or the error that makes hyper close the
/// connection without writing anything.
fn deliver(response: Response<Body>) -> Result<Response<Body>, CloseUnanswered> {
    match response.extensions().get::<CloseUnanswered>() {
        Some(close) => Err(*close),
        None => Ok(response),
    }
}

/// A handler's answer, with a panic turned into a 500 for that request
/// alone: the connection task survives, and the locks it held do not poison
/// (they are `parking_lot`'s), so the next request is served as usual.
struct CatchPanic<F>(F);

impl<F: Future<Output = Response<Body>>> Future for CatchPanic<F> {
    type Output = Response<Body>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning; the inner future is never moved out.
        let mut answer = unsafe { self.map_unchecked_mut(|this| &mut this.0) };
        match std::panic::catch_unwind(AssertUnwindSafe(|| answer.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(_) => {
                // The panic hook has printed where; say which request failed.
                tracing::error!("a request handler panicked; answered 500");
                crate::metrics::METRICS
                    .panics
                    .fetch_add(1, Ordering::Relaxed);
                Poll::Ready(crate::encoder::error(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                ))
            }
        }
    }
}

/// A request's answer, polled once as soon as hyper hands the request over.
/// Most answers are ready at once, and finishing then drops the request
/// before hyper reads ahead on the connection: while the request lives, its
/// headers share hyper's read buffer, and reading ahead must allocate a new
/// one (measured: 8% of the CPU of a static GET, with the timer above).
enum Answer {
    Ready(Option<Response<Body>>),
    Pending(Answering, Arc<Connection>),
}

impl Answer {
    fn start(mut answer: Answering, connection: Arc<Connection>) -> Self {
        // A no-op waker is enough: hyper polls a pending answer again, with
        // its own waker, before it waits for anything.
        match answer
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(response) => {
                connection.answered(&response);
                Answer::Ready(Some(response))
            }
            Poll::Pending => Answer::Pending(answer, connection),
        }
    }
}

/// What a connection's answers share: its idle clock and its socket's
/// packet lifetime.
struct Connection {
    activity: Activity,
    ttl: PacketTtl,
}

impl Connection {
    /// `response` is ready to be written: the connection is idle again,
    /// and the response's packets get the lifetime it asks for.
    fn answered(&self, response: &Response<Body>) {
        // A streamed answer keeps its connection busy until it ends.
        if !matches!(response.body(), Body::Lines(_)) {
            self.activity.idle();
        }
        self.ttl
            .set(response.extensions().get::<HopLimit>().map(|h| h.0));
    }
}

/// Asks that a response's packets leave with this IP TTL (IPv4) or hop
/// limit (IPv6), as EC2 sends its token answers (`imds.hop_limit`).
#[derive(Clone, Copy, Debug)]
pub struct HopLimit(pub u8);

/// The TTL of one connected socket's packets: the system's default, or a
/// hop limit while a response asks for one.
struct PacketTtl {
    /// Valid while the connection lives: hyper owns the socket, and the
    /// answers that use this are polled only by that connection.
    fd: std::os::fd::RawFd,
    ipv6: bool,
    /// 0: the system default.
    current: std::sync::atomic::AtomicU8,
}

impl PacketTtl {
    /// `local` is the stream's own address, already asked for.
    fn of(stream: &tokio::net::TcpStream, local: SocketAddr) -> Self {
        use std::os::fd::AsRawFd;
        Self {
            fd: stream.as_raw_fd(),
            ipv6: local.is_ipv6(),
            current: std::sync::atomic::AtomicU8::new(0),
        }
    }

    /// `Some(hops)` for a hop limit, `None` for the default; a system call
    /// only when it changes.
    fn set(&self, hops: Option<u8>) {
        let wanted = hops.unwrap_or(0);
        if self.current.swap(wanted, Ordering::Relaxed) == wanted {
            return;
        }
        // -1 is "the system's default" to both options.
        let value: libc::c_int = hops.map_or(-1, libc::c_int::from);
        let set = |level, option| {
            // SAFETY: `fd` is this connection's open socket (see `fd`), and
            // the value is a c_int of the size given.
            unsafe {
                libc::setsockopt(
                    self.fd,
                    level,
                    option,
                    (&value as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            }
        };
        // An IPv6 socket carries IPv4 clients too (mapped), so both apply.
        let failed = if self.ipv6 {
            // For IPv4-mapped clients; a v6-only socket refuses it, harmlessly.
            let _ = set(libc::IPPROTO_IP, libc::IP_TTL);
            set(libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS) != 0
        } else {
            set(libc::IPPROTO_IP, libc::IP_TTL) != 0
        };
        if failed {
            tracing::warn!(error = %std::io::Error::last_os_error(), "could not set the hop limit of a connection");
        }
    }
}

impl Future for Answer {
    type Output = Result<Response<Body>, CloseUnanswered>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Answer::Ready(response) => {
                Poll::Ready(deliver(response.take().expect("an answer is taken once")))
            }
            Answer::Pending(answer, connection) => answer.as_mut().poll(cx).map(|response| {
                connection.answered(&response);
                deliver(response)
            }),
        }
    }
}

/// Accepts until `stop` turns true; connections are tracked by `connections`.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    mut stop: watch::Receiver<bool>,
    connections: Arc<GracefulShutdown>,
    limits: Limits,
) {
    let Limits {
        max_connections,
        max_connections_per_client,
        client_timeout,
    } = limits;
    let capacity = Arc::new(Semaphore::new(max_connections));
    let per_client = Arc::new(PerClient {
        limit: max_connections_per_client,
        open: parking_lot::Mutex::default(),
    });
    let mut refusals = Refusals {
        unlogged: 0,
        last_logged: None,
    };
    // No hyper timer: its header-read timeout costs a timer registration per
    // request; `Activity` below watches for slow clients per connection.
    let mut builder = http1::Builder::new();
    builder.max_buf_size(MAX_HEAD_BYTES);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let admitted = match PerClient::admit(&per_client, peer.ip()) {
            None => Err("server.max_connections_per_client reached"),
            Some(slot) => match capacity.clone().try_acquire_owned() {
                Ok(permit) => Ok((slot, permit)),
                Err(_) => Err("server.max_connections reached"),
            },
        };
        let (slot, permit) = match admitted {
            Ok(admitted) => admitted,
            Err(why) => {
                refusals.refused(peer, why);
                let refusal = handler.over_capacity();
                tokio::spawn(async move {
                    let mut stream = stream;
                    let _ = stream.write_all(&refusal).await;
                });
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let rejections = handler.clone();
        let handler = handler.clone();
        let state = Arc::new(Connection {
            activity: Activity::new(),
            ttl: PacketTtl::of(&stream, local),
        });
        let watched = state.clone();
        let service = service_fn(move |request| {
            state.activity.busy();
            Answer::start(
                Box::pin(CatchPanic(handler.clone().handle(request, peer, local))),
                state.clone(),
            )
        });
        let connection = connections.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            tokio::select! {
                biased;
                ended = connection => if let Err(error) = ended {
                    if error.is_parse() || error.is_parse_too_large() {
                        rejections.rejected(peer, &error);
                    }
                    tracing::debug!(%peer, %error, "connection ended with an error");
                },
                () = watched.activity.until_idle_for(client_timeout) => {
                    tracing::debug!(%peer, "connection closed: no request within client_timeout");
                }
            }
            drop((permit, slot));
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_hosts_own_addresses_are_its_interfaces_and_loopback() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(is_host_address(ip("127.0.0.1")));
        assert!(!is_host_address(ip("127.0.0.2")));
        assert!(is_host_address(ip("::1")));
        assert!(is_host_address(ip("::ffff:127.0.0.1")));
        // Documentation addresses (RFC 5737, 3849) are on no interface.
        assert!(!is_host_address(ip("192.0.2.1")));
        assert!(!is_host_address(ip("2001:db8::1")));
        let addresses = interface_addresses().expect("getifaddrs answers");
        for address in &addresses {
            assert!(is_host_address(*address), "{address}");
        }
        // IPv6 link-local addresses never count, even the host's own.
        assert!(addresses
            .iter()
            .all(|a| !matches!(a, IpAddr::V6(v6) if v6.segments()[0] == 0xfe80)));
        assert!(!is_host_address(ip("fe80::1")));
    }

    use super::*;

    #[test]
    fn clients_are_counted_by_ipv4_address_or_ipv6_slash_64() {
        let client = |text: &str| client_of(text.parse().unwrap());
        assert_eq!(client("10.0.0.7"), client("::ffff:10.0.0.7"));
        assert_ne!(client("10.0.0.7"), client("10.0.0.8"));
        assert_eq!(client("2001:db8::1"), client("2001:db8::ffff:2"));
        assert_ne!(client("2001:db8::1"), client("2001:db8:0:1::1"));
        assert_eq!(client("::1"), "::1".parse::<IpAddr>().unwrap());
    }
}
