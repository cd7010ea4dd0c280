//! Builds the services from a configuration and runs them until a signal.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;

use crate::access_log::AccessLog;
use crate::admin::roles::RoleApi;
use crate::admin::{Access, Admin, Controls, EcsInfo, Reload};
use crate::changes::Changes;
use crate::config::{
    self, fault_rules, listener_mount, mount_path, ConfigError, HostGrant, Loaded, Overrides,
    SourceConfig,
};
use crate::credentials::{self, CredentialSource, Roles};
use crate::fault::Faults;
use crate::flavour::{Flavour, FlavourHandler, Flavours};
use crate::gate::{Gate, Gated};
use crate::guard::Guard;
use crate::imds::{Ecs, Imds};
use crate::instance::Instance;
use crate::journal::Journal;
use crate::listener::{self, Handler};
use crate::plugin::{
    Grants, Plugin, PluginEngine, PluginSource, PluginSpec, Shape, Stores, WasmProvider,
};
use crate::provider::events::{self, Events, EventsProvider};
use crate::provider::iam::{self, ClientRoles, IamProvider};
use crate::provider::identity::{self, IdentityKey, IdentityProvider, KeySource, SigningKey};
use crate::provider::static_tree::{identity_document, instance_tree, snapshot_tree, StaticTree};
use crate::provider::{self, Provider};
use crate::router::Router;
use crate::session::{ContainerTokens, Sessions};
use crate::snapshot::Snapshot;
use crate::state;

/// In-flight requests get this long to finish after a stop signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

pub struct App {
    pub imds: Arc<Imds>,
    /// Other clouds' services, as this configuration built them.
    flavours: Arc<Flavours>,
    pub roles: Arc<Roles>,
    pub events: Arc<Events>,
    plugin_engine: parking_lot::Mutex<Option<Arc<PluginEngine>>>,
    keys: Keys,
    ecs_tokens: Arc<ContainerTokens>,
    admin_access: Arc<ArcSwap<Access>>,
    /// Fault rules: the configuration's, and those added at run time.
    pub faults: Arc<Faults>,
    pub journal: Arc<Journal>,
    /// Requests held unanswered now, by every version of the service.
    held: Arc<AtomicUsize>,
    /// Plugins' stores, and the signal long-polls wait on.
    stores: Arc<Stores>,
    pub changes: Arc<Changes>,
}

/// The keys a process keeps for its whole life, whatever reloads happen:
/// IMDSv2 tokens and identity signatures stay valid even when the state
/// directory cannot keep them.
pub struct Keys {
    sessions: Arc<Sessions>,
    /// The identity key kept in the state directory (used unless
    /// `[identity]` names files).
    state_signing_key: Arc<SigningKey>,
    /// Whether building may write files (compiled plugins, the access log):
    /// not for `config check`.
    writes: bool,
}

impl Keys {
    /// From the state directory, creating them on first start.
    pub fn load(loaded: &Loaded) -> Self {
        let dir = state_dir(loaded);
        Self {
            sessions: Arc::new(Sessions::load(&dir)),
            state_signing_key: Arc::new(SigningKey::lazy(KeySource::StateDir(dir))),
            writes: true,
        }
    }

