//! The HTTP side: the query, and answers with GCE's statuses, content types
//! and error pages.

use crate::ersatz::plugin::types::{Answer, Leaf, Response};

pub const TEXT: &str = "application/text";
pub const JSON: &str = "application/json";
/// What GCE's error pages (and its `identity` tokens) are sent as.
pub const HTML: &str = "text/html; charset=UTF-8";

/// Answers that depend only on the config and the instance's built-in
/// values may be reused for an hour: both change only with a reload, which
/// drops reused answers.
pub const STATIC: u32 = 3600;
/// Answers that depend on the clock, a header or the query.
pub const NEVER: u32 = 0;

/// The query, decoded. Parameters GCE does not know, and those the host
/// handles itself (`wait_for_change`, `last_etag`, `timeout_sec`), are
/// ignored, as GCE ignores unknown ones.
pub use query::Query;

/// `alt=json` or `alt=text`; any other value is ignored.
pub fn alt(query: &Query) -> Option<Alt> {
    match query.get("alt")?.to_ascii_lowercase().as_str() {
        "json" => Some(Alt::Json),
        "text" => Some(Alt::Text),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq)]
pub enum Alt {
    Json,
    Text,
}

pub fn ok(body: String, content_type: &str, max_age: u32) -> Answer {
    answer(200, body, content_type, Vec::new(), max_age)
}

fn answer(
    status: u16,
    body: String,
    ct: &str,
    headers: Vec<(String, String)>,
    max_age: u32,
) -> Answer {
    Answer {
        response: Response::Leaf(Leaf {
            body: body.into_bytes(),
            content_type: ct.into(),
        }),
        status: Some(status),
        headers,
        max_age,
    }
}

/// GCE's not-found page: Google's error page naming the path.
pub fn not_found(url: &str) -> Answer {
    let message = format!(
        "The requested URL <code>{}</code> was not found on this server.",
        escape(url)
    );
    answer(
        404,
        error_page(404, "Not Found", &message),
        HTML,
        Vec::new(),
        STATIC,
    )
}

/// `alt=` on a plain listing, which GCE refuses.
pub fn bad_request() -> Answer {
    let message = "Your client has issued a malformed or illegal request.";
    answer(
        400,
        error_page(400, "Bad Request", message),
        HTML,
        Vec::new(),
        STATIC,
    )
}

/// GCE's answer to `identity` without an audience: a bare line.
pub fn no_audience() -> Answer {
    answer(
        400,
        "non-empty audience parameter required\n".into(),
        HTML,
        Vec::new(),
        STATIC,
    )
}

/// A POST anywhere but `token` and `identity`.
pub fn method_not_allowed(method: &str, url: &str) -> Answer {
    let message = format!(
        "The request method <code>{}</code> is inappropriate for the URL <code>{}</code>.",
        escape(method),
        escape(url)
    );
    let allow = vec![("allow".into(), "GET, HEAD".into())];
    answer(
        405,
        error_page(405, "Method Not Allowed", &message),
        HTML,
        allow,
        STATIC,
    )
}

/// A directory asked for without its '/': GCE redirects to it, absolute
/// (from the `Host` the client sent) and keeping the query. It depends on a
/// header, so it is never reused.
pub fn redirect(host: Option<&str>, url: &str, query: Option<&str>) -> Answer {
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    let location = match host {
        Some(host) => format!("http://{host}{url}/{query}"),
        None => format!("{url}/{query}"),
    };
    let body = format!("<a href=\"{}\">Moved Permanently</a>.\n", escape(&location));
    let headers = vec![("location".into(), location)];
    answer(301, body, HTML, headers, NEVER)
}

/// Google's error page, in the shape GCE sends it (title, code, message).
fn error_page(code: u16, reason: &str, message: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  \
         <meta name=viewport content=\"initial-scale=1, minimum-scale=1, width=device-width\">\n  \
         <title>Error {code} ({reason})!!1</title>\n  \
         <a href=//www.google.com/><span id=logo aria-label=Google></span></a>\n  \
         <p><b>{code}.</b> <ins>That’s an error.</ins>\n  \
         <p>{message}  <ins>That’s all we know.</ins>\n"
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
