//! A plugin behind the same [`Provider`] trait as the built-ins.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::cache::AnswerCache;
use super::{types, Failure, Plugin};
use crate::provider::{Provider, Request, Resolved, Shaped, TEXT};

pub struct WasmProvider {
    plugin: Arc<Plugin>,
    answers: AnswerCache,
}

impl WasmProvider {
    pub fn new(plugin: Arc<Plugin>) -> Self {
        Self {
            answers: AnswerCache::new(plugin.max_age),
            plugin,
        }
    }
}

#[async_trait]
impl Provider for WasmProvider {
    async fn resolve(&self, request: &Request<'_>) -> Resolved {
        // IMDS clients send neither queries nor anything but GET to metadata
        // paths; anything else is simply never reused.
        let reusable = request.method == Method::GET && request.query.is_none();
        let client = request.peer.ip();
        // `dir` and `dir/` may be answered differently (a redirect, a listing).
        let key = match request.trailing_slash {
            true => std::borrow::Cow::Owned(format!("{}/", request.path)),
            false => std::borrow::Cow::Borrowed(request.path),
        };
        if reusable {
            if let Some(kept) = self.answers.get(client, &key, Instant::now()) {
                self.plugin.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                return kept;
            }
        }
        let guest_request = types::Request {
            method: request.method.as_str().to_owned(),
            path: request.path.to_owned(),
            trailing_slash: request.trailing_slash,
            query: request.query.map(str::to_owned),
            headers: request
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: request.body.to_vec(),
            client: request.peer.to_string(),
        };
        let answer = match self.plugin.resolve(guest_request).await {
            Ok(answer) => answer,
            Err(Failure::Busy) => return Resolved::Busy,
            Err(_) => return Resolved::Failed,
        };
        let answered = match resolved(answer.response, answer.status, answer.headers) {
            Ok(answered) => answered,
            Err(reason) => {
                self.plugin.failed(Failure::Guest(reason));
                return Resolved::Failed;
            }
        };
        if reusable {
            let now = Instant::now();
            self.answers
                .put(client, &key, &answered, answer.max_age, now);
        }
        answered
    }
}

/// A plugin's answer as the router's. Its status and headers are checked
/// as the hostile input they may be; an answer that sets neither is one of
/// the plain kinds, as from plugins before 0.3.0 (a content type that is no
/// header value becomes text/plain).
pub fn resolved(
    response: types::Response,
    status: Option<u16>,
    headers: Vec<(String, String)>,
) -> Result<Resolved, String> {
    if status.is_none() && headers.is_empty() {
        return Ok(plain(response));
    }
    let (default_status, body) = match plain(response) {
        Resolved::Leaf { body, content_type } => (StatusCode::OK, Some((body, content_type))),
        Resolved::Dir(listing) => (StatusCode::OK, Some((listing, TEXT))),
        _ => (StatusCode::NOT_FOUND, None),
    };
    let status = match status {
        None => default_status,
        Some(code @ 200..=599) => StatusCode::from_u16(code).map_err(|e| e.to_string())?,
        Some(code) => return Err(format!("answered status {code}: only 200 to 599 may be")),
    };
    Ok(Resolved::Shaped(Box::new(Shaped {
        status,
        headers: checked_headers(headers)?,
        body,
    })))
}

fn plain(response: types::Response) -> Resolved {
    match response {
        types::Response::Leaf(leaf) => Resolved::Leaf {
            content_type: HeaderValue::from_str(&leaf.content_type).unwrap_or(TEXT),
            body: Bytes::from(leaf.body),
        },
        types::Response::Directory(entries) => Resolved::Dir(Bytes::from(entries.join("\n"))),
        types::Response::NotFound => Resolved::NotFound,
    }
}

/// Headers a plugin may add: at most this many...
const MAX_HEADERS: usize = 32;
/// ...of at most this many bytes, names and values together.
const MAX_HEADER_BYTES: usize = 8 << 10;
/// The server's alone: those that frame the message or the connection, and
/// those that would reach beyond this answer (cookies, encodings the body
/// is not in, the date, browsers' cross-origin permissions).
const SERVERS_OWN: [&str; 11] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "set-cookie",
    "content-encoding",
    "date",
];
/// At most once: a second value would leave clients to pick one.
const SINGLE: [&str; 4] = ["content-type", "location", "etag", "retry-after"];

fn checked_headers(headers: Vec<(String, String)>) -> Result<HeaderMap, String> {
    if headers.len() > MAX_HEADERS {
        return Err(format!(
            "answered {} headers: at most {MAX_HEADERS} may be",
            headers.len()
        ));
    }
    let bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(format!(
            "answered {bytes} bytes of headers: at most {MAX_HEADER_BYTES} may be"
        ));
    }
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("answered a header name that is not HTTP: {name:?}"))?;
        let own = SERVERS_OWN.contains(&name.as_str());
        if own || name.as_str().starts_with("access-control-") {
            return Err(format!(
                "answered the header {name}, which only the server sets"
            ));
        }
        if SINGLE.contains(&name.as_str()) && map.contains_key(&name) {
            return Err(format!("answered the header {name} twice"));
        }
        let value = HeaderValue::from_str(&value)
            .map_err(|_| format!("answered a {name} header whose value is not HTTP"))?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf() -> types::Response {
        types::Response::Leaf(types::Leaf {
            body: b"x".to_vec(),
            content_type: "text/plain".into(),
        })
    }

    fn header(name: &str, value: &str) -> Vec<(String, String)> {
        vec![(name.to_owned(), value.to_owned())]
    }

    #[test]
    fn a_plugins_status_and_headers_are_kept_when_valid() {
        let Ok(Resolved::Shaped(shaped)) = resolved(leaf(), Some(301), header("location", "/a/"))
        else {
            panic!("not shaped");
        };
        assert_eq!(shaped.status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(shaped.headers["location"], "/a/");
        assert!(matches!(
            resolved(leaf(), None, vec![]),
            Ok(Resolved::Leaf { .. })
        ));
    }

    #[test]
    fn a_plugin_cannot_frame_the_message_or_smuggle_a_header() {
        for (name, value) in [
            ("content-length", "0"),
            ("Transfer-Encoding", "chunked"),
            ("connection", "close"),
            ("set-cookie", "a=b"),
            ("Access-Control-Allow-Origin", "*"),
            ("x-a", "one\r\nx-b: two"),
            ("x-a\n", "v"),
            ("", "v"),
        ] {
            assert!(
                resolved(leaf(), None, header(name, value)).is_err(),
                "{name:?}: {value:?}"
            );
        }
        for status in [0, 100, 101, 199, 600, u16::MAX] {
            assert!(resolved(leaf(), Some(status), vec![]).is_err(), "{status}");
        }
        let twice = vec![
            ("content-type".to_owned(), "a/b".to_owned()),
            ("Content-Type".to_owned(), "c/d".to_owned()),
        ];
        assert!(
            resolved(leaf(), None, twice).is_err(),
            "a second content type"
        );
        let many = (0..=MAX_HEADERS)
            .map(|i| (format!("x-{i}"), "v".into()))
            .collect();
        assert!(resolved(leaf(), None, many).is_err());
        assert!(resolved(leaf(), None, header("x-big", &"v".repeat(MAX_HEADER_BYTES))).is_err());
    }
}
