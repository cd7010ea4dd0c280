//! A listener for another cloud's metadata service (a flavour: GCE, Azure),
//! declared as data in `[[listeners]]` and served by the plugins mounted on
//! it. The core owns what every such service shares, so that a new cloud
//! needs a plugin and a configuration, not code here:
//! - each mount's gates (required and refused headers, repeated query
//!   parameters), enforced before its plugin runs;
//! - the listener's headers on every answer, and an `ETag` on every 200;
//! - long-polls, parked without a plugin instance until something changes;
//! - the signing key's public half, as a JWKS and as a PEM map.
//!
//! A request: fault rules naming the listener → guard → body → key paths,
//! or route → gates (see [`crate::gate`]) → plugin (once, or until its
//! value changes) → headers → journal and access log.

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{ETAG, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use crate::access_log::AccessLog;
use crate::changes::Changes;
use crate::config::{ListenerConfig, LongPollConfig};
use crate::encoder::{self, Body};
use crate::fault::{Applied, Arrived, Faults, Outcome};
use crate::guard::Guard;
use crate::journal::{Answered, Journal, Version};
use crate::listener::{self, CloseUnanswered, Counted, Handler};
use crate::provider::identity::SigningKey;
use crate::provider::{self, jwt, Resolved};
use crate::router::Router;

/// The longest a long-poll waits, whatever it asks.
const MAX_WAIT: Duration = Duration::from_secs(3600);
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// One `[[listeners]]` entry, as this configuration builds it.
pub struct Flavour {
    /// Its `name`, which fault rules name.
    name: String,
    /// The Host allow-list and browser filter every listener applies.
    guard: Guard,
    /// The 503 a connection over the caps gets, with the listener's headers.
    over_capacity: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
    etags: bool,
    long_poll: Option<LongPollConfig>,
    keys: KeyPaths,
    /// The plugins mounted on it, each behind its gates.
    mounts: Router,
}

struct KeyPaths {
    pem: Option<String>,
    jwks: Option<String>,
    signer: Arc<SigningKey>,
}

impl Flavour {
    /// `listener` checked; `mounts` are the plugins on it, by their paths.
    pub fn new(
        listener: &ListenerConfig,
        allowed_hosts: &[String],
        mounts: Router,
        signer: Arc<SigningKey>,
    ) -> Self {
        let headers = listener.headers.iter().filter_map(|(name, value)| {
            let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
            Some((name, HeaderValue::from_str(value).ok()?))
        });
        let key_path = |path: &Option<String>| {
            let path = path.as_deref()?;
            crate::config::listener_mount(path).ok()
        };
        let keys = listener.keys.as_ref();
        let hosts = [allowed_hosts, &listener.hosts].concat();
        let headers: Vec<_> = headers.collect();
        Self {
            over_capacity: over_capacity(&headers),
            name: listener.name.clone(),
            guard: Guard::new(&hosts, &listener.listen),
            headers,
            etags: listener.etags,
            long_poll: listener.long_poll.clone(),
            keys: KeyPaths {
                pem: keys.and_then(|k| key_path(&k.pem)),
                jwks: keys.and_then(|k| key_path(&k.jwks)),
                signer,
            },
            mounts,
        }
    }

    /// The answer to one asking, without waiting: the key's public half,
    /// a gate's refusal, or the plugin's answer.
    async fn answer(&self, asked: &Asked<'_>) -> Answer {
        let as_jwks = self.keys.jwks.as_deref() == Some(asked.path);
        if as_jwks || self.keys.pem.as_deref() == Some(asked.path) {
            return self.public_key(as_jwks).await;
        }
        let Some((provider, below)) = self.mounts.route(asked.path) else {
            return Answer::plain(page(StatusCode::NOT_FOUND));
        };
        let request = provider::Request {
            method: asked.method,
            path: below,
            query: asked.query,
            trailing_slash: asked.trailing_slash,
            headers: asked.headers,
            body: asked.body,
            peer: asked.peer,
        };
        let resolved = provider.resolve(&request).await;
        Answer::of(resolved, self.etags)
    }

    /// The signing key's public half, as a JWKS or as a PEM map.
    async fn public_key(&self, as_jwks: bool) -> Answer {
        let Some(key) = self.keys.signer.get().await else {
            return Answer::plain(page(StatusCode::INTERNAL_SERVER_ERROR));
        };
        let document = if as_jwks {
            jwt::jwks(&key)
        } else {
            jwt::pem_map(&key)
        };
        let body = Bytes::from(document.to_string());
        let resolved = Resolved::Leaf {
            body,
            content_type: JSON,
        };
        Answer::of(resolved, self.etags)
    }

    /// The listener's headers, over whatever the plugin set.
    fn finish(&self, mut response: Response<Body>) -> Response<Body> {
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        response
    }
}

/// A 503 with `headers` (checked as header values: no CR or LF), to be
/// written as it is.
fn over_capacity(headers: &[(HeaderName, HeaderValue)]) -> Bytes {
    let mut head = b"HTTP/1.1 503 Service Unavailable\r\n".to_vec();
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"Content-Length: 0\r\nConnection: close\r\n\r\n");
    Bytes::from(head)
}

