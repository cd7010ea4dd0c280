//! Fault injection: rules from `[[faults]]`, the admin API and the CLI that
//! make the metadata service misbehave on purpose, deterministically.
//!
//! Each rule counts the requests it matches. The `after`/`for` window and
//! `during` decide whether a matching request is in play; a seeded draw
//! decides whether it is hit, so one seed and one request sequence give one
//! sequence of outcomes. Rules apply in order: latencies add up, and the
//! first rule that answers (a status, a drop, a hang, a throttle) ends it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::Method;

pub use crate::config::Arrived;
use crate::config::{FaultAction, FaultRule, FaultSpec};
use crate::metrics::{Route, METRICS};

/// The rules in force. Without any, [`Faults::check`] is one atomic load.
#[derive(Default)]
pub struct Faults {
    rules: ArcSwap<Vec<Arc<Active>>>,
    /// Numbers rules added without a name, across additions.
    added: AtomicU64,
    /// Held by whoever changes the rules, so that a name check and the
    /// change that follows it are one step.
    changing: parking_lot::Mutex<()>,
    /// The names of other clouds' listeners, which a rule may name (they
    /// change only with a restart).
    listeners: Vec<String>,
}

/// A rule and what it has seen.
struct Active {
    rule: FaultRule,
    since: Instant,
    state: parking_lot::Mutex<State>,
    applied: AtomicU64,
}

struct State {
    matched: u64,
    draws: SplitMix64,
    /// Throttle tokens, and when they were last refilled.
    tokens: f64,
    refilled: Instant,
}

/// What the rules do to one request.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// Wait this long first.
    pub latency: Duration,
    /// Then answer this way instead of as usual.
    pub outcome: Option<Outcome>,
    /// Answer as usual, but with credentials already expired.
    pub expire_credentials: bool,
    /// The rules that applied, for the journal and the log.
    pub rules: Vec<String>,
}

#[derive(Debug, PartialEq)]
pub enum Outcome {
    Status {
        status: http::StatusCode,
        retry_after: Option<u64>,
    },
    Drop,
    Hang(Duration),
}