    /// In memory only, and no compiled plugins kept: for `config check`,
    /// which must not write.
    pub fn ephemeral(loaded: &Loaded) -> Self {
        Self {
            sessions: Arc::new(Sessions::in_memory()),
            state_signing_key: Arc::new(SigningKey::lazy(KeySource::StateDir(state_dir(loaded)))),
            writes: false,
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
    /// In `[[plugins]]` order.
    plugins: Vec<(Placement, Arc<Plugin>)>,
    /// Empty when replaying a snapshot.
    event_mounts: Vec<(String, Arc<EventsProvider>)>,
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
            Some(Arc::new(plugin_engine(loaded, keys.writes)?))
        };
        let spot_instance = config.instance.life_cycle.as_deref() == Some("spot");
        let events = Arc::new(Events::from_config(
            &config.events,
            spot_instance,
            SystemTime::now(),
        ));
        let stores = Arc::new(Stores::default());
        let changes = Arc::new(Changes::default());
        let signing_key = keys.signing_key(loaded)?;
        let host = PluginHost {
            signer: signing_key.clone(),
            stores: stores.clone(),
            changes: changes.clone(),
            writes: keys.writes,
        };
        let metadata = build_metadata(loaded, plugin_engine.as_deref(), &events, &host).await?;
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
        let listeners = config.listeners.iter().map(|l| l.name.clone()).collect();
        let faults = Arc::new(Faults::new(fault_rules(loaded)?, listeners));
        let journal = Arc::new(Journal::new(config.journal.capacity));
        let held = Arc::new(AtomicUsize::new(0));
        let shared = Shared {
            journal: journal.clone(),
            held: held.clone(),
            roles: roles.clone(),
            ecs_tokens: ecs_tokens.clone(),
            faults: faults.clone(),
            sessions: keys.sessions.clone(),
            signing_key,
            changes: changes.clone(),
            writes: keys.writes,
        };
        let services = build_services(loaded, metadata, shared).await?;
        let admin_access = Arc::new(ArcSwap::from_pointee(Access::new(&config.server)));
        let ecs = EcsInfo {
            base_urls: Vec::new(),
            tokens: ecs_tokens.clone(),
        };
        let admin = Admin::new(
            roles.clone(),
            credentials.bootstraps,
            Controls {
                events: events.clone(),
                faults: faults.clone(),
                journal: journal.clone(),
                changes: changes.clone(),
            },
            ecs,
            admin_access.clone(),
            config.server.client_timeout.0,
        );
        let app = Self {
            imds: Arc::new(services.imds),
            flavours: Arc::new(services.flavours),
            roles,
            events,
            plugin_engine: parking_lot::Mutex::new(plugin_engine),
            keys,
            ecs_tokens,
            admin_access,
            faults,
            journal,
            held,
            stores,
            changes,
        };
        Ok((app, admin))
    }

    /// The token a process on this host presents for `alias` at
    /// `/ecs/ALIAS`, or why it would get nothing there.
    pub fn container_token(&self, alias: &str) -> Result<String, String> {
        if self.roles.get(alias).is_none() {
            let defined = self.roles.aliases().join(", ");
            return Err(format!("no role named \"{alias}\" (defined: {defined})"));
        }
        // The process connects from loopback; [[clients]] applies to it as
        // to any client, so say so now rather than hand it a role it
        // cannot read.
        let loopback = std::net::Ipv4Addr::LOCALHOST.into();
        if !self.imds.ecs.clients.allows(loopback, alias) {
            return Err(format!(
                "[[clients]] does not give 127.0.0.1 the role \"{alias}\", so the command would get no credentials: add an entry with cidr = \"127.0.0.1\" and role = \"{alias}\""
            ));
        }
        Ok(self.ecs_tokens.token_for(alias))
    }

    /// The metadata service of a new configuration, keeping this one's
    /// roles (and so bootstrapped and cached credentials), events and keys.
    async fn rebuild(&self, loaded: &Loaded) -> Result<Services, ConfigError> {
        let engine = if loaded.config.plugins.is_empty() {
            None
        } else {
            let existing = self.plugin_engine.lock().clone();
            let engine = match existing {
                Some(engine) => engine,
                None => Arc::new(plugin_engine(loaded, self.keys.writes)?),
            };
            *self.plugin_engine.lock() = Some(engine.clone());
            Some(engine)
        };
        let signing_key = self.keys.signing_key(loaded)?;
        let host = PluginHost {
            signer: signing_key.clone(),
            stores: self.stores.clone(),
            changes: self.changes.clone(),
            writes: self.keys.writes,
        };
        let metadata = build_metadata(loaded, engine.as_deref(), &self.events, &host).await?;
        let shared = Shared {
            roles: self.roles.clone(),
            ecs_tokens: self.ecs_tokens.clone(),
            faults: self.faults.clone(),
            journal: self.journal.clone(),
            held: self.held.clone(),
            sessions: self.keys.sessions.clone(),
            signing_key,
            changes: self.changes.clone(),
            writes: self.keys.writes,
        };
        build_services(loaded, metadata, shared).await
    }
}

