//! The `ersatz` command line: one file per command, each with its own
//! arguments and `run`. A command fails with a [`Failure`], which knows its
//! exit code; only [`main`] prints it and exits.

mod bootstrap;
mod cert;
mod completions;
mod config;
mod event;
mod exec;
mod fault;
mod man;
mod net;
mod remote;
mod requests;
mod role;
mod serve;
mod snapshot;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::config::ConfigError;
use remote::AdminArgs;

#[derive(Parser)]
#[command(
    name = "ersatz",
    version,
    about = "An emulator of the EC2 instance metadata service"
)]
struct Cli {
    #[command(flatten)]
    admin: AdminArgs,
    /// Log filter, e.g. `info`, `debug`, `ersatz=trace` (default: info; warn for client commands).
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
    Serve(serve::Serve),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Print a shell completion script.
    Completions(completions::Completions),
    /// Print this manual page (roff), for `man`.
    Man(man::Man),
    /// Print the certificate that verifies the identity document signatures
    /// (generating the key on first use, as `serve` does).
    Cert(cert::Cert),
    /// List, switch or show roles of a running server (finto's role API).
    Role(role::Role),
    /// Send source credentials to a running server's bootstrap source:
    /// from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN,
    /// or as JSON on stdin with --stdin.
    Bootstrap(bootstrap::Bootstrap),
    /// Crawl an IMDS (IMDSv2 first, v1 fallback) into a document that
    /// `ersatz serve --snapshot FILE` replays. Credentials are never captured.
    Snapshot(snapshot::SnapshotArgs),
    /// Put 169.254.169.254 (and fd00:ec2::254) on loopback, guarded by
    /// firewall rules, so SDKs find ersatz with no endpoint variable.
    Net(net::Net),
    /// Trigger or clear lifecycle events on a running server.
    Event(event::Event),
    /// Add, list or clear fault rules on a running server.
    Fault(fault::Fault),
    /// Print the requests a running server answered lately (JSON lines).
    Requests(requests::Requests),
    /// Who still uses IMDSv1: per client, its requests without a token,
    /// their paths and, for local clients, the process.
    Audit(requests::Audit),
    /// Run a command with container credentials for a role, served on a free
    /// loopback port for as long as it runs; exits with its exit code.
    Exec(exec::Exec),
}

impl Command {
    /// The commands that talk to a running server: they take `--admin`, and
    /// log only warnings unless told otherwise.
    fn is_client(&self) -> bool {
        matches!(
            self,
            Self::Role(_)
                | Self::Bootstrap(_)
                | Self::Event(_)
                | Self::Fault(_)
                | Self::Requests(_)
                | Self::Audit(_)
                | Self::Exec(_)
        )
    }

    fn run(self, admin: &AdminArgs) -> Result<(), Failure> {
        match self {
            Self::Serve(command) => command.run(),
            Self::Config(command) => command.run(),
            Self::Completions(command) => command.run(),
            Self::Man(command) => command.run(),
            Self::Cert(command) => command.run(),
            Self::Role(command) => command.run(admin),
            Self::Bootstrap(command) => command.run(admin),
            Self::Snapshot(command) => command.run(),
            Self::Net(command) => command.run(),
            Self::Event(command) => command.run(admin),
            Self::Fault(command) => command.run(admin),
            Self::Requests(command) => command.run(admin),
            Self::Audit(command) => command.run(admin),
            Self::Exec(command) => command.run(admin),
        }
    }
}

/// Why a command did not succeed, and so how `ersatz` exits.
#[derive(Debug)]
pub enum Failure {
    /// A configuration mistake (or a flag in the wrong place): exit 2,
    /// nothing was started.
    Config(ConfigError),
    /// A flag given to a command that does not take it: exit 2.
    Usage(String),
    /// Anything that went wrong while running: exit 1.
    Failed(String),
    /// `exec`'s child exited with this code, passed on as ours.
    Exit(u8),
}

/// Exit code for a configuration or usage mistake (runtime failures exit 1).
const EXIT_CONFIG: u8 = 2;

impl Failure {
    /// Says what went wrong on stderr, and gives the exit code.
    fn report(self) -> ExitCode {
        match self {
            Self::Config(error) => {
                eprintln!("ersatz: configuration error: {error}");
                ExitCode::from(EXIT_CONFIG)
            }
            Self::Usage(message) => {
                eprintln!("ersatz: {message}");
                ExitCode::from(EXIT_CONFIG)
            }
            Self::Failed(message) => {
                eprintln!("ersatz: {message}");
                ExitCode::FAILURE
            }
            Self::Exit(code) => ExitCode::from(code),
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(error: ConfigError) -> Self {
        Self::Config(error)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Self::Failed(message.to_owned())
    }
}

pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let client = cli.command.is_client();
    if let (false, Some(flag)) = (client, client_flag_given(&matches)) {
        return Failure::Usage(format!("{flag} is for the commands that talk to a running server (role, event, fault, requests, audit, bootstrap, exec); a server's own token is server.admin_token")).report();
    }
    let level = cli
        .log_level
        .as_deref()
        .unwrap_or(if client { "warn" } else { "info" });
    init_tracing(level, cli.log_format);
    if !matches!(cli.command, Command::Serve(_) | Command::Exec(_)) {
        // Rust ignores SIGPIPE, which makes `println!` panic when a reader
        // such as `head` goes away; a command's output ends quietly there,
        // as other Unix tools' does. (The server keeps ignoring it.)
        // SAFETY: no other thread exists yet to race on signal dispositions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match cli.command.run(&cli.admin) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
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
