//! A mount's gates (`gates` in its `[[plugins]]` entry): rules a request
//! must pass before the mount's provider sees it, each with the status and
//! body its cloud answers a request that fails it. Checked in order; the
//! first failed answers. They wrap a provider, so they apply on any
//! listener, the EC2 one included.

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::config::{GateConfig, GateRule};
use crate::provider::{Provider, Request, Resolved, Shaped};

pub struct Gate {
    rule: GateRule,
    status: StatusCode,
    content_type: HeaderValue,
    body: Bytes,
}

impl Gate {
    /// From its configuration; the error names the field and the reason,
    /// as `config check` reports them.
    pub fn from_config(gate: &GateConfig) -> Result<Self, (&'static str, String)> {
        let checked = gate.checked()?;
        Ok(Self {
            rule: checked.rule,
            status: checked.status,
            content_type: checked.content_type,
            body: Bytes::from(gate.body.clone()),
        })
    }

    fn passes(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        match &self.rule {
            GateRule::Require(name, wanted) => {
                let mut values = headers.get_all(name).iter();
                match (values.next(), values.next(), wanted) {
                    (Some(_), None, None) => true,
                    (Some(value), None, Some(wanted)) => {
                        value.as_bytes().eq_ignore_ascii_case(wanted.as_bytes())
                    }
                    // None, or two: which one counts would be ambiguous.
                    _ => false,
                }
            }
            GateRule::Refuse(name) => !headers.contains_key(name),
            GateRule::UniqueQuery => {
                let mut seen = Vec::new();
                let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
                pairs.into_iter().all(|(name, _)| {
                    let new = !seen.contains(&name);
                    seen.push(name);
                    new
                })
            }
        }
    }

    fn refusal(&self) -> Resolved {
        Resolved::Shaped(Box::new(Shaped {
            status: self.status,
            headers: HeaderMap::new(),
            body: Some((self.body.clone(), self.content_type.clone())),
        }))
    }
}

/// A provider behind its mount's gates.
pub struct Gated<P> {
    pub gates: Vec<Gate>,
    pub inner: P,
}

#[async_trait]
impl<P: Provider> Provider for Gated<P> {
    async fn resolve(&self, request: &Request<'_>) -> Resolved {
        let failed = self
            .gates
            .iter()
            .find(|gate| !gate.passes(request.headers, request.query));
        match failed {
            Some(gate) => gate.refusal(),
            None => self.inner.resolve(request).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(json: &str) -> Gate {
        let config: GateConfig = serde_json::from_str(json).unwrap();
        Gate::from_config(&config).ok().unwrap()
    }

    #[test]
    fn each_rule_passes_and_fails_as_written() {
        let flavour =
            gate(r#"{"require_header": "Metadata-Flavor", "value": "Google", "status": 403}"#);
        let mut headers = HeaderMap::new();
        assert!(!flavour.passes(&headers, None));
        headers.insert("metadata-flavor", HeaderValue::from_static("google"));
        assert!(flavour.passes(&headers, None));
        headers.append("metadata-flavor", HeaderValue::from_static("Google"));
        assert!(!flavour.passes(&headers, None), "two values are ambiguous");
        let headers = HeaderMap::new();
        let refuse = gate(r#"{"refuse_header": "X-Forwarded-For", "status": 400}"#);
        assert!(refuse.passes(&headers, None));
        let mut forwarded = HeaderMap::new();
        forwarded.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        assert!(!refuse.passes(&forwarded, None));
        let unique = gate(r#"{"unique_query": true, "status": 400}"#);
        assert!(unique.passes(&headers, Some("a=1&b=2")));
        assert!(unique.passes(&headers, None));
        assert!(!unique.passes(&headers, Some("a=1&b=2&a=3")));
        assert!(
            !unique.passes(&headers, Some("api-version=1&api%2Dversion=2")),
            "decoded names"
        );
    }
}