/// Loads the configuration again for a reload: the same file and flags (or,
/// for an embedded server, the same layers) read afresh.
pub type Loader = Box<dyn Fn() -> Result<Loaded, ConfigError> + Send + Sync>;

/// What every version of the metadata service shares with the next.
struct Shared {
    roles: Arc<Roles>,
    ecs_tokens: Arc<ContainerTokens>,
    faults: Arc<Faults>,
    journal: Arc<Journal>,
    /// Held requests count against one bound across reloads.
    held: Arc<AtomicUsize>,
    sessions: Arc<Sessions>,
    signing_key: Arc<SigningKey>,
    changes: Arc<Changes>,
    /// Whether the access log may be created (not by `config check`).
    writes: bool,
}

/// Re-reads the configuration and plugins (SIGHUP, `POST /reload`) and swaps
/// the metadata service in one step: requests in flight finish on the old
/// one; a configuration that fails to load, or that changes a key only a
/// restart can apply, changes nothing.
pub struct Reloader {
    app: Arc<App>,
    /// Loads the configuration again, from wherever it came from.
    load: Loader,
    current: Arc<ArcSwap<Imds>>,
    flavours: Arc<ArcSwap<Flavours>>,
    /// The configuration serving now, to tell what a reload would change.
    /// Held for a whole reload, so that a SIGHUP and a `POST /reload` at
    /// once apply one after the other, never interleaved.
    running: tokio::sync::Mutex<Loaded>,
}

impl Reloader {
    /// What serves now: its roles and events outlive every reload.
    pub fn app(&self) -> &App {
        &self.app
    }
}

#[async_trait::async_trait]
impl Reload for Reloader {
    fn plugins(&self) -> Vec<Arc<Plugin>> {
        self.current.load().plugins.clone()
    }

