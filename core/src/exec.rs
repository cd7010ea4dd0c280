//! `ersatz exec`: a command run with container credentials (aws-vault's
//! safer mode: a random token, no keys in the environment).

use std::sync::Arc;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;

use crate::config::Loaded;
use crate::listener;
use crate::server::{App, Keys};

/// `ersatz exec`: serves metadata on a free loopback port for as long as
/// `command` runs, handing it the container-credentials endpoint of `role`
/// (aws-vault's safer mode: a random token, no keys in the environment).
/// Returns the command's exit code.
pub async fn exec(
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
    if app.roles.get(&alias).is_none() {
        return Err(format!(
            "no role named \"{alias}\" (defined: {})",
            app.roles.aliases().join(", ")
        )
        .into());
    }
    // The child connects from loopback; [[clients]] applies to it as to
    // any client, so say so now rather than hand it a role it cannot read.
    if !app
        .imds
        .ecs
        .clients
        .allows(std::net::Ipv4Addr::LOCALHOST.into(), &alias)
    {
        return Err(format!(
            "[[clients]] does not give 127.0.0.1 the role \"{alias}\", so the command would get no credentials: add an entry with cidr = \"127.0.0.1\" and role = \"{alias}\""
        )
        .into());
    }
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(listener::serve(
        bound,
        app.imds.clone(),
        stopped,
        Arc::new(GracefulShutdown::new()),
        listener::Limits::of(&loaded.config.server),
    ));
    let code = run_with_container_credentials(
        &format!("{url}/ecs/{alias}"),
        &app.imds.ecs.tokens.token_for(&alias),
        command,
    )
    .await;
    let _ = stop.send(true);
    let _ = server.await;
    code
}

/// Runs `command` with `AWS_CONTAINER_CREDENTIALS_FULL_URI` = `url` and its
/// token, and without keys in its environment (they would win in every SDK).
/// Returns its exit code (128 + signal when killed).
pub async fn run_with_container_credentials(
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
    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ] {
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
