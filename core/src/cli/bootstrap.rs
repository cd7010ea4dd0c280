//! `ersatz bootstrap`: source credentials for a running server's bootstrap
//! source, from the environment or stdin.

use clap::Args;
use http::Method;

use super::remote::{expect_ok, json, remote, AdminArgs};
use super::Failure;

#[derive(Args)]
pub struct Bootstrap {
    /// Which bootstrap source, when the server has several.
    #[arg(long)]
    source: Option<String>,
    /// Read {"AccessKeyId","SecretAccessKey","Token"} from stdin.
    #[arg(long)]
    stdin: bool,
}

impl Bootstrap {
    pub fn run(self, admin: &AdminArgs) -> Result<(), Failure> {
        let mut body = if self.stdin {
            from_stdin()?
        } else {
            from_environment()?
        };
        if let Some(source) = self.source {
            let Some(fields) = body.as_object_mut() else {
                return Err("the credentials must be a JSON object: {\"AccessKeyId\",\"SecretAccessKey\",\"Token\"}".into());
            };
            fields.insert("Source".into(), source.into());
        }
        let answer = remote(admin, |client| async move {
            let call = client.call(Method::POST, "/bootstrap/creds", Some(body.to_string()));
            expect_ok(call.await?)
        })?;
        print!("{answer}");
        // The keys were stored; the role behind them may still fail.
        match &json(&answer)?["assumed"] {
            serde_json::Value::Bool(true) => Ok(()),
            serde_json::Value::String(reason) => Err(Failure::Failed(format!(
                "the source credentials were stored, but the active role could not be assumed with them: {reason}"
            ))),
            _ => Err("the source credentials were stored, but the active role has no credentials yet: see GET /status".into()),
        }
    }
}

fn from_stdin() -> Result<serde_json::Value, Failure> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(|e| Failure::Failed(format!("cannot read stdin: {e}")))?;
    // serde's message could quote the secret; say only where it broke.
    serde_json::from_str(&text).map_err(|e| {
        Failure::Failed(format!(
            "stdin is not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

fn from_environment() -> Result<serde_json::Value, Failure> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(key), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) else {
        return Err("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or use --stdin".into());
    };
    Ok(serde_json::json!({
        "AccessKeyId": key,
        "SecretAccessKey": secret,
        "Token": var("AWS_SESSION_TOKEN").unwrap_or_default(),
    }))
}