/// What a request asks, as every step sees it.
struct Asked<'a> {
    method: &'a Method,
    /// Without the leading '/' or a trailing one.
    path: &'a str,
    trailing_slash: bool,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a [u8],
    peer: SocketAddr,
}

struct Answer {
    response: Response<Body>,
    /// Of a 200's body, when the listener keeps ETags.
    etag: Option<String>,
}

impl Answer {
    fn plain(response: Response<Body>) -> Self {
        Self {
            response,
            etag: None,
        }
    }

    fn of(resolved: Resolved, etags: bool) -> Self {
        let etag = etags.then(|| etag_of(&resolved)).flatten();
        let mut response = match resolved {
            Resolved::Leaf { body, content_type } => encoder::ok(body, content_type),
            Resolved::Dir(listing) => encoder::listing(listing),
            Resolved::NotFound => page(StatusCode::NOT_FOUND),
            Resolved::Failed => page(StatusCode::INTERNAL_SERVER_ERROR),
            Resolved::Busy => page(StatusCode::SERVICE_UNAVAILABLE),
            Resolved::Shaped(shaped) => encoder::shaped(*shaped, page),
        };
        // The listener's own server name, not IMDS's.
        response.headers_mut().remove(http::header::SERVER);
        if let Some(value) = etag.as_deref().and_then(|e| HeaderValue::from_str(e).ok()) {
            response.headers_mut().insert(ETAG, value);
        }
        Self { response, etag }
    }
}

/// For a 200: 16 hex digits of its body's SHA-256, as GCE's ETags look.
fn etag_of(resolved: &Resolved) -> Option<String> {
    let body = match resolved {
        Resolved::Leaf { body, .. } | Resolved::Dir(body) => body,
        Resolved::Shaped(shaped) if shaped.status == StatusCode::OK => &shaped.body.as_ref()?.0,
        _ => return None,
    };
    Some(crate::hex::hex(&Sha256::digest(body)[..8]))
}

/// The listener's own page for a status no plugin shaped.
fn page(status: StatusCode) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!("{} {reason}\n", status.as_u16());
    let mut response = encoder::ok(Bytes::from(body), provider::TEXT);
    *response.status_mut() = status;
    // The listener's own server name, not IMDS's.
    response.headers_mut().remove(http::header::SERVER);
    response
}

/// Other clouds' services as one configuration builds them, and what they
/// share with the rest of the server.
pub struct Flavours {
    /// One per `[[listeners]]` entry, in order.
    pub list: Vec<Arc<Flavour>>,
    pub journal: Arc<Journal>,
    pub access_log: Option<AccessLog>,
    /// What long-polls wait on: reloads, events, plugins' stores.
    pub changes: Arc<Changes>,
    /// Fault rules, those naming a listener for its requests.
    pub faults: Arc<Faults>,
}

