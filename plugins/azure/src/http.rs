//! A request as the logic sees it, the reply it makes, and the error
//! bodies every endpoint shares.

use serde::Serialize;

pub const JSON: &str = "application/json; charset=utf-8";
pub const TEXT: &str = "text/plain; charset=utf-8";

pub struct Request<'a> {
    pub method: &'a str,
    /// Below the mount, without leading or trailing '/'.
    pub path: &'a str,
    pub query: Query,
    pub body: &'a [u8],
    pub client: &'a str,
}

/// The query's parameters, decoded. The host's `unique_query` gate has
/// already refused repeated names, so the first of a name is the only one.
pub use query::Query;

/// What the plugin answers: always a body of its own, with its status.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// Seconds the host may reuse the answer (0: never).
    pub max_age: u32,
}

impl Reply {
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        let body = serde_json::to_vec(value).expect("plain data serializes");
        Self {
            status,
            content_type: JSON,
            body,
            headers: Vec::new(),
            max_age: 0,
        }
    }

    pub fn text(text: String) -> Self {
        Self {
            status: 200,
            content_type: TEXT,
            body: text.into_bytes(),
            headers: Vec::new(),
            max_age: 0,
        }
    }

    pub fn with_header(mut self, name: &str, value: String) -> Self {
        self.headers.push((name.to_owned(), value));
        self
    }

    pub fn cached_for(mut self, seconds: u32) -> Self {
        self.max_age = seconds;
        self
    }
}

#[derive(Serialize)]
struct Error<'a> {
    error: &'a str,
}

/// IMDS's own errors: `{"error":"..."}`.
pub fn error(status: u16, message: &str) -> Reply {
    Reply::json(status, &Error { error: message })
}

pub fn not_found() -> Reply {
    error(404, "Not found")
}

pub fn method_not_allowed() -> Reply {
    error(405, "Method not allowed")
}

#[derive(Serialize)]
struct OauthError<'a> {
    error: &'a str,
    error_description: &'a str,
}

/// The identity endpoint's errors, in OAuth 2's shape.
pub fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    let body = OauthError {
        error,
        error_description: description,
    };
    Reply::json(status, &body)
}
