//! `ersatz event …`: triggers or clears lifecycle events on a running server.

use clap::{Args, Subcommand};
use http::Method;

use super::remote::{expect_ok, remote, AdminArgs};
use super::Failure;

#[derive(Args)]
pub struct Event {
    #[command(subcommand)]
    command: EventCommand,
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

impl EventCommand {
    /// The admin call this command makes, and its body's fields.
    fn request(self) -> (Method, &'static str, Vec<(&'static str, Option<String>)>) {
        match self {
            Self::Spot { within, action } => (
                Method::POST,
                "/events/spot",
                vec![("in", within), ("action", action)],
            ),
            Self::Rebalance { within } => (Method::POST, "/events/rebalance", vec![("in", within)]),
            Self::Maintenance {
                code,
                within,
                duration,
                description,
                state,
            } => (
                Method::POST,
                "/events/maintenance",
                vec![
                    ("code", Some(code)),
                    ("in", within),
                    ("duration", duration),
                    ("description", description),
                    ("state", state),
                ],
            ),
            Self::Autoscaling { state, within } => (
                Method::POST,
                "/events/autoscaling",
                vec![("state", Some(state)), ("in", within)],
            ),
            Self::Clear => (Method::DELETE, "/events", Vec::new()),
            Self::Show => (Method::GET, "/events", Vec::new()),
        }
    }
}

impl Event {
    pub fn run(self, admin: &AdminArgs) -> Result<(), Failure> {
        let (method, path, fields) = self.command.request();
        let body = (method == Method::POST).then(|| {
            let given = fields
                .into_iter()
                .filter_map(|(key, value)| Some((key.to_owned(), value?.into())));
            serde_json::Value::Object(given.collect()).to_string()
        });
        remote(admin, |client| async move {
            print!("{}", expect_ok(client.call(method, path, body).await?)?);
            Ok(())
        })
    }
}
