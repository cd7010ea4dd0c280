//! A plugin behind the same [`Provider`] trait as the built-ins.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, Method};

use super::cache::AnswerCache;
use super::{types, Failure, Plugin};
use crate::provider::{Provider, Request, Resolved, TEXT};

pub struct WasmProvider {
    plugin: Arc<Plugin>,
    answers: AnswerCache,
}

impl WasmProvider {
    pub fn new(plugin: Arc<Plugin>) -> Self {
        Self {
            answers: AnswerCache::new(plugin.max_age),
            plugin,
        }
    }
}

#[async_trait]
impl Provider for WasmProvider {
    async fn resolve(&self, request: &Request<'_>) -> Resolved {
        // IMDS clients send neither queries nor anything but GET to metadata
        // paths; anything else is simply never reused.
        let reusable = request.method == Method::GET && request.query.is_none();
        let client = request.peer.ip();
        if reusable {
            if let Some(kept) = self.answers.get(client, request.path, Instant::now()) {
                self.plugin.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                return kept;
            }
        }
        let guest_request = types::Request {
            method: request.method.as_str().to_owned(),
            path: request.path.to_owned(),
            query: request.query.map(str::to_owned),
            headers: request
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_owned(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            client: request.peer.to_string(),
        };
        let answer = match self.plugin.resolve(guest_request).await {
            Ok(answer) => answer,
            Err(Failure::Busy) => return Resolved::Busy,
            Err(_) => return Resolved::Failed,
        };
        let answered = resolved(answer.response);
        if reusable {
            let now = Instant::now();
            self.answers
                .put(client, request.path, &answered, answer.max_age, now);
        }
        answered
    }
}

/// A plugin's answer as the router's: whatever the guest returns, a valid
/// response (a content type that is no header value becomes text/plain).
pub fn resolved(response: types::Response) -> Resolved {
    match response {
        types::Response::Leaf(leaf) => Resolved::Leaf {
            body: Bytes::from(leaf.body),
            content_type: HeaderValue::from_str(&leaf.content_type).unwrap_or(TEXT),
        },
        types::Response::Directory(entries) => Resolved::Dir(Bytes::from(entries.join("\n"))),
        types::Response::NotFound => Resolved::NotFound,
    }
}
