//! `ersatz requests` and `ersatz audit`: what clients asked a running
//! server, and who still asks without an IMDSv2 token.

use std::io::Write;

use clap::Args;
use http::Method;

use super::remote::{expect_ok, json, remote, AdminArgs};
use super::Failure;

#[derive(Args)]
pub struct Requests {
    /// Keep printing requests as they come (JSON lines), until interrupted.
    #[arg(long)]
    follow: bool,
    /// Only paths that start with this.
    #[arg(long)]
    path: Option<String>,
    /// Only clients in this address block (10.0.0.0/8, or one address).
    #[arg(long)]
    client: Option<String>,
    /// Only answers with this status.
    #[arg(long)]
    status: Option<u16>,
    /// Only requests since: an RFC 3339 time, or a duration ago (5m).
    #[arg(long)]
    since: Option<String>,
    /// At most the newest N.
    #[arg(long)]
    limit: Option<usize>,
    /// Forget the requests kept instead.
    #[arg(long, conflicts_with_all = ["follow", "path", "client", "status", "since", "limit"])]
    clear: bool,
}

impl Requests {
    fn query(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        let status = self.status.map(|s| s.to_string());
        let limit = self.limit.map(|l| l.to_string());
        let given = [
            ("path", self.path.as_deref()),
            ("client", self.client.as_deref()),
            ("status", status.as_deref()),
            ("since", self.since.as_deref()),
            ("limit", limit.as_deref()),
            ("follow", self.follow.then_some("true")),
        ];
        for (key, value) in given {
            if let Some(value) = value {
                query.append_pair(key, value);
            }
        }
        let query = query.finish();
        if query.is_empty() {
            "/requests".to_owned()
        } else {
            format!("/requests?{query}")
        }
    }

    pub fn run(self, admin: &AdminArgs) -> Result<(), Failure> {
        let path = self.query();
        remote(admin, |client| async move {
            if self.clear {
                print!(
                    "{}",
                    expect_ok(client.call(Method::DELETE, "/requests", None).await?)?
                );
                return Ok(());
            }
            if self.follow {
                let mut out = std::io::stdout();
                let answer = client
                    .follow(&path, |chunk| {
                        let _ = out.write_all(chunk);
                        let _ = out.flush();
                    })
                    .await?;
                expect_ok(answer)?;
                return Ok(());
            }
            let body = expect_ok(client.call(Method::GET, &path, None).await?)?;
            // One request per line, as --follow prints them.
            for entry in json(&body)?["requests"].as_array().into_iter().flatten() {
                println!("{entry}");
            }
            Ok(())
        })
    }
}

#[derive(Args)]
pub struct Audit {
    /// Forget the audit instead.
    #[arg(long)]
    clear: bool,
}

impl Audit {
    pub fn run(self, admin: &AdminArgs) -> Result<(), Failure> {
        remote(admin, |client| async move {
            if self.clear {
                print!(
                    "{}",
                    expect_ok(client.call(Method::DELETE, "/audit", None).await?)?
                );
                return Ok(());
            }
            let body = expect_ok(client.call(Method::GET, "/audit", None).await?)?;
            print!("{}", report(&json(&body)?));
            Ok(())
        })
    }
}

/// The audit for people: per client, its IMDSv1 requests, the processes
/// behind them, and the paths, most asked first.
fn report(audit: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let clients = audit["clients"].as_array().cloned().unwrap_or_default();
    if clients.is_empty() {
        return "no requests without an IMDSv2 token\n".to_owned();
    }
    let mut out = String::new();
    for client in clients {
        let _ = writeln!(
            out,
            "{}: {} requests without a token",
            client["client"].as_str().unwrap_or("?"),
            client["v1_requests"]
        );
        for process in client["processes"].as_array().into_iter().flatten() {
            // Any local process chooses its own arguments: no terminal
            // control sequences from them.
            let command: String = process["command"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .collect();
            let _ = writeln!(out, "  process {}: {command}", process["pid"]);
        }
        let mut paths: Vec<(String, u64)> = client["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(path, count)| (path.clone(), count.as_u64().unwrap_or(0)))
            .collect();
        paths.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (path, count) in paths {
            let _ = writeln!(out, "  {count:>6}  {path}");
        }
        if let Some(other) = client["other_paths"].as_u64().filter(|n| *n > 0) {
            let _ = writeln!(out, "  {other:>6}  (other paths)");
        }
    }
    out
}
