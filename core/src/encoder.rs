//! Turns answers into IMDS responses: bodies without trailing newlines,
//! `text/plain` listings, IMDS's XHTML error pages, `Server: EC2ws`.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER, SERVER};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::provider::{Shaped, TEXT};
use crate::session::TTL_HEADER;

/// An answer's body: its bytes, or lines sent as they come
/// (`GET /requests?follow`), until the sender goes.
#[derive(Debug)]
pub enum Body {
    Full(Full<Bytes>),
    Lines(tokio::sync::mpsc::Receiver<Bytes>),
}

impl Body {
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Body::Full(Full::new(bytes.into()))
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::Full(Full::default())
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full(full) => std::pin::Pin::new(full).poll_frame(cx),
            Body::Lines(lines) => lines
                .poll_recv(cx)
                .map(|line| line.map(|line| Ok(http_body::Frame::data(line)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(full) => full.is_end_stream(),
            Body::Lines(_) => false,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Body::Full(full) => full.size_hint(),
            Body::Lines(_) => http_body::SizeHint::default(),
        }
    }
}

const EC2WS: HeaderValue = HeaderValue::from_static("EC2ws");
/// EC2's answer to a connection over the caps (see
/// [`crate::listener::Handler::over_capacity`]).
pub const OVER_CAPACITY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nServer: EC2ws\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const HTML: HeaderValue = HeaderValue::from_static("text/html");

pub fn ok(body: Bytes, content_type: HeaderValue) -> Response<Body> {
    let mut response = Response::new(Body::new(body));
    let headers = response.headers_mut();
    headers.insert(SERVER, EC2WS);
    headers.insert(CONTENT_TYPE, content_type);
    response
}

pub fn listing(body: Bytes) -> Response<Body> {
    ok(body, TEXT)
}

/// A token, with its TTL echoed (aws-sdk-rust refuses a token without it).
pub fn token(token: String, ttl: u64) -> Response<Body> {
    let mut response = ok(Bytes::from(token), TEXT);
    response
        .headers_mut()
        .insert(TTL_HEADER, HeaderValue::from(ttl));
    response
}

/// A provider's own status and headers; without a body, the page `page`
/// makes for the status (IMDS's, or a flavour listener's).
pub fn shaped(shaped: Shaped, page: impl FnOnce(StatusCode) -> Response<Body>) -> Response<Body> {
    let mut response = match shaped.body {
        Some((body, content_type)) => {
            let mut response = ok(body, content_type);
            *response.status_mut() = shaped.status;
            response
        }
        None => page(shaped.status),
    };
    // A name the provider sets replaces the page's values for it.
    response.headers_mut().extend(shaped.headers);
    response
}

/// Answers that IMDS makes with its small XHTML page.
pub fn error(status: StatusCode) -> Response<Body> {
    let mut response = ok(Bytes::from_static(error_page(status).as_bytes()), HTML);
    *response.status_mut() = status;
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD, PUT"));
    }
    response
}

macro_rules! page {
    ($title:literal) => {
        concat!(
            "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n",
            "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n",
            "\t\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n",
            "<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n",
            " <head>\n  <title>",
            $title,
            "</title>\n </head>\n <body>\n  <h1>",
            $title,
            "</h1>\n </body>\n</html>\n"
        )
    };
}

fn error_page(status: StatusCode) -> &'static str {
    known_page(status).unwrap_or(page!("500 - Internal Server Error"))
}

/// IMDS's own page for `status`, when it has one.
fn known_page(status: StatusCode) -> Option<&'static str> {
    Some(match status.as_u16() {
        400 => page!("400 - Bad Request"),
        401 => page!("401 - Unauthorized"),
        403 => page!("403 - Forbidden"),
        404 => page!("404 - Not Found"),
        405 => page!("405 - Method Not Allowed"),
        413 => page!("413 - Request Entity Too Large"),
        429 => page!("429 - Too Many Requests"),
        500 => page!("500 - Internal Server Error"),
        503 => page!("503 - Service Unavailable"),
        _ => return None,
    })
}

/// An answer a fault rule chose: IMDS's page for `status` (a page of the
/// same shape for statuses IMDS has none for), and `Retry-After` when given.
pub fn fault(status: StatusCode, retry_after: Option<u64>) -> Response<Body> {
    let mut response = if known_page(status).is_some() {
        error(status)
    } else {
        let title = format!(
            "{} - {}",
            status.as_str(),
            status.canonical_reason().unwrap_or("Error")
        );
        let page = page!("TITLE").replace("TITLE", &title);
        let mut response = ok(Bytes::from(page), HTML);
        *response.status_mut() = status;
        response
    };
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
