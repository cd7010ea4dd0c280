//! Builds the services from a configuration and runs them until a signal.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;

use crate::access_log::AccessLog;
use crate::admin::roles::RoleApi;
use crate::admin::{Access, Admin, EcsInfo, Reload};
use crate::config::{self, mount_path, Cidr, ConfigError, Loaded, Overrides, SourceConfig};
use crate::credentials::{self, CredentialSource, Roles};
use crate::guard::Guard;
use crate::imds::{Ecs, Imds};
use crate::instance::Instance;
use crate::listener::{self, Handler};
use crate::plugin::{Plugin, PluginEngine, PluginSource, PluginSpec, WasmProvider};
use crate::provider::events::{
    Events, EventsProvider, View, AUTOSCALING_MOUNT, EVENTS_MOUNT, SPOT_MOUNT,
};
use crate::provider::iam::{self, ClientRoles, IamProvider};
use crate::provider::identity::{self, IdentityKey, IdentityProvider, KeySource, SigningKey};
use crate::provider::static_tree::{identity_document, instance_tree, snapshot_tree, StaticTree};
use crate::provider::Provider;
use crate::router::Router;
use crate::session::{ContainerTokens, Sessions};
use crate::snapshot::Snapshot;
use crate::state;

/// In-flight requests get this long to finish after a stop signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

pub struct App {
    pub imds: Arc<Imds>,
    pub roles: Arc<Roles>,
    pub events: Arc<Events>,
    plugin_engine: parking_lot::Mutex<Option<Arc<PluginEngine>>>,
    keys: Keys,
    ecs_tokens: Arc<ContainerTokens>,
    admin_access: Arc<ArcSwap<Access>>,
}

/// The keys a process keeps for its whole life, whatever reloads happen:
/// IMDSv2 tokens and identity signatures stay valid even when the state
/// directory cannot keep them.
pub struct Keys {
    sessions: Arc<Sessions>,
    /// The identity key kept in the state directory (used unless
    /// `[identity]` names files).
    state_signing_key: Arc<SigningKey>,
    /// Whether compiled plugins are kept in the state directory.
    keeps_state: bool,
}

impl Keys {
    /// From the state directory, creating them on first start.
    pub fn load(loaded: &Loaded) -> Self {
        let dir = state_dir(loaded);
        Self {
            sessions: Arc::new(Sessions::load(&dir)),
            state_signing_key: Arc::new(SigningKey::lazy(KeySource::StateDir(dir))),
            keeps_state: true,
        }
    }

    /// In memory only, and no compiled plugins kept: for `config check`,
    /// which must not write.
    pub fn ephemeral(loaded: &Loaded) -> Self {
        Self {
            sessions: Arc::new(Sessions::in_memory()),
            state_signing_key: Arc::new(SigningKey::lazy(KeySource::StateDir(state_dir(loaded)))),
            keeps_state: false,
        }
    }

    /// `[identity]` files are read now, so that a missing or bad file is a
    /// configuration error; otherwise the state directory's key.
    fn signing_key(&self, loaded: &Loaded) -> Result<Arc<SigningKey>, ConfigError> {
        let KeySource::Files { key, certificate } = identity_keys(loaded) else {
            return Ok(self.state_signing_key.clone());
        };
        let source = KeySource::Files { key, certificate };
        let read = IdentityKey::load(&source).map_err(|reason| loaded.error("identity", reason))?;
        Ok(Arc::new(SigningKey::loaded(source, read)))
    }
}

/// What serves metadata: rebuilt as a whole on reload (events carry over).
struct Metadata {
    tree: Arc<StaticTree>,
    instance: Instance,
    identity_document: String,
    plugins: Vec<(Option<String>, Arc<Plugin>)>,
    /// None when replaying a snapshot.
    events: Option<Arc<Events>>,
}

