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
#[derive(Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = query.unwrap_or("").split('&').filter(|p| !p.is_empty());
        Self(
            pairs
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (decode(name), decode(value))
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-decoding, with '+' as a space (form encoding, which Python's
/// `requests` and curl's `--data-urlencode` both produce).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| {
            let h = std::str::from_utf8(h).ok()?;
            u8::from_str_radix(h, 16).ok()
        });
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode() {
        let q = Query::parse(Some(
            "api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&a+b=c+d&flag",
        ));
        assert_eq!(q.get("api-version"), Some("2018-02-01"));
        assert_eq!(q.get("resource"), Some("https://vault.azure.net"));
        assert_eq!(q.get("a b"), Some("c d"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("missing"), None);
        assert_eq!(Query::parse(Some("x=%zz%4")).get("x"), Some("%zz%4"));
    }
}
