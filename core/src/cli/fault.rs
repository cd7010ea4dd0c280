//! `ersatz fault …`: adds, lists and clears fault rules on a running server.

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{Map, Value};

use super::remote::{expect_ok, remote, AdminArgs};
use super::Failure;

#[derive(Args)]
pub struct Fault {
    #[command(subcommand)]
    command: FaultCommand,
}

#[derive(Subcommand)]
enum FaultCommand {
    /// Add a rule after the others (the keys of [[faults]], as flags).
    Add(Box<Rule>),
    /// Print the rules in force, with their counts.
    List,
    /// Remove one rule by name, or every rule.
    Clear {
        /// The rule to remove; without it, all of them.
        name: Option<String>,
    },
}

/// One rule; the server checks it and says what is wrong.
#[derive(Args)]
struct Rule {
    /// latency, status, drop, hang, expired-credentials or throttle.
    #[arg(long)]
    action: Option<String>,
    /// A preset with documented figures (ec2-limits); flags override it.
    #[arg(long)]
    preset: Option<String>,
    #[arg(long)]
    name: Option<String>,
    /// token, metadata, credentials, container or any (default).
    #[arg(long)]
    route: Option<String>,
    /// Another cloud's listener (a [[listeners]] name) instead of EC2's.
    #[arg(long)]
    listener: Option<String>,
    /// A request path; * matches any run of characters.
    #[arg(long)]
    path: Option<String>,
    #[arg(long)]
    method: Option<String>,
    /// A client address or block (10.0.0.0/8).
    #[arg(long)]
    client: Option<String>,
    #[arg(long)]
    status: Option<u16>,
    #[arg(long)]
    retry_after: Option<String>,
    #[arg(long)]
    latency: Option<String>,
    #[arg(long)]
    jitter: Option<String>,
    /// How long a hang holds a request (default 60s).
    #[arg(long)]
    max: Option<String>,
    /// Throttle: requests per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Throttle: requests at once.
    #[arg(long)]
    burst: Option<u32>,
    #[arg(long)]
    probability: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    /// Let this many matching requests through first.
    #[arg(long)]
    after: Option<u64>,
    /// Then apply to this many.
    #[arg(long = "for", value_name = "N")]
    count: Option<u64>,
    /// Apply for this long from now.
    #[arg(long)]
    during: Option<String>,
}

impl Rule {
    /// The rule as the admin API takes it: only the flags given.
    fn json(self) -> String {
        let mut rule = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                rule.insert(key.to_owned(), value);
            }
        };
        put("action", self.action.map(Value::from));
        put("preset", self.preset.map(Value::from));
        put("name", self.name.map(Value::from));
        put("route", self.route.map(Value::from));
        put("listener", self.listener.map(Value::from));
        put("path", self.path.map(Value::from));
        put("method", self.method.map(Value::from));
        put("client", self.client.map(Value::from));
        put("status", self.status.map(Value::from));
        put("retry_after", self.retry_after.map(Value::from));
        put("latency", self.latency.map(Value::from));
        put("jitter", self.jitter.map(Value::from));
        put("max", self.max.map(Value::from));
        put("rate", self.rate.map(Value::from));
        put("burst", self.burst.map(Value::from));
        put("probability", self.probability.map(Value::from));
        put("seed", self.seed.map(Value::from));
        put("after", self.after.map(Value::from));
        put("for", self.count.map(Value::from));
        put("during", self.during.map(Value::from));
        Value::Object(rule).to_string()
    }
}

impl Fault {
    pub fn run(self, admin: &AdminArgs) -> Result<(), Failure> {
        let (method, path, body) = match self.command {
            FaultCommand::Add(rule) => (Method::POST, "/faults".to_owned(), Some(rule.json())),
            FaultCommand::List => (Method::GET, "/faults".to_owned(), None),
            FaultCommand::Clear { name: None } => (Method::DELETE, "/faults".to_owned(), None),
            FaultCommand::Clear { name: Some(name) } if name.is_empty() => {
                return Err(Failure::Usage(
                    "give a rule's name, or no name to clear every rule".into(),
                ))
            }
            FaultCommand::Clear { name: Some(name) } => {
                (Method::DELETE, format!("/faults/{name}"), None)
            }
        };
        remote(admin, |client| async move {
            print!("{}", expect_ok(client.call(method, &path, body).await?)?);
            Ok(())
        })
    }
}