impl App {
    /// Everything a configuration describes, checked, ready to serve, and
    /// its admin API; nothing is bound yet. Serving, `config check` and
    /// reload all pass through here, so they accept the same configurations.
    pub async fn build(loaded: &Loaded, keys: Keys) -> Result<(Self, Admin), ConfigError> {
        let config = &loaded.config;
        let plugin_engine = if config.plugins.is_empty() {
            None
        } else {
            Some(Arc::new(plugin_engine(loaded, keys.keeps_state)?))
        };
        let spot_instance = config.instance.life_cycle.as_deref() == Some("spot");
        let events = Arc::new(Events::from_config(
            &config.events,
            spot_instance,
            SystemTime::now(),
        ));
        let metadata = build_metadata(loaded, plugin_engine.as_deref(), &events)?;
        for (name, source) in &config.sources {
            if let SourceConfig::Plugin { plugin } = source {
                let found = metadata.plugins.iter().find(|(_, p)| &p.name == plugin);
                if found.is_some_and(|(_, p)| !p.is_credential_source()) {
                    return Err(loaded.error(
                        &format!("sources.{name}.plugin"),
                        format!("plugin \"{plugin}\" exports no credential-source: build it for the credential-plugin world"),
                    ));
                }
            }
        }
        let plugin_source = |name: &str| -> Arc<dyn CredentialSource> {
            let plugin = metadata
                .plugins
                .iter()
                .find(|(_, p)| p.name == name)
                .map(|(_, p)| p.clone())
                .expect("the configuration checked the plugin exists");
            Arc::new(PluginSource { plugin })
        };
        let credentials = credentials::build::build(config, &plugin_source);
        let roles = credentials.roles;
        let ecs_tokens = Arc::new(ContainerTokens::new());
        let shared = Shared {
            roles: roles.clone(),
            ecs_tokens: ecs_tokens.clone(),
            sessions: keys.sessions.clone(),
            signing_key: keys.signing_key(loaded)?,
        };
        let imds = build_imds(loaded, metadata, shared).await?;
        let admin_access = Arc::new(ArcSwap::from_pointee(Access::new(&config.server)));
        let ecs = EcsInfo {
            base_urls: Vec::new(),
            tokens: ecs_tokens.clone(),
        };
        let admin = Admin::new(
            roles.clone(),
            credentials.bootstraps,
            events.clone(),
            ecs,
            admin_access.clone(),
            config.server.client_timeout.0,
        );
        let app = Self {
            imds: Arc::new(imds),
            roles,
            events,
            plugin_engine: parking_lot::Mutex::new(plugin_engine),
            keys,
            ecs_tokens,
            admin_access,
        };
        Ok((app, admin))
    }

    /// The metadata service of a new configuration, keeping this one's
    /// roles (and so bootstrapped and cached credentials), events and keys.
    async fn rebuild_imds(&self, loaded: &Loaded) -> Result<Imds, ConfigError> {
        let engine = if loaded.config.plugins.is_empty() {
            None
        } else {
            let existing = self.plugin_engine.lock().clone();
            let engine = match existing {
                Some(engine) => engine,
                None => Arc::new(plugin_engine(loaded, self.keys.keeps_state)?),
            };
            *self.plugin_engine.lock() = Some(engine.clone());
            Some(engine)
        };
        let metadata = build_metadata(loaded, engine.as_deref(), &self.events)?;
        let shared = Shared {
            roles: self.roles.clone(),
            ecs_tokens: self.ecs_tokens.clone(),
            sessions: self.keys.sessions.clone(),
            signing_key: self.keys.signing_key(loaded)?,
        };
        build_imds(loaded, metadata, shared).await
    }
}

/// What every version of the metadata service shares with the next.
struct Shared {
    roles: Arc<Roles>,
    ecs_tokens: Arc<ContainerTokens>,
    sessions: Arc<Sessions>,
    signing_key: Arc<SigningKey>,
}

