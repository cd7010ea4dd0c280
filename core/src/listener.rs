//! Listeners: one tokio task per address, hyper HTTP/1 per connection, and a
//! graceful stop that lets in-flight requests finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
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
    fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send + 'static;
}

/// Smallest buffer hyper allows; bounds the request head we accept.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// `addr` (an IP, `localhost`, or a bracketed IPv6) and `port` as one address.
pub fn socket_addr(addr: &str, port: u16) -> Result<SocketAddr, String> {
    let host = addr.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    host.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, port))
        .map_err(|_| format!("\"{addr}\" is not an IP address"))
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|error| {
        std::io::Error::new(error.kind(), format!("cannot listen on {addr}: {error}"))
    })
}

/// Answer to a connection over the cap: IMDS clients retry a 503.
const OVER_CAPACITY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nServer: EC2ws\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// What a listener allows its clients.
#[derive(Clone, Copy)]
pub struct Limits {
    /// Open connections at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// To send a request head, counted from the end of the previous answer
    /// on a keep-alive connection, so idle connections close too.
    pub client_timeout: Duration,
}

impl Limits {
    pub fn of(server: &crate::config::ServerConfig) -> Self {
        Self {
            max_connections: server.max_connections,
            client_timeout: server.client_timeout.0,
        }
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

/// A request's answer, polled once as soon as hyper hands the request over.
/// Most answers are ready at once, and finishing then drops the request
/// before hyper reads ahead on the connection: while the request lives, its
/// headers share hyper's read buffer, and reading ahead must allocate a new
/// one (measured: 8% of the CPU of a static GET, with the timer above).
enum Answer {
    Ready(Option<Response<Body>>),
    Pending(Answering, Arc<Activity>),
}

impl Answer {
    fn start(mut answer: Answering, activity: Arc<Activity>) -> Self {
        // A no-op waker is enough: hyper polls a pending answer again, with
        // its own waker, before it waits for anything.
        match answer
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(response) => {
                activity.idle();
                Answer::Ready(Some(response))
            }
            Poll::Pending => Answer::Pending(answer, activity),
        }
    }
}

impl Future for Answer {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Answer::Ready(response) => {
                Poll::Ready(Ok(response.take().expect("an answer is taken once")))
            }
            Answer::Pending(answer, activity) => answer.as_mut().poll(cx).map(|response| {
                activity.idle();
                Ok(response)
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
        client_timeout,
    } = limits;
    let capacity = Arc::new(Semaphore::new(max_connections));
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
        let Ok(permit) = capacity.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max_connections, "connection refused: at capacity");
            crate::metrics::METRICS
                .refused_connections
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = stream.write_all(OVER_CAPACITY).await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let activity = Arc::new(Activity::new());
        let watched = activity.clone();
        let service = service_fn(move |request| {
            activity.busy();
            Answer::start(
                Box::pin(handler.clone().handle(request, peer)),
                activity.clone(),
            )
        });
        let connection = connections.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            tokio::select! {
                biased;
                ended = connection => if let Err(error) = ended {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                },
                () = watched.until_idle_for(client_timeout) => {
                    tracing::debug!(%peer, "connection closed: no request within client_timeout");
                }
            }
            drop(permit);
        });
    }
}
