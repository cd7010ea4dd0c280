//! ersatz inside your own process, for test suites: no subprocess, no fixed
//! ports, no files left behind.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let server = ersatz::Server::builder()
//!     .toml(r#"
//!         [instance]
//!         region = "eu-west-1"
//!     "#)
//!     .start()
//!     .await?;
//!
//! // Any IMDS client, pointed at it: here the AWS SDK's own.
//! # // ersatz builds aws-config without its default HTTPS client; yours has it.
//! # let sdk = aws_config::provider_config::ProviderConfig::default()
//! #     .with_http_client(ersatz::sdk_http_client());
//! let imds = aws_config::imds::Client::builder()
//! #   .configure(&sdk)
//!     .endpoint(server.metadata_url())?
//!     .build();
//! let region = imds.get("/latest/meta-data/placement/region").await?;
//! assert_eq!(region.as_ref(), "eu-west-1");
//!
//! // What a child process needs to find it, and the controls of a test.
//! let env = server.env();
//! assert!(env.iter().any(|(name, _)| name == "AWS_EC2_METADATA_SERVICE_ENDPOINT"));
//! server.events().rebalance(std::time::Duration::ZERO).await?;
//! let notice = imds.get("/latest/meta-data/events/recommendations/rebalance").await?;
//! assert!(notice.as_ref().contains("noticeTime"));
//!
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The server binds free loopback ports for metadata and the admin API, keeps
//! its keys in a private temporary directory (unless the configuration names
//! `server.state_dir`), and stops when its [`Handle`] is dropped or
//! [`Handle::shutdown`] is awaited. `ERSATZ_…` variables do not apply: only
//! the layers given to the [`Builder`].
//!
//! The typed controls ([`Handle::roles`], [`Handle::events`],
//! [`Handle::faults`], [`Handle::bootstrap`]) go through the admin API, so a
//! test exercises the same checks as `ersatz role`, `ersatz event`,
//! `ersatz fault` and `ersatz bootstrap`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;

use crate::client::AdminClient;
use crate::config::{self, ConfigError, Layer, Overrides};
use crate::server::{self, App, Keys, Loader, Running};

/// Variables that would win over the endpoints ersatz hands out, in the AWS
/// SDKs' credential chains (keys, a profile, web identity): remove them from
/// the environment of a process that should use ersatz's role.
pub const SHADOWING_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
];

/// The shared credentials file (`~/.aws/credentials`) comes before the
/// container endpoint in every SDK's chain, so its default profile would
/// silently win: a process that should use ersatz's role reads none.
/// (`~/.aws/config`, with the region, still applies.)
pub const NO_SHARED_CREDENTIALS: [(&str, &str); 1] = [("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")];

/// The entry point: `Server::builder()…start()`.
pub struct Server;

impl Server {
    /// A server on the embedded defaults, until layers are added.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// Configuration layers, applied in the order given, over the defaults.
#[derive(Default)]
pub struct Builder {
    layers: Vec<Layer>,
}

impl Builder {
    /// A configuration file (TOML, JSON, YAML or a .fintorc).
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.layers.push(Layer::File(path.into()));
        self
    }

    /// Configuration written as TOML.
    pub fn toml(mut self, text: impl Into<String>) -> Self {
        self.layers.push(Layer::Toml(text.into()));
        self
    }

    /// Configuration as a value (a JSON object shaped like the TOML).
    pub fn value(mut self, value: serde_json::Value) -> Self {
        self.layers.push(Layer::Value(value));
        self
    }

    /// Checks the configuration, binds free loopback ports and serves in the
    /// background of the current tokio runtime (which must be
    /// multi-threaded: signing and plugin compilation block a thread).
    pub async fn start(self) -> Result<Handle, Error> {
        let state = TempDir::create()?;
        // Below the given layers, so a configured state_dir wins.
        let mut layers = vec![Layer::Fallback(
            json!({ "server": { "state_dir": state.path() } }),
        )];
        layers.extend(self.layers);
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let overrides = Overrides {
            addr: Some("127.0.0.1".into()),
            port: Some(0),
            admin_addr: Some(loopback),
            ..Overrides::default()
        };
        let loaded = config::load_layers(&layers, &overrides)?;
        let admin_token = loaded.config.server.admin_token.expose().to_owned();
        let built = App::build(&loaded, Keys::load(&loaded)).await?;
        let load: Loader = Box::new(move || config::load_layers(&layers, &overrides));
        let running = server::start(loaded, built, load)
            .await
            .map_err(Error::Start)?;
        let token = (!admin_token.is_empty()).then_some(admin_token);
        let admin = AdminClient::new(&running.admin_url, token).map_err(Error::Start)?;
        Ok(Handle {
            running: Some(running),
            admin,
            _state: state,
        })
    }
}

/// A running server. Dropping it stops the listeners at once; awaiting
/// [`Handle::shutdown`] also lets requests in flight finish.
pub struct Handle {
    running: Option<Running>,
    admin: AdminClient,
    _state: TempDir,
}

