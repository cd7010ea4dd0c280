//! First look at a request, on every listener, before any work: the Host
//! allow-list (a DNS rebinding defence, as aws-vault added) and the browser
//! filter (a request carrying `Origin` or `Referer` comes from a web page, as
//! weep refuses). The IMDS rule that a token PUT carrying `X-Forwarded-For`
//! came through a proxy lives with the token endpoint.

use std::borrow::Cow;
use std::net::{Ipv6Addr, SocketAddr};

use http::header::{HOST, ORIGIN, REFERER};
use http::{HeaderMap, Request, StatusCode};

pub struct Guard {
    /// Lower-case host names, without port; IPv6 in brackets.
    allowed_hosts: Vec<String>,
}

/// Why a request was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Two `Host` headers, or one that is not a host and port.
    MalformedHost,
    /// A host not in `server.allowed_hosts` (DNS rebinding).
    HostNotAllowed,
    /// `Origin` or `Referer`: a web page.
    FromBrowser,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::MalformedHost => StatusCode::BAD_REQUEST,
            Refusal::HostNotAllowed | Refusal::FromBrowser => StatusCode::FORBIDDEN,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Refusal::MalformedHost => "one Host header with a host name or address is required",
            Refusal::HostNotAllowed => "this Host is not in server.allowed_hosts",
            Refusal::FromBrowser => "requests from web pages (Origin or Referer) are refused",
        }
    }
}

impl Guard {
    /// The configured hosts, plus the addresses we listen on.
    pub fn new<'a>(
        allowed_hosts: &[String],
        listen: impl IntoIterator<Item = &'a SocketAddr>,
    ) -> Self {
        // As requests are compared: IPv6 in its canonical form.
        let mut hosts: Vec<String> = allowed_hosts
            .iter()
            .map(|h| {
                host_name(h.as_bytes())
                    .map_or_else(|| h.to_ascii_lowercase(), |name| name.to_ascii_lowercase())
            })
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

    /// Every authority the request names must be allowed: the `Host` header
    /// and, for an absolute-form request (`GET http://host/… HTTP/1.1`), the
    /// URI's. A request naming none cannot come from a browser, so it passes.
    pub fn check<B>(&self, request: &Request<B>) -> Result<(), Refusal> {
        from_no_browser(request.headers())?;
        let mut hosts = request.headers().get_all(HOST).iter();
        let header = hosts.next();
        if hosts.next().is_some() {
            return Err(Refusal::MalformedHost);
        }
        let absolute = request.uri().authority().map(|a| a.as_str().as_bytes());
        for named in header.map(|h| h.as_bytes()).into_iter().chain(absolute) {
            let name = host_name(named).ok_or(Refusal::MalformedHost)?;
            if !self
                .allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(&name))
            {
                return Err(Refusal::HostNotAllowed);
            }
        }
        Ok(())
    }
}

/// No SDK sends `Origin` or `Referer`; browsers do, on every cross-site
/// request a page makes.
fn from_no_browser(headers: &HeaderMap) -> Result<(), Refusal> {
    if headers.contains_key(ORIGIN) || headers.contains_key(REFERER) {
        Err(Refusal::FromBrowser)
    } else {
        Ok(())
    }
}

/// The host of `host[:port]`, `[v6][:port]` (IPv6 in canonical form);
/// `None` unless the whole value is exactly that (`[::1]evil.com`, `a b`,
/// `host:` and `host:99999` are not).
fn host_name(value: &[u8]) -> Option<Cow<'_, str>> {
    let text = std::str::from_utf8(value).ok()?;
    let (name, port): (Cow<'_, str>, &str) = match text.strip_prefix('[') {
        Some(rest) => {
            let end = rest.find(']')?;
            let ip = rest[..end].parse::<Ipv6Addr>().ok()?;
            (format!("[{ip}]").into(), &rest[end + 1..])
        }
        None => {
            let (name, port) = text.split_at(text.find(':').unwrap_or(text.len()));
            // Names as hosts and containers are named (`imds_1` too).
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if !name_ok {
                return None;
            }
            (name.into(), port)
        }
    };
    match port.strip_prefix(':') {
        None if port.is_empty() => Some(name),
        Some(digits)
            if digits.bytes().all(|b| b.is_ascii_digit()) && digits.parse::<u16>().is_ok() =>
        {
            Some(name)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(hosts: &[&str]) -> Request<()> {
        let mut builder = Request::builder().uri("/latest/meta-data/");
        for host in hosts {
            builder = builder.header(HOST, *host);
        }
        builder.body(()).unwrap()
    }

    fn guard() -> Guard {
        Guard::new(
            &["169.254.169.254".into(), "[::1]".into(), "localhost".into()],
            &["10.0.0.5:80".parse().unwrap()],
        )
    }

    #[test]
    fn allows_listed_hosts_and_listen_addresses_on_any_port() {
        let guard = guard();
        for ok in [
            "169.254.169.254",
            "169.254.169.254:80",
            "[::1]:16925",
            "[::1]",
            "[0:0::1]:80",
            "10.0.0.5:80",
            "LOCALHOST:8998",
        ] {
            assert_eq!(guard.check(&request(&[ok])), Ok(()), "{ok}");
        }
        assert_eq!(guard.check(&request(&[])), Ok(()));
    }

    #[test]
    fn refuses_other_hosts() {
        for bad in [
            "evil.example",
            "evil.example:80",
            "169.254.169.254.evil.example",
        ] {
            assert_eq!(
                guard().check(&request(&[bad])),
                Err(Refusal::HostNotAllowed),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_malformed_and_doubled_hosts() {
        for bad in [
            "[::1]evil.com",
            "[::1]:80x",
            "[::1",
            "[evil]:80",
            "localhost:",
            "localhost:99999",
            "localhost:+80",
            "local host",
            "",
            ":80",
            "localhost:80:80",
        ] {
            assert_eq!(
                guard().check(&request(&[bad])),
                Err(Refusal::MalformedHost),
                "{bad:?}"
            );
        }
        assert_eq!(
            guard().check(&request(&["localhost", "evil.example"])),
            Err(Refusal::MalformedHost)
        );
    }

    #[test]
    fn an_absolute_form_uri_names_its_host_too() {
        let absolute = |uri: &str| {
            Request::builder()
                .uri(uri)
                .header(HOST, "localhost")
                .body(())
                .unwrap()
        };
        assert_eq!(
            guard().check(&absolute("http://evil.example/roles")),
            Err(Refusal::HostNotAllowed)
        );
        assert_eq!(
            guard().check(&absolute("http://localhost:8998/roles")),
            Ok(())
        );
    }

    #[test]
    fn refuses_requests_from_web_pages() {
        for header in [ORIGIN, REFERER] {
            let mut request = request(&["localhost"]);
            request
                .headers_mut()
                .insert(header.clone(), "http://evil.example".parse().unwrap());
            assert_eq!(
                guard().check(&request),
                Err(Refusal::FromBrowser),
                "{header}"
            );
        }
    }
}
