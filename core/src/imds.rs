//! The metadata service: one request, one pass through
//! guard → session → normalise → router → provider → encoder → access log.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::access_log::AccessLog;
use crate::config::V1Policy;
use crate::encoder::{self, Body};
use crate::guard::Guard;
use crate::listener::Handler;
use crate::normalise::{normalise, Target, VERSIONS};
use crate::provider::{self, Resolved};
use crate::router::Router;
use crate::session::{self, Sessions, TOKEN_HEADER, TTL_HEADER};

const TOKEN_PATH: &str = "api/token";
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

pub struct Imds {
    pub guard: Guard,
    pub sessions: Sessions,
    pub v1: V1Policy,
    pub router: Router,
    pub access_log: Option<AccessLog>,
}

impl Handler for Imds {
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let response = self.answer(&request, peer).await;
        if let Some(log) = &self.access_log {
            let size = http_body::Body::size_hint(response.body())
                .exact()
                .unwrap_or(0);
            log.record(
                peer,
                request.method().as_str(),
                request.uri().path(),
                response.status().as_u16(),
                size as usize,
            );
        }
        response
    }
}

impl Imds {
    async fn answer<B>(&self, request: &Request<B>, peer: SocketAddr) -> Response<Body> {
        let headers = request.headers();
        if let Err(status) = self.guard.check(headers) {
            return encoder::error(status);
        }
        let target = normalise(request.uri().path());
        let method = request.method();

        if let Target::Tree { latest, path } = &target {
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
                None => return encoder::error(StatusCode::UNAUTHORIZED),
            },
            None if self.v1 == V1Policy::Disabled => {
                return encoder::error(StatusCode::UNAUTHORIZED)
            }
            None => None,
        };

        let mut response = match target {
            Target::Versions => encoder::listing(Bytes::from(VERSIONS.join("\n"))),
            Target::Unknown => encoder::error(StatusCode::NOT_FOUND),
            Target::Tree { path, .. } => self.resolve(request, &path, peer).await,
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
        let ttl = request.headers().get(TTL_HEADER).map(HeaderValue::as_bytes);
        match session::parse_ttl(ttl) {
            Ok(ttl) => encoder::token(self.sessions.issue(ttl), ttl),
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
            headers: request.headers(),
            peer,
        };
        match provider.resolve(&provider_request).await {
            Resolved::Leaf { body, content_type } => encoder::ok(body, content_type),
            Resolved::Dir(listing) => encoder::listing(listing),
            Resolved::NotFound => encoder::error(StatusCode::NOT_FOUND),
        }
    }
}
