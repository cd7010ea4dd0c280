//! Credential documents: IMDS's (`iam/security-credentials/ROLE`) and the
//! ECS container endpoint's.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::roles::served_times;
use super::Credentials;
use crate::awsjson;
use crate::timefmt::iso_seconds;

fn token(credentials: &Credentials) -> Value {
    credentials
        .session_token
        .as_ref()
        .map_or(Value::from(""), |t| t.expose().into())
}

pub fn success_document(
    credentials: &Credentials,
    last_updated: SystemTime,
    expiration: SystemTime,
) -> String {
    awsjson::object(&[
        ("Code", "Success".into()),
        ("LastUpdated", iso_seconds(last_updated).into()),
        ("Type", "AWS-HMAC".into()),
        ("AccessKeyId", credentials.access_key_id.as_str().into()),
        (
            "SecretAccessKey",
            credentials.secret_access_key.expose().into(),
        ),
        ("Token", token(credentials)),
        ("Expiration", iso_seconds(expiration).into()),
    ])
}

/// What IMDS answers (with status 200) when it has no credentials to give.
pub fn failure_document(code: &str, message: &str, now: SystemTime) -> String {
    awsjson::object(&[
        ("Code", code.into()),
        ("Message", message.into()),
        ("LastUpdated", iso_seconds(now).into()),
    ])
}

/// The container credentials document (`AWS_CONTAINER_CREDENTIALS_FULL_URI`).
pub fn ecs_document(credentials: &Credentials, role_arn: Option<&str>) -> String {
    let (_, expiration) = served_times(credentials, SystemTime::now());
    let mut document = json!({
        "AccessKeyId": credentials.access_key_id,
        "SecretAccessKey": credentials.secret_access_key.expose(),
        "Token": token(credentials),
        "Expiration": iso_seconds(expiration),
    });
    if let Some(arn) = role_arn {
        document["RoleArn"] = arn.into();
    }
    document.to_string()
}
