//! `ersatz exec`: a command run with container credentials (aws-vault's
//! safer mode: a random token, no keys in the environment).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use http::Method;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;

use super::remote::{expect_ok, json, remote, roles_of, AdminArgs};
use super::{runtime, Failure};
use crate::client::AdminClient;
use crate::config::{self, Loaded, Overrides};
use crate::embedded;
use crate::listener;
use crate::server::{App, Keys};

#[derive(Args)]
pub struct Exec {
    /// Configuration file: TOML, JSON, YAML or a .fintorc.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// The role to hand out (default: the active role). With --admin,
    /// uses the server running there instead of starting one.
    #[arg(long)]
    role: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl Exec {
    /// Exits as the command did: its exit code, or 128 + the signal that
    /// killed it.
    pub fn run(self, admin: &AdminArgs) -> Result<(), Failure> {
        let code = if admin.admin.is_some() {
            remote(admin, |client| self.through_running_server(client))?
        } else {
            let loaded = config::load(self.config.as_deref(), &Overrides::default())?;
            runtime()
                .block_on(exec(loaded, self.role, &self.command))
                .map_err(|error| Failure::Failed(error.to_string()))?
        };
        match u8::try_from(code) {
            Ok(0) => Ok(()),
            Ok(code) => Err(Failure::Exit(code)),
            Err(_) => Err(Failure::Exit(1)),
        }
    }

    /// The container endpoint of a server already running at `--admin`.
    async fn through_running_server(self, client: AdminClient) -> Result<i32, Failure> {
        let ecs = json(&expect_ok(client.call(Method::GET, "/ecs", None).await?)?)?;
        let alias = match self.role {
            Some(role) => role,
            None => {
                let active = client.call(Method::GET, "/roles?status=active", None);
                roles_of(&expect_ok(active.await?)?)?
                    .pop()
                    .ok_or("the server names no active role")?
            }
        };
        let endpoint = &ecs["roles"][&alias];
        let url = endpoint["urls"][0]
            .as_str()
            .ok_or_else(|| format!("the server has no role named \"{alias}\""))?;
        let token = endpoint["token"].as_str().unwrap_or_default();
        run_with_container_credentials(url, token, &self.command)
            .await
            .map_err(|error| Failure::Failed(error.to_string()))
    }
}

/// `ersatz exec`: serves metadata on a free loopback port for as long as
/// `command` runs, handing it the container-credentials endpoint of `role`
/// (aws-vault's safer mode: a random token, no keys in the environment).
/// Returns the command's exit code.
async fn exec(
    loaded: Loaded,
    role: Option<String>,
    command: &[String],
) -> Result<i32, Box<dyn std::error::Error>> {
    let (app, _) = App::build(&loaded, Keys::load(&loaded)).await?;
    let bound = listener::bind(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        "the container-credentials endpoint",
    )
    .await?;
    let url = format!("http://{}", bound.local_addr()?);
    let alias = role.unwrap_or_else(|| app.roles.active());
    let token = app.container_token(&alias)?;
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(listener::serve(
        bound,
        app.imds.clone(),
        stopped,
        Arc::new(GracefulShutdown::new()),
        listener::Limits::of(&loaded.config.server),
    ));
    let code = run_with_container_credentials(&format!("{url}/ecs/{alias}"), &token, command).await;
    let _ = stop.send(true);
    let _ = server.await;
    code
}

/// Runs `command` with `AWS_CONTAINER_CREDENTIALS_FULL_URI` = `url` and its
/// token, and without keys in its environment (they would win in every SDK).
/// Returns its exit code (128 + signal when killed).
async fn run_with_container_credentials(
    url: &str,
    token: &str,
    command: &[String],
) -> Result<i32, Box<dyn std::error::Error>> {
    let (program, args) = command.split_first().ok_or("no command to run")?;
    let mut child = tokio::process::Command::new(program);
    child
        .args(args)
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", url)
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN", token);
    for (key, value) in embedded::NO_SHARED_CREDENTIALS {
        child.env(key, value);
    }
    for key in embedded::SHADOWING_VARIABLES {
        child.env_remove(key);
    }
    let status = child
        .status()
        .await
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
