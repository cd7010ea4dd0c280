//! The admin API: a second listener with its own routes, loopback by default.
//! Every request passes the same [`Guard`] as the metadata listener (Host
//! allow-list, no web pages). Requests from other hosts are refused unless
//! `server.admin_token` is set, and when it is set every request needs it as
//! a bearer token.
//!
//! | route | |
//! |---|---|
//! | `GET /status` | `true`/`false`: the active role has valid credentials |
//! | `GET /healthz`, `GET /readyz` | probes: serving; ready (the active role has credentials) |
//! | `POST /bootstrap/creds` | source credentials for `bootstrap` sources (mmds) |
//! | `GET`/`PUT /roles…` | finto's role API ([`roles`]) |
//! | `GET /ecs` | the container-credentials URLs and their token |
//! | `POST /reload` | re-read the configuration and plugins (as SIGHUP) |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET`, `DELETE /events`, `POST /events/KIND` | lifecycle events (`events.rs`) |
//! | `GET`, `POST`, `DELETE /faults`, `DELETE /faults/NAME` | fault rules (`faults.rs`) |
//! | `GET`, `DELETE /requests`, `GET`, `DELETE /audit` | the request journal and IMDSv1 audit (`requests.rs`) |

pub mod bootstrap;
mod events;
mod faults;
mod requests;
pub mod roles;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use crate::config::ServerConfig;
use crate::credentials::{BootstrapSource, Roles};
use crate::encoder::Body;
use crate::fault::Faults;
use crate::guard::{Guard, Refusal};
use crate::journal::Journal;
use crate::listener::Handler;
use crate::plugin::{Plugin, PluginStats};
use crate::provider::events::Events;
use crate::secret::constant_time_eq;
use crate::session::ContainerTokens;
use roles::RoleApi;

pub struct Admin {
    roles: Arc<Roles>,
    role_api: RoleApi,
    bootstraps: BTreeMap<String, Arc<BootstrapSource>>,
    events: Arc<Events>,
    faults: Arc<Faults>,
    journal: Arc<Journal>,
    changes: Arc<crate::changes::Changes>,
    ecs: EcsInfo,
    /// Replaced whole by a reload, so a new token or host list applies at once.
    access: Arc<ArcSwap<Access>>,
    reloader: Option<Arc<dyn Reload>>,
    /// `server.client_timeout`, for request bodies.
    client_timeout: Duration,
}

/// Where the container-credentials endpoint is, for `GET /ecs`.
#[derive(Clone)]
pub struct EcsInfo {
    /// The metadata listeners' URLs, known once they are bound.
    pub base_urls: Vec<String>,
    pub tokens: Arc<ContainerTokens>,
}

/// Who may use the admin API: the guard and the bearer token of one
/// configuration.
pub struct Access {
    guard: Guard,
    /// SHA-256 of the bearer token, compared in constant time; `None`: no token.
    token_digest: Option<[u8; 32]>,
}

impl Access {
    pub fn new(server: &ServerConfig) -> Self {
        let token = &server.admin_token;
        Self {
            guard: Guard::new(&server.allowed_hosts, [&server.admin_listen]),
            token_digest: (!token.is_empty())
                .then(|| Sha256::digest(token.expose().as_bytes()).into()),
        }
    }

    /// The status and reason of a refusal.
    fn check(
        &self,
        request: &Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<(), (StatusCode, &'static str)> {
        match self.guard.check(request) {
            Ok(()) => {}
            // A page that rebinds a name cannot know the bearer token, so
            // with one any host name may reach the token check (an admin
            // API served to other hosts by name).
            Err(Refusal::HostNotAllowed) if self.token_digest.is_some() => {}
            Err(refusal) => return Err((refusal.status(), refusal.reason())),
        }
        if self.authorised(request, peer) {
            Ok(())
        } else {
            Err((
                StatusCode::UNAUTHORIZED,
                "admin API: missing or wrong bearer token, or not a loopback client",
            ))
        }
    }

    fn authorised(&self, request: &Request<Incoming>, peer: SocketAddr) -> bool {
        let Some(expected) = &self.token_digest else {
            // `::ffff:127.0.0.1` is loopback too (an admin listener on `[::]`).
            return peer.ip().to_canonical().is_loopback();
        };
        let presented = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        constant_time_eq(&digest, expected)
    }
}

/// What a test drives at run time: lifecycle events and fault rules in,
/// the journal out.
pub struct Controls {
    pub events: Arc<Events>,
    pub faults: Arc<Faults>,
    pub journal: Arc<Journal>,
    /// Told when events change, so that long-polls look again.
    pub changes: Arc<crate::changes::Changes>,
}

impl Admin {
    pub fn new(
        roles: Arc<Roles>,
        bootstraps: BTreeMap<String, Arc<BootstrapSource>>,
        controls: Controls,
        ecs: EcsInfo,
        access: Arc<ArcSwap<Access>>,
        client_timeout: Duration,
    ) -> Self {
        let Controls {
            events,
            faults,
            journal,
            changes,
        } = controls;
        Self {
            role_api: RoleApi::new(roles.clone(), client_timeout),
            roles,
            bootstraps,
            events,
            faults,
            journal,
            changes,
            ecs,
            access,
            reloader: None,
            client_timeout,
        }
    }

