//! Providers answer paths under their mount. Built-ins and (later) WASM
//! plugins implement the same trait; the router knows nothing else.

pub mod events;
pub mod iam;
pub mod identity;
pub mod jwt;
pub mod static_tree;

use std::net::SocketAddr;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

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
    /// Whether the path as sent ended in '/'.
    pub trailing_slash: bool,
    pub headers: &'a HeaderMap,
    /// A POST's body on a flavour listener; empty otherwise.
    pub body: &'a [u8],
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
    /// A plugin's own status and headers (contract 0.3.0), checked already.
    Shaped(Box<Shaped>),
}

/// An answer whose status and headers its provider chose.
#[derive(Clone)]
pub struct Shaped {
    pub status: StatusCode,
    /// Added to the answer; a `content-type` among them wins.
    pub headers: HeaderMap,
    /// None: the listener's own page for `status` (its not-found page).
    pub body: Option<(Bytes, HeaderValue)>,
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
    fn value(&self, path: &str) -> Option<TreeValue>;
}

/// A value of the built tree, as a lookup sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum TreeValue {
    Leaf(String),
    /// A directory's entries, sub-directories ending in '/'.
    Listing(Vec<String>),
}

impl TreeValue {
    /// A provider's value as a lookup sees it; nothing for anything else.
    pub fn of(resolved: Resolved) -> Option<Self> {
        let text = |body: &Bytes| String::from_utf8_lossy(body).into_owned();
        match resolved {
            Resolved::Leaf { body, .. } => Some(TreeValue::Leaf(text(&body))),
            Resolved::Dir(listing) if listing.is_empty() => Some(TreeValue::Listing(Vec::new())),
            Resolved::Dir(listing) => Some(TreeValue::Listing(
                text(&listing).split('\n').map(str::to_owned).collect(),
            )),
            _ => None,
        }
    }

    /// As IMDS serves it: a listing is its entries, one per line.
    pub fn into_text(self) -> String {
        match self {
            TreeValue::Leaf(text) => text,
            TreeValue::Listing(entries) => entries.join("\n"),
        }
    }
}

#[async_trait]
pub trait Provider: Send + Sync {
    async fn resolve(&self, request: &Request<'_>) -> Resolved;
}
