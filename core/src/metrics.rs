//! Prometheus metrics (`GET /metrics` on the admin listener). Counters are
//! process-wide atomics, cheap enough for the hot path; per-role and
//! per-plugin figures are read from those objects when scraped.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Which kind of path a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Token,
    Credentials,
    Metadata,
    Container,
}

const ROUTES: [(Route, &str); 4] = [
    (Route::Token, "token"),
    (Route::Credentials, "credentials"),
    (Route::Metadata, "metadata"),
    (Route::Container, "container"),
];
const STATUSES: [u16; 10] = [200, 400, 401, 403, 404, 405, 429, 500, 503, 0];
/// Upper bounds, in seconds, of the STS latency histogram's buckets: STS
/// answers in tens of milliseconds; the SDK's own timeouts are seconds.
const STS_BUCKETS: [f64; 9] = [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

// Templates for the static below, each use a fresh atomic.
#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ROW: [AtomicU64; STATUSES.len()] = [ZERO; STATUSES.len()];

pub struct Metrics {
    requests: [[AtomicU64; STATUSES.len()]; ROUTES.len()],
    pub tokens_issued: AtomicU64,
    pub tokens_rejected: AtomicU64,
    pub refused_connections: AtomicU64,
    pub sts_calls: AtomicU64,
    pub sts_errors: AtomicU64,
    sts_micros: AtomicU64,
    /// Calls per bucket of [`STS_BUCKETS`] (not cumulative), the last for
    /// longer than all.
    sts_latency: [AtomicU64; STS_BUCKETS.len() + 1],
    pub cache_hits: AtomicU64,
    pub refreshes: AtomicU64,
    /// Requests whose handler panicked (answered 500).
    pub panics: AtomicU64,
    /// Metadata requests without a token (IMDSv1), answered or not.
    pub v1_requests: AtomicU64,
    /// Token PUTs whose answer the hop limit kept from their client.
    pub token_puts_beyond_hop_limit: AtomicU64,
    /// Faults applied, by kind ([`FAULT_KINDS`]).
    faults: [AtomicU64; FAULT_KINDS.len()],
}

/// The kinds of fault rule, as rules and metrics name them.
pub const FAULT_KINDS: [&str; 6] = [
    "latency",
    "status",
    "drop",
    "hang",
    "expired-credentials",
    "throttle",
];

pub static METRICS: Metrics = Metrics::new();

impl Metrics {
    const fn new() -> Self {
        Self {
            requests: [ROW; ROUTES.len()],
            tokens_issued: ZERO,
            tokens_rejected: ZERO,
            refused_connections: ZERO,
            sts_calls: ZERO,
            sts_errors: ZERO,
            sts_micros: ZERO,
            sts_latency: [ZERO; STS_BUCKETS.len() + 1],
            cache_hits: ZERO,
            refreshes: ZERO,
            panics: ZERO,
            v1_requests: ZERO,
            token_puts_beyond_hop_limit: ZERO,
            faults: [ZERO; FAULT_KINDS.len()],
        }
    }

    /// A fault of `kind` (one of [`FAULT_KINDS`]) was applied.
    pub fn fault(&self, kind: &str) {
        if let Some(index) = FAULT_KINDS.iter().position(|k| *k == kind) {
            self.faults[index].fetch_add(1, Relaxed);
        }
    }

    pub fn request(&self, route: Route, status: u16) {
        let column = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len() - 1);
        self.requests[route as usize][column].fetch_add(1, Relaxed);
    }

    pub fn sts_call(&self, took: std::time::Duration, ok: bool) {
        self.sts_calls.fetch_add(1, Relaxed);
        self.sts_micros.fetch_add(took.as_micros() as u64, Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = STS_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(STS_BUCKETS.len());
        self.sts_latency[bucket].fetch_add(1, Relaxed);
        if !ok {
            self.sts_errors.fetch_add(1, Relaxed);
        }
    }

    /// `ersatz_sts_call_duration_seconds`, a Prometheus histogram: buckets
    /// are cumulative and end with `+Inf`, which equals `_count`.
    fn render_sts_latency(&self, out: &mut String) {
        const NAME: &str = "ersatz_sts_call_duration_seconds";
        let _ = write!(
            out,
            "# HELP {NAME} STS AssumeRole call latency.\n# TYPE {NAME} histogram\n"
        );
        let mut cumulative = 0;
        for (index, count) in self.sts_latency.iter().enumerate() {
            cumulative += count.load(Relaxed);
            let bound = STS_BUCKETS
                .get(index)
                .map_or_else(|| "+Inf".to_owned(), f64::to_string);
            let _ = writeln!(out, "{NAME}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let seconds = self.sts_micros.load(Relaxed) as f64 / 1e6;
        let _ = write!(out, "{NAME}_sum {seconds}\n{NAME}_count {cumulative}\n");
    }

    /// The text exposition format; `extra` lines (per role, per plugin) are
    /// appended as given.
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::new();
        out.push_str("# HELP ersatz_requests_total Metadata requests by route and status.\n# TYPE ersatz_requests_total counter\n");
        for (route, name) in ROUTES {
            for (column, status) in STATUSES.iter().enumerate() {
                let count = self.requests[route as usize][column].load(Relaxed);
                if count > 0 {
                    let status = if *status == 0 {
                        "other".to_owned()
                    } else {
                        status.to_string()
                    };
                    let _ = writeln!(
                        out,
                        "ersatz_requests_total{{route=\"{name}\",status=\"{status}\"}} {count}"
                    );
                }
            }
        }
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            );
        };
        counter(
            &mut out,
            "ersatz_tokens_issued_total",
            "IMDSv2 tokens issued.",
            self.tokens_issued.load(Relaxed),
        );
        counter(
            &mut out,
            "ersatz_tokens_rejected_total",
            "Requests refused for a bad, expired or missing token.",
            self.tokens_rejected.load(Relaxed),
        );
        counter(
            &mut out,
            "ersatz_connections_refused_total",
            "Connections refused at the connection cap.",
            self.refused_connections.load(Relaxed),
        );
        counter(
            &mut out,
            "ersatz_sts_calls_total",
            "STS AssumeRole calls.",
            self.sts_calls.load(Relaxed),
        );
        counter(
            &mut out,
            "ersatz_sts_errors_total",
            "STS AssumeRole calls that failed.",
            self.sts_errors.load(Relaxed),
        );
        self.render_sts_latency(&mut out);
        counter(
            &mut out,
            "ersatz_credential_cache_hits_total",
            "Credential requests answered from the cache.",
            self.cache_hits.load(Relaxed),
        );
        counter(
            &mut out,
            "ersatz_credential_refreshes_total",
            "Background credential refreshes.",
            self.refreshes.load(Relaxed),
        );
        counter(
            &mut out,
            "ersatz_handler_panics_total",
            "Requests whose handler panicked; each was answered 500.",
            self.panics.load(Relaxed),
        );
        counter(
            &mut out,
            "ersatz_imds_v1_requests_total",
            "Metadata requests without an IMDSv2 token (IMDSv1), refused ones included.",
            self.v1_requests.load(Relaxed),
        );
        counter(
            &mut out,
            "ersatz_token_puts_beyond_hop_limit_total",
            "Token PUTs left unanswered because their answer would not reach the client within imds.hop_limit.",
            self.token_puts_beyond_hop_limit.load(Relaxed),
        );
        out.push_str("# HELP ersatz_faults_applied_total Faults applied to requests, by kind of rule.\n# TYPE ersatz_faults_applied_total counter\n");
        for (kind, count) in FAULT_KINDS.iter().zip(&self.faults) {
            let _ = writeln!(
                out,
                "ersatz_faults_applied_total{{kind=\"{kind}\"}} {}",
                count.load(Relaxed)
            );
        }
        out.push_str(extra);
        out
    }
}

