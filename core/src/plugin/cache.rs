//! Answers a plugin said may be reused (`answer.max-age`, WIT 0.2.0), kept
//! per client IP address and path: a repeated request costs a lookup
//! instead of an instance. Dropped with the provider, so a reload starts
//! empty.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::provider::Resolved;

/// Answers kept per mount, and their bytes (bodies and paths). When either
/// is reached, expired answers are dropped; if that is not enough, the new
/// answer is not kept (the plugin is called again instead), so a client
/// asking for endless distinct paths or large answers costs calls, not
/// memory.
const MAX_ANSWERS: usize = 4096;
const MAX_BYTES: usize = 16 << 20;

pub struct AnswerCache {
    /// The operator's limit on how long any answer is kept.
    limit: Option<Duration>,
    answers: Mutex<Answers>,
}

#[derive(Default)]
struct Answers {
    by_client: HashMap<IpAddr, HashMap<Box<str>, Kept>>,
    count: usize,
    bytes: usize,
}

struct Kept {
    resolved: Resolved,
    expires: Instant,
    /// What it counts against `MAX_BYTES`.
    bytes: usize,
}

impl AnswerCache {
    pub fn new(limit: Option<Duration>) -> Self {
        Self {
            limit,
            answers: Mutex::default(),
        }
    }

    pub fn get(&self, client: IpAddr, path: &str, now: Instant) -> Option<Resolved> {
        let mut answers = self.answers.lock();
        let paths = answers.by_client.get_mut(&client)?;
        let kept = paths.get(path)?;
        if kept.expires > now {
            return Some(kept.resolved.clone());
        }
        let bytes = kept.bytes;
        paths.remove(path);
        if paths.is_empty() {
            answers.by_client.remove(&client);
        }
        answers.count -= 1;
        answers.bytes -= bytes;
        None
    }

    /// Keeps `resolved` for `max_age` seconds (at most the operator's
    /// limit); a failure is never kept.
    pub fn put(&self, client: IpAddr, path: &str, resolved: &Resolved, max_age: u32, now: Instant) {
        let mut keep_for = Duration::from_secs(max_age.into());
        if let Some(limit) = self.limit {
            keep_for = keep_for.min(limit);
        }
        let body = match resolved {
            Resolved::Leaf { body, .. } | Resolved::Dir(body) => body.len(),
            Resolved::NotFound => 0,
            Resolved::Shaped(shaped) => {
                let headers: usize = shaped
                    .headers
                    .iter()
                    .map(|(n, v)| n.as_str().len() + v.len())
                    .sum();
                headers + shaped.body.as_ref().map_or(0, |(body, _)| body.len())
            }
            Resolved::Failed | Resolved::Busy => return,
        };
        if keep_for.is_zero() {
            return;
        }
        let bytes = body + path.len();
        let mut answers = self.answers.lock();
        let fits = |a: &Answers| a.count < MAX_ANSWERS && a.bytes + bytes <= MAX_BYTES;
        if !fits(&answers) {
            answers.drop_expired(now);
            if !fits(&answers) {
                return;
            }
        }
        let kept = Kept {
            resolved: resolved.clone(),
            expires: now + keep_for,
            bytes,
        };
        let replaced = answers
            .by_client
            .entry(client)
            .or_default()
            .insert(path.into(), kept);
        answers.count += 1;
        answers.bytes += bytes;
        if let Some(replaced) = replaced {
            answers.count -= 1;
            answers.bytes -= replaced.bytes;
        }
    }
}

impl Answers {
    fn drop_expired(&mut self, now: Instant) {
        let (mut count, mut bytes) = (0, 0);
        self.by_client.retain(|_, paths| {
            paths.retain(|_, kept| kept.expires > now);
            count += paths.len();
            bytes += paths.values().map(|kept| kept.bytes).sum::<usize>();
            !paths.is_empty()
        });
        self.count = count;
        self.bytes = bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(body: &'static str) -> Resolved {
        Resolved::text(body)
    }

    fn body(resolved: Option<Resolved>) -> Option<bytes::Bytes> {
        match resolved? {
            Resolved::Leaf { body, .. } => Some(body),
            _ => None,
        }
    }

    #[test]
    fn answers_are_kept_per_client_and_path_until_they_expire() {
        let cache = AnswerCache::new(None);
        let (one, two) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let now = Instant::now();
        cache.put(one, "a", &text("first"), 2, now);
        assert_eq!(body(cache.get(one, "a", now)).unwrap(), "first");
        assert!(cache.get(two, "a", now).is_none(), "another client");
        assert!(cache.get(one, "b", now).is_none(), "another path");
        let later = now + Duration::from_secs(2);
        assert!(cache.get(one, "a", later).is_none(), "expired");
        assert_eq!(cache.answers.lock().count, 0);
    }

    #[test]
    fn failures_no_max_age_and_the_operators_limit_are_respected() {
        let client = "127.0.0.1".parse().unwrap();
        let now = Instant::now();
        let cache = AnswerCache::new(Some(Duration::from_secs(1)));
        cache.put(client, "failed", &Resolved::Failed, 60, now);
        cache.put(client, "busy", &Resolved::Busy, 60, now);
        cache.put(client, "zero", &text("x"), 0, now);
        cache.put(client, "long", &text("x"), 60, now);
        assert!(cache.get(client, "failed", now).is_none());
        assert!(cache.get(client, "busy", now).is_none());
        assert!(cache.get(client, "zero", now).is_none());
        assert!(cache.get(client, "long", now).is_some());
        assert!(cache
            .get(client, "long", now + Duration::from_secs(1))
            .is_none());
        let off = AnswerCache::new(Some(Duration::ZERO));
        off.put(client, "long", &text("x"), 60, now);
        assert!(off.get(client, "long", now).is_none());
    }

    #[test]
    fn a_full_cache_makes_room_only_from_expired_answers() {
        let cache = AnswerCache::new(None);
        let client = "127.0.0.1".parse().unwrap();
        let now = Instant::now();
        for i in 0..MAX_ANSWERS {
            cache.put(client, &i.to_string(), &text("x"), 1 + (i % 2) as u32, now);
        }
        cache.put(client, "new", &text("x"), 60, now);
        assert!(cache.get(client, "new", now).is_none(), "full: not kept");
        let later = now + Duration::from_secs(1);
        cache.put(client, "new", &text("x"), 60, later);
        assert!(cache.get(client, "new", later).is_some());
        assert_eq!(cache.answers.lock().count, MAX_ANSWERS / 2 + 1);
    }

    #[test]
    fn large_answers_are_kept_only_within_the_byte_budget() {
        let cache = AnswerCache::new(None);
        let client = "127.0.0.1".parse().unwrap();
        let now = Instant::now();
        let big = Resolved::text(vec![b'x'; MAX_BYTES / 2]);
        cache.put(client, "a", &big, 60, now);
        assert!(cache.get(client, "a", now).is_some());
        cache.put(client, "b", &big, 60, now);
        assert!(
            cache.get(client, "b", now).is_none(),
            "over budget: not kept"
        );
        let answers = cache.answers.lock();
        assert_eq!((answers.count, answers.bytes), (1, MAX_BYTES / 2 + 1));
    }
}
