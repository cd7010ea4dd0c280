//! The IMDS credential document, as `iam/security-credentials/ROLE` serves it.

use std::time::SystemTime;

use serde_json::Value;

use super::Credentials;
use crate::awsjson;
use crate::timefmt::iso_seconds;

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
        (
            "Token",
            credentials
                .session_token
                .as_ref()
                .map_or(Value::from(""), |t| t.expose().into()),
        ),
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