/// A label value as the text format requires: `\\`, `"` and newlines
/// escaped, so no name from a configuration can end the line early.
pub fn label(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("plain-role"), "plain-role");
        assert_eq!(label("a\"} 0\nfake{x=\"y\\"), "a\\\"} 0\\nfake{x=\\\"y\\\\");
    }

    #[test]
    fn sts_latency_is_a_cumulative_histogram() {
        let metrics = Metrics::new();
        metrics.sts_call(Duration::from_millis(20), true);
        metrics.sts_call(Duration::from_millis(300), true);
        metrics.sts_call(Duration::from_secs(30), false);
        let text = metrics.render("");
        for line in [
            "ersatz_sts_call_duration_seconds_bucket{le=\"0.025\"} 1",
            "ersatz_sts_call_duration_seconds_bucket{le=\"0.25\"} 1",
            "ersatz_sts_call_duration_seconds_bucket{le=\"0.5\"} 2",
            "ersatz_sts_call_duration_seconds_bucket{le=\"10\"} 2",
            "ersatz_sts_call_duration_seconds_bucket{le=\"+Inf\"} 3",
            "ersatz_sts_call_duration_seconds_count 3",
            "ersatz_sts_call_duration_seconds_sum 30.32",
            "ersatz_sts_errors_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }
}
