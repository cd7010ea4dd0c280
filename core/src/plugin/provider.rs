//! A plugin behind the same [`Provider`] trait as the built-ins.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;

use super::{types, Plugin};
use crate::provider::{Provider, Request, Resolved, TEXT};

pub struct WasmProvider {
    pub plugin: Arc<Plugin>,
}

#[async_trait]
impl Provider for WasmProvider {
    async fn resolve(&self, request: &Request<'_>) -> Resolved {
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
        match self.plugin.resolve(&guest_request).await {
            Ok(response) => resolved(response),
            Err(_) => Resolved::Failed,
        }
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