    async fn reload(&self) -> Result<(), String> {
        let mut running = self.running.lock().await;
        let outcome = async {
            let loaded = (self.load)().map_err(|error| error.to_string())?;
            let needs_restart = running.needs_restart(&loaded);
            if !needs_restart.is_empty() {
                return Err(format!(
                    "nothing was applied: {} changed, which only a restart applies",
                    needs_restart.join(", ")
                ));
            }
            let services = self
                .app
                .rebuild(&loaded)
                .await
                .map_err(|error| error.to_string())?;
            let faults = fault_rules(&loaded).map_err(|error| error.to_string())?;
            Ok((loaded, services, faults))
        }
        .await;
        match outcome {
            Ok((loaded, services, faults)) => {
                self.current.store(Arc::new(services.imds));
                self.flavours.store(Arc::new(services.flavours));
                self.app.changes.notify();
                // The configuration's rules again; run-time ones go.
                self.app.faults.replace(faults);
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
        local: std::net::SocketAddr,
    ) -> impl std::future::Future<Output = http::Response<crate::encoder::Body>> + Send + 'static
    {
        // This request keeps its version of the service for its whole life.
        self.load_full().handle(request, peer, local)
    }

    fn over_capacity(&self) -> bytes::Bytes {
        self.load().over_capacity()
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

fn plugin_engine(loaded: &Loaded, writes: bool) -> Result<PluginEngine, ConfigError> {
    let cache = writes.then(|| state_dir(loaded).join("plugins"));
    PluginEngine::new(cache).map_err(|e| {
        loaded.error(
            "plugins",
            format!("cannot start the WebAssembly engine: {e:#}"),
        )
    })
}

/// Where a plugin serves.
enum Placement {
    /// Nowhere: a credential source only.
    Unmounted,
    /// At this path of the EC2 tree.
    Tree(String),
    /// At this path (no leading '/') of a `[[listeners]]` entry.
    Listener {
        index: usize,
        name: String,
        path: String,
    },
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Unmounted => write!(f, "(none)"),
            Placement::Tree(path) => write!(f, "/latest/{path}"),
            Placement::Listener { name, path, .. } => write!(f, "/{path} on listener {name}"),
        }
    }
}

/// Where `[[plugins]]` entry `i` serves (the configuration is validated).
fn placement(loaded: &Loaded, i: usize) -> Result<Placement, ConfigError> {
    let plugin = &loaded.config.plugins[i];
    let Some(mount) = &plugin.mount else {
        return Ok(Placement::Unmounted);
    };
    let error = |reason| loaded.error(&format!("plugins.{i}.mount"), reason);
    match &plugin.listener {
        None => Ok(Placement::Tree(mount_path(mount).map_err(error)?)),
        Some(name) => Ok(Placement::Listener {
            name: name.clone(),
            index: loaded
                .config
                .listeners
                .iter()
                .position(|l| &l.name == name)
                .ok_or_else(|| error(format!("no listener named \"{name}\"")))?,
            path: listener_mount(mount).map_err(error)?,
        }),
    }
}

/// What plugins reach of the server, for its whole life.
struct PluginHost {
    signer: Arc<SigningKey>,
    stores: Arc<Stores>,
    changes: Arc<Changes>,
    /// Whether the signing key may be made in the state directory (not by
    /// `config check`).
    writes: bool,
}

/// What a plugin's `host.lookup` reads: the events as they are now, and the
/// tree, swapped for the final one once every plugin's `init` has said
/// what its mount is.
struct PluginLookup {
    tree: ArcSwap<StaticTree>,
    events: Router<Arc<EventsProvider>>,
}

impl provider::Lookup for PluginLookup {
    fn value(&self, path: &str) -> Option<provider::TreeValue> {
        match self.events.route(path) {
            Some((events, below)) => events.value(below),
            None => self.tree.load().value(path),
        }
    }
}

/// The instance tree, with every mount listed, and the plugins loaded
/// against it (their `host.lookup` reads it).
async fn build_metadata(
    loaded: &Loaded,
    engine: Option<&PluginEngine>,
    events: &Arc<Events>,
    host: &PluginHost,
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
    let event_mounts = match config.snapshot {
        Some(_) => Vec::new(),
        None => provider::events::mounts(events),
    };
    for (mount, _) in &event_mounts {
        tree.mount(mount.clone());
    }
    let mut mounts = Vec::new();
    for i in 0..config.plugins.len() {
        let placed = placement(loaded, i)?;
        if let Placement::Tree(mount) = &placed {
            tree.mount(mount.clone());
        }
        mounts.push(placed);
    }
    tree.overrides(&config.metadata)
        .map_err(|e| loaded.error(&e.key, e.reason))?;
    let mut builder = tree;
    let tree = Arc::new(
        builder
            .build()
            .map_err(|e| loaded.error(&e.key, e.reason))?,
    );

    let lookup = Arc::new(PluginLookup {
        tree: ArcSwap::new(tree),
        events: Router::new(event_mounts.clone()),
    });
    let mut plugins = Vec::new();
    for ((i, plugin), mount) in config.plugins.iter().enumerate().zip(mounts) {
        let engine = engine.expect("an engine exists when plugins are configured");
        let spec = PluginSpec::from_config(plugin);
        let grants = Grants {
            lookup: lookup.clone(),
            signer: plugin
                .grants
                .contains(&HostGrant::SignJwt)
                .then(|| host.signer.clone()),
            store: host.stores.of(&spec.name),
            changes: host.changes.clone(),
        };
        let loaded_plugin = Plugin::load(engine, spec, grants)
            .map_err(|reason| loaded.error(&format!("plugins.{i}.wasm"), reason))?;
        if host.writes && loaded_plugin.can_sign() {
            // Made (or read) before it can ask: its first `sign-jwt` must
            // not spend its deadline making the key. Once per server.
            host.signer.get().await;
        }
        let shape = loaded_plugin.init().await.map_err(|reason| {
            let name = &loaded_plugin.name;
            loaded.error(
                &format!("plugins.{i}.config"),
                format!("plugin \"{name}\" refused it: {reason}"),
            )
        })?;
        if let (Placement::Tree(mount), Some(Shape::Leaf)) = (&mount, shape) {
            // Listed above as what it is: `name`, not `name/`.
            let name = mount.rsplit('/').next().unwrap_or(mount);
            builder.shown_as(mount.clone(), name);
        }
        tracing::info!(plugin = %loaded_plugin.name, mount = %mount, "plugin loaded");
        plugins.push((mount, Arc::new(loaded_plugin)));
    }
    // Plugins looked values up in the tree as it stood; now their shapes
    // are known, they and the clients read the same one.
    let tree = Arc::new(
        builder
            .build()
            .map_err(|e| loaded.error(&e.key, e.reason))?,
    );
    lookup.tree.store(tree.clone());
    Ok(Metadata {
        tree,
        instance,
        identity_document,
        plugins,
        event_mounts,
    })
}

/// What one configuration serves: the metadata service and the other
/// clouds' services, swapped together on reload.
struct Services {
    imds: Imds,
    flavours: Flavours,
}

async fn build_services(
    loaded: &Loaded,
    mut metadata: Metadata,
    shared: Shared,
) -> Result<Services, ConfigError> {
    let config = &loaded.config;
    let access_log = open_access_log(loaded, shared.writes).await?;
    let plugins = metadata.plugins.iter().map(|(_, p)| p.clone()).collect();
    let (tree_mounts, flavour_mounts) =
        place_plugins(loaded, std::mem::take(&mut metadata.plugins))?;
    let list = config
        .listeners
        .iter()
        .zip(flavour_mounts)
        .map(|(listener, mounts)| {
            let signer = shared.signing_key.clone();
            let mounts = Router::new(mounts);
            Arc::new(Flavour::new(
                listener,
                &config.server.allowed_hosts,
                mounts,
                signer,
            ))
        });
    let flavours = Flavours {
        list: list.collect(),
        journal: shared.journal.clone(),
        access_log: access_log.clone(),
        changes: shared.changes.clone(),
        faults: shared.faults.clone(),
    };
    let imds = build_imds(loaded, metadata, tree_mounts, plugins, access_log, shared)?;
    Ok(Services { imds, flavours })
}

/// Providers by the paths they are mounted at.
type Mounts = Vec<(String, Arc<dyn Provider>)>;

/// Each mounted plugin behind its gates: the EC2 tree's mounts, and each
/// listener's.
fn place_plugins(
    loaded: &Loaded,
    plugins: Vec<(Placement, Arc<Plugin>)>,
) -> Result<(Mounts, Vec<Mounts>), ConfigError> {
    let config = &loaded.config;
    let mut tree = Vec::new();
    let mut listeners: Vec<Mounts> = config.listeners.iter().map(|_| Vec::new()).collect();
    for (i, (placed, plugin)) in plugins.into_iter().enumerate() {
        let gates = config.plugins[i].gates.iter().enumerate().map(|(g, gate)| {
            Gate::from_config(gate).map_err(|(field, reason)| {
                loaded.error(&format!("plugins.{i}.gates.{g}.{field}"), reason)
            })
        });
        let gates = gates.collect::<Result<_, _>>()?;
        let provider: Arc<dyn Provider> = Arc::new(Gated {
            gates,
            inner: WasmProvider::new(plugin),
        });
        match placed {
            Placement::Unmounted => {}
            Placement::Tree(mount) => tree.push((mount, provider)),
            Placement::Listener { index, path, .. } => listeners[index].push((path, provider)),
        }
    }
    Ok((tree, listeners))
}

/// `server.access_log`, opened (or, for `config check`, only checked).
async fn open_access_log(loaded: &Loaded, writes: bool) -> Result<Option<AccessLog>, ConfigError> {
    let path = &loaded.config.server.access_log;
    let access_log = match (path.as_os_str().is_empty(), writes) {
        (true, _) => None,
        (false, true) => Some(AccessLog::open(path).await),
        // `config check`: the same question, without creating the file.
        (false, false) => AccessLog::check(path).err().map(Err),
    };
    access_log.transpose().map_err(|error| {
        loaded.error(
            "server.access_log",
            format!("cannot open for appending: {error}"),
        )
    })
}

fn build_imds(
    loaded: &Loaded,
    metadata: Metadata,
    plugin_mounts: Vec<(String, Arc<dyn Provider>)>,
    plugins: Vec<Arc<Plugin>>,
    access_log: Option<AccessLog>,
    shared: Shared,
) -> Result<Imds, ConfigError> {
    let config = &loaded.config;
    let clients = ClientRoles::from_config(&config.clients)
        .map_err(|(key, reason)| loaded.error(&key, reason))?;
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
    for (mount, events) in metadata.event_mounts {
        mounts.push((mount, events));
    }
    mounts.extend(plugin_mounts);
    Ok(Imds {
        guard: Guard::new(&config.server.allowed_hosts, &config.server.listen),
        sessions: shared.sessions,
        v1: config.imds.v1,
        hop_limit: listener::HopLimit(config.imds.hop_limit),
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
        faults: shared.faults,
        journal: shared.journal,
        held: shared.held,
        // A quarter of the connections at most: the rest stay for answers.
        max_held: (config.server.max_connections / 4).max(1),
    })
}

/// A server that is bound and serving, until [`Running::stop`].
pub struct Running {
    /// `http://ADDR:PORT` of each metadata listener, in `server.listen` order.
    pub metadata_urls: Vec<String>,
    /// Each `[[listeners]]` entry's name and `http://ADDR:PORT`, one per
    /// address, in order.
    pub listener_urls: Vec<(String, String)>,
    /// `http://ADDR:PORT` of the admin API.
    pub admin_url: String,
    pub reloader: Arc<Reloader>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    connections: Arc<GracefulShutdown>,
}

/// Binds every listener and serves on them in the background. `app` and
/// `admin` come from [`App::build`], so every configuration mistake has
/// been reported before anything is bound.
pub async fn start(
    loaded: Loaded,
    (app, admin): (App, Admin),
    load: Loader,
) -> Result<Running, String> {
    let server = loaded.config.server.clone();
    let mut metadata = Vec::new();
    for addr in &server.listen {
        let what = "the metadata listener (server.listen, or --addr and --port)";
        metadata.push(listener::bind(*addr, what).await?);
    }
    let mut flavours = Vec::new();
    for (index, entry) in loaded.config.listeners.iter().enumerate() {
        for addr in &entry.listen {
            let what = format!("listener \"{}\" (listeners.{index}.listen)", entry.name);
            flavours.push((index, listener::bind(*addr, &what).await?));
        }
    }
    let what = "the admin API (server.admin_listen, or --admin-addr)";
    let admin_listener = listener::bind(server.admin_listen, what).await?;
    let url_of = |l: &tokio::net::TcpListener| {
        l.local_addr()
            .map(|a| format!("http://{a}"))
            .map_err(|e| format!("a bound listener has no address: {e}"))
    };
    let metadata_urls = metadata.iter().map(url_of).collect::<Result<Vec<_>, _>>()?;
    let mut listener_urls = Vec::new();
    for (index, bound) in &flavours {
        let name = loaded.config.listeners[*index].name.clone();
        listener_urls.push((name, url_of(bound)?));
    }
    let admin_url = url_of(&admin_listener)?;
    let admin = admin.with_ecs_urls(metadata_urls.clone());
    app.roles.prefetch_active();
    let loaded_listeners = loaded.config.listeners.len();
    let current = Arc::new(ArcSwap::new(app.imds.clone()));
    let current_flavours = Arc::new(ArcSwap::new(app.flavours.clone()));
    let reloader = Arc::new(Reloader {
        app: Arc::new(app),
        load,
        current: current.clone(),
        flavours: current_flavours.clone(),
        running: tokio::sync::Mutex::new(loaded),
    });
    let admin = Arc::new(admin.with_reloader(reloader.clone()));
    let (stop, stopped) = watch::channel(false);
    let connections = Arc::new(GracefulShutdown::new());
    let limits = listener::Limits::of(&server);
    let mut tasks = Vec::new();
    for bound in metadata {
        let serve = listener::serve(
            bound,
            current.clone(),
            stopped.clone(),
            connections.clone(),
            limits,
        );
        tasks.push(tokio::spawn(serve));
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let handlers: Vec<Arc<FlavourHandler>> = (0..loaded_listeners)
        .map(|index| {
            Arc::new(FlavourHandler {
                current: current_flavours.clone(),
                index,
                parked: AtomicUsize::new(0),
                // Half the connections at most: the rest stay for answers.
                max_parked: (server.max_connections / 2).max(1),
                // One per core: more only wait on each other, and a
                // call's deadline counts the wait.
                asking_again: tokio::sync::Semaphore::new(cores),
                client_timeout: server.client_timeout.0,
            })
        })
        .collect();
    for (index, bound) in flavours {
        let serve = listener::serve(
            bound,
            handlers[index].clone(),
            stopped.clone(),
            connections.clone(),
            limits,
        );
        tasks.push(tokio::spawn(serve));
    }
    if loaded_listeners > 0 {
        // Long-polls there wait on the events too (GCE's `preempted`).
        let app = reloader.app();
        let due = events::notify_when_due(app.events.clone(), app.changes.clone(), stopped.clone());
        tasks.push(tokio::spawn(due));
    }
    let serve = listener::serve(admin_listener, admin, stopped, connections.clone(), limits);
    tasks.push(tokio::spawn(serve));
    Ok(Running {
        metadata_urls,
        listener_urls,
        admin_url,
        reloader,
        stop,
        tasks,
        connections,
    })
}

impl Running {
    /// Stops accepting at once, without waiting (for a `Drop`): the
    /// listener tasks end on their own, closing each connection after its
    /// request in flight.
    pub fn stop_now(&self) {
        let _ = self.stop.send(true);
        self.reloader.app().journal.stop();
    }

    /// Stops accepting, then gives requests in flight [`DRAIN_DEADLINE`] to
    /// finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        // Streams of the journal would otherwise hold their connections open.
        self.reloader.app().journal.stop();
        for task in self.tasks {
            let _ = task.await;
        }
        // Every listener task has ended, so this is the last reference.
        let Ok(connections) = Arc::try_unwrap(self.connections) else {
            tracing::warn!("a listener still holds the connection tracker");
            return;
        };
        if tokio::time::timeout(DRAIN_DEADLINE, connections.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not finish in time");
        }
    }
}

/// `ersatz serve`: binds, announces the listeners on stdout, serves until
/// SIGINT or SIGTERM (reloading on SIGHUP), then drains.
pub async fn run(
    loaded: Loaded,
    built: (App, Admin),
    file: Option<std::path::PathBuf>,
    overrides: Overrides,
) -> Result<(), String> {
    // Before anything is announced: a SIGTERM sent by whoever read the
    // announcement must find the handler in place, not kill the process.
    let mut signals = Signals::install()?;
    let load: Loader = Box::new(move || config::load(file.as_deref(), &overrides));
    let running = start(loaded, built, load).await?;
    // Logged before the announcement, so that a reader of stdout knows the
    // log already says so.
    tracing::info!("ready");
    for url in &running.metadata_urls {
        announce(&format!("ersatz: metadata on {url}"));
    }
    for (name, url) in &running.listener_urls {
        announce(&format!("ersatz: {name} on {url}"));
    }
    announce(&format!("ersatz: admin on {}", running.admin_url));
    signals.wait_for_stop(&running.reloader).await;
    tracing::info!("stopping: finishing in-flight requests");
    running.stop().await;
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

/// The signals `serve` answers to.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, String> {
        use tokio::signal::unix::{signal, SignalKind};
        let install = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| format!("cannot handle {name}: {e}"))
        };
        Ok(Self {
            interrupt: install(SignalKind::interrupt(), "SIGINT")?,
            terminate: install(SignalKind::terminate(), "SIGTERM")?,
            hangup: install(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// Waits for SIGINT or SIGTERM, reloading on every SIGHUP meanwhile.
    async fn wait_for_stop(&mut self, reloader: &Reloader) {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return,
                _ = self.terminate.recv() => return,
                _ = self.hangup.recv() => {
                    let _ = reloader.reload().await;
                }
            }
        }
    }
}
