//! `[[faults]]`: rules that make the metadata service misbehave on purpose.
//! One shape for a configuration file, the admin API's JSON and the CLI's
//! flags; [`FaultSpec::rule`] checks it into a [`FaultRule`].

use std::net::IpAddr;
use std::time::Duration;

use http::Method;
use serde::{Deserialize, Serialize};

use super::{Cidr, HumanDuration};
use crate::metrics::Route;

/// A rule as written. Every field is optional here so that each mistake
/// gets its own sentence from [`FaultSpec::rule`], naming the field.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Shown by `GET /faults` and in the log; defaults to `fault-N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A named rule with documented figures ([`PRESETS`]); other fields
    /// given beside it override the preset's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// `latency`, `status`, `drop`, `hang`, `expired-credentials`, `throttle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `token`, `metadata`, `credentials`, `container` or `any` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The `[[listeners]]` entry (another cloud's service) whose requests
    /// the rule looks at; none for the EC2 metadata listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    /// A request path; `*` matches any run of characters (`/`s included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// A client address or block (`10.0.0.0/8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// `status`: the status to answer (400 to 599).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `status` and `throttle`: a `Retry-After` header, in whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<HumanDuration>,
    /// `latency`: the fixed part of the delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<HumanDuration>,
    /// `latency`: a further delay, uniform between zero and this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<HumanDuration>,
    /// `hang`: how long the request is held before its connection is
    /// closed unanswered, if the client has not given up first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<HumanDuration>,
    /// `throttle`: requests per second refilled into the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// `throttle`: the bucket's size, the requests that may come at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// The chance that a matching request is hit (0 to 1; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// The seed of the draws, so a run repeats exactly (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Let this many matching requests through first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Then apply to this many matching requests only.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Apply only for this long after the rule is added (or the server
    /// starts, for a rule in a configuration file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub during: Option<HumanDuration>,
}

/// What a rule does to a request it hits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultAction {
    /// Answer late: `fixed`, plus up to `jitter`, then as usual.
    Latency { fixed: Duration, jitter: Duration },
    /// Answer `status` at once, with `Retry-After` when given.
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    /// Close the connection without answering.
    Drop,
    /// Hold the request, then close its connection unanswered after `max`.
    Hang { max: Duration },
    /// Serve credentials whose `Expiration` has passed.
    ExpiredCredentials,
    /// A token bucket: past `burst` at once and `rate` per second, 429.
    Throttle {
        rate: f64,
        burst: u32,
        retry_after: Option<u64>,
    },
}

impl FaultAction {
    /// The name it has in rules, logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FaultAction::Latency { .. } => "latency",
            FaultAction::Status { .. } => "status",
            FaultAction::Drop => "drop",
            FaultAction::Hang { .. } => "hang",
            FaultAction::ExpiredCredentials => "expired-credentials",
            FaultAction::Throttle { .. } => "throttle",
        }
    }

    /// Every kind, in the order metrics list them.
    pub const KINDS: [&'static str; 6] = crate::metrics::FAULT_KINDS;
}

/// Which requests a rule looks at.
#[derive(Debug, Clone)]
pub struct FaultMatch {
    /// `None`: any route.
    pub route: Option<Route>,
    /// `None`: the EC2 listener.
    pub listener: Option<String>,
    pub path: Option<String>,
    pub method: Option<Method>,
    pub client: Option<Cidr>,
}

/// Where a request arrived.
#[derive(Debug, Clone, Copy)]
pub enum Arrived<'a> {
    /// On the EC2 metadata listener, for this route.
    Ec2(Route),
    /// On the `[[listeners]]` entry of this name.
    Listener(&'a str),
}

impl FaultMatch {
    pub fn matches(
        &self,
        arrived: Arrived<'_>,
        method: &Method,
        path: &str,
        client: IpAddr,
    ) -> bool {
        let place = match arrived {
            Arrived::Ec2(route) => self.listener.is_none() && self.route.is_none_or(|r| r == route),
            // A listener's rules have no route: routes are EC2's.
            Arrived::Listener(name) => self.listener.as_deref() == Some(name),
        };
        place
            && self.method.as_ref().is_none_or(|m| m == method)
            && self.client.is_none_or(|c| c.contains(client))
            && self.path.as_deref().is_none_or(|p| glob_matches(p, path))
    }
}