/// Serves one `[[listeners]]` entry from whichever configuration serves
/// now: a reload swaps the flavour with the rest (its name and addresses
/// need a restart, so `index` stays its place).
pub struct FlavourHandler {
    pub current: Arc<ArcSwap<Flavours>>,
    pub index: usize,
    /// Long-polls parked now, and how many may be: past that they are
    /// answered 503 at once, so they cannot take every connection.
    pub parked: AtomicUsize,
    pub max_parked: usize,
    /// Parked long-polls that ask again at once after a change: a change
    /// wakes them all, and a thousand plugin calls at once would run past
    /// their deadlines. They take turns instead.
    pub asking_again: tokio::sync::Semaphore,
    /// For a request body, as for a request head (`server.client_timeout`).
    pub client_timeout: Duration,
}

impl Handler for FlavourHandler {
    fn over_capacity(&self) -> Bytes {
        match self.flavour() {
            Some(flavour) => flavour.over_capacity.clone(),
            None => Bytes::from_static(listener::OVER_CAPACITY),
        }
    }

    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
        _local: SocketAddr,
    ) -> Response<Body> {
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let applied = self.faults_for(&method, uri.path(), peer);
        let fault = applied.as_ref().map(|applied| applied.rules.join(","));
        let response = match applied {
            None => self.respond(request, peer).await,
            Some(applied) => Box::pin(self.respond_with_faults(applied, request, peer)).await,
        };
        // The version serving now: a long-poll may outlive the one it began on.
        let now = self.current.load();
        let response = match now.list.get(self.index) {
            Some(flavour) => flavour.finish(response),
            None => response,
        };
        // None: closed without an answer (a fault rule's drop or hang).
        let status = (response.extensions().get::<CloseUnanswered>().is_none())
            .then(|| response.status().as_u16());
        now.journal.record(Answered {
            client: peer,
            method: &method,
            path: uri.path(),
            version: Version::Flavour,
            status,
            role: None,
            fault,
        });
        if let Some(log) = &now.access_log {
            let size = http_body::Body::size_hint(response.body()).exact();
            let size = size.unwrap_or(0).try_into().unwrap_or(usize::MAX);
            let path = Some((method.as_str(), uri.path()));
            log.record(peer, path, status.unwrap_or(0), size);
        }
        response
    }
}

impl FlavourHandler {
    fn flavour(&self) -> Option<Arc<Flavour>> {
        self.current.load().list.get(self.index).cloned()
    }

    /// What the fault rules naming this listener do to a request, if any.
    fn faults_for(&self, method: &Method, path: &str, peer: SocketAddr) -> Option<Applied> {
        let now = self.current.load();
        let name = &now.list.get(self.index)?.name;
        now.faults
            .check(Arrived::Listener(name), method, path, peer.ip())
    }

    /// What fault rules made of a request: late, replaced, or unanswered.
    async fn respond_with_faults(
        &self,
        applied: Applied,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        applied.delay().await;
        match applied.outcome {
            Some(Outcome::Status {
                status,
                retry_after,
            }) => {
                let mut response = page(status);
                if let Some(seconds) = retry_after {
                    let headers = response.headers_mut();
                    headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
                }
                response
            }
            Some(Outcome::Drop) => CloseUnanswered::response(),
            Some(Outcome::Hang(max)) => {
                self.hang(max).await;
                CloseUnanswered::response()
            }
            None => self.respond(request, peer).await,
        }
    }

    /// Holds a request that gets no answer for `hold`, in one of the
    /// listener's parked places (see [`listener::hold_unanswered`]).
    async fn hang(&self, hold: Duration) {
        let journal = self.current.load().journal.clone();
        let stopping = journal.until_stopping();
        listener::hold_unanswered(&self.parked, self.max_parked, hold, stopping).await;
    }

