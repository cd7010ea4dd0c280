//! `[[listeners]]` (other clouds' metadata services) and what their
//! `[[plugins]]` declare: mounts of their own and gates. Every value here
//! becomes a header, a path or a status, so each is checked now, before
//! anything binds, and named by its key when wrong.

use http::{HeaderName, HeaderValue};

use super::{ConfigError, GateConfig, Loaded};

/// The largest gate body: an error page, not a payload.
const MAX_GATE_BODY: usize = 64 << 10;

pub fn validate(loaded: &Loaded) -> Result<(), ConfigError> {
    let config = &loaded.config;
    let mut names: Vec<&str> = Vec::new();
    for (i, listener) in config.listeners.iter().enumerate() {
        let key = |field: &str| format!("listeners.{i}.{field}");
        let name = listener.name.as_str();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(loaded.error(&key("name"), "must be letters, digits and '-'"));
        }
        if names.contains(&name) || name == "metadata" || name == "admin" {
            return Err(loaded.error(
                &key("name"),
                format!("\"{name}\" is taken: give each listener its own name"),
            ));
        }
        names.push(name);
        if listener.listen.is_empty() {
            return Err(loaded.error(
                &key("listen"),
                "give at least one address, e.g. [\"127.0.0.1:8080\"]",
            ));
        }
        for (h, host) in listener.hosts.iter().enumerate() {
            let name = host.trim_start_matches('[').trim_end_matches(']');
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':');
            if name.is_empty() || !name.chars().all(allowed) {
                return Err(loaded.error(
                    &key(&format!("hosts.{h}")),
                    format!("\"{host}\" is not a host name or address"),
                ));
            }
        }
        for (header, value) in &listener.headers {
            header_pair(header, value)
                .map_err(|reason| loaded.error(&key(&format!("headers.{header}")), reason))?;
        }
        if let Some(poll) = &listener.long_poll {
            for (field, param) in [
                ("flag", &poll.flag),
                ("etag", &poll.etag),
                ("timeout", &poll.timeout),
            ] {
                if param.is_empty() || param.contains(['&', '=', '#']) {
                    return Err(loaded.error(
                        &key(&format!("long_poll.{field}")),
                        "must be a query parameter's name",
                    ));
                }
            }
        }
        if let Some(keys) = &listener.keys {
            if keys.pem.is_some() && keys.pem == keys.jwks {
                let why = "the same path as keys.pem: give each its own";
                return Err(loaded.error(&key("keys.jwks"), why));
            }
            for (field, path) in [("pem", &keys.pem), ("jwks", &keys.jwks)] {
                if let Some(path) = path {
                    listener_mount(path)
                        .map_err(|reason| loaded.error(&key(&format!("keys.{field}")), reason))?;
                }
            }
        }
    }
    let mut mounted: Vec<(&str, String)> = Vec::new();
    for (i, plugin) in config.plugins.iter().enumerate() {
        let key = |field: &str| format!("plugins.{i}.{field}");
        for (g, gate) in plugin.gates.iter().enumerate() {
            gate.checked().map_err(|(field, reason)| {
                loaded.error(&key(&format!("gates.{g}.{field}")), reason)
            })?;
        }
        let Some(listener) = plugin.listener.as_deref() else {
            continue;
        };
        if !names.contains(&listener) {
            let defined = if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            };
            return Err(loaded.error(
                &key("listener"),
                format!("no [[listeners]] entry named \"{listener}\" (defined: {defined})"),
            ));
        }
        let Some(mount) = &plugin.mount else {
            return Err(loaded.error(
                &key("mount"),
                format!("a plugin on listener \"{listener}\" needs a mount, e.g. \"/\""),
            ));
        };
        let path = listener_mount(mount).map_err(|reason| loaded.error(&key("mount"), reason))?;
        if mounted.iter().any(|(l, p)| *l == listener && *p == path) {
            return Err(loaded.error(
                &key("mount"),
                format!("another plugin is mounted at {mount} on \"{listener}\""),
            ));
        }
        mounted.push((listener, path));
    }
    Ok(())
}

/// A path on a listener, as given (`/computeMetadata/v1`, `/`), without its
/// leading and trailing '/': whole segments, none of them `.` or `..`.
pub fn listener_mount(path: &str) -> Result<String, String> {
    let Some(inner) = path.strip_prefix('/') else {
        return Err(format!("\"{path}\" must begin with '/'"));
    };
    if path.contains("//") {
        return Err(format!("\"{path}\" has an empty segment ('//')"));
    }
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if inner.is_empty() {
        return Ok(String::new());
    }
    let bad = |s: &str| {
        s.is_empty()
            || s == "."
            || s == ".."
            || !s
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
    };
    if inner.split('/').any(bad) {
        return Err(format!(
            "\"{path}\" must be whole path segments, without '.', '..', '?', '#', spaces or '//'"
        ));
    }
    Ok(inner.to_owned())
}

fn header_pair(name: &str, value: &str) -> Result<(), String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("\"{name}\" is not a header name"))?;
    HeaderValue::from_str(value)
        .map_err(|_| "the value is not a header value (control characters?)".to_owned())?;
    Ok(())
}

/// A gate's rule, its values checked.
pub enum GateRule {
    /// The header, once, with this value (without regard to case) if given.
    Require(HeaderName, Option<String>),
    Refuse(HeaderName),
    /// No query parameter given twice.
    UniqueQuery,
}

/// A gate as it will serve: its rule, and the answer to a request that
/// fails it. Validation and the server build it the same way.
pub struct CheckedGate {
    pub rule: GateRule,
    pub status: http::StatusCode,
    pub content_type: HeaderValue,
}

impl GateConfig {
    /// The gate, or the field at fault and why.
    pub fn checked(&self) -> Result<CheckedGate, (&'static str, String)> {
        let header = |field, name: &str| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| (field, format!("\"{name}\" is not a header name")))
        };
        let rule = match (&self.require_header, &self.refuse_header, self.unique_query) {
            (Some(name), None, false) => {
                GateRule::Require(header("require_header", name)?, self.value.clone())
            }
            (None, Some(name), false) => GateRule::Refuse(header("refuse_header", name)?),
            (None, None, true) if self.value.is_none() => GateRule::UniqueQuery,
            (None, _, _) if self.value.is_some() => {
                return Err(("value", "only a require_header gate has a value".into()));
            }
            _ => {
                let why =
                    "give exactly one of require_header, refuse_header or unique_query = true";
                return Err(("require_header", why.into()));
            }
        };
        let status = http::StatusCode::from_u16(self.status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error());
        let Some(status) = status else {
            let why = format!("{} is not an error status (400 to 599)", self.status);
            return Err(("status", why));
        };
        let content_type = HeaderValue::from_str(&self.content_type)
            .map_err(|_| ("content_type", "is not a header value".to_owned()))?;
        if self.body.len() > MAX_GATE_BODY {
            let why = format!("is {} bytes, over {MAX_GATE_BODY}", self.body.len());
            return Err(("body", why));
        }
        Ok(CheckedGate {
            rule,
            status,
            content_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::listener_mount;

    #[test]
    fn listener_mounts_are_whole_segments() {
        assert_eq!(listener_mount("/").unwrap(), "");
        assert_eq!(
            listener_mount("/computeMetadata/v1/").unwrap(),
            "computeMetadata/v1"
        );
        for bad in ["", "x", "/a//b", "/a/../b", "/./a", "/a b", "/a?b", "//"] {
            assert!(listener_mount(bad).is_err(), "{bad:?}");
        }
    }
}
