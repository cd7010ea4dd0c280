//! A service account's `token` (OAuth2 access token) and `identity` (an
//! RS256 ID token signed by the host; its key never enters the plugin).

use crate::machine::{Account, Machine};
use crate::tree::Node;
use serde_json::json;

/// GCE hands out the same access token until about five minutes of its hour
/// are left, then a fresh one. Ours is fixed per account, so only
/// `expires_in` moves: a new "token" every 3,300 s of the host's clock, each
/// living 3,600 s, so `expires_in` counts down from 3,599 to 300 and jumps
/// back. Clients (which refresh a few minutes before expiry) never see less
/// than five minutes, and every client sees the same countdown.
const REISSUE_EVERY: u64 = 3_300;
const LIFETIME: u64 = 3_599;

pub fn expires_in(now_ms: u64) -> u64 {
    LIFETIME - (now_ms / 1000) % REISSUE_EVERY
}

/// The token answer, as a node so that `alt=text` renders it like GCE.
pub fn access_token(account: &Account, now_ms: u64) -> Node {
    Node::Dir {
        entries: vec![
            ("access_token".into(), Node::Text(account.token.clone())),
            ("expires_in".into(), Node::Number(expires_in(now_ms))),
            ("token_type".into(), Node::Text("Bearer".into())),
        ],
        fixed: true,
    }
}

/// What `identity` was asked for.
pub struct IdentityRequest<'a> {
    pub audience: &'a str,
    /// `format=full`: adds the email and the `google.compute_engine` claim.
    pub full: bool,
    /// `licenses=TRUE` (with `full`): adds the instance's license ids.
    pub licenses: bool,
}

/// An ID token lives an hour, as GCE's do.
const ID_TOKEN_LIFETIME: u64 = 3_600;

/// The claims GCE puts in an instance identity token. The standard format
/// has no email: GCE adds it only with `format=full`.
pub fn identity_claims(m: &Machine, a: &Account, req: &IdentityRequest, now_ms: u64) -> String {
    let iat = now_ms / 1000;
    let mut claims = json!({
        "iss": "https://accounts.google.com",
        "aud": req.audience,
        "azp": a.unique_id,
        "sub": a.unique_id,
        "iat": iat,
        "exp": iat + ID_TOKEN_LIFETIME,
    });
    if req.full {
        claims["email"] = json!(a.email);
        claims["email_verified"] = json!(true);
        claims["google"] = json!({ "compute_engine": compute_engine(m, req.licenses) });
    }
    claims.to_string()
}

fn compute_engine(m: &Machine, licenses: bool) -> serde_json::Value {
    let mut claim = json!({
        "project_id": m.project_id,
        "project_number": m.numeric_project_id,
        "zone": m.zone,
        "instance_id": m.id.to_string(),
        "instance_name": m.name,
        "instance_creation_timestamp": m.creation_timestamp,
    });
    if licenses {
        claim["license_id"] = json!(m.licenses);
    }
    claim
}