/// Re-reads the configuration and plugins (SIGHUP, `POST /reload`) and swaps
/// the metadata service in one step: requests in flight finish on the old
/// one; a configuration that fails to load, or that changes a key only a
/// restart can apply, changes nothing.
pub struct Reloader {
    app: Arc<App>,
    file: Option<std::path::PathBuf>,
    overrides: Overrides,
    current: Arc<ArcSwap<Imds>>,
    /// The configuration serving now, to tell what a reload would change.
    /// Held for a whole reload, so that a SIGHUP and a `POST /reload` at
    /// once apply one after the other, never interleaved.
    running: tokio::sync::Mutex<Loaded>,
}

#[async_trait::async_trait]
impl Reload for Reloader {
    fn plugins(&self) -> Vec<Arc<Plugin>> {
        self.current.load().plugins.clone()
    }

    async fn reload(&self) -> Result<(), String> {
        let mut running = self.running.lock().await;
        let outcome = async {
            let loaded = config::load(self.file.as_deref(), &self.overrides)
                .map_err(|error| error.to_string())?;
            let needs_restart = running.needs_restart(&loaded);
            if !needs_restart.is_empty() {
                return Err(format!(
                    "nothing was applied: {} changed, which only a restart applies",
                    needs_restart.join(", ")
                ));
            }
            let imds = self
                .app
                .rebuild_imds(&loaded)
                .await
                .map_err(|error| error.to_string())?;
            Ok((loaded, imds))
        }
        .await;
        match outcome {
            Ok((loaded, imds)) => {
                self.current.store(Arc::new(imds));
                self.app
                    .admin_access
                    .store(Arc::new(Access::new(&loaded.config.server)));
                *running = loaded;
                tracing::info!("configuration reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%error, "reload refused; the previous configuration keeps serving");
                Err(error)
            }
        }
    }
}

impl Handler for ArcSwap<Imds> {
    fn handle(
        self: Arc<Self>,
        request: http::Request<hyper::body::Incoming>,
        peer: std::net::SocketAddr,
    ) -> impl std::future::Future<Output = http::Response<crate::encoder::Body>> + Send + 'static
    {
        // This request keeps its version of the service for its whole life.
        self.load_full().handle(request, peer)
    }

