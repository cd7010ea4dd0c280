//! Sharing and refreshing credentials that cost a call (STS, profiles):
//! - one fetch in flight however many requests arrive (single-flight);
//! - a background task refreshes ahead of expiry, so requests never wait on
//!   STS while valid credentials exist;
//! - a failed refresh keeps the last good credentials until they expire, and
//!   is retried with exponential backoff;
//! - each refresh calls the inner source anew (for a role: AssumeRole with
//!   the held source credentials, never with the previous role credentials).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

use super::{CredentialSource, Credentials, SourceError};
use crate::timefmt::iso_seconds;

const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The shortest pause between retries, however close the expiry.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// After a failed fetch, requests get that failure for this long instead of
/// queueing one STS call each.
const FAILURE_HOLD: Duration = Duration::from_secs(1);
/// How long a request with nothing valid to serve waits for a fetch already
/// in flight (a cold start takes far less; a hung STS takes its whole
/// timeout, and no IMDS client waits that long).
const WAIT_FOR_FETCH: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    /// Refresh this long before expiry (at most half the credentials' lifetime).
    pub margin: Duration,
}

pub struct Cached {
    label: String,
    inner: Arc<dyn CredentialSource>,
    policy: RefreshPolicy,
    current: RwLock<Option<Arc<Credentials>>>,
    /// The last failure, when, and in which generation of the sources.
    last_failure: Mutex<Option<(Instant, SourceError, u64)>>,
    /// Counts the changes of a source this depends on: a fetch that began
    /// before one (the start-up prefetch, racing a bootstrap) must not
    /// hold its failure against requests made after it.
    generation: AtomicU64,
    in_flight: tokio::sync::Mutex<()>,
    refresher_running: AtomicBool,
    fetches: AtomicU64,
    this: Weak<Cached>,
}

impl Cached {
    pub fn new(
        label: impl Into<String>,
        inner: Arc<dyn CredentialSource>,
        policy: RefreshPolicy,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            label: label.into(),
            inner,
            policy,
            current: RwLock::new(None),
            last_failure: Mutex::new(None),
            generation: AtomicU64::new(0),
            in_flight: tokio::sync::Mutex::new(()),
            refresher_running: AtomicBool::new(false),
            fetches: AtomicU64::new(0),
            this: this.clone(),
        })
    }

    /// Valid credentials already held, without calling out.
    pub fn peek(&self) -> Option<Arc<Credentials>> {
        let now = SystemTime::now();
        self.current
            .read()
            .as_ref()
            .filter(|c| c.is_valid_at(now))
            .cloned()
    }

    /// Lets the next request call out at once (a source it depends on changed).
    pub fn forget_failure(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.last_failure.lock() = None;
    }

    /// How many times the inner source was called.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Starts a fetch in the background (at start-up, after a bootstrap or a
    /// role switch) so the first request finds credentials waiting.
    pub fn prefetch(&self) {
        if let Some(this) = self.this.upgrade() {
            tokio::spawn(async move {
                let _ = this.credentials().await;
            });
        }
    }

    async fn fetch_locked(&self) -> Result<Arc<Credentials>, SourceError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let generation = self.generation.load(Ordering::Acquire);
        match self.inner.credentials().await {
            Ok(credentials) => {
                *self.current.write() = Some(credentials.clone());
                *self.last_failure.lock() = None;
                tracing::info!(
                    source = %self.label,
                    expires = %credentials.expiration.map_or("never".into(), iso_seconds),
                    "credentials obtained"
                );
                self.start_refresher();
                Ok(credentials)
            }
            Err(error) => {
                match self.peek() {
                    Some(held) => tracing::warn!(
                        source = %self.label,
                        %error,
                        until = %held.expiration.map_or("never".into(), iso_seconds),
                        "refresh failed; serving the last good credentials"
                    ),
                    None => tracing::warn!(source = %self.label, %error, "no credentials"),
                }
                *self.last_failure.lock() = Some((Instant::now(), error.clone(), generation));
                Err(error)
            }
        }
    }

    /// When the background task should next refresh, if ever.
    fn refresh_due(&self) -> Option<SystemTime> {
        let current = self.current.read().clone()?;
        let expiration = current.expiration?;
        let lifetime = expiration
            .duration_since(current.issued)
            .unwrap_or_default();
        Some(expiration - self.policy.margin.min(lifetime / 2))
    }

    fn start_refresher(&self) {
        if self.refresher_running.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(refresh_loop(self.this.clone()));
    }
}

