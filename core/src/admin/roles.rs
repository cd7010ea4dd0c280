//! finto's role API, with its exact shapes. Served on the admin listener,
//! and on the metadata listener too when `server.finto_routes` is on (finto
//! served it there).
//!
//! - `GET /roles` → `{"roles":[…]}` sorted; `?status=active` → the active one
//! - `PUT /roles` `{"alias":"x"}` → `{"active_role":"x"}`; bad → 400 `{"error":…}`
//! - `GET /roles/ALIAS` → `{"arn":…,"session_name":…}`
//! - `GET /roles/ALIAS/credentials` → the credential document
//! - `GET`/`PUT /roles/ALIAS/source` → `{"source":…}`: which source backs the path

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::{json, json_error, read_body};
use crate::credentials::Roles;
use crate::encoder::{self, Body};
use crate::provider::TEXT;

pub struct RoleApi {
    roles: Arc<Roles>,
    /// `server.client_timeout`, for request bodies.
    client_timeout: Duration,
}

impl RoleApi {
    pub fn new(roles: Arc<Roles>, client_timeout: Duration) -> Self {
        Self {
            roles,
            client_timeout,
        }
    }

    /// `None` when the path is not a role route.
    pub async fn handle(&self, request: Request<Incoming>) -> Option<Response<Body>> {
        let path = request.uri().path().trim_end_matches('/');
        let rest = path.strip_prefix("/roles")?;
        if !rest.is_empty() && !rest.starts_with('/') {
            return None;
        }
        let segments: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let method = request.method().clone();
        let response = match (method, segments.as_slice()) {
            (Method::GET, []) => {
                let active_only = request
                    .uri()
                    .query()
                    .is_some_and(|q| q.split('&').any(|kv| kv == "status=active"));
                let roles = if active_only {
                    vec![self.roles.active()]
                } else {
                    self.roles.aliases()
                };
                json(StatusCode::OK, &json!({ "roles": roles }))
            }
            (Method::PUT, []) => self.set_active(request).await,
            (Method::GET, [alias]) => match self.roles.get(alias) {
                Some(role) => json(
                    StatusCode::OK,
                    &json!({
                        "arn": role.assume.as_ref().map(|a| a.arn.clone()).unwrap_or_default(),
                        "session_name": role.assume.as_ref().map(|a| a.session_name.clone()).unwrap_or_default(),
                    }),
                ),
                None => json_error(StatusCode::NOT_FOUND, &format!("no role named \"{alias}\"")),
            },
            (Method::GET, [alias, leaf]) if leaf == "credentials" => match self.roles.get(alias) {
                Some(role) => encoder::ok(role.document().await, TEXT),
                None => json_error(StatusCode::NOT_FOUND, &format!("no role named \"{alias}\"")),
            },
            (Method::GET, [alias, leaf]) if leaf == "source" => match self.roles.get(alias) {
                Some(role) => json(StatusCode::OK, &json!({ "source": role.binding().source })),
                None => json_error(StatusCode::NOT_FOUND, &format!("no role named \"{alias}\"")),
            },
            (Method::PUT, [alias, leaf]) if leaf == "source" => {
                let alias = alias.clone();
                self.rebind(&alias, request).await
            }
            _ => json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "no such method on this route",
            ),
        };
        Some(response)
    }

    async fn set_active(&self, request: Request<Incoming>) -> Response<Body> {
        #[derive(Deserialize)]
        struct Activate {
            alias: String,
        }
        let body = match read_body(request, self.client_timeout).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        match serde_json::from_slice::<Activate>(&body) {
            Ok(Activate { alias }) => match self.roles.set_active(&alias) {
                Ok(()) => {
                    tracing::info!(role = %alias, "active role switched");
                    json(StatusCode::OK, &json!({ "active_role": alias }))
                }
                Err(reason) => json_error(StatusCode::BAD_REQUEST, &reason),
            },
            Err(error) => json_error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"alias\":\"NAME\"}}: {error}"),
            ),
        }
    }

    async fn rebind(&self, alias: &str, request: Request<Incoming>) -> Response<Body> {
        #[derive(Deserialize)]
        struct Rebind {
            source: String,
        }
        let body = match read_body(request, self.client_timeout).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        match serde_json::from_slice::<Rebind>(&body) {
            Ok(Rebind { source }) => match self.roles.rebind(alias, &source) {
                Ok(()) => json(StatusCode::OK, &json!({ "role": alias, "source": source })),
                Err(reason) => json_error(StatusCode::BAD_REQUEST, &reason),
            },
            Err(error) => json_error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"source\":\"NAME\"}}: {error}"),
            ),
        }
    }
}
