//! The metadata service: one request, one pass through
//! guard → session → normalise → router → provider → encoder → access log.

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::access_log::AccessLog;
use crate::admin::roles::RoleApi;
use crate::admin::{json, json_error};
use crate::config::{V1Policy, DEFAULT_HANG};
use crate::credentials::{ecs_document, Roles};
use crate::encoder::{self, Body};
use crate::fault::{self, Applied, Faults, Outcome};
use crate::guard::Guard;
use crate::instance::VERSIONS;
use crate::journal::{Answered, Journal, Version};
use crate::listener::{self, client_on_host, CloseUnanswered, Handler, HopLimit};
use crate::metrics::{Route, METRICS};
use crate::normalise::{normalise, Target};
use crate::provider::iam::ClientRoles;
use crate::provider::{self, Resolved};
use crate::router::Router;
use crate::session::{self, ContainerTokens, Sessions, TOKEN_HEADER, TTL_HEADER};
use std::sync::atomic::Ordering::Relaxed;

const TOKEN_PATH: &str = "api/token";
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

pub struct Imds {
    pub guard: Guard,
    pub sessions: Arc<Sessions>,
    pub v1: V1Policy,
    /// Token answers leave with this TTL (`imds.hop_limit`).
    pub hop_limit: HopLimit,
    pub router: Router,
    pub access_log: Option<AccessLog>,
    /// The container-credentials endpoint, `/ecs/ROLE`.
    pub ecs: Ecs,
    /// finto's `/roles` API, when `server.finto_routes` is on.
    pub finto_routes: Option<RoleApi>,
    /// The plugins this version serves, for metrics.
    pub plugins: Vec<Arc<crate::plugin::Plugin>>,
    /// Fault rules; they outlive a reload's new `Imds`, as the journal does.
    pub faults: Arc<Faults>,
    pub journal: Arc<Journal>,
    /// Requests held unanswered now (hangs, token PUTs beyond the hop
    /// limit), shared with the service's next versions.
    pub held: Arc<AtomicUsize>,
    /// How many may be held at once; past that they close at once.
    pub max_held: usize,
}

impl Handler for Imds {
    fn over_capacity(&self) -> Bytes {
        Bytes::from_static(crate::encoder::OVER_CAPACITY)
    }

    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Response<Body> {
        let method = request.method().clone();
        // A reference count, not a copy: the journal copies the path into
        // a buffer it reuses.
        let uri = request.uri().clone();
        let path = uri.path();
        // Folded once, for the route class, the answer and the journal.
        let target = normalise(path);
        let route = route_of(path, &target);
        let version = version_of(route, &request);
        if version == Version::V1 {
            METRICS.v1_requests.fetch_add(1, Relaxed);
            self.journal.note_v1_process(peer, local);
        }
        // A token PUT's answer travels only as far as the hop limit lets it.
        let reach = (route == Route::Token && method == Method::PUT)
            .then(|| token_ttl(self.hop_limit.0, client_on_host(peer.ip(), local.ip())));
        let faults = self
            .faults
            .check(fault::Arrived::Ec2(route), &method, path, peer.ip());
        let mut fault = faults.as_ref().map(|applied| applied.rules.join(","));
        let mut response = match (faults, reach) {
            // Nothing would arrive: no token is issued for it.
            (None, Some(None)) => beyond_hop_limit(&mut fault, peer),
            (None, _) => self.respond(request, &target, peer).await,
            // Boxed, as side routes are: rare, and large.
            (Some(applied), _) => {
                Box::pin(self.respond_with_faults(applied, route, request, &target, peer)).await
            }
        };
        match reach {
            Some(Some(ttl)) => {
                response.extensions_mut().insert(HopLimit(ttl));
            }
            // A fault rule's answer would be lost too; its drop or hang stands.
            Some(None) if response.extensions().get::<CloseUnanswered>().is_none() => {
                response = beyond_hop_limit(&mut fault, peer);
            }
            _ => {}
        }
        // None: closed without an answer (a drop, a hang, the hop limit).
        let status = (response.extensions().get::<CloseUnanswered>().is_none())
            .then(|| response.status().as_u16());
        METRICS.request(route, status.unwrap_or(0));
        let role = (status == Some(200))
            .then(|| role_served(route, path, &target))
            .flatten();
        self.journal.record(Answered {
            client: peer,
            method: &method,
            path,
            version,
            status,
            role,
            fault,
        });
        if let Some(log) = &self.access_log {
            let size = http_body::Body::size_hint(response.body())
                .exact()
                .unwrap_or(0);
            log.record(
                peer,
                Some((method.as_str(), path)),
                status.unwrap_or(0),
                size as usize,
            );
        }
        // Held only now, journalled already: a test sees the request at once.
        if let Some(HoldFor(hold)) = response.extensions().get::<HoldFor>().copied() {
            Box::pin(self.hold(hold)).await;
        }
        response
    }

