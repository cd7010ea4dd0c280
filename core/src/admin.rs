//! The admin API: a second listener with its own routes, loopback by default.
//! Requests from other hosts are refused unless `server.admin_token` is set,
//! and when it is set every request needs it as a bearer token.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::credentials::Roles;
use crate::encoder::Body;
use crate::listener::Handler;

pub struct Admin {
    roles: Arc<Roles>,
    /// SHA-256 of the bearer token, compared in constant time; `None`: no token.
    token_digest: Option<[u8; 32]>,
}

impl Admin {
    pub fn new(roles: Arc<Roles>, token: &Secret) -> Self {
        let token_digest =
            (!token.is_empty()).then(|| Sha256::digest(token.expose().as_bytes()).into());
        Self {
            roles,
            token_digest,
        }
    }

    fn authorised(&self, request: &Request<Incoming>, peer: SocketAddr) -> bool {
        let Some(expected) = &self.token_digest else {
            return peer.ip().is_loopback();
        };
        let presented = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Digests have a fixed length, so this compares in constant time.
        digest
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, serde_json::json!({ "error": message }).to_string())
}

impl Handler for Admin {
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if !self.authorised(&request, peer) {
            return json_error(
                StatusCode::UNAUTHORIZED,
                "admin API: missing or wrong bearer token, or not a loopback client",
            );
        }
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/status") => {
                let active = self.roles.active();
                let valid = match self.roles.get(&active) {
                    Some(role) => role.is_valid().await,
                    None => false,
                };
                json(StatusCode::OK, if valid { "true" } else { "false" })
            }
            (_, "/status") => json_error(StatusCode::METHOD_NOT_ALLOWED, "use GET"),
            _ => json_error(StatusCode::NOT_FOUND, "no such admin route"),
        }
    }
}