impl Handle {
    fn running(&self) -> &Running {
        self.running
            .as_ref()
            .expect("only shutdown() takes it, and it consumes the handle")
    }

    /// `http://127.0.0.1:PORT`, the metadata service (IMDS paths below it).
    pub fn metadata_url(&self) -> &str {
        &self.running().metadata_urls[0]
    }

    /// `http://127.0.0.1:PORT`, the admin API.
    pub fn admin_url(&self) -> &str {
        &self.running().admin_url
    }

    /// The variables that point AWS SDKs at this server: the IMDS endpoint,
    /// the container-credentials endpoint of the active role with its token
    /// (when a process on this host may read that role), and
    /// [`NO_SHARED_CREDENTIALS`]. Set them on a child process, and remove
    /// [`SHADOWING_VARIABLES`], as `ersatz exec` does; see [`Handle::apply`].
    pub fn env(&self) -> Vec<(String, String)> {
        let app = &self.running().reloader.app();
        let alias = app.roles.active();
        let mut vars = vec![(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT".to_owned(),
            self.metadata_url().to_owned(),
        )];
        if let Ok(token) = app.container_token(&alias) {
            vars.push((
                "AWS_CONTAINER_CREDENTIALS_FULL_URI".to_owned(),
                format!("{}/ecs/{alias}", self.metadata_url()),
            ));
            vars.push(("AWS_CONTAINER_AUTHORIZATION_TOKEN".to_owned(), token));
        }
        let fixed = NO_SHARED_CREDENTIALS.iter();
        vars.extend(fixed.map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        vars
    }

    /// Points `command` at this server: sets [`Handle::env`] and removes
    /// [`SHADOWING_VARIABLES`].
    pub fn apply(&self, command: &mut std::process::Command) {
        command.envs(self.env());
        for key in SHADOWING_VARIABLES {
            command.env_remove(key);
        }
    }

    /// The roles: which one is served, and what each is bound to.
    pub fn roles(&self) -> Roles<'_> {
        Roles { handle: self }
    }

    /// Lifecycle events: spot interruptions, rebalance, maintenance, Auto
    /// Scaling.
    pub fn events(&self) -> Events<'_> {
        Events { handle: self }
    }

    /// Fault rules: make the server misbehave on purpose, and stop.
    pub fn faults(&self) -> Faults<'_> {
        Faults { handle: self }
    }

    /// Source credentials for a `bootstrap` source (`source` names it when
    /// the configuration has several), as `ersatz bootstrap` sends them.
    pub async fn bootstrap(
        &self,
        source: Option<&str>,
        access_key_id: &str,
        secret_access_key: &str,
        session_token: Option<&str>,
    ) -> Result<(), Error> {
        let mut body = json!({
            "AccessKeyId": access_key_id,
            "SecretAccessKey": secret_access_key,
            "Token": session_token.unwrap_or_default(),
        });
        if let Some(source) = source {
            body["Source"] = source.into();
        }
        self.call(Method::POST, "/bootstrap/creds", Some(body))
            .await
            .map(drop)
    }

    /// Stops accepting and lets requests in flight finish (at most 10 s).
    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// One admin call; an answer other than 2xx is an [`Error::Refused`].
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<String, Error> {
        let (status, text) = self
            .admin
            .call(method, path, body.map(|b| b.to_string()))
            .await
            .map_err(Error::Admin)?;
        if status.is_success() {
            return Ok(text);
        }
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        Err(Error::Refused { status, message })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop_now();
        }
    }
}

/// [`Handle::roles`].
pub struct Roles<'a> {
    handle: &'a Handle,
}

impl Roles<'_> {
    /// Serves `alias` at `iam/security-credentials/` from now on.
    pub async fn use_role(&self, alias: &str) -> Result<(), Error> {
        let body = json!({ "alias": alias });
        self.handle
            .call(Method::PUT, "/roles", Some(body))
            .await
            .map(drop)
    }

    /// The role served now.
    pub fn active(&self) -> String {
        self.handle.running().reloader.app().roles.active()
    }

    /// Binds `alias` to the credential source `source`.
    pub async fn bind(&self, alias: &str, source: &str) -> Result<(), Error> {
        let path = format!("/roles/{alias}/source");
        let body = json!({ "source": source });
        self.handle
            .call(Method::PUT, &path, Some(body))
            .await
            .map(drop)
    }
}

/// [`Handle::events`]. Each takes effect at once; `within` is how long from
/// now until the event's own moment (the action, the rebalance, the window).
pub struct Events<'a> {
    handle: &'a Handle,
}