    fn rejected(&self, peer: SocketAddr, error: &hyper::Error) {
        if let Some(log) = &self.access_log {
            let status = if error.is_parse_too_large() { 431 } else { 400 };
            log.record(peer, None, status, 0);
        }
    }
}

/// The IP TTL an answer to a token PUT leaves with, so that it travels as
/// far as EC2's would, or `None` when it would not arrive at all.
///
/// EC2's IMDS is outside the instance: the instance's own processes are no
/// router away from it, and a container behind the instance's bridge is one
/// (the instance forwards the answer). ersatz runs on the host, so for every
/// client that is not the host itself it takes that hop off at the source;
/// routers further on take theirs off the packets.
fn token_ttl(hop_limit: u8, client_on_host: bool) -> Option<u8> {
    if client_on_host {
        return Some(hop_limit);
    }
    hop_limit.checked_sub(1).filter(|&ttl| ttl > 0)
}

/// What a client beyond the hop limit gets: nothing, as on EC2, where it
/// waits until its own timeout. The request is held as long as a `hang`
/// rule holds one (see [`Imds::hold`]), then closed unanswered.
fn beyond_hop_limit(fault: &mut Option<String>, peer: SocketAddr) -> Response<Body> {
    METRICS.token_puts_beyond_hop_limit.fetch_add(1, Relaxed);
    tracing::debug!(client = %peer, "a token answer would not reach its client within imds.hop_limit; held");
    *fault = Some(match fault.take() {
        Some(rules) => format!("{rules},hop-limit"),
        None => "hop-limit".to_owned(),
    });
    held(DEFAULT_HANG)
}

/// How long a request that gets no answer is held before its connection
/// closes (a `hang`, or a token answer beyond the hop limit).
#[derive(Clone, Copy)]
struct HoldFor(Duration);

/// No answer: the connection closes after `hold`.
fn held(hold: Duration) -> Response<Body> {
    let mut response = CloseUnanswered::response();
    response.extensions_mut().insert(HoldFor(hold));
    response
}

impl Imds {
    /// Holds a request that gets no answer for `hold`, counted with every
    /// version's held requests (see [`listener::hold_unanswered`]).
    async fn hold(&self, hold: Duration) {
        let stopping = self.journal.until_stopping();
        listener::hold_unanswered(&self.held, self.max_held, hold, stopping).await;
    }

    /// guard → side routes, or session → normalise → router → provider.
    async fn respond(
        &self,
        request: Request<Incoming>,
        target: &Target<'_>,
        peer: SocketAddr,
    ) -> Response<Body> {
        if let Err(refusal) = self.guard.check(&request) {
            return encoder::error(refusal.status());
        }
        match self.side_route_of(request.uri().path()) {
            Some(side) => {
                // Boxed: inline, their futures would more than double the
                // size of every metadata request's (0.9 KB to 2 KB).
                let answer = Box::pin(self.side_route(side, request, peer));
                answer.await
            }
            None => self.answer(&request, target, peer).await,
        }
    }

    /// What fault rules made of a request: late, replaced, or unanswered.
    async fn respond_with_faults(
        &self,
        applied: Applied,
        route: Route,
        request: Request<Incoming>,
        target: &Target<'_>,
        peer: SocketAddr,
    ) -> Response<Body> {
        applied.delay().await;
        match applied.outcome {
            Some(Outcome::Status {
                status,
                retry_after,
            }) => encoder::fault(status, retry_after),
            Some(Outcome::Drop) => CloseUnanswered::response(),
            Some(Outcome::Hang(max)) => held(max),
            None => {
                let response = self.respond(request, target, peer).await;
                let credentials = matches!(route, Route::Credentials | Route::Container);
                if applied.expire_credentials && credentials && response.status() == StatusCode::OK
                {
                    expire_credentials(response).await
                } else {
                    response
                }
            }
        }
    }

