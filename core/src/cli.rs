//! The `ersatz` command line.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use http::{Method, StatusCode};

use crate::client::AdminClient;
use crate::config::{self, Overrides};
use crate::exec;
use crate::net;
use crate::provider::identity::IdentityKey;
use crate::server::{self, App, Keys};
use crate::snapshot;

/// Exit code for a configuration mistake (runtime failures exit 1).
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "ersatz",
    version,
    about = "An emulator of the EC2 instance metadata service"
)]
struct Cli {
    #[command(flatten)]
    admin: AdminArgs,
    /// Log filter, e.g. `info`, `debug`, `ersatz=trace` (default: info; warn for exec).
    #[arg(long, global = true, env = "ERSATZ_LOG")]
    log_level: Option<String>,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve instance metadata (and the admin API) until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
    /// Print the certificate that verifies the identity document signatures
    /// (generating the key on first use, as `serve` does).
    Cert {
        /// Configuration file (for `[identity]` and `server.state_dir`).
        #[arg(long, short = 'c')]
        config: Option<PathBuf>,
    },
    /// List, switch or show roles of a running server (finto's role API).
    Role {
        #[command(subcommand)]
        command: RoleCommand,
    },
    /// Send source credentials to a running server's bootstrap source:
    /// from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN,
    /// or as JSON on stdin with --stdin.
    Bootstrap {
        /// Which bootstrap source, when the server has several.
        #[arg(long)]
        source: Option<String>,
        /// Read {"AccessKeyId","SecretAccessKey","Token"} from stdin.
        #[arg(long)]
        stdin: bool,
    },
    /// Crawl an IMDS (IMDSv2 first, v1 fallback) into a document that
    /// `snapshot = "FILE"` replays. Credentials are never captured.
    Snapshot {
        /// The IMDS, e.g. http://169.254.169.254 on an instance.
        url: String,
        /// Write here instead of stdout.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Put 169.254.169.254 (and fd00:ec2::254) on loopback, guarded by
    /// firewall rules, so SDKs find ersatz with no endpoint variable.
    Net {
        #[command(subcommand)]
        command: NetCommand,
        /// Leave IPv6 alone.
        #[arg(long, global = true)]
        no_ipv6: bool,
    },
    /// Trigger or clear lifecycle events on a running server.
    Event {
        #[command(subcommand)]
        command: EventCommand,
    },
    /// Run a command with container credentials for a role, served on a free
    /// loopback port for as long as it runs; exits with its exit code.
    Exec {
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
    },
}

#[derive(Subcommand)]
enum NetCommand {
    /// Add the addresses and guard rules (root).
    Setup,
    /// Remove exactly what setup adds (root).
    Teardown,
    /// Print the commands setup and teardown run.
    Print,
}

#[derive(Subcommand)]
enum EventCommand {
    /// A spot interruption notice now, for the action IN later.
    Spot {
        /// When the action happens (default 2m, as AWS warns).
        #[arg(long = "in")]
        within: Option<String>,
        /// terminate (default), stop or hibernate.
        #[arg(long)]
        action: Option<String>,
    },
    /// A rebalance recommendation, IN from now (default now).
    Rebalance {
        #[arg(long = "in")]
        within: Option<String>,
    },
    /// A scheduled maintenance event, due IN from now (default 1h).
    Maintenance {
        /// instance-reboot, system-reboot, system-maintenance, instance-retirement or instance-stop.
        #[arg(long)]
        code: String,
        #[arg(long = "in")]
        within: Option<String>,
        /// How long the window lasts (default 2h).
        #[arg(long)]
        duration: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// active (default), completed or canceled.
        #[arg(long)]
        state: Option<String>,
    },
    /// The Auto Scaling target lifecycle state becomes STATE, IN from now.
    Autoscaling {
        #[arg(long)]
        state: String,
        #[arg(long = "in")]
        within: Option<String>,
    },
    /// Remove every event.
    Clear,
    /// Print the event timeline.
    Show,
}

#[derive(Subcommand)]
enum RoleCommand {
    /// All roles, the active one marked with `*`.
    List,
    /// Make ALIAS the active role (served at iam/security-credentials/).
    Use { alias: String },
    /// A role's ARN, session name and credential source.
    Show { alias: String },
}

/// Where a client command finds a running server; accepted before or after
/// the subcommand.
#[derive(Args)]
struct AdminArgs {
    /// The running server's admin API (role, event, bootstrap; exec uses it
    /// when given) [default: http://127.0.0.1:8998].
    #[arg(long, global = true, env = "ERSATZ_ADMIN_URL")]
    admin: Option<String>,
    /// Bearer token, when the server sets server.admin_token.
    #[arg(
        long,
        global = true,
        env = "ERSATZ_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
}

const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8998";

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and check a configuration as `serve` would, without serving
    /// (and without writing anything).
    Check(ServeArgs),
    /// Print the merged configuration, one key per line with the layer
    /// that set it (defaults, file, variable, flag); secrets redacted.
    Show(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Configuration file: TOML, JSON or YAML, by extension.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Address to serve metadata on (finto's -addr; default 127.0.0.1).
    #[arg(long)]
    addr: Option<String>,
    /// Port to serve metadata on (finto's -port; default 16925).
    #[arg(long)]
    port: Option<u16>,
    /// Append an access log to this file (finto's -log).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Address of the admin API (default 127.0.0.1:8998).
    #[arg(long)]
    admin_addr: Option<SocketAddr>,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            addr: self.addr.clone(),
            port: self.port,
            log: self.log.clone(),
            admin_addr: self.admin_addr,
        }
    }

