//! mmds's `POST /bootstrap/creds`: source credentials for the `bootstrap`
//! sources, held in memory only. Unlike mmds, a bad body or a failed first
//! assumption is an answer, not a crash, and never replaces what works.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{json, json_error};
use crate::credentials::{BootstrapSource, Roles};
use crate::encoder::Body;
use crate::secret::Secret;

/// How long the answer waits for the active role to be assumed.
const ASSUME_WAIT: Duration = Duration::from_secs(20);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posted {
    #[serde(rename = "AccessKeyId")]
    access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    secret_access_key: Secret,
    #[serde(rename = "Token", default)]
    token: Option<Secret>,
    /// Which bootstrap source, when there are several.
    #[serde(rename = "Source", default)]
    source: Option<String>,
}

/// The posted keys, or why they are refused (a reason that names fields,
/// never their values).
pub fn parse(body: &[u8]) -> Result<Posted, String> {
    let posted: Posted = serde_json::from_slice(body).map_err(|error| {
        format!("expected {{\"AccessKeyId\",\"SecretAccessKey\",\"Token\"}}: {error}")
    })?;
    if posted.access_key_id.is_empty() || posted.secret_access_key.is_empty() {
        return Err("AccessKeyId and SecretAccessKey must not be empty".into());
    }
    Ok(posted)
}

pub async fn post(
    roles: &Roles,
    bootstraps: &BTreeMap<String, Arc<BootstrapSource>>,
    body: &[u8],
) -> Response<Body> {
    let posted: Posted = match serde_json::from_slice(body) {
        Ok(posted) => posted,
        Err(error) => {
            // serde's message names the field, never its value.
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"AccessKeyId\",\"SecretAccessKey\",\"Token\"}}: {error}"),
            );
        }
    };
    if posted.access_key_id.is_empty() || posted.secret_access_key.is_empty() {
        return json_error(
            StatusCode::BAD_REQUEST,
            "AccessKeyId and SecretAccessKey must not be empty",
        );
    }
    let target = match (&posted.source, bootstraps.len()) {
        (Some(name), _) => bootstraps.get(name).map(|s| (name.clone(), s.clone())),
        (None, 1) => bootstraps
            .iter()
            .next()
            .map(|(n, s)| (n.clone(), s.clone())),
        _ => None,
    };
    let Some((name, source)) = target else {
        let known: Vec<&str> = bootstraps.keys().map(String::as_str).collect();
        let known = if known.is_empty() {
            "none: add a [sources.NAME] table with type = \"bootstrap\"".to_owned()
        } else {
            known.join(", ")
        };
        let reason = match &posted.source {
            Some(unknown) => format!("unknown bootstrap source \"{unknown}\" (bootstrap sources: {known})"),
            None if bootstraps.is_empty() => format!("no bootstrap source is configured (bootstrap sources: {known})"),
            None => format!("several bootstrap sources ({known}): name one in \"Source\" (ersatz bootstrap --source NAME)"),
        };
        return json_error(StatusCode::BAD_REQUEST, &reason);
    };
    source.set(posted.access_key_id, posted.secret_access_key, posted.token);
    tracing::info!(source = %name, "source credentials bootstrapped");
    roles.source_changed();

    // Assume the active role now, so it is served right after this answer.
    let active = roles.active();
    let assumed = match roles.get(&active) {
        Some(role) => match tokio::time::timeout(ASSUME_WAIT, role.credentials()).await {
            Ok(Ok(_)) => json!(true),
            Ok(Err(error)) => json!(error.0),
            Err(_) => json!("still assuming; check GET /status"),
        },
        None => json!(false),
    };
    json(
        StatusCode::OK,
        &json!({ "bootstrapped": name, "active_role": active, "assumed": assumed }),
    )
}
