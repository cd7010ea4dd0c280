//! Builds the services from a configuration and runs them until a signal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;

use crate::access_log::AccessLog;
use crate::admin::Admin;
use crate::config::{ConfigError, Loaded, SourceConfig};
use crate::credentials::{CredentialSource, Roles, StaticSource};
use crate::guard::Guard;
use crate::imds::Imds;
use crate::instance::Instance;
use crate::listener;
use crate::provider::iam::{self, IamProvider};
use crate::provider::static_tree::instance_tree;
use crate::provider::Provider;
use crate::router::Router;
use crate::session::Sessions;
use crate::state;

/// In-flight requests get this long to finish after a stop signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

pub struct App {
    pub imds: Arc<Imds>,
    pub admin: Arc<Admin>,
}

impl App {
    /// Everything a configuration describes, checked, ready to serve.
    pub async fn build(loaded: &Loaded) -> Result<Self, ConfigError> {
        let config = &loaded.config;
        let instance =
            Instance::resolve(&config.instance).map_err(|e| loaded.error(&e.key, e.reason))?;

        let sources: BTreeMap<&str, Arc<dyn CredentialSource>> = config
            .sources
            .iter()
            .map(|(name, source)| (name.as_str(), build_source(source)))
            .collect();
        let bindings = config
            .roles
            .iter()
            .map(|(alias, role)| (alias.clone(), sources[role.source.as_str()].clone()))
            .collect();
        let roles = Arc::new(Roles::new(bindings, config.initial_role()));

        let iam: Arc<dyn Provider> = Arc::new(IamProvider::new(roles.clone(), &instance));
        let mut tree = instance_tree(&instance);
        tree.mount(iam::MOUNT);
        tree.overrides(&config.metadata)
            .map_err(|e| loaded.error(&e.key, e.reason))?;
        let tree: Arc<dyn Provider> =
            Arc::new(tree.build().map_err(|e| loaded.error(&e.key, e.reason))?);
        let router = Router::new(vec![(String::new(), tree), (iam::MOUNT.to_owned(), iam)]);

        let state_dir = if config.server.state_dir.as_os_str().is_empty() {
            state::default_dir()
        } else {
            config.server.state_dir.clone()
        };
        let access_log = if config.server.access_log.as_os_str().is_empty() {
            None
        } else {
            Some(
                AccessLog::open(&config.server.access_log)
                    .await
                    .map_err(|error| {
                        loaded.error(
                            "server.access_log",
                            format!("cannot open for appending: {error}"),
                        )
                    })?,
            )
        };
        let imds = Imds {
            guard: Guard::new(&config.server.allowed_hosts, &config.server.listen),
            sessions: Sessions::load(&state_dir),
            v1: config.imds.v1,
            router,
            access_log,
        };
        let admin = Admin::new(roles, &config.server.admin_token);
        Ok(Self {
            imds: Arc::new(imds),
            admin: Arc::new(admin),
        })
    }
}

fn build_source(source: &SourceConfig) -> Arc<dyn CredentialSource> {
    match source {
        SourceConfig::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } => Arc::new(StaticSource::new(
            access_key_id,
            secret_access_key,
            session_token.as_ref(),
        )),
    }
}

/// Binds every listener, announces them on stdout, serves until SIGINT or
/// SIGTERM, then drains in-flight requests.
pub async fn run(loaded: Loaded) -> Result<(), Box<dyn std::error::Error>> {
    let app = App::build(&loaded).await?;
    let server = &loaded.config.server;
    let (stop, stopped) = watch::channel(false);
    let connections = Arc::new(GracefulShutdown::new());
    let mut tasks = Vec::new();
    for addr in &server.listen {
        let bound = listener::bind(*addr).await?;
        println!("ersatz: metadata on http://{}", bound.local_addr()?);
        tasks.push(tokio::spawn(listener::serve(
            bound,
            app.imds.clone(),
            stopped.clone(),
            connections.clone(),
        )));
    }
    let admin = listener::bind(server.admin_listen).await?;
    println!("ersatz: admin on http://{}", admin.local_addr()?);
    tasks.push(tokio::spawn(listener::serve(
        admin,
        app.admin.clone(),
        stopped.clone(),
        connections.clone(),
    )));
    tracing::info!("ready");

    wait_for_stop_signal().await;
    tracing::info!("stopping: finishing in-flight requests");
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    let connections = Arc::try_unwrap(connections)
        .map_err(|_| "a listener still holds the connection tracker")?;
    if tokio::time::timeout(DRAIN_DEADLINE, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish in time");
    }
    Ok(())
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