impl Applied {
    /// Waits out the rules' latencies.
    pub async fn delay(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

impl Faults {
    pub fn new(rules: Vec<FaultRule>, listeners: Vec<String>) -> Self {
        let faults = Self {
            listeners,
            ..Self::default()
        };
        faults.added.store(rules.len() as u64, Relaxed);
        faults.replace(rules);
        faults
    }

    /// Replaces every rule (a reload): their counts start again.
    pub fn replace(&self, rules: Vec<FaultRule>) {
        let _changing = self.changing.lock();
        // Unnamed rules added later are numbered after these.
        self.added.fetch_max(rules.len() as u64, Relaxed);
        let now = Instant::now();
        let active = rules
            .into_iter()
            .map(|rule| Arc::new(Active::new(rule, now)));
        self.rules.store(Arc::new(active.collect()));
    }

    /// Adds a rule after the others; returns its name. `spec` was checked.
    pub fn add(&self, spec: &FaultSpec) -> Result<String, (&'static str, String)> {
        spec.check_listener(&self.listeners)?;
        let _changing = self.changing.lock();
        let taken = |name: &str| {
            self.rules
                .load()
                .iter()
                .any(|active| active.rule.name == name)
        };
        // An unnamed rule takes the next number whose name is free; a named
        // one (or a preset, named after itself) takes no number.
        let numbered = spec.name.is_none() && spec.preset.is_none();
        let next = || self.added.fetch_add(1, Relaxed) as usize;
        let mut rule = spec.rule(if numbered { next() } else { 0 })?;
        while numbered && taken(&rule.name) {
            rule = spec.rule(next())?;
        }
        let name = rule.name.clone();
        if taken(&name) {
            return Err(("name", format!("a rule named \"{name}\" exists already")));
        }
        let active = Arc::new(Active::new(rule, Instant::now()));
        self.rules.rcu(|rules| {
            let mut rules = Vec::clone(rules);
            rules.push(active.clone());
            rules
        });
        Ok(name)
    }

    /// Removes the rule named `name`, or every rule; returns how many went.
    pub fn clear(&self, name: Option<&str>) -> usize {
        let _changing = self.changing.lock();
        let before = self.rules.load().len();
        self.rules.rcu(|rules| {
            rules
                .iter()
                .filter(|active| name.is_some_and(|name| active.rule.name != name))
                .cloned()
                .collect::<Vec<_>>()
        });
        before.saturating_sub(self.rules.load().len())
    }

    /// Each rule as written, with its counts, for `GET /faults`.
    pub fn list(&self) -> Vec<serde_json::Value> {
        self.rules
            .load()
            .iter()
            .map(|active| {
                let mut shown = serde_json::to_value(&active.rule.spec).unwrap_or_default();
                if let Some(object) = shown.as_object_mut() {
                    object.insert("name".into(), active.rule.name.clone().into());
                    object.insert("matched".into(), active.state.lock().matched.into());
                    object.insert("applied".into(), active.applied.load(Relaxed).into());
                }
                shown
            })
            .collect()
    }

    /// What the rules do to this request; `None` when no rule applies.
    pub fn check(
        &self,
        arrived: Arrived<'_>,
        method: &Method,
        path: &str,
        client: IpAddr,
    ) -> Option<Applied> {
        let rules = self.rules.load();
        if rules.is_empty() {
            return None;
        }
        let mut applied = Applied::default();
        for active in rules.iter() {
            if !active.rule.matching.matches(arrived, method, path, client) {
                continue;
            }
            // It changes credential documents only: elsewhere it is not applied.
            let credentials =
                matches!(arrived, Arrived::Ec2(Route::Credentials | Route::Container));
            if active.rule.action == FaultAction::ExpiredCredentials && !credentials {
                continue;
            }
            if let Some(effect) = active.hit() {
                METRICS.fault(active.rule.action.kind());
                active.applied.fetch_add(1, Relaxed);
                tracing::debug!(
                    rule = %active.rule.name,
                    kind = active.rule.action.kind(),
                    %path,
                    %client,
                    "fault applied"
                );
                applied.rules.push(active.rule.name.clone());
                match effect {
                    Effect::Latency(delay) => {
                        applied.latency = applied.latency.saturating_add(delay)
                    }
                    Effect::ExpireCredentials => applied.expire_credentials = true,
                    Effect::Answer(outcome) => {
                        applied.outcome = Some(outcome);
                        break;
                    }
                }
            }
        }
        (!applied.rules.is_empty()).then_some(applied)
    }
}

enum Effect {
    Latency(Duration),
    ExpireCredentials,
    Answer(Outcome),
}

impl Active {
    fn new(rule: FaultRule, since: Instant) -> Self {
        let burst = match rule.action {
            FaultAction::Throttle { burst, .. } => f64::from(burst),
            _ => 0.0,
        };
        Self {
            state: parking_lot::Mutex::new(State {
                matched: 0,
                draws: SplitMix64(rule.when.seed),
                tokens: burst,
                refilled: since,
            }),
            rule,
            since,
            applied: AtomicU64::new(0),
        }
    }

    /// Counts a matching request and says what, if anything, happens to it.
    fn hit(&self) -> Option<Effect> {
        let when = &self.rule.when;
        let mut state = self.state.lock();
        state.matched = state.matched.saturating_add(1);
        let nth = state.matched;
        let in_window = nth > when.after
            && when.count.is_none_or(|count| nth - when.after <= count)
            && when
                .during
                .is_none_or(|during| self.since.elapsed() < during);
        if !in_window {
            return None;
        }
        if when.probability < 1.0 && state.draws.unit() >= when.probability {
            return None;
        }
        Some(match self.rule.action {
            FaultAction::Latency { fixed, jitter } => {
                let extra = jitter.mul_f64(state.draws.unit());
                Effect::Latency(fixed.saturating_add(extra))
            }
            FaultAction::Status {
                status,
                retry_after,
            } => Effect::Answer(Outcome::Status {
                // Checked to be 400 to 599 with the rule.
                status: http::StatusCode::from_u16(status)
                    .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
                retry_after,
            }),
            FaultAction::Drop => Effect::Answer(Outcome::Drop),
            FaultAction::Hang { max } => Effect::Answer(Outcome::Hang(max)),
            FaultAction::ExpiredCredentials => Effect::ExpireCredentials,
            FaultAction::Throttle {
                rate,
                burst,
                retry_after,
            } => {
                if state.take_token(rate, burst) {
                    return None;
                }
                Effect::Answer(Outcome::Status {
                    status: http::StatusCode::TOO_MANY_REQUESTS,
                    retry_after,
                })
            }
        })
    }
}

impl State {
    /// A token from the bucket, refilled at `rate` per second up to `burst`.
    fn take_token(&mut self, rate: f64, burst: u32) -> bool {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(burst));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A small, seedable generator (SplitMix64): the same seed draws the same
/// numbers on every machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A credential document (IMDS's or the container endpoint's) with its
/// `Expiration` an hour in the past; other bodies unchanged.
pub fn expire(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let key = text.find("\"Expiration\"")?;
    let open = key + text[key..].find(':')? + 1;
    let start = open + text[open..].find('"')? + 1;
    let end = start + text[start..].find('"')?;
    let past = std::time::SystemTime::now()
        .checked_sub(Duration::from_secs(3600))
        .unwrap_or(std::time::UNIX_EPOCH);
    let past = crate::timefmt::iso_seconds(past);
    Some(
        [&text[..start], past.as_str(), &text[end..]]
            .concat()
            .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FaultSpec;

    fn rules(json: serde_json::Value) -> Faults {
        let specs: Vec<FaultSpec> = serde_json::from_value(json).unwrap();
        let rules = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| spec.rule(i).unwrap())
            .collect();
        Faults::new(rules, Vec::new())
    }

    fn outcomes(faults: &Faults, n: usize) -> Vec<Option<u16>> {
        let client = IpAddr::from([127, 0, 0, 1]);
        (0..n)
            .map(|_| {
                faults
                    .check(
                        Arrived::Ec2(Route::Metadata),
                        &Method::GET,
                        "/latest/meta-data/",
                        client,
                    )
                    .and_then(|applied| match applied.outcome {
                        Some(Outcome::Status { status, .. }) => Some(status.as_u16()),
                        _ => None,
                    })
            })
            .collect()
    }

    #[test]
    fn no_rules_cost_nothing_and_change_nothing() {
        assert_eq!(outcomes(&Faults::default(), 3), [None, None, None]);
    }

    #[test]
    fn after_and_for_open_a_window_of_matching_requests() {
        let faults =
            rules(serde_json::json!([{ "action": "status", "status": 500, "after": 2, "for": 2 }]));
        assert_eq!(
            outcomes(&faults, 6),
            [None, None, Some(500), Some(500), None, None]
        );
    }

    #[test]
    fn one_seed_draws_one_sequence_and_another_seed_another() {
        let rule = |seed: u64| {
            rules(
                serde_json::json!([{ "action": "status", "status": 503, "probability": 0.5, "seed": seed }]),
            )
        };
        let first = outcomes(&rule(7), 64);
        assert_eq!(first, outcomes(&rule(7), 64));
        assert_ne!(first, outcomes(&rule(8), 64));
        let hits = first.iter().filter(|o| o.is_some()).count();
        assert!((16..=48).contains(&hits), "{hits} of 64 at p = 0.5");
    }

    #[test]
    fn only_matching_requests_are_counted() {
        let faults = rules(serde_json::json!([{
            "action": "drop", "route": "credentials", "method": "GET", "client": "10.0.0.0/8"
        }]));
        let check = |route, method: Method, client: [u8; 4]| {
            faults
                .check(Arrived::Ec2(route), &method, "/x", IpAddr::from(client))
                .is_some()
        };
        assert!(!check(Route::Metadata, Method::GET, [10, 0, 0, 1]));
        assert!(!check(Route::Credentials, Method::PUT, [10, 0, 0, 1]));
        assert!(!check(Route::Credentials, Method::GET, [11, 0, 0, 1]));
        assert!(check(Route::Credentials, Method::GET, [10, 9, 9, 9]));
        assert_eq!(faults.list()[0]["matched"], 1);
    }

    #[test]
    fn a_listeners_rules_are_its_own_and_name_a_listener_that_is() {
        let rules = [
            serde_json::json!({ "name": "gce", "action": "drop", "listener": "gce" }),
            serde_json::json!({ "name": "ec2", "action": "drop" }),
        ];
        let faults = Faults::new(Vec::new(), vec!["gce".into(), "azure".into()]);
        for rule in rules {
            faults.add(&serde_json::from_value(rule).unwrap()).unwrap();
        }
        let client = IpAddr::from([127, 0, 0, 1]);
        let hit = |arrived| {
            let applied = faults.check(arrived, &Method::GET, "/", client);
            applied.map(|applied| applied.rules)
        };
        assert_eq!(hit(Arrived::Listener("gce")), Some(vec!["gce".to_owned()]));
        assert_eq!(hit(Arrived::Listener("azure")), None);
        assert_eq!(
            hit(Arrived::Ec2(Route::Metadata)),
            Some(vec!["ec2".to_owned()])
        );
        let elsewhere = serde_json::json!({ "action": "drop", "listener": "gcp" });
        let refused = faults.add(&serde_json::from_value(elsewhere).unwrap());
        let (field, reason) = refused.unwrap_err();
        assert_eq!(field, "listener");
        assert!(reason.contains("there is: gce, azure"), "{reason}");
        let routed = serde_json::json!({ "action": "drop", "listener": "gce", "route": "token" });
        let refused = faults.add(&serde_json::from_value(routed).unwrap());
        assert_eq!(refused.unwrap_err().0, "route");
    }

    #[test]
    fn a_throttle_lets_its_burst_through_then_answers_429() {
        let faults =
            rules(serde_json::json!([{ "action": "throttle", "rate": 0.001, "burst": 3 }]));
        assert_eq!(
            outcomes(&faults, 5),
            [None, None, None, Some(429), Some(429)]
        );
    }

    #[test]
    fn latencies_add_up_and_the_first_answer_ends_the_rules() {
        let faults = rules(serde_json::json!([
            { "action": "latency", "latency": "10ms" },
            { "action": "latency", "latency": "5ms", "jitter": "1ms" },
            { "action": "status", "status": 500 },
            { "action": "drop" },
        ]));
        let applied = faults
            .check(
                Arrived::Ec2(Route::Metadata),
                &Method::GET,
                "/",
                IpAddr::from([127, 0, 0, 1]),
            )
            .unwrap();
        assert!(applied.latency >= Duration::from_millis(15));
        assert!(applied.latency <= Duration::from_millis(16));
        assert_eq!(applied.rules, ["fault-1", "fault-2", "fault-3"]);
        assert_eq!(
            applied.outcome,
            Some(Outcome::Status {
                status: http::StatusCode::INTERNAL_SERVER_ERROR,
                retry_after: None
            })
        );
    }

    #[test]
    fn rules_are_added_and_cleared_by_name_or_all_at_once() {
        let faults = Faults::default();
        let spec: FaultSpec =
            serde_json::from_value(serde_json::json!({ "action": "drop" })).unwrap();
        let first = faults.add(&spec).unwrap();
        let named: FaultSpec =
            serde_json::from_value(serde_json::json!({ "action": "drop", "name": "x" })).unwrap();
        assert_eq!(faults.add(&named).unwrap(), "x");
        let third = faults.add(&spec).unwrap();
        assert_ne!(first, third, "unnamed rules get distinct names");
        assert_eq!(faults.clear(Some("x")), 1);
        assert_eq!(faults.list().len(), 2);
        assert_eq!(faults.clear(None), 2);
        assert!(faults.list().is_empty());
    }

    #[test]
    fn rules_added_after_a_reload_are_named_after_the_reloaded_ones() {
        let faults = Faults::default();
        let spec: FaultSpec =
            serde_json::from_value(serde_json::json!({ "action": "drop" })).unwrap();
        let reloaded = (0..3).map(|i| spec.rule(i).unwrap()).collect();
        faults.replace(reloaded);
        let named: FaultSpec =
            serde_json::from_value(serde_json::json!({ "action": "drop", "name": "fault-5" }))
                .unwrap();
        faults.add(&named).unwrap();
        assert_eq!(faults.add(&spec).unwrap(), "fault-4");
        assert_eq!(faults.add(&spec).unwrap(), "fault-6", "fault-5 is taken");
    }

    #[test]
    fn expired_credentials_keep_the_document_and_move_its_expiration() {
        let document =
            "{\n  \"Code\" : \"Success\",\n  \"Expiration\" : \"2999-01-01T00:00:00Z\"\n}";
        let expired = String::from_utf8(expire(document.as_bytes()).unwrap()).unwrap();
        assert!(expired.starts_with("{\n  \"Code\" : \"Success\",\n  \"Expiration\" : \"20"));
        assert!(!expired.contains("2999"));
        assert!(expired.ends_with("Z\"\n}"));
        assert_eq!(expire(b"not a document"), None);
    }
}