    /// guard → body → path → the answer, at once or after waiting.
    async fn respond(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let Some(flavour) = self.flavour() else {
            return page(StatusCode::SERVICE_UNAVAILABLE);
        };
        if let Err(refusal) = flavour.guard.check(&request) {
            return page(refusal.status());
        }
        let (parts, body) = request.into_parts();
        let body = match self.read_body(&parts.method, body).await {
            Ok(body) => body,
            Err(status) => return page(status),
        };
        let path = parts.uri.path().trim_start_matches('/');
        // `.`, `..` and empty segments would reach a mount by another
        // spelling, past its own gates.
        let inner = path.strip_suffix('/').unwrap_or(path);
        if !inner.is_empty()
            && inner
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return page(StatusCode::BAD_REQUEST);
        }
        let asked = Asked {
            method: &parts.method,
            path: inner,
            trailing_slash: path.ends_with('/'),
            query: parts.uri.query(),
            headers: &parts.headers,
            body: &body,
            peer,
        };
        let wait = match flavour
            .long_poll
            .as_ref()
            .map(|poll| Wait::asked(poll, asked.query))
        {
            None | Some(Ok(None)) => return flavour.answer(&asked).await.response,
            Some(Ok(Some(wait))) => wait,
            Some(Err(reason)) => {
                let mut response = page(StatusCode::BAD_REQUEST);
                *response.body_mut() = Body::new(format!("{reason}\n"));
                return response;
            }
        };
        let Some(_parked) = Counted::take(&self.parked, self.max_parked) else {
            let mut response = page(StatusCode::SERVICE_UNAVAILABLE);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(1));
            return response;
        };
        self.long_poll(flavour, &asked, wait).await
    }

    /// A body for the plugin (see [`listener::read_body`]): GET and HEAD
    /// carry none worth reading (an unread body closes the connection).
    async fn read_body(&self, method: &Method, body: Incoming) -> Result<Bytes, StatusCode> {
        if method == Method::GET || method == Method::HEAD {
            return Ok(Bytes::new());
        }
        let read = listener::read_body(body, self.client_timeout).await;
        read.map_err(|listener::BodyRefused(status, _)| status)
    }

    /// Answers once the value's ETag differs from the one the client has
    /// (or, without one, from the value now), or at the timeout with the
    /// value then. Between askings it holds no plugin instance, nor any
    /// version of the configuration: it waits on the server's change
    /// signal, then asks whichever version serves then.
    async fn long_poll(
        &self,
        first: Arc<Flavour>,
        asked: &Asked<'_>,
        wait: Wait,
    ) -> Response<Body> {
        let (changes, journal) = {
            let now = self.current.load();
            (now.changes.clone(), now.journal.clone())
        };
        let mut changed = changes.subscribe();
        let deadline = tokio::time::Instant::now() + wait.timeout;
        let mut answer = first.answer(asked).await;
        drop(first);
        let Some(known) = wait.etag.or_else(|| answer.etag.clone()) else {
            return answer.response;
        };
        while answer.etag.as_ref() == Some(&known) {
            tokio::select! {
                result = changed.changed() => if result.is_err() { break },
                () = tokio::time::sleep_until(deadline) => break,
                () = journal.until_stopping() => break,
            }
            // Marked seen before asking, so a change while asking wakes us again.
            changed.borrow_and_update();
            let Ok(_turn) = self.asking_again.acquire().await else {
                break;
            };
            let Some(flavour) = self.flavour() else {
                break;
            };
            answer = flavour.answer(asked).await;
        }
        answer.response
    }
}

/// A long-poll's terms, from the query.
struct Wait {
    /// As the client sent it: one that is no ETag of ours is stale.
    etag: Option<String>,
    timeout: Duration,
}

impl Wait {
    /// `None` when the query does not ask to wait; an error names the bad
    /// parameter.
    fn asked(poll: &LongPollConfig, query: Option<&str>) -> Result<Option<Self>, String> {
        let mut flag = false;
        let mut wait = Wait {
            etag: None,
            timeout: MAX_WAIT,
        };
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if name == poll.flag.as_str() {
                flag = value.eq_ignore_ascii_case("true");
            } else if name == poll.etag.as_str() {
                wait.etag = Some(value.into_owned());
            } else if name == poll.timeout.as_str() {
                let seconds: u64 = value.parse().ok().filter(|&s| s > 0).ok_or_else(|| {
                    format!("{} must be a whole number of seconds above 0", poll.timeout)
                })?;
                wait.timeout = Duration::from_secs(seconds).min(MAX_WAIT);
            }
        }
        Ok(flag.then_some(wait))
    }
}