impl Events<'_> {
    /// A spot interruption notice now, for `action` (terminate, stop or
    /// hibernate) `within` from now. Needs a spot instance.
    pub async fn spot(&self, action: &str, within: Duration) -> Result<(), Error> {
        let body = json!({ "action": action, "in": seconds(within) });
        self.post("spot", body).await
    }

    /// A rebalance recommendation, `within` from now.
    pub async fn rebalance(&self, within: Duration) -> Result<(), Error> {
        self.post("rebalance", json!({ "in": seconds(within) }))
            .await
    }

    /// A scheduled maintenance event (`code` as AWS names them:
    /// instance-reboot, system-reboot, …), due `within` from now.
    pub async fn maintenance(&self, code: &str, within: Duration) -> Result<(), Error> {
        let body = json!({ "code": code, "in": seconds(within) });
        self.post("maintenance", body).await
    }

    /// The Auto Scaling target lifecycle state becomes `state`, `within`
    /// from now.
    pub async fn autoscaling(&self, state: &str, within: Duration) -> Result<(), Error> {
        let body = json!({ "state": state, "in": seconds(within) });
        self.post("autoscaling", body).await
    }

    /// Removes every event.
    pub async fn clear(&self) -> Result<(), Error> {
        self.handle
            .call(Method::DELETE, "/events", None)
            .await
            .map(drop)
    }

    async fn post(&self, kind: &str, body: serde_json::Value) -> Result<(), Error> {
        let path = format!("/events/{kind}");
        self.handle
            .call(Method::POST, &path, Some(body))
            .await
            .map(drop)
    }
}

/// [`Handle::faults`]. A rule has the keys of a `[[faults]]` entry:
///
/// ```
/// # async fn example(handle: &ersatz::embedded::Handle) -> Result<(), ersatz::embedded::Error> {
/// let rule = serde_json::json!({ "action": "status", "status": 500, "route": "credentials", "for": 2 });
/// let name = handle.faults().add(rule).await?;
/// handle.faults().remove(&name).await?;
/// # Ok(()) }
/// ```
pub struct Faults<'a> {
    handle: &'a Handle,
}

impl Faults<'_> {
    /// Adds `rule` after the others; returns its name (given, or made up).
    pub async fn add(&self, rule: serde_json::Value) -> Result<String, Error> {
        let answer = self
            .handle
            .call(Method::POST, "/faults", Some(rule))
            .await?;
        serde_json::from_str::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["name"].as_str().map(str::to_owned))
            .ok_or_else(|| Error::Admin("the admin API's answer names no rule".into()))
    }

    /// The rules in force, each as written, with `matched` and `applied` counts.
    pub async fn list(&self) -> Result<Vec<serde_json::Value>, Error> {
        let answer = self.handle.call(Method::GET, "/faults", None).await?;
        let listed: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
        Ok(listed["faults"].as_array().cloned().unwrap_or_default())
    }

    /// Removes the rule named `name`.
    pub async fn remove(&self, name: &str) -> Result<(), Error> {
        // `/faults/` is the whole collection: an empty name must not clear it.
        if name.is_empty() {
            return Err(Error::Refused {
                status: StatusCode::NOT_FOUND,
                message: "no fault rule has an empty name".into(),
            });
        }
        let path = format!("/faults/{name}");
        self.handle
            .call(Method::DELETE, &path, None)
            .await
            .map(drop)
    }

    /// Removes every rule.
    pub async fn clear(&self) -> Result<(), Error> {
        self.handle
            .call(Method::DELETE, "/faults", None)
            .await
            .map(drop)
    }
}

/// Whole seconds, as the admin API reads durations (rounded up, so that a
/// short non-zero wait stays non-zero).
fn seconds(duration: Duration) -> String {
    let whole = duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0));
    format!("{whole}s")
}

/// Why an embedded server did not start, or a control was refused.
#[derive(Debug)]
pub enum Error {
    /// The configuration is wrong: the message names the layer, key and
    /// reason.
    Config(ConfigError),
    /// A listener could not be bound, or the state directory made.
    Start(String),
    /// The admin API could not be reached.
    Admin(String),
    /// The admin API refused the control, with its status and reason.
    Refused {
        /// The HTTP status it answered.
        status: StatusCode,
        /// Its reason, as the admin API words it.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(error) => write!(f, "configuration error: {error}"),
            Self::Start(message) | Self::Admin(message) => f.write_str(message),
            Self::Refused { status, message } => write!(f, "{status}: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(error) => Some(error),
            Self::Start(_) | Self::Admin(_) | Self::Refused { .. } => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(error: ConfigError) -> Self {
        Self::Config(error)
    }
}

/// A private directory (0700) for the server's keys, removed when the
/// handle goes.
struct TempDir(PathBuf);

impl TempDir {
    fn create() -> Result<Self, Error> {
        use std::os::unix::fs::DirBuilderExt;
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random)
            .map_err(|e| Error::Start(format!("no randomness for a directory name: {e}")))?;
        let name = format!("ersatz-{}-{}", std::process::id(), crate::hex::hex(&random));
        let path = std::env::temp_dir().join(name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| Error::Start(format!("cannot create {}: {e}", path.display())))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