    /// Whether the active role holds valid credentials (`/status`, `/readyz`).
    async fn active_role_valid(&self) -> bool {
        match self.roles.get(&self.roles.active()) {
            Some(role) => role.is_valid().await,
            None => false,
        }
    }

    /// `GET /readyz`: 200 once the active role has valid credentials, else
    /// 503 with the reason.
    async fn readiness(&self) -> Response<Body> {
        if self.active_role_valid().await {
            return json(StatusCode::OK, &serde_json::json!({ "ready": true }));
        }
        let active = self.roles.active();
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({
                "ready": false,
                "reason": format!("the active role \"{active}\" has no valid credentials yet"),
            }),
        )
    }

    /// Where the metadata listeners were bound, for `GET /ecs`.
    pub fn with_ecs_urls(mut self, base_urls: Vec<String>) -> Self {
        self.ecs.base_urls = base_urls;
        self
    }

    /// `GET /ecs`: each role's container-credentials URLs and its own token.
    fn container_endpoints(&self) -> serde_json::Value {
        let roles: serde_json::Map<String, serde_json::Value> = self
            .roles
            .aliases()
            .into_iter()
            .map(|alias| {
                let urls: Vec<String> = self
                    .ecs
                    .base_urls
                    .iter()
                    .map(|base| format!("{base}/ecs/{alias}"))
                    .collect();
                let token = self.ecs.tokens.token_for(&alias);
                (alias, serde_json::json!({ "token": token, "urls": urls }))
            })
            .collect();
        serde_json::json!({ "roles": roles })
    }

    /// Enables `POST /reload`.
    pub fn with_reloader(mut self, reloader: Arc<dyn Reload>) -> Self {
        self.reloader = Some(reloader);
        self
    }
}

/// What `POST /reload` reaches: the server, a layer above, which knows how
/// to rebuild the metadata service.
#[async_trait::async_trait]
pub trait Reload: Send + Sync {
    /// Applies the configuration as it is now, or changes nothing and says why.
    async fn reload(&self) -> Result<(), String>;
    /// The plugins serving now, for their metrics.
    fn plugins(&self) -> Vec<Arc<Plugin>>;
}

impl Admin {
    /// Prometheus text: the process counters, then per role and per plugin.
    fn metrics(&self) -> String {
        use std::fmt::Write;
        use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
        let mut extra = String::from("# HELP ersatz_role_sts_calls_total STS calls made for each role.\n# TYPE ersatz_role_sts_calls_total counter\n");
        for alias in self.roles.aliases() {
            if let Some(role) = self.roles.get(&alias) {
                let _ = writeln!(
                    extra,
                    "ersatz_role_sts_calls_total{{role=\"{}\"}} {}",
                    crate::metrics::label(&alias),
                    role.sts_calls()
                );
            }
        }
        let plugins = self
            .reloader
            .as_ref()
            .map(|r| r.plugins())
            .unwrap_or_default();
        type Counter = fn(&PluginStats) -> &AtomicU64;
        let counters: [(&str, &str, Counter); 7] = [
            ("calls", "Plugin calls.", |s| &s.calls),
            (
                "busy",
                "Requests answered 503 without a call: every plugin instance slot stayed taken.",
                |s| &s.busy,
            ),
            (
                "instantiation_failures",
                "Plugin calls that could not instantiate the plugin.",
                |s| &s.instantiation_failures,
            ),
            (
                "traps",
                "Plugin calls that trapped (including the memory limit).",
                |s| &s.traps,
            ),
            ("timeouts", "Plugin calls stopped at their deadline.", |s| {
                &s.timeouts
            }),
            ("errors", "Plugin calls that returned an error.", |s| {
                &s.errors
            }),
            (
                "cache_hits",
                "Requests answered with a plugin's earlier answer, without a call.",
                |s| &s.cache_hits,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = write!(extra, "# HELP ersatz_plugin_{name}_total {help}\n# TYPE ersatz_plugin_{name}_total counter\n");
            for plugin in &plugins {
                let _ = writeln!(
                    extra,
                    "ersatz_plugin_{name}_total{{plugin=\"{}\"}} {}",
                    crate::metrics::label(&plugin.name),
                    counter(&plugin.stats).load(Relaxed)
                );
            }
        }
        crate::metrics::METRICS.render(&extra)
    }
}

/// JSON the way finto wrote it: `application/json; charset=UTF-8`, one line,
/// a trailing newline.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = value.to_string();
    body.push('\n');
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}