    /// The container-credentials endpoint and finto's role API, which
    /// answer beside the metadata tree.
    fn side_route_of(&self, path: &str) -> Option<SideRoute<'_>> {
        if let Some(alias) = path.strip_prefix("/ecs/") {
            return Some(SideRoute::Container(alias.trim_end_matches('/').to_owned()));
        }
        let api = self.finto_routes.as_ref()?;
        (path == "/roles" || path.starts_with("/roles/")).then_some(SideRoute::Roles(api))
    }

    async fn side_route(
        &self,
        side: SideRoute<'_>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        match side {
            SideRoute::Container(alias) => self.ecs.answer(&request, &alias, peer).await,
            SideRoute::Roles(api) => match api.handle(request).await {
                Some(response) => response,
                None => encoder::error(StatusCode::NOT_FOUND),
            },
        }
    }

    async fn answer<B>(
        &self,
        request: &Request<B>,
        target: &Target<'_>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let headers = request.headers();
        let method = request.method();

        if let Target::Tree { latest, path } = target {
            if path == TOKEN_PATH {
                return self.token(method, *latest, request);
            }
        }
        if method != Method::GET && method != Method::HEAD {
            return encoder::error(StatusCode::METHOD_NOT_ALLOWED);
        }

        // IMDSv2: a token, when sent, must be valid; without one, v1 policy decides.
        let token_left = match headers.get(TOKEN_HEADER) {
            Some(token) => match self.sessions.check(token.as_bytes()) {
                Some(left) => Some(left),
                None => {
                    METRICS.tokens_rejected.fetch_add(1, Relaxed);
                    return encoder::error(StatusCode::UNAUTHORIZED);
                }
            },
            None if self.v1 == V1Policy::Disabled => {
                METRICS.tokens_rejected.fetch_add(1, Relaxed);
                return encoder::error(StatusCode::UNAUTHORIZED);
            }
            None => None,
        };

        let mut response = match target {
            Target::Versions => encoder::listing(Bytes::from(VERSIONS.join("\n"))),
            Target::Unknown => encoder::error(StatusCode::NOT_FOUND),
            Target::Tree { path, .. } => self.resolve(request, path, peer).await,
        };
        if let Some(left) = token_left {
            response
                .headers_mut()
                .insert(TTL_HEADER, HeaderValue::from(left));
        }
        response
    }

    fn token<B>(&self, method: &Method, latest: bool, request: &Request<B>) -> Response<Body> {
        if method != Method::PUT {
            return encoder::error(StatusCode::METHOD_NOT_ALLOWED);
        }
        // Tokens come only from /latest/api/token, and never through a proxy.
        if !latest || request.headers().contains_key(X_FORWARDED_FOR) {
            return encoder::error(StatusCode::FORBIDDEN);
        }
        // Exactly one TTL header: with two, which one counts is ambiguous.
        let mut ttls = request.headers().get_all(TTL_HEADER).iter();
        let ttl = match (ttls.next(), ttls.next()) {
            (one, None) => one.map(HeaderValue::as_bytes),
            (_, Some(_)) => return encoder::error(StatusCode::BAD_REQUEST),
        };
        match session::parse_ttl(ttl) {
            Ok(ttl) => {
                METRICS.tokens_issued.fetch_add(1, Relaxed);
                encoder::token(self.sessions.issue(ttl), ttl)
            }
            Err(_) => encoder::error(StatusCode::BAD_REQUEST),
        }
    }

    async fn resolve<B>(
        &self,
        request: &Request<B>,
        path: &str,
        peer: SocketAddr,
    ) -> Response<Body> {
        let Some((provider, below)) = self.router.route(path) else {
            return encoder::error(StatusCode::NOT_FOUND);
        };
        let provider_request = provider::Request {
            method: request.method(),
            path: below,
            query: request.uri().query(),
            trailing_slash: request.uri().path().ends_with('/'),
            headers: request.headers(),
            body: &[],
            peer,
        };
        match provider.resolve(&provider_request).await {
            Resolved::Leaf { body, content_type } => encoder::ok(body, content_type),
            Resolved::Dir(listing) => encoder::listing(listing),
            Resolved::NotFound => encoder::error(StatusCode::NOT_FOUND),
            Resolved::Failed => encoder::error(StatusCode::INTERNAL_SERVER_ERROR),
            Resolved::Busy => encoder::error(StatusCode::SERVICE_UNAVAILABLE),
            Resolved::Shaped(shaped) => encoder::shaped(*shaped, encoder::error),
        }
    }
}

