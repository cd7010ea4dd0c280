//! First look at a request, before any work: the Host allow-list (a DNS
//! rebinding defence, as aws-vault added) and the browser filter (a request
//! carrying `Origin` or `Referer` comes from a web page, as weep refuses).
//! The IMDS rule that a token PUT carrying `X-Forwarded-For` came through a
//! proxy lives with the token endpoint.

use std::net::SocketAddr;

use http::header::{HOST, ORIGIN, REFERER};
use http::{HeaderMap, StatusCode};

pub struct Guard {
    /// Lower-case host names, without port; IPv6 in brackets.
    allowed_hosts: Vec<String>,
}

impl Guard {
    /// The configured hosts, plus the addresses we listen on.
    pub fn new(allowed_hosts: &[String], listen: &[SocketAddr]) -> Self {
        let mut hosts: Vec<String> = allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        for addr in listen {
            let host = match addr {
                SocketAddr::V4(v4) => v4.ip().to_string(),
                SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
            };
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        Self {
            allowed_hosts: hosts,
        }
    }

    /// A request with no Host header cannot come from a browser, so it passes.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), StatusCode> {
        from_no_browser(headers)?;
        let Some(host) = headers.get(HOST) else {
            return Ok(());
        };
        let host = host.to_str().map_err(|_| StatusCode::FORBIDDEN)?;
        let name = strip_port(host);
        if self
            .allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name))
        {
            Ok(())
        } else {
            Err(StatusCode::FORBIDDEN)
        }
    }
}

/// No SDK sends `Origin` or `Referer`; browsers do, on every cross-site
/// request a page makes.
pub fn from_no_browser(headers: &HeaderMap) -> Result<(), StatusCode> {
    if headers.contains_key(ORIGIN) || headers.contains_key(REFERER) {
        Err(StatusCode::FORBIDDEN)
    } else {
        Ok(())
    }
}

/// `127.0.0.1:80` → `127.0.0.1`, `[::1]:80` → `[::1]`, `localhost` → `localhost`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_host(host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, host.parse().unwrap());
        headers
    }

    #[test]
    fn allows_listed_hosts_and_listen_addresses_on_any_port() {
        let guard = Guard::new(
            &["169.254.169.254".into(), "[::1]".into()],
            &["10.0.0.5:80".parse().unwrap()],
        );
        for ok in [
            "169.254.169.254",
            "169.254.169.254:80",
            "[::1]:16925",
            "10.0.0.5:80",
        ] {
            assert_eq!(guard.check(&with_host(ok)), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:80",
            "169.254.169.254.evil.example",
        ] {
            assert_eq!(
                guard.check(&with_host(bad)),
                Err(StatusCode::FORBIDDEN),
                "{bad}"
            );
        }
        assert_eq!(guard.check(&HeaderMap::new()), Ok(()));
    }

    #[test]
    fn refuses_requests_from_web_pages() {
        let guard = Guard::new(&["127.0.0.1".into()], &[]);
        for header in [ORIGIN, REFERER] {
            let mut headers = with_host("127.0.0.1");
            headers.insert(header.clone(), "http://evil.example".parse().unwrap());
            assert_eq!(
                guard.check(&headers),
                Err(StatusCode::FORBIDDEN),
                "{header}"
            );
        }
    }
}
