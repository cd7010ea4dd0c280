//! Providers answer paths under their mount. Built-ins and (later) WASM
//! plugins implement the same trait; the router knows nothing else.

pub mod events;
pub mod iam;
pub mod identity;
pub mod static_tree;

use std::net::SocketAddr;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};

/// IMDS serves everything as text/plain except user-data.
pub const TEXT: HeaderValue = HeaderValue::from_static("text/plain");
pub const OCTETS: HeaderValue = HeaderValue::from_static("application/octet-stream");

/// What a provider sees of a request.
pub struct Request<'a> {
    pub method: &'a Method,
    /// The path below the provider's mount: no leading or trailing '/', empty
    /// for the mount itself.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub peer: SocketAddr,
}

#[derive(Clone)]
pub enum Resolved {
    Leaf {
        body: Bytes,
        content_type: HeaderValue,
    },
    /// A directory: its listing, children one per line, sub-directories with
    /// a trailing '/', no trailing newline.
    Dir(Bytes),
    NotFound,
    /// The provider failed (a plugin trapped or ran out of time): 500, which
    /// IMDS clients retry.
    Failed,
    /// No room to answer now (every plugin slot taken): 503, which IMDS
    /// clients retry too.
    Busy,
}

impl Resolved {
    pub fn text(body: impl Into<Bytes>) -> Self {
        Self::Leaf {
            body: body.into(),
            content_type: TEXT,
        }
    }
}

/// Read-only access to the built tree, for what answers on top of it (a
/// plugin's `host.lookup`) without knowing how it is built.
pub trait Lookup: Send + Sync {
    fn text(&self, path: &str) -> Option<String>;
}

#[async_trait]
pub trait Provider: Send + Sync {
    async fn resolve(&self, request: &Request<'_>) -> Resolved;
}
