//! Builds the services from a configuration and runs them until a signal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;

use crate::access_log::AccessLog;
use crate::admin::roles::RoleApi;
use crate::admin::{Admin, EcsInfo};
use crate::config::{expand_home, Config, ConfigError, Loaded, SourceConfig};
use crate::credentials::roles::RoleSpec;
use crate::credentials::{
    AssumeParams, AssumeRole, BootstrapSource, Cached, CredentialSource, RefreshPolicy, Roles,
    SdkSource, StaticSource,
};
use crate::guard::Guard;
use crate::imds::{Ecs, Imds};
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
    pub roles: Arc<Roles>,
}

/// The sources a configuration names, built callers first.
struct Sources {
    all: BTreeMap<String, Arc<dyn CredentialSource>>,
    bootstraps: BTreeMap<String, Arc<BootstrapSource>>,
}

impl App {
    /// Everything a configuration describes, checked, ready to serve.
    /// `metadata_urls` are where the metadata listeners will be, for `GET /ecs`.
    pub async fn build(loaded: &Loaded, metadata_urls: Vec<String>) -> Result<Self, ConfigError> {
        let config = &loaded.config;
        let instance =
            Instance::resolve(&config.instance).map_err(|e| loaded.error(&e.key, e.reason))?;
        let policy = RefreshPolicy {
            margin: config.credentials.refresh_margin.0,
        };
        let sources = build_sources(config, policy);
        let specs = config
            .roles
            .iter()
            .map(|(alias, role)| RoleSpec {
                alias: alias.clone(),
                source: role.source.clone(),
                assume: role.arn.as_ref().map(|arn| AssumeParams {
                    arn: arn.clone(),
                    session_name: role
                        .session_name
                        .clone()
                        .unwrap_or_else(|| format!("ersatz-{alias}")),
                    duration: role.duration.map_or(DEFAULT_DURATION, |d| d.0),
                    external_id: role.external_id.clone(),
                    region: role.region.clone(),
                    sts_endpoint: role.sts_endpoint.clone(),
                }),
            })
            .collect();
        let roles = Arc::new(Roles::new(
            sources.all,
            specs,
            config.initial_role(),
            policy,
        ));

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
        let ecs_token: Arc<str> = random_hex(32).into();
        let imds = Imds {
            guard: Guard::new(&config.server.allowed_hosts, &config.server.listen),
            sessions: Sessions::load(&state_dir),
            v1: config.imds.v1,
            router,
            access_log,
            ecs: Ecs {
                roles: roles.clone(),
                token: ecs_token.clone(),
            },
            finto_routes: config
                .server
                .finto_routes
                .then(|| RoleApi::new(roles.clone())),
        };
        let ecs = EcsInfo {
            base_urls: metadata_urls,
            token: ecs_token,
        };
        let admin = Admin::new(
            roles.clone(),
            sources.bootstraps,
            ecs,
            &config.server.admin_token,
        );
        Ok(Self {
            imds: Arc::new(imds),
            admin: Arc::new(admin),
            roles,
        })
    }
}

/// STS's default session length.
const DEFAULT_DURATION: Duration = Duration::from_secs(3600);

fn build_sources(config: &Config, policy: RefreshPolicy) -> Sources {
    let mut sources = Sources {
        all: BTreeMap::new(),
        bootstraps: BTreeMap::new(),
    };
    for name in config.sources.keys() {
        build_source(config, name, policy, &mut sources);
    }
    sources
}

/// Builds `name` after its caller (the configuration has no cycles).
fn build_source(
    config: &Config,
    name: &str,
    policy: RefreshPolicy,
    built: &mut Sources,
) -> Arc<dyn CredentialSource> {
    if let Some(source) = built.all.get(name) {
        return source.clone();
    }
    let source: Arc<dyn CredentialSource> = match &config.sources[name] {
        SourceConfig::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } => Arc::new(StaticSource::new(
            access_key_id,
            secret_access_key,
            session_token.as_ref(),
        )),
        SourceConfig::Profile { file, profile } => {
            let file = file.as_ref().map(|f| expand_home(&f.to_string_lossy()));
            let sdk = SdkSource::profile(file.as_deref(), profile.as_deref());
            Cached::new(format!("source {name}"), Arc::new(sdk), policy)
        }
        SourceConfig::Chain {} => Cached::new(
            format!("source {name}"),
            Arc::new(SdkSource::chain()),
            policy,
        ),
        SourceConfig::Bootstrap {} => {
            let bootstrap = Arc::new(BootstrapSource::default());
            built.bootstraps.insert(name.to_owned(), bootstrap.clone());
            bootstrap
        }
        SourceConfig::AssumeRole {
            caller,
            arn,
            duration,
            session_name,
            external_id,
            region,
            sts_endpoint,
        } => {
            let caller = build_source(config, caller, policy, built);
            let params = AssumeParams {
                arn: arn.clone(),
                session_name: session_name
                    .clone()
                    .unwrap_or_else(|| format!("ersatz-{name}")),
                duration: duration.map_or(DEFAULT_DURATION, |d| d.0),
                external_id: external_id.clone(),
                region: region.clone(),
                sts_endpoint: sts_endpoint.clone(),
            };
            Cached::new(
                format!("source {name}"),
                Arc::new(AssumeRole::new(params, caller)),
                policy,
            )
        }
    };
    built.all.insert(name.to_owned(), source.clone());
    source
}

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    getrandom::getrandom(&mut raw).expect("the OS random generator is available");
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// Binds every listener, announces them on stdout, serves until SIGINT or
/// SIGTERM, then drains in-flight requests.
pub async fn run(loaded: Loaded) -> Result<(), Box<dyn std::error::Error>> {
    let server = &loaded.config.server;
    let mut metadata = Vec::new();
    for addr in &server.listen {
        metadata.push(listener::bind(*addr).await?);
    }
    let urls = metadata
        .iter()
        .map(|l| l.local_addr().map(|a| format!("http://{a}")))
        .collect::<Result<Vec<_>, _>>()?;
    let app = App::build(&loaded, urls.clone()).await?;
    app.roles.prefetch_active();
    let (stop, stopped) = watch::channel(false);
    let connections = Arc::new(GracefulShutdown::new());
    let mut tasks = Vec::new();
    for (bound, url) in metadata.into_iter().zip(urls) {
        println!("ersatz: metadata on {url}");
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

/// `ersatz exec`: serves metadata on a free loopback port for as long as
/// `command` runs, handing it the container-credentials endpoint of `role`
/// (aws-vault's safer mode: a random token, no keys in the environment).
/// Returns the command's exit code.
pub async fn exec(
    loaded: Loaded,
    role: Option<String>,
    command: &[String],
) -> Result<i32, Box<dyn std::error::Error>> {
    let bound = listener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}", bound.local_addr()?);
    let app = App::build(&loaded, vec![url.clone()]).await?;
    let alias = role.unwrap_or_else(|| app.roles.active());
    if app.roles.get(&alias).is_none() {
        return Err(format!(
            "no role named \"{alias}\" (defined: {})",
            app.roles.aliases().join(", ")
        )
        .into());
    }
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(listener::serve(
        bound,
        app.imds.clone(),
        stopped,
        Arc::new(GracefulShutdown::new()),
    ));
    let code =
        run_with_container_credentials(&format!("{url}/ecs/{alias}"), &app.imds.ecs.token, command)
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
