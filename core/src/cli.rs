//! The `ersatz` command line.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config::{self, Overrides};
use crate::server::{self, App};

/// Exit code for a configuration mistake (runtime failures exit 1).
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "ersatz",
    version,
    about = "An emulator of the EC2 instance metadata service"
)]
struct Cli {
    /// Log filter, e.g. `info`, `debug`, `ersatz=trace`.
    #[arg(long, global = true, env = "ERSATZ_LOG", default_value = "info")]
    log_level: String,
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
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and check a configuration as `serve` would, without serving.
    Check(ServeArgs),
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
    fn load(&self) -> Result<config::Loaded, config::ConfigError> {
        let overrides = Overrides {
            addr: self.addr.clone(),
            port: self.port,
            log: self.log.clone(),
            admin_addr: self.admin_addr,
        };
        config::load(self.config.as_deref(), &overrides)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log_level, cli.log_format);
    match cli.command {
        Command::Serve(args) => {
            let loaded = match args.load() {
                Ok(loaded) => loaded,
                Err(error) => return config_failure(&error),
            };
            match runtime().block_on(server::run(loaded)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("ersatz: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config(ConfigCommand::Check(args)) => {
            let checked = args.load().and_then(|loaded| {
                runtime()
                    .block_on(App::build(&loaded, Vec::new()))
                    .map(|_| ())
            });
            match checked {
                Ok(()) => {
                    let shown = args
                        .config
                        .as_ref()
                        .map_or("embedded defaults".into(), |c| c.display().to_string());
                    println!("ersatz: {shown}: configuration is valid");
                    ExitCode::SUCCESS
                }
                Err(error) => config_failure(&error),
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