/// When a matching request is hit.
#[derive(Debug, Clone, Copy)]
pub struct FaultWhen {
    pub probability: f64,
    pub seed: u64,
    pub after: u64,
    pub count: Option<u64>,
    pub during: Option<Duration>,
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct FaultRule {
    pub name: String,
    pub matching: FaultMatch,
    pub action: FaultAction,
    pub when: FaultWhen,
    /// As written, for `GET /faults`.
    pub spec: FaultSpec,
}

/// The presets, by name: what each stands for is in the README.
///
/// `ec2-limits`: EC2 throttles IMDS per instance and answers 429, without
/// publishing the rate; what it does publish is the limit of 1,024 packets
/// per second from one network interface to the link-local services (DNS,
/// IMDS, time). An IMDS request on a kept-alive connection costs about two
/// packets from the instance (the request and the acknowledgement of the
/// answer), a request on a new connection about six, so the preset lets a
/// burst of 1,024 requests through and refills 256 per second (four packets
/// per request, between the two), answering 429 with `Retry-After: 1`
/// beyond that.
pub const PRESETS: &[&str] = &["ec2-limits"];

fn preset(name: &str) -> Option<FaultSpec> {
    match name {
        "ec2-limits" => Some(FaultSpec {
            name: Some("ec2-limits".into()),
            action: Some("throttle".into()),
            rate: Some(256.0),
            burst: Some(1024),
            retry_after: Some(HumanDuration(Duration::from_secs(1))),
            ..FaultSpec::default()
        }),
        _ => None,
    }
}

/// The longest `hang` when `max` is not given: longer than any SDK's read
/// timeout, short enough that a forgotten rule does not pile up requests.
pub const DEFAULT_HANG: Duration = Duration::from_secs(60);

impl FaultSpec {
    /// Whether the listener it names, if any, is one of `listeners` (the
    /// names of the configuration's `[[listeners]]`).
    pub fn check_listener(
        &self,
        listeners: &[impl AsRef<str>],
    ) -> Result<(), (&'static str, String)> {
        match self.listener.as_deref() {
            Some(name) if !listeners.iter().any(|known| known.as_ref() == name) => {
                let there = match listeners {
                    [] => "there is none".to_owned(),
                    names => {
                        let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
                        format!("there is: {}", names.join(", "))
                    }
                };
                Err((
                    "listener",
                    format!("no [[listeners]] entry is named \"{name}\" ({there})"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// The checked rule, or the field at fault and why (`index` names the
    /// rule when it has no name). Duration bounds were checked by parsing.
    pub fn rule(&self, index: usize) -> Result<FaultRule, (&'static str, String)> {
        let spec = match &self.preset {
            Some(name) => {
                let Some(base) = preset(name) else {
                    return Err((
                        "preset",
                        format!(
                            "no preset named \"{name}\" (there is: {})",
                            PRESETS.join(", ")
                        ),
                    ));
                };
                base.overridden_by(self)
            }
            None => self.clone(),
        };
        if let Some(name) = &spec.name {
            let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
            if name.is_empty() || name.len() > 64 || !name.chars().all(fits) {
                return Err((
                    "name",
                    format!("\"{name}\" is not a rule name: 1 to 64 letters, digits and ._- (it is a path segment)"),
                ));
            }
        }
        let action = spec.action()?;
        spec.check_unused(&action)?;
        Ok(FaultRule {
            name: spec
                .name
                .clone()
                .unwrap_or_else(|| format!("fault-{}", index + 1)),
            matching: spec.matching()?,
            action,
            when: spec.when()?,
            spec,
        })
    }

    /// The preset (`self`) with every field `over` gives.
    fn overridden_by(mut self, over: &FaultSpec) -> FaultSpec {
        macro_rules! take {
            ($($field:ident),*) => { $(if over.$field.is_some() { self.$field = over.$field.clone(); })* };
        }
        take!(
            name,
            preset,
            action,
            route,
            listener,
            path,
            method,
            client,
            status,
            retry_after,
            latency,
            jitter,
            max,
            rate,
            burst,
            probability,
            seed,
            after,
            count,
            during
        );
        self
    }

    fn action(&self) -> Result<FaultAction, (&'static str, String)> {
        let whole_seconds = |d: &Option<HumanDuration>| d.as_ref().map(|d| d.0.as_secs().max(1));
        let Some(action) = self.action.as_deref() else {
            return Err((
                "action",
                format!(
                    "missing: say what the rule does ({})",
                    FaultAction::KINDS.join(", ")
                ),
            ));
        };
        Ok(match action {
            "latency" => {
                let fixed = self.latency.as_ref().map(|d| d.0);
                let jitter = self.jitter.as_ref().map(|d| d.0);
                if fixed.is_none() && jitter.is_none() {
                    return Err((
                        "latency",
                        "a latency rule needs latency (and may add jitter), like latency = \"2s\""
                            .into(),
                    ));
                }
                FaultAction::Latency {
                    fixed: fixed.unwrap_or_default(),
                    jitter: jitter.unwrap_or_default(),
                }
            }
            "status" => match self.status {
                Some(status @ 400..=599) => FaultAction::Status {
                    status,
                    retry_after: whole_seconds(&self.retry_after),
                },
                Some(other) => {
                    return Err((
                        "status",
                        format!("{other} is not an error status: use 400 to 599"),
                    ))
                }
                None => {
                    return Err((
                        "status",
                        "a status rule needs the status to answer, like status = 500".into(),
                    ))
                }
            },
            "drop" => FaultAction::Drop,
            "hang" => FaultAction::Hang {
                max: self.max.as_ref().map_or(DEFAULT_HANG, |d| d.0),
            },
            "expired-credentials" => FaultAction::ExpiredCredentials,
            "throttle" => {
                let rate = match self.rate {
                    Some(rate) if rate.is_finite() && rate > 0.0 && rate <= 1e9 => rate,
                    Some(rate) => {
                        return Err((
                            "rate",
                            format!("{rate} is not a rate: requests per second, above 0"),
                        ))
                    }
                    None => {
                        return Err((
                            "rate",
                            "a throttle rule needs a rate, requests per second, like rate = 5"
                                .into(),
                        ))
                    }
                };
                let burst = match self.burst {
                    Some(0) => {
                        return Err((
                            "burst",
                            "0 would refuse every request: use 1 or more (or a status rule)".into(),
                        ))
                    }
                    Some(burst) => burst,
                    None => 1,
                };
                FaultAction::Throttle {
                    rate,
                    burst,
                    retry_after: whole_seconds(&self.retry_after),
                }
            }
            other => {
                return Err((
                    "action",
                    format!(
                        "\"{other}\" is not an action (there is: {})",
                        FaultAction::KINDS.join(", ")
                    ),
                ))
            }
        })
    }

    /// A field that the action ignores is a mistake, not a no-op.
    fn check_unused(&self, action: &FaultAction) -> Result<(), (&'static str, String)> {
        let kind = action.kind();
        let uses = |field: &str| match field {
            "status" => kind == "status",
            "retry_after" => kind == "status" || kind == "throttle",
            "latency" | "jitter" => kind == "latency",
            "max" => kind == "hang",
            "rate" | "burst" => kind == "throttle",
            _ => true,
        };
        let given = [
            ("status", self.status.is_some()),
            ("retry_after", self.retry_after.is_some()),
            ("latency", self.latency.is_some()),
            ("jitter", self.jitter.is_some()),
            ("max", self.max.is_some()),
            ("rate", self.rate.is_some()),
            ("burst", self.burst.is_some()),
        ];
        match given.into_iter().find(|(field, set)| *set && !uses(field)) {
            Some((field, _)) => Err((field, format!("a {kind} rule has no use for {field}"))),
            None => Ok(()),
        }
    }

    fn matching(&self) -> Result<FaultMatch, (&'static str, String)> {
        let route = match self.route.as_deref().unwrap_or("any") {
            "any" => None,
            "token" => Some(Route::Token),
            "metadata" => Some(Route::Metadata),
            "credentials" => Some(Route::Credentials),
            "container" => Some(Route::Container),
            other => {
                return Err((
                    "route",
                    format!("\"{other}\" is not a route class (token, metadata, credentials, container or any)"),
                ))
            }
        };
        if route.is_some() && self.listener.is_some() {
            return Err((
                "route",
                "a rule for another cloud's listener matches by path: routes are the EC2 listener's"
                    .into(),
            ));
        }
        if let Some(path) = &self.path {
            if !path.starts_with('/') && !path.starts_with('*') {
                return Err((
                    "path",
                    format!("\"{path}\" is not a request path: start it with /"),
                ));
            }
        }
        let method = match &self.method {
            Some(text) => match text.to_ascii_uppercase().as_str() {
                m @ ("GET" | "HEAD" | "PUT" | "POST" | "DELETE" | "PATCH" | "OPTIONS") => {
                    Some(Method::from_bytes(m.as_bytes()).expect("a standard method"))
                }
                _ => return Err(("method", format!("\"{text}\" is not an HTTP method"))),
            },
            None => None,
        };
        let client = match &self.client {
            Some(text) => Some(Cidr::parse(text).map_err(|reason| ("client", reason))?),
            None => None,
        };
        Ok(FaultMatch {
            route,
            listener: self.listener.clone(),
            path: self.path.clone(),
            method,
            client,
        })
    }

    fn when(&self) -> Result<FaultWhen, (&'static str, String)> {
        let probability = self.probability.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&probability) {
            return Err((
                "probability",
                format!("{probability} is not a probability: use 0 to 1"),
            ));
        }
        Ok(FaultWhen {
            probability,
            seed: self.seed.unwrap_or(0),
            after: self.after.unwrap_or(0),
            count: self.count,
            during: self.during.as_ref().map(|d| d.0),
        })
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml: &str) -> FaultSpec {
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(toml))
            .extract()
            .unwrap()
    }

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(glob_matches(
            "/latest/meta-data/iam/*",
            "/latest/meta-data/iam/info"
        ));
        assert!(glob_matches("*/api/token", "/latest/api/token"));
        assert!(glob_matches("/a*b*c", "/a-b-b-c"));
        assert!(!glob_matches("/a*b*c", "/a-c-b"));
        assert!(!glob_matches("/latest/meta-data", "/latest/meta-data/"));
        assert!(glob_matches("/x*", "/x"));
        assert!(!glob_matches("/ab*ba", "/aba"));
    }

    #[test]
    fn a_rule_is_checked_field_by_field() {
        let rule = spec("action = \"status\"\nstatus = 503\nretry_after = \"2s\"\nroute = \"credentials\"\nafter = 1\nfor = 2")
            .rule(0)
            .unwrap();
        assert_eq!(rule.name, "fault-1");
        assert_eq!(
            rule.action,
            FaultAction::Status {
                status: 503,
                retry_after: Some(2)
            }
        );
        assert_eq!((rule.when.after, rule.when.count), (1, Some(2)));
        let refused = |toml: &str| spec(toml).rule(0).unwrap_err();
        assert_eq!(refused("status = 500").0, "action");
        assert_eq!(refused("action = \"status\"\nstatus = 200").0, "status");
        assert_eq!(refused("action = \"drop\"\nstatus = 500").0, "status");
        assert_eq!(refused("action = \"throttle\"\nrate = 0").0, "rate");
        assert_eq!(
            refused("action = \"throttle\"\nrate = 1\nburst = 0").0,
            "burst"
        );
        assert_eq!(
            refused("action = \"drop\"\nprobability = 1.5").0,
            "probability"
        );
        assert_eq!(refused("action = \"drop\"\nroute = \"tokens\"").0, "route");
        assert_eq!(
            refused("action = \"drop\"\nclient = \"10.0.0.0/40\"").0,
            "client"
        );
        assert_eq!(refused("action = \"drop\"\npath = \"latest\"").0, "path");
        assert_eq!(refused("action = \"latency\"").0, "latency");
        assert_eq!(refused("preset = \"aws\"").0, "preset");
    }

    #[test]
    fn a_preset_gives_its_figures_and_yields_to_fields_beside_it() {
        let rule = spec("preset = \"ec2-limits\"").rule(0).unwrap();
        assert_eq!(rule.name, "ec2-limits");
        assert_eq!(
            rule.action,
            FaultAction::Throttle {
                rate: 256.0,
                burst: 1024,
                retry_after: Some(1)
            }
        );
        let narrowed = spec("preset = \"ec2-limits\"\nburst = 4\nroute = \"credentials\"")
            .rule(0)
            .unwrap();
        assert!(matches!(
            narrowed.action,
            FaultAction::Throttle { burst: 4, .. }
        ));
        assert_eq!(narrowed.matching.route, Some(Route::Credentials));
    }
}