    fn load(&self) -> Result<config::Loaded, config::ConfigError> {
        config::load(self.config.as_deref(), &self.overrides())
    }
}

pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    // The client commands: they take --admin, and log only warnings.
    let client_command = matches!(
        cli.command,
        Command::Exec { .. }
            | Command::Role { .. }
            | Command::Bootstrap { .. }
            | Command::Event { .. }
    );
    if !client_command {
        if let Some(flag) = client_flag_given(&matches) {
            eprintln!("ersatz: {flag} is for the commands that talk to a running server (role, event, bootstrap, exec); a server's own token is server.admin_token");
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    let level = cli
        .log_level
        .as_deref()
        .unwrap_or(if client_command { "warn" } else { "info" });
    init_tracing(level, cli.log_format);
    if !matches!(cli.command, Command::Serve(_) | Command::Exec { .. }) {
        // Rust ignores SIGPIPE, which makes `println!` panic when a reader
        // such as `head` goes away; a command's output ends quietly there,
        // as other Unix tools' does. (The server keeps ignoring it.)
        // SAFETY: no other thread exists yet to race on signal dispositions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli.command {
        Command::Serve(args) => {
            let runtime = runtime();
            let built = args.load().and_then(|loaded| {
                let keys = Keys::load(&loaded);
                let app = runtime.block_on(App::build(&loaded, keys))?;
                Ok((loaded, app))
            });
            let (loaded, app) = match built {
                Ok(built) => built,
                Err(error) => return config_failure(&error),
            };
            match runtime.block_on(server::run(
                loaded,
                app,
                args.config.clone(),
                args.overrides(),
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("ersatz: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Role { command } => remote(&cli.admin, |client| async move {
            match command {
                RoleCommand::List => {
                    let all = expect_ok(client.call(Method::GET, "/roles", None).await?)?;
                    let active = expect_ok(
                        client
                            .call(Method::GET, "/roles?status=active", None)
                            .await?,
                    )?;
                    let active = roles_of(&active)?;
                    for role in roles_of(&all)? {
                        let mark = if active.contains(&role) { '*' } else { ' ' };
                        println!("{mark} {role}");
                    }
                    Ok(())
                }
                RoleCommand::Use { alias } => {
                    let body = serde_json::json!({ "alias": alias }).to_string();
                    expect_ok(client.call(Method::PUT, "/roles", Some(body)).await?)?;
                    println!("active role: {alias}");
                    Ok(())
                }
                RoleCommand::Show { alias } => {
                    let role = expect_ok(
                        client
                            .call(Method::GET, &format!("/roles/{alias}"), None)
                            .await?,
                    )?;
                    let source = expect_ok(
                        client
                            .call(Method::GET, &format!("/roles/{alias}/source"), None)
                            .await?,
                    )?;
                    let role: serde_json::Value =
                        serde_json::from_str(&role).map_err(|e| e.to_string())?;
                    let source: serde_json::Value =
                        serde_json::from_str(&source).map_err(|e| e.to_string())?;
                    println!("role:         {alias}");
                    println!("arn:          {}", role["arn"].as_str().unwrap_or_default());
                    println!(
                        "session_name: {}",
                        role["session_name"].as_str().unwrap_or_default()
                    );
                    println!(
                        "source:       {}",
                        source["source"].as_str().unwrap_or_default()
                    );
                    Ok(())
                }
            }
        }),
        Command::Event { command } => remote(&cli.admin, |client| async move {
            let mut body = serde_json::Map::new();
            let mut set = |key: &str, value: Option<String>| {
                if let Some(value) = value {
                    body.insert(key.to_owned(), value.into());
                }
            };
            let (method, path) = match command {
                EventCommand::Spot { within, action } => {
                    set("in", within);
                    set("action", action);
                    (Method::POST, "/events/spot")
                }
                EventCommand::Rebalance { within } => {
                    set("in", within);
                    (Method::POST, "/events/rebalance")
                }
                EventCommand::Maintenance {
                    code,
                    within,
                    duration,
                    description,
                    state,
                } => {
                    set("code", Some(code));
                    set("in", within);
                    set("duration", duration);
                    set("description", description);
                    set("state", state);
                    (Method::POST, "/events/maintenance")
                }
                EventCommand::Autoscaling { state, within } => {
                    set("state", Some(state));
                    set("in", within);
                    (Method::POST, "/events/autoscaling")
                }
                EventCommand::Clear => (Method::DELETE, "/events"),
                EventCommand::Show => (Method::GET, "/events"),
            };
            let body =
                (method == Method::POST).then(|| serde_json::Value::Object(body).to_string());
            print!("{}", expect_ok(client.call(method, path, body).await?)?);
            Ok(())
        }),
        Command::Bootstrap { source, stdin } => remote(&cli.admin, |client| async move {
            let mut body: serde_json::Value = if stdin {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .map_err(|e| e.to_string())?;
                serde_json::from_str(&text).map_err(|e| format!("stdin is not JSON: {e}"))?
            } else {
                let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
                let (Some(key), Some(secret)) =
                    (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
                else {
                    return Err("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or use --stdin".into());
                };
                serde_json::json!({
                    "AccessKeyId": key,
                    "SecretAccessKey": secret,
                    "Token": var("AWS_SESSION_TOKEN").unwrap_or_default(),
                })
            };
            if let Some(source) = source {
                body["Source"] = source.into();
            }
            let answer = expect_ok(
                client
                    .call(Method::POST, "/bootstrap/creds", Some(body.to_string()))
                    .await?,
            )?;
            print!("{answer}");
            // The keys were stored; the role behind them may still fail.
            let answer: serde_json::Value =
                serde_json::from_str(&answer).map_err(|e| format!("unexpected answer: {e}"))?;
            match &answer["assumed"] {
                serde_json::Value::Bool(true) => Ok(()),
                serde_json::Value::String(reason) => Err(format!(
                    "the source credentials were stored, but the active role could not be assumed with them: {reason}"
                )),
                _ => Err("the source credentials were stored, but the active role has no credentials yet: see GET /status".into()),
            }
        }),
        Command::Exec { role, command, .. } if cli.admin.admin.is_some() => {
            remote(&cli.admin, |client| async move {
                let ecs = expect_ok(client.call(Method::GET, "/ecs", None).await?)?;
                let ecs: serde_json::Value =
                    serde_json::from_str(&ecs).map_err(|e| e.to_string())?;
                let alias = match role {
                    Some(role) => role,
                    None => roles_of(&expect_ok(
                        client
                            .call(Method::GET, "/roles?status=active", None)
                            .await?,
                    )?)?
                    .pop()
                    .ok_or("the server names no active role")?,
                };
                let endpoint = &ecs["roles"][&alias];
                let url = endpoint["urls"][0]
                    .as_str()
                    .ok_or_else(|| format!("the server has no role named \"{alias}\""))?;
                let token = endpoint["token"].as_str().unwrap_or_default();
                let code = exec::run_with_container_credentials(url, token, &command)
                    .await
                    .map_err(|e| e.to_string())?;
                std::process::exit(code);
            })
        }
        Command::Exec {
            config,
            role,
            command,
        } => {
            let loaded = match config::load(config.as_deref(), &Overrides::default()) {
                Ok(loaded) => loaded,
                Err(error) => return config_failure(&error),
            };
            match runtime().block_on(exec::exec(loaded, role, &command)) {
                Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                Err(error) => {
                    eprintln!("ersatz: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config(ConfigCommand::Show(args)) => match args.load() {
            Ok(loaded) => {
                print!("{}", loaded.show());
                ExitCode::SUCCESS
            }
            Err(error) => config_failure(&error),
        },
        Command::Config(ConfigCommand::Check(args)) => {
            let checked = args.load().and_then(|loaded| {
                runtime()
                    .block_on(App::build(&loaded, Keys::ephemeral(&loaded)))
                    .map(|_| ())
            });
            match checked {
                Ok(()) => {
                    let mut shown = args
                        .config
                        .as_ref()
                        .map_or("embedded defaults".into(), |c| c.display().to_string());
                    let variables = config::environment_variables();
                    if !variables.is_empty() {
                        shown = format!("{shown} with {}", variables.join(", "));
                    }
                    println!("ersatz: {shown}: configuration is valid");
                    ExitCode::SUCCESS
                }
                Err(error) => config_failure(&error),
            }
        }
        Command::Snapshot { url, output } => {
            let taken = runtime()
                .block_on(snapshot::take(&url))
                .and_then(|snapshot| {
                    let mut json =
                        serde_json::to_string_pretty(&snapshot).map_err(|e| e.to_string())?;
                    json.push('\n');
                    match &output {
                        Some(path) => std::fs::write(path, json)
                            .map_err(|e| format!("cannot write {}: {e}", path.display())),
                        None => {
                            print!("{json}");
                            Ok(())
                        }
                    }
                });
            match taken {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("ersatz: snapshot of {url} failed: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Net { command, no_ipv6 } => {
            let ipv6 = !no_ipv6;
            let outcome = match command {
                NetCommand::Setup => net::setup(ipv6),
                NetCommand::Teardown => net::teardown(ipv6),
                NetCommand::Print => {
                    net::print(ipv6);
                    Ok(())
                }
            };
            match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("ersatz: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Cert { config } => {
            let loaded = match config::load(config.as_deref(), &Overrides::default()) {
                Ok(loaded) => loaded,
                Err(error) => return config_failure(&error),
            };
            match IdentityKey::load(&server::identity_keys(&loaded)) {
                Ok(key) => {
                    print!("{}", String::from_utf8_lossy(&key.certificate_pem()));
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("ersatz: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Completions { shell } => {
            let mut out = std::io::stdout();
            clap_complete::generate(shell, &mut Cli::command(), "ersatz", &mut out);
            let _ = out.flush();
            ExitCode::SUCCESS
        }
    }
}

/// `--admin` or `--admin-token` written on the command line (not taken
/// from the environment, which a shell may set for every command).
fn client_flag_given(matches: &clap::ArgMatches) -> Option<&'static str> {
    let mut levels = vec![matches];
    while let Some((_, sub)) = levels[levels.len() - 1].subcommand() {
        levels.push(sub);
    }
    [("admin", "--admin"), ("admin_token", "--admin-token")]
        .into_iter()
        .find(|(id, _)| {
            levels
                .iter()
                .any(|m| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
        })
        .map(|(_, flag)| flag)
}

fn config_failure(error: &config::ConfigError) -> ExitCode {
    eprintln!("ersatz: configuration error: {error}");
    ExitCode::from(EXIT_CONFIG)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

fn init_tracing(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("ersatz: bad log filter {filter:?} ({error}); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    // Colours only for a person at a terminal, never in a file or a pipe.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs a client command against a running server's admin API.
fn remote<F, Fut>(admin: &AdminArgs, run: F) -> ExitCode
where
    F: FnOnce(AdminClient) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let url = admin.admin.as_deref().unwrap_or(DEFAULT_ADMIN_URL);
    let outcome = AdminClient::new(url, admin.admin_token.clone())
        .and_then(|client| runtime().block_on(run(client)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ersatz: {error}");
            ExitCode::FAILURE
        }
    }
}

fn expect_ok((status, body): (StatusCode, String)) -> Result<String, String> {
    if status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or(body);
    Err(format!("{status}: {message}"))
}

fn roles_of(body: &str) -> Result<Vec<String>, String> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("unexpected answer {body:?}: {e}"))?;
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