    fn rejected(&self, peer: std::net::SocketAddr, error: &hyper::Error) {
        self.load().rejected(peer, error);
    }
}

fn state_dir(loaded: &Loaded) -> std::path::PathBuf {
    let configured = &loaded.config.server.state_dir;
    if configured.as_os_str().is_empty() {
        state::default_dir()
    } else {
        configured.clone()
    }
}

/// The identity signing key: from `[identity]`, else the state directory.
pub fn identity_keys(loaded: &Loaded) -> KeySource {
    match (
        &loaded.config.identity.key,
        &loaded.config.identity.certificate,
    ) {
        (Some(key), Some(certificate)) => KeySource::Files {
            key: key.clone(),
            certificate: certificate.clone(),
        },
        _ => KeySource::StateDir(state_dir(loaded)),
    }
}

fn plugin_engine(loaded: &Loaded, keeps_state: bool) -> Result<PluginEngine, ConfigError> {
    let cache = keeps_state.then(|| state_dir(loaded).join("plugins"));
    PluginEngine::new(cache).map_err(|e| {
        loaded.error(
            "plugins",
            format!("cannot start the WebAssembly engine: {e:#}"),
        )
    })
}

/// The instance tree, with every mount listed, and the plugins loaded
/// against it (their `host.lookup` reads it).
fn build_metadata(
    loaded: &Loaded,
    engine: Option<&PluginEngine>,
    events: &Arc<Events>,
) -> Result<Metadata, ConfigError> {
    let config = &loaded.config;
    let mut instance =
        Instance::resolve(&config.instance).map_err(|e| loaded.error(&e.key, e.reason))?;
    if config.events.spot.is_some() {
        instance.life_cycle = "spot".into();
    }
    let (mut tree, identity_document) = match &config.snapshot {
        Some(file) => {
            let snapshot =
                Snapshot::load(file).map_err(|reason| loaded.error("snapshot", reason))?;
            let document = snapshot
                .leaves
                .get("dynamic/instance-identity/document")
                .cloned()
                .unwrap_or_else(|| identity_document(&instance));
            (
                snapshot_tree(&snapshot).map_err(|reason| loaded.error("snapshot", reason))?,
                document,
            )
        }
        None => (instance_tree(&instance), identity_document(&instance)),
    };
    tree.mount(iam::MOUNT);
    tree.mount(identity::MOUNT);
    // A replayed snapshot serves the events it captured, as captured.
    let events = (config.snapshot.is_none()).then(|| events.clone());
    for (mount, _) in events.iter().flat_map(|e| event_views(e)) {
        tree.mount(mount);
    }
    let mut mounts = Vec::new();
    for (i, plugin) in config.plugins.iter().enumerate() {
        let mount = match &plugin.mount {
            Some(mount) => Some(
                mount_path(mount)
                    .map_err(|reason| loaded.error(&format!("plugins.{i}.mount"), reason))?,
            ),
            None => None,
        };
        if let Some(mount) = &mount {
            tree.mount(mount.clone());
        }
        mounts.push(mount);
    }
    tree.overrides(&config.metadata)
        .map_err(|e| loaded.error(&e.key, e.reason))?;
    let tree = Arc::new(tree.build().map_err(|e| loaded.error(&e.key, e.reason))?);

    let mut plugins = Vec::new();
    for ((i, plugin), mount) in config.plugins.iter().enumerate().zip(mounts) {
        let engine = engine.expect("an engine exists when plugins are configured");
        let spec = PluginSpec {
            name: plugin.name(),
            wasm: plugin.wasm.clone(),
            config: plugin
                .config
                .as_ref()
                .map_or_else(|| "{}".into(), |c| c.to_string()),
            timeout: plugin.limits.timeout.0,
            memory: plugin.limits.memory.0,
            max_age: plugin.limits.max_age.map(|age| age.0),
        };
        let loaded_plugin = Plugin::load(engine, spec, tree.clone())
            .map_err(|reason| loaded.error(&format!("plugins.{i}.wasm"), reason))?;
        tracing::info!(plugin = %loaded_plugin.name, mount = mount.as_deref().unwrap_or("(none)"), "plugin loaded");
        plugins.push((mount, Arc::new(loaded_plugin)));
    }
    Ok(Metadata {
        tree,
        instance,
        identity_document,
        plugins,
        events,
    })
}

/// The event mounts this instance has: `events/` always, `spot/` and
/// `autoscaling/` when it is a spot instance or in an Auto Scaling group.
fn event_views(events: &Events) -> Vec<(&'static str, View)> {
    let mut views = vec![(EVENTS_MOUNT, View::Events)];
    if events.spot_enabled {
        views.push((SPOT_MOUNT, View::Spot));
    }
    if events.autoscaling_enabled {
        views.push((AUTOSCALING_MOUNT, View::Autoscaling));
    }
    views
}

async fn build_imds(
    loaded: &Loaded,
    metadata: Metadata,
    shared: Shared,
) -> Result<Imds, ConfigError> {
    let config = &loaded.config;
    let mut clients = Vec::new();
    for (i, client) in config.clients.iter().enumerate() {
        let cidr = Cidr::parse(&client.cidr)
            .map_err(|reason| loaded.error(&format!("clients.{i}.cidr"), reason))?;
        clients.push((cidr, client.role.clone()));
    }
    let clients = ClientRoles::new(clients);
    let roles = shared.roles;
    let iam: Arc<dyn Provider> = Arc::new(IamProvider::new(
        roles.clone(),
        &metadata.instance,
        clients.clone(),
    ));
    let identity = IdentityProvider::new(metadata.identity_document, shared.signing_key);
    let mut mounts: Vec<(String, Arc<dyn Provider>)> = vec![
        (String::new(), metadata.tree.clone()),
        (iam::MOUNT.to_owned(), iam),
        (identity::MOUNT.to_owned(), Arc::new(identity)),
    ];
    if let Some(events) = &metadata.events {
        for (mount, view) in event_views(events) {
            let provider = EventsProvider {
                events: events.clone(),
                view,
            };
            mounts.push((mount.to_owned(), Arc::new(provider)));
        }
    }
    let plugins = metadata.plugins.iter().map(|(_, p)| p.clone()).collect();
    for (mount, plugin) in metadata.plugins {
        if let Some(mount) = mount {
            mounts.push((mount, Arc::new(WasmProvider::new(plugin))));
        }
    }
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
    Ok(Imds {
        guard: Guard::new(&config.server.allowed_hosts, &config.server.listen),
        sessions: shared.sessions,
        v1: config.imds.v1,
        router: Router::new(mounts),
        access_log,
        ecs: Ecs {
            roles: roles.clone(),
            tokens: shared.ecs_tokens,
            clients,
        },
        finto_routes: config
            .server
            .finto_routes
            .then(|| RoleApi::new(roles, config.server.client_timeout.0)),
        plugins,
    })
}

/// Binds every listener, and only then announces them on stdout; serves
/// until SIGINT or SIGTERM, then drains in-flight requests. `app` and
/// `admin` come from [`App::build`], so every configuration mistake has
/// been reported before anything is bound.
pub async fn run(
    loaded: Loaded,
    (app, admin): (App, Admin),
    file: Option<std::path::PathBuf>,
    overrides: Overrides,
) -> Result<(), Box<dyn std::error::Error>> {
    let server = loaded.config.server.clone();
    let mut metadata = Vec::new();
    for addr in &server.listen {
        metadata.push(
            listener::bind(
                *addr,
                "the metadata listener (server.listen, or --addr and --port)",
            )
            .await?,
        );
    }
    let admin_listener = listener::bind(
        server.admin_listen,
        "the admin API (server.admin_listen, or --admin-addr)",
    )
    .await?;
    let urls = metadata
        .iter()
        .map(|l| l.local_addr().map(|a| format!("http://{a}")))
        .collect::<Result<Vec<_>, _>>()?;
    let admin = admin.with_ecs_urls(urls.clone());
    app.roles.prefetch_active();
    let current = Arc::new(ArcSwap::new(app.imds.clone()));
    let reloader = Arc::new(Reloader {
        app: Arc::new(app),
        file,
        overrides,
        current: current.clone(),
        running: tokio::sync::Mutex::new(loaded),
    });
    let admin = Arc::new(admin.with_reloader(reloader.clone()));
    let (stop, stopped) = watch::channel(false);
    let connections = Arc::new(GracefulShutdown::new());
    let limits = listener::Limits::of(&server);
    for url in &urls {
        announce(&format!("ersatz: metadata on {url}"));
    }
    announce(&format!(
        "ersatz: admin on http://{}",
        admin_listener.local_addr()?
    ));
    let mut tasks = Vec::new();
    for bound in metadata {
        tasks.push(tokio::spawn(listener::serve(
            bound,
            current.clone(),
            stopped.clone(),
            connections.clone(),
            limits,
        )));
    }
    tasks.push(tokio::spawn(listener::serve(
        admin_listener,
        admin,
        stopped.clone(),
        connections.clone(),
        limits,
    )));
    tracing::info!("ready");

    wait_for_stop_signal(&reloader).await;
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

/// Tells whoever started us where we listen. A closed stdout (the starter
/// stopped reading) must not take the server down, so errors are ignored.
fn announce(line: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Waits for SIGINT or SIGTERM, reloading on every SIGHUP meanwhile.
async fn wait_for_stop_signal(reloader: &Reloader) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut hangup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = terminate.recv() => return,
            _ = hangup.recv() => {
                let _ = reloader.reload().await;
            }
        }
    }
}