/// Holds only a weak reference between rounds, so it ends when the role is
/// re-bound or the configuration reloaded.
async fn refresh_loop(cache: Weak<Cached>) {
    let mut backoff = RETRY_FIRST;
    loop {
        let wait = {
            let Some(this) = cache.upgrade() else { return };
            let Some(due) = this.refresh_due() else {
                this.refresher_running.store(false, Ordering::Release);
                return;
            };
            due.duration_since(SystemTime::now()).unwrap_or_default()
        };
        tokio::time::sleep(wait).await;
        let Some(this) = cache.upgrade() else { return };
        let refreshed = {
            let _flight = this.in_flight.lock().await;
            crate::metrics::METRICS
                .refreshes
                .fetch_add(1, Ordering::Relaxed);
            this.fetch_locked().await
        };
        drop(this);
        match refreshed {
            Ok(_) => backoff = RETRY_FIRST,
            Err(_) => {
                // Back off, but never past the expiry: as it nears, retries
                // come closer together, so a recovered STS is used in time.
                let left = cache
                    .upgrade()
                    .and_then(|this| this.peek())
                    .and_then(|held| held.expiration)
                    .and_then(|expiration| expiration.duration_since(SystemTime::now()).ok());
                let pause = left
                    .map_or(backoff, |left| backoff.min(left / 2))
                    .max(RETRY_MIN);
                tokio::time::sleep(pause).await;
                // Double what was actually waited, so quick retries near the
                // expiry do not leave a long pause after it.
                backoff = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}

#[async_trait]
impl CredentialSource for Cached {
    async fn credentials(&self) -> Result<Arc<Credentials>, SourceError> {
        if let Some(held) = self.peek() {
            crate::metrics::METRICS
                .cache_hits
                .fetch_add(1, Ordering::Relaxed);
            return Ok(held);
        }
        let Ok(_flight) = tokio::time::timeout(WAIT_FOR_FETCH, self.in_flight.lock()).await else {
            return Err(SourceError(format!(
                "{}: still waiting for credentials from the source; try again",
                self.label
            )));
        };
        // Whoever held the lock before us may have fetched already.
        if let Some(held) = self.peek() {
            return Ok(held);
        }
        let generation = self.generation.load(Ordering::Acquire);
        if let Some((at, error, of)) = self.last_failure.lock().as_ref() {
            if at.elapsed() < FAILURE_HOLD && *of == generation {
                return Err(error.clone());
            }
        }
        self.fetch_locked().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    /// Counts calls and fails while `failing` is set.
    struct Counting {
        calls: AtomicU64,
        failing: AtomicBool,
        lifetime: Duration,
    }

    #[async_trait]
    impl CredentialSource for Counting {
        async fn credentials(&self) -> Result<Arc<Credentials>, SourceError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(SourceError("down".into()));
            }
            let now = SystemTime::now();
            Ok(Arc::new(Credentials {
                access_key_id: format!("KEY{n}"),
                secret_access_key: Secret::new("s"),
                session_token: None,
                expiration: Some(now + self.lifetime),
                issued: now,
            }))
        }
    }

    fn counting(lifetime: Duration) -> Arc<Counting> {
        Arc::new(Counting {
            calls: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            lifetime,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_cold_requests_share_one_fetch() {
        let inner = counting(Duration::from_secs(3600));
        let cache = Cached::new(
            "t",
            inner.clone(),
            RefreshPolicy {
                margin: Duration::from_secs(60),
            },
        );
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(
                    async move { cache.credentials().await.unwrap().access_key_id.clone() },
                )
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), "KEY0");
        }
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    }

    /// A bootstrap while the start-up prefetch is still failing: the request
    /// made after it must not get the prefetch's failure (it raced, under
    /// load, in `bootstrap_cli_posts_keys_from_the_environment`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failure_from_before_a_source_changed_is_not_held_against_later_requests() {
        /// Reads its source when called, then takes 50 ms to answer.
        struct ReadsFirst(AtomicBool);
        #[async_trait]
        impl CredentialSource for ReadsFirst {
            async fn credentials(&self) -> Result<Arc<Credentials>, SourceError> {
                let set = self.0.load(Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                if !set {
                    return Err(SourceError("not bootstrapped yet".into()));
                }
                let now = SystemTime::now();
                Ok(Arc::new(Credentials {
                    access_key_id: "KEY".into(),
                    secret_access_key: Secret::new("s"),
                    session_token: None,
                    expiration: Some(now + Duration::from_secs(3600)),
                    issued: now,
                }))
            }
        }
        let inner = Arc::new(ReadsFirst(AtomicBool::new(false)));
        let policy = RefreshPolicy {
            margin: Duration::from_secs(60),
        };
        let cache = Cached::new("t", inner.clone(), policy);
        let prefetch = tokio::spawn({
            let cache = cache.clone();
            async move { cache.credentials().await }
        });
        // The prefetch is in flight (its source takes 50 ms) when the source changes.
        tokio::time::sleep(Duration::from_millis(10)).await;
        inner.0.store(true, Ordering::SeqCst);
        cache.forget_failure();
        let after = cache.credentials().await;
        assert!(
            prefetch.await.unwrap().is_err(),
            "the prefetch began before the change"
        );
        assert!(
            after.is_ok(),
            "held the earlier failure: {:?}",
            after.err().map(|e| e.0)
        );
    }

    /// Succeeds once with credentials whose refresh is due at once (`left`
    /// before expiry, issued twice as long ago), then fails, noting when it
    /// was called on tokio's clock.
    struct FailingAfterFirst {
        left: Duration,
        calls: parking_lot::Mutex<Vec<tokio::time::Instant>>,
    }

    #[async_trait]
    impl CredentialSource for FailingAfterFirst {
        async fn credentials(&self) -> Result<Arc<Credentials>, SourceError> {
            let mut calls = self.calls.lock();
            calls.push(tokio::time::Instant::now());
            if calls.len() > 1 {
                return Err(SourceError("down".into()));
            }
            let now = SystemTime::now();
            Ok(Arc::new(Credentials {
                access_key_id: "KEY".into(),
                secret_access_key: Secret::new("s"),
                session_token: None,
                expiration: Some(now + self.left),
                issued: now - self.left * 2,
            }))
        }
    }

    /// The pauses between the refresher's calls, in whole seconds, after
    /// `rounds` of them on a paused clock.
    async fn retry_gaps(left: Duration, rounds: usize) -> Vec<u64> {
        let inner = Arc::new(FailingAfterFirst {
            left,
            calls: parking_lot::Mutex::new(Vec::new()),
        });
        let cache = Cached::new(
            "t",
            inner.clone(),
            RefreshPolicy {
                margin: Duration::from_secs(365 * 86_400),
            },
        );
        cache.credentials().await.unwrap();
        while inner.calls.lock().len() < rounds + 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let calls = inner.calls.lock().clone();
        // From the first failed refresh on: each gap is one pause.
        calls[1..]
            .windows(2)
            .map(|pair| (pair[1] - pair[0]).as_secs_f64().round() as u64)
            .take(rounds)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn failed_refreshes_back_off_from_1_s_doubling_to_60_s() {
        let gaps = retry_gaps(Duration::from_secs(24 * 3600), 9).await;
        assert_eq!(gaps, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[tokio::test(start_paused = true)]
    async fn near_the_expiry_retries_come_at_half_the_time_left() {
        // 10 s left (the wall clock stands still here): never more than 5 s apart.
        let gaps = retry_gaps(Duration::from_secs(10), 6).await;
        assert_eq!(gaps, [1, 2, 4, 5, 5, 5]);
    }

    #[tokio::test]
    async fn refreshes_ahead_and_keeps_the_last_good_on_failure() {
        let inner = counting(Duration::from_millis(1200));
        let cache = Cached::new(
            "t",
            inner.clone(),
            RefreshPolicy {
                margin: Duration::from_millis(400),
            },
        );
        assert_eq!(cache.credentials().await.unwrap().access_key_id, "KEY0");
        // Refreshed in the background at ~800 ms, before expiry.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(cache.peek().unwrap().access_key_id, "KEY1");
        // The source fails: KEY1 stays until it expires, then nothing.
        inner.failing.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(cache.credentials().await.unwrap().access_key_id, "KEY1");
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(cache.credentials().await.is_err());
        // Back up: the retry loop recovers without a request asking.
        inner.failing.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(cache.peek().is_some());
    }
}
