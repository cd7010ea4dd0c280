//! A minimal HTTP/1.1 client for the CLI commands that talk to servers: a
//! running ersatz's admin API (`role`, `bootstrap`, `event`) and any IMDS
//! (`snapshot`).

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// `http://host:port` → `host:port`. A trailing `/` or `/latest/` is
/// allowed (it is what IMDS URLs are often written with); another path is
/// refused with the form to use.
pub fn authority(url: &str) -> Result<String, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("{url:?} is not a URL like http://169.254.169.254"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url:?} must start with http://"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url:?} names no host, like http://169.254.169.254"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "{url:?}: give the host and port alone, without a user"
        ));
    }
    if !matches!(uri.path(), "" | "/" | "/latest" | "/latest/") {
        return Err(format!(
            "{url:?}: give the server's address without a path, like http://{authority}"
        ));
    }
    Ok(authority.as_str().to_owned())
}

/// How long a server may take to answer one request: long enough for an
/// admin call that waits on STS, short enough that a server that never
/// answers does not hang the command.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One request on a fresh connection, answered within `REQUEST_TIMEOUT`.
pub async fn request(
    authority: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Result<(StatusCode, Bytes), String> {
    let exchange = exchange(authority, method, path, headers, body);
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(no_answer(authority)))
}

async fn exchange(
    authority: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Result<(StatusCode, Bytes), String> {
    let response = send(authority, method, path, headers, body).await?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, bytes))
}

/// Sends one request on a fresh connection; the answer's body is unread.
async fn send(
    authority: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("cannot reach {authority}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, authority);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if body.is_some() {
        builder = builder.header(CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}

/// The `Authorization` header a bearer token makes, if there is one.
fn headers(bearer: &Option<String>) -> Vec<(&str, &str)> {
    bearer
        .iter()
        .map(|b| (AUTHORIZATION.as_str(), b.as_str()))
        .collect()
}

fn no_answer(authority: &str) -> String {
    format!(
        "no answer from {authority} within {} s",
        REQUEST_TIMEOUT.as_secs()
    )
}

pub struct AdminClient {
    authority: String,
    token: Option<String>,
}

impl AdminClient {
    /// `url` like `http://127.0.0.1:8998`.
    pub fn new(url: &str, token: Option<String>) -> Result<Self, String> {
        Ok(Self {
            authority: authority(url).map_err(|e| format!("admin URL {e}"))?,
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// A GET whose answer streams (`?follow`): a successful answer's
    /// chunks go to `write` as they come, until the server ends it; another
    /// answer is returned whole.
    pub async fn follow(
        &self,
        path: &str,
        mut write: impl FnMut(&[u8]),
    ) -> Result<(StatusCode, String), String> {
        let bearer = self.bearer();
        let headers = headers(&bearer);
        let connect = send(&self.authority, Method::GET, path, &headers, None);
        let response = tokio::time::timeout(REQUEST_TIMEOUT, connect)
            .await
            .unwrap_or_else(|_| Err(no_answer(&self.authority)))
            .map_err(|e| format!("{e} (is `ersatz serve` running?)"))?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            return Ok((status, String::from_utf8_lossy(&bytes).into_owned()));
        }
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.map_err(|e| e.to_string())?.data_ref() {
                write(data);
            }
        }
        Ok((status, String::new()))
    }

    /// `Bearer TOKEN`, when this client has a token.
    fn bearer(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, String), String> {
        let bearer = self.bearer();
        let (status, bytes) = request(&self.authority, method, path, &headers(&bearer), body)
            .await
            .map_err(|e| format!("{e} (is `ersatz serve` running?)"))?;
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn urls_give_their_authority_or_say_which_form_to_use() {
        for ok in [
            "http://127.0.0.1:16925",
            "http://127.0.0.1:16925/",
            "http://127.0.0.1:16925/latest/",
            "http://[::1]:80",
        ] {
            assert!(authority(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            authority("http://127.0.0.1:16925/latest/").unwrap(),
            "127.0.0.1:16925"
        );
        let refused = authority("http://127.0.0.1:16925/latest/meta-data/").unwrap_err();
        assert!(
            refused.contains("without a path, like http://127.0.0.1:16925"),
            "{refused}"
        );
        assert!(authority("https://x").unwrap_err().contains("http://"));
    }
}
