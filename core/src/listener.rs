//! Listeners: one tokio task per address, hyper HTTP/1 per connection, and a
//! graceful stop that lets in-flight requests finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::encoder::Body;

/// Whatever answers requests on a listener (the metadata service, the admin API).
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send;
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
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(client_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
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
        let service = service_fn(move |request| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler.handle(request, peer).await) }
        });
        let connection = connections.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            drop(permit);
        });
    }
}
