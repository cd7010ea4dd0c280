//! `ersatz snapshot URL`: crawls any IMDS (a real instance, another
//! emulator) into a [`Snapshot`] document.
//!
//! Credentials are never captured: `iam/` and `identity-credentials/` are
//! left out (the replaying ersatz serves its own roles), and so are the
//! identity signatures (it signs the captured document with its own key).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use clap::Args;
use http::{Method, StatusCode};

use super::{runtime, Failure};
use crate::client;
use crate::snapshot::{Snapshot, FORMAT};

/// Deeper than any IMDS tree; a guard against a server that lists in circles.
const MAX_DEPTH: usize = 16;
const MAX_PATHS: usize = 20_000;
/// Subtrees that hold credentials.
const NEVER_CAPTURED: &[&str] = &["meta-data/iam", "meta-data/identity-credentials"];

#[derive(Args)]
pub struct SnapshotArgs {
    /// The IMDS, e.g. http://169.254.169.254 on an instance.
    url: String,
    /// Write here instead of stdout.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

impl SnapshotArgs {
    pub fn run(self) -> Result<(), Failure> {
        let failed =
            |error: String| Failure::Failed(format!("snapshot of {} failed: {error}", self.url));
        let snapshot = runtime().block_on(take(&self.url)).map_err(failed)?;
        let mut json =
            serde_json::to_string_pretty(&snapshot).map_err(|e| failed(e.to_string()))?;
        json.push('\n');
        match &self.output {
            Some(path) => std::fs::write(path, json)
                .map_err(|e| failed(format!("cannot write {}: {e}", path.display()))),
            None => {
                print!("{json}");
                Ok(())
            }
        }
    }
}

struct Crawler {
    authority: String,
    token: Option<String>,
    snapshot: Snapshot,
}

impl Crawler {
    async fn get(&self, path: &str) -> Result<(StatusCode, Vec<u8>), String> {
        let header: Vec<(&str, &str)> = self
            .token
            .iter()
            .map(|t| ("x-aws-ec2-metadata-token", t.as_str()))
            .collect();
        let (status, body) = client::request(
            &self.authority,
            Method::GET,
            &format!("/latest/{path}"),
            &header,
            None,
        )
        .await?;
        Ok((status, body.to_vec()))
    }

    async fn text(&self, path: &str) -> Result<String, String> {
        match self.get(path).await? {
            (StatusCode::OK, body) => Ok(String::from_utf8_lossy(&body).into_owned()),
            (status, _) => Err(format!("GET /latest/{path} answered {status}")),
        }
    }

    /// Records `dir`'s listing and everything below it.
    async fn walk(&mut self, dir: &str, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH
            || self.snapshot.leaves.len() + self.snapshot.listings.len() > MAX_PATHS
        {
            return Err(format!(
                "the tree is deeper or larger than any IMDS's (at {dir})"
            ));
        }
        let listing = self.text(&format!("{dir}/")).await?;
        self.snapshot
            .listings
            .insert(dir.to_owned(), listing.clone());
        for entry in listing.lines().map(str::trim).filter(|e| !e.is_empty()) {
            // `public-keys/` lists `0=name` for the directory `0/`.
            let (name, is_dir) = match (entry.strip_suffix('/'), entry.split_once('=')) {
                (Some(name), _) => (name, true),
                (None, Some((index, _))) => (index, true),
                (None, None) => (entry, false),
            };
            let path = format!("{dir}/{name}");
            if NEVER_CAPTURED.contains(&path.as_str()) {
                continue;
            }
            if is_dir {
                Box::pin(self.walk(&path, depth + 1)).await?;
            } else {
                let value = self.text(&path).await?;
                self.snapshot.leaves.insert(path, value);
            }
        }
        Ok(())
    }
}

/// How long the token PUT may take before the crawl falls back to IMDSv1,
/// as the AWS SDKs do: behind a container's extra network hop, an IMDS
/// with a hop limit of 1 drops the answer to the PUT, and only v1 works.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(1);

/// Crawls the IMDS at `url`: IMDSv2 when it hands out tokens, else v1.
pub async fn take(url: &str) -> Result<Snapshot, String> {
    let authority = client::authority(url)?;
    let ttl = [("x-aws-ec2-metadata-token-ttl-seconds", "21600")];
    let put = client::request(&authority, Method::PUT, "/latest/api/token", &ttl, None);
    let token = match tokio::time::timeout(TOKEN_TIMEOUT, put).await {
        Ok(answer) => match answer? {
            (StatusCode::OK, body) => Some(String::from_utf8_lossy(&body).trim().to_owned()),
            (status, _) => {
                tracing::info!(%status, "no IMDSv2 token; crawling with IMDSv1");
                None
            }
        },
        Err(_) => {
            tracing::info!(
                "no answer to the IMDSv2 token request within {} s; crawling with IMDSv1",
                TOKEN_TIMEOUT.as_secs()
            );
            None
        }
    };
    let mut crawler = Crawler {
        authority,
        token,
        snapshot: Snapshot {
            format: FORMAT,
            source: url.to_owned(),
            leaves: BTreeMap::new(),
            listings: BTreeMap::new(),
            user_data: None,
        },
    };
    crawler.walk("meta-data", 0).await?;
    let document = crawler.text("dynamic/instance-identity/document").await?;
    crawler
        .snapshot
        .leaves
        .insert("dynamic/instance-identity/document".into(), document);
    crawler.snapshot.user_data = match crawler.get("user-data").await? {
        (StatusCode::OK, body) => Some(base64::engine::general_purpose::STANDARD.encode(body)),
        (StatusCode::NOT_FOUND, _) => None,
        (status, _) => return Err(format!("GET /latest/user-data answered {status}")),
    };
    Ok(crawler.snapshot)
}
