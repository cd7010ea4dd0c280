//! The access log (finto's `-log`): one Common Log Format line per request,
//! appended by a background task so requests never wait on the disk.

use std::net::SocketAddr;
use std::path::Path;

use time::macros::format_description;
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Lines waiting for the disk; beyond this, lines are dropped, not queued.
const BACKLOG: usize = 4096;

#[derive(Clone)]
pub struct AccessLog {
    lines: mpsc::Sender<String>,
}

impl AccessLog {
    /// Opens (creating, appending) `path` and starts the writer task.
    pub async fn open(path: &Path) -> std::io::Result<Self> {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await?;
        let (lines, mut incoming) = mpsc::channel::<String>(BACKLOG);
        tokio::spawn(async move {
            while let Some(line) = incoming.recv().await {
                if let Err(error) = file.write_all(line.as_bytes()).await {
                    tracing::warn!(%error, "access log write failed");
                }
            }
            let _ = file.flush().await;
        });
        Ok(Self { lines })
    }

    pub fn record(&self, peer: SocketAddr, method: &str, path: &str, status: u16, bytes: usize) {
        let now = OffsetDateTime::now_utc()
            .format(format_description!(
                "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
            ))
            .unwrap_or_default();
        let line = format!(
            "{} - - [{now}] \"{method} {path} HTTP/1.1\" {status} {bytes}\n",
            peer.ip()
        );
        if self.lines.try_send(line).is_err() {
            tracing::debug!("access log backlog full; line dropped");
        }
    }
}