pub fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

/// The request body (see [`crate::listener::read_body`]), or the JSON error
/// that refuses it.
pub async fn read_body(
    request: Request<Incoming>,
    limit: Duration,
) -> Result<Bytes, Response<Body>> {
    let read = crate::listener::read_body(request.into_body(), limit).await;
    read.map_err(|crate::listener::BodyRefused(status, reason)| json_error(status, &reason))
}

impl Handler for Admin {
    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
        _local: SocketAddr,
    ) -> Response<Body> {
        if let Err((status, reason)) = self.access.load().check(&request, peer) {
            return json_error(status, reason);
        }
        let path = request.uri().path().trim_end_matches('/').to_owned();
        match (request.method().clone(), path.as_str()) {
            (Method::GET, "/status") => {
                json(StatusCode::OK, &self.active_role_valid().await.into())
            }
            (_, "/status") => json_error(StatusCode::METHOD_NOT_ALLOWED, "use GET"),
            // Probes: answered once every listener is bound (this one is
            // bound last), without a metadata token.
            (Method::GET, "/healthz") => {
                json(StatusCode::OK, &serde_json::json!({ "healthy": true }))
            }
            (Method::GET, "/readyz") => self.readiness().await,
            (_, "/healthz" | "/readyz") => json_error(StatusCode::METHOD_NOT_ALLOWED, "use GET"),
            (Method::POST, "/bootstrap/creds") => {
                match read_body(request, self.client_timeout).await {
                    Ok(body) => bootstrap::post(&self.roles, &self.bootstraps, &body).await,
                    Err(response) => response,
                }
            }
            (_, "/bootstrap/creds") => json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST"),
            (Method::POST, "/reload") => match &self.reloader {
                Some(reloader) => match reloader.reload().await {
                    Ok(()) => json(StatusCode::OK, &serde_json::json!({ "reloaded": true })),
                    Err(reason) => json_error(StatusCode::UNPROCESSABLE_ENTITY, &reason),
                },
                None => json_error(StatusCode::NOT_FOUND, "reload is not available here"),
            },
            (_, "/reload") => json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST"),
            (Method::GET, "/metrics") => {
                let mut response = Response::new(Body::new(self.metrics()));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
            }
            (method, path) if path == "/events" || path.starts_with("/events/") => {
                let kind = path
                    .trim_start_matches("/events")
                    .trim_start_matches('/')
                    .to_owned();
                match read_body(request, self.client_timeout).await {
                    Ok(body) => {
                        let response = events::handle(&self.events, &method, &kind, &body);
                        if method != Method::GET && response.status().is_success() {
                            self.changes.notify();
                        }
                        response
                    }
                    Err(response) => response,
                }
            }
            (method, path) if path == "/faults" || path.starts_with("/faults/") => {
                let name = path
                    .trim_start_matches("/faults")
                    .trim_start_matches('/')
                    .to_owned();
                match read_body(request, self.client_timeout).await {
                    Ok(body) => faults::handle(&self.faults, &method, &name, &body),
                    Err(response) => response,
                }
            }
            (method, "/requests") => {
                requests::requests(&self.journal, &method, request.uri().query())
            }
            (method, "/audit") => requests::audit(&self.journal, &method),
            (Method::GET, "/ecs") => json(StatusCode::OK, &self.container_endpoints()),
            _ => match self.role_api.handle(request).await {
                Some(response) => response,
                None => json_error(StatusCode::NOT_FOUND, "no such admin route"),
            },
        }
    }
}
