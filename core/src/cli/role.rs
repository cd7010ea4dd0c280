//! `ersatz role list|use|show`: finto's role API on a running server.

use clap::{Args, Subcommand};
use http::Method;

use super::remote::{expect_ok, json, remote, roles_of, AdminArgs};
use super::Failure;

#[derive(Args)]
pub struct Role {
    #[command(subcommand)]
    command: RoleCommand,
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

impl Role {
    pub fn run(self, admin: &AdminArgs) -> Result<(), Failure> {
        remote(admin, |client| async move {
            match self.command {
                RoleCommand::List => {
                    let all = expect_ok(client.call(Method::GET, "/roles", None).await?)?;
                    let active = client.call(Method::GET, "/roles?status=active", None);
                    let active = roles_of(&expect_ok(active.await?)?)?;
                    for role in roles_of(&all)? {
                        let mark = if active.contains(&role) { '*' } else { ' ' };
                        println!("{mark} {role}");
                    }
                }
                RoleCommand::Use { alias } => {
                    let body = serde_json::json!({ "alias": alias }).to_string();
                    expect_ok(client.call(Method::PUT, "/roles", Some(body)).await?)?;
                    println!("active role: {alias}");
                }
                RoleCommand::Show { alias } => {
                    let path = format!("/roles/{alias}");
                    let role = json(&expect_ok(client.call(Method::GET, &path, None).await?)?)?;
                    let path = format!("{path}/source");
                    let source = json(&expect_ok(client.call(Method::GET, &path, None).await?)?)?;
                    let field =
                        |value: &serde_json::Value| value.as_str().unwrap_or_default().to_owned();
                    println!("role:         {alias}");
                    println!("arn:          {}", field(&role["arn"]));
                    println!("session_name: {}", field(&role["session_name"]));
                    println!("source:       {}", field(&source["source"]));
                }
            }
            Ok(())
        })
    }
}