enum SideRoute<'a> {
    /// `/ecs/ALIAS`, with the alias.
    Container(String),
    Roles(&'a RoleApi),
}

/// How a request asked: the token PUT and requests with a token are
/// IMDSv2; the container endpoint is its own; the rest is IMDSv1.
fn version_of<B>(route: Route, request: &Request<B>) -> Version {
    match route {
        Route::Container => Version::Container,
        Route::Token => Version::V2,
        _ if request.headers().contains_key(TOKEN_HEADER) => Version::V2,
        _ => Version::V1,
    }
}

/// The role a successful credentials answer served: the last segment of
/// `iam/security-credentials/ROLE`, or `/ecs/ROLE`.
fn role_served(route: Route, path: &str, target: &Target<'_>) -> Option<String> {
    let role = match (route, target) {
        (Route::Credentials, Target::Tree { path, .. }) => {
            path.strip_prefix("meta-data/iam/security-credentials/")?
        }
        (Route::Container, _) => path.strip_prefix("/ecs/")?,
        _ => return None,
    };
    let role = role.trim_end_matches('/');
    (!role.is_empty() && !role.contains('/')).then(|| role.to_owned())
}

/// A credential document with its `Expiration` in the past.
async fn expire_credentials(response: Response<Body>) -> Response<Body> {
    use http_body_util::BodyExt;
    let (parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await;
    let bytes = collected.to_bytes();
    let body = match fault::expire(&bytes) {
        Some(expired) => Bytes::from(expired),
        None => bytes,
    };
    Response::from_parts(parts, Body::new(body))
}

/// The route class a path counts under, as the tree will see the path
/// (`//` and a trailing `/` folded), so that a fault rule, a count or the
/// audit cannot be dodged by spelling it another way.
fn route_of(path: &str, target: &Target<'_>) -> Route {
    if path.starts_with("/ecs/") {
        return Route::Container;
    }
    let Target::Tree { path: tree, .. } = target else {
        return Route::Metadata;
    };
    if tree == TOKEN_PATH {
        Route::Token
    } else if tree.starts_with("meta-data/iam/security-credentials") {
        Route::Credentials
    } else {
        Route::Metadata
    }
}

/// The ECS container-credentials endpoint (aws-vault's safer mode): SDKs
/// given `AWS_CONTAINER_CREDENTIALS_FULL_URI` and
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN` send the token as `Authorization`.
pub struct Ecs {
    pub roles: Arc<Roles>,
    /// One token per role, handed out by `ersatz exec` and `GET /ecs`.
    pub tokens: Arc<ContainerTokens>,
    /// `[[clients]]` applies here as on `iam/`: fail closed.
    pub clients: ClientRoles,
}

impl Ecs {
    async fn answer<B>(
        &self,
        request: &Request<B>,
        alias: &str,
        peer: SocketAddr,
    ) -> Response<Body> {
        let presented = request
            .headers()
            .get(AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        if !presented.is_some_and(|p| self.tokens.admits(p, alias)) {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong Authorization token for this role",
            );
        }
        let role = self
            .roles
            .get(alias)
            .filter(|_| self.clients.allows(peer.ip(), alias));
        let Some(role) = role else {
            return json_error(StatusCode::NOT_FOUND, &format!("no role named \"{alias}\""));
        };
        match role.credentials().await {
            Ok(credentials) => {
                let arn = role.assume.as_ref().map(|a| a.arn.as_str());
                let document: serde_json::Value =
                    serde_json::from_str(&ecs_document(&credentials, arn)).expect("our own JSON");
                json(StatusCode::OK, &document)
            }
            Err(error) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &error.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::token_ttl;

    #[test]
    fn the_host_itself_gets_the_whole_hop_limit() {
        assert_eq!(token_ttl(1, true), Some(1));
        assert_eq!(token_ttl(64, true), Some(64));
    }

    #[test]
    fn a_client_behind_the_host_is_one_hop_further() {
        assert_eq!(token_ttl(2, false), Some(1));
        assert_eq!(token_ttl(64, false), Some(63));
        assert_eq!(token_ttl(1, false), None);
    }
}
