//! What the client commands (role, event, bootstrap, exec --admin) share:
//! where the running server is, and how its answers become failures.

use std::future::Future;

use clap::Args;
use http::StatusCode;

use super::{runtime, Failure};
use crate::client::AdminClient;

const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8998";

/// Where a client command finds a running server; accepted before or after
/// the subcommand.
#[derive(Args)]
pub struct AdminArgs {
    /// The running server's admin API (role, event, bootstrap; exec uses it
    /// when given) [default: http://127.0.0.1:8998].
    #[arg(long, global = true, env = "ERSATZ_ADMIN_URL")]
    pub admin: Option<String>,
    /// Bearer token, when the server sets server.admin_token.
    #[arg(
        long,
        global = true,
        env = "ERSATZ_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
}

/// Runs a client command against the running server's admin API.
pub fn remote<F, Fut, T>(admin: &AdminArgs, run: F) -> Result<T, Failure>
where
    F: FnOnce(AdminClient) -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let url = admin.admin.as_deref().unwrap_or(DEFAULT_ADMIN_URL);
    let client = AdminClient::new(url, admin.admin_token.clone())?;
    runtime().block_on(run(client))
}

/// The body of a successful answer, else the server's `error` as a failure.
pub fn expect_ok((status, body): (StatusCode, String)) -> Result<String, Failure> {
    if status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or(body);
    Err(Failure::Failed(format!("{status}: {message}")))
}

/// `{"roles": [...]}` as a list.
pub fn roles_of(body: &str) -> Result<Vec<String>, Failure> {
    let value = json(body)?;
    Ok(value["roles"]
        .as_array()
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// An answer that must be JSON. The body is not quoted in the error: some
/// answers (`/ecs`) carry tokens.
pub fn json(body: &str) -> Result<serde_json::Value, Failure> {
    serde_json::from_str(body).map_err(|e| {
        Failure::Failed(format!(
            "the server's answer is not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}
