//! `identity/oauth2/token`: managed identity access tokens, signed by the
//! host (RS256, its identity key, public half at the listener's `keys`),
//! with the claims Entra ID puts in a managed identity's v1 token; and
//! `identity/info`, the tenant.

use serde::Serialize;

use crate::config::Config;
use crate::grants::Grants;
use crate::http::{oauth_error, Query, Reply};
use crate::ids::{base64, guid, hash};
use crate::vm::Vm;

/// Entra ID back-dates `iat` and `nbf` by five minutes for clock skew.
const SKEW: i64 = 300;

/// One identity the VM may act as.
#[derive(Debug)]
pub struct Identity {
    pub client_id: String,
    pub object_id: String,
    pub resource_id: String,
    pub user_assigned: bool,
}

/// The system-assigned identity (if enabled) and the user-assigned ones,
/// with their defaults filled in.
pub fn identities(config: &Config, vm: &Vm) -> (Option<Identity>, Vec<Identity>) {
    let system = &config.system_identity;
    let vm_id = vm.get("vmId");
    let system = system.enabled.then(|| Identity {
        client_id: or(&system.client_id, || guid("system-client", vm_id)),
        object_id: or(&system.object_id, || guid("system-object", vm_id)),
        resource_id: or(&system.resource_id, || vm.get("resourceId").to_owned()),
        user_assigned: false,
    });
    let users = config.user_identities.iter().enumerate().map(|(i, user)| {
        let name = or(&user.name, || format!("identity-{}", i + 1));
        Identity {
            object_id: or(&user.object_id, || guid("user-object", &user.client_id)),
            resource_id: or(&user.resource_id, || user_resource_id(vm, &name)),
            client_id: user.client_id.clone(),
            user_assigned: true,
        }
    });
    (system, users.collect())
}

fn or(value: &Option<String>, default: impl FnOnce() -> String) -> String {
    value.clone().unwrap_or_else(default)
}

/// Azure writes `resourcegroups` in lower case in identities' ids.
fn user_resource_id(vm: &Vm, name: &str) -> String {
    format!(
        "/subscriptions/{}/resourcegroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
        vm.get("subscriptionId"),
        vm.get("resourceGroupName")
    )
}

/// The three ways a request names an identity, as query parameters.
const SELECTORS: [&str; 3] = ["client_id", "object_id", "msi_res_id"];

fn choose<'a>(
    query: &Query,
    system: Option<&'a Identity>,
    users: &'a [Identity],
) -> Result<&'a Identity, Reply> {
    let given: Vec<(&str, &str)> = SELECTORS
        .iter()
        .filter_map(|s| Some((*s, query.get(s).filter(|v| !v.is_empty())?)))
        .collect();
    let all = || system.into_iter().chain(users);
    match given.as_slice() {
        [] => default_identity(system, users),
        [(selector, wanted)] => all()
            .find(|id| id.selected_by(selector, wanted))
            .ok_or_else(|| invalid("Identity not found")),
        _ => Err(invalid(
            "Only one of client_id, object_id or msi_res_id may be specified",
        )),
    }
}

/// No selector: the system identity, or else the only user-assigned one.
fn default_identity<'a>(
    system: Option<&'a Identity>,
    users: &'a [Identity],
) -> Result<&'a Identity, Reply> {
    match (system, users) {
        (Some(system), _) => Ok(system),
        (None, [only]) => Ok(only),
        (None, []) => Err(invalid("Identity not found")),
        (None, _) => Err(invalid(
            "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request",
        )),
    }
}

impl Identity {
    /// GUIDs and ARM ids compare without regard to case.
    fn selected_by(&self, selector: &str, wanted: &str) -> bool {
        let have = match selector {
            "client_id" => &self.client_id,
            "object_id" => &self.object_id,
            _ => &self.resource_id,
        };
        have.eq_ignore_ascii_case(wanted)
    }
}

fn invalid(description: &str) -> Reply {
    oauth_error(400, "invalid_request", description)
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    appid: &'a str,
    appidacr: &'a str,
    idp: &'a str,
    idtyp: &'a str,
    oid: &'a str,
    sub: &'a str,
    tid: &'a str,
    uti: &'a str,
    ver: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    xms_az_rid: Option<&'a str>,
    xms_mirid: &'a str,
}

/// IMDS writes every number as a string.
#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: String,
    client_id: &'a str,
    expires_in: String,
    expires_on: String,
    ext_expires_in: String,
    not_before: String,
    resource: &'a str,
    token_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    msi_res_id: Option<&'a str>,
}

/// `identity/oauth2/token`. Never reused: every answer is a new token.
pub fn token(
    query: &Query,
    config: &Config,
    vm: &Vm,
    grants: &dyn Grants,
) -> Result<Reply, String> {
    let Some(resource) = query.get("resource").filter(|r| !r.is_empty()) else {
        return Ok(invalid("Required query variable 'resource' is missing"));
    };
    let (system, users) = identities(config, vm);
    let identity = match choose(query, system.as_ref(), &users) {
        Ok(identity) => identity,
        Err(reply) => return Ok(reply),
    };
    let now = grants.now();
    let lifetime = i64::try_from(config.token_lifetime).unwrap_or(86_400);
    let issuer = format!("https://sts.windows.net/{}/", config.tenant_id);
    let uti = token_id(now, identity, resource, grants.now_ms());
    let claims = Claims {
        aud: resource,
        iss: &issuer,
        iat: now - SKEW,
        nbf: now - SKEW,
        exp: now + lifetime,
        appid: &identity.client_id,
        appidacr: "2",
        idp: &issuer,
        idtyp: "app",
        oid: &identity.object_id,
        sub: &identity.object_id,
        tid: &config.tenant_id,
        uti: &uti,
        ver: "1.0",
        xms_az_rid: identity.user_assigned.then(|| vm.get("resourceId")),
        xms_mirid: &identity.resource_id,
    };
    let claims = serde_json::to_string(&claims).map_err(|e| e.to_string())?;
    let body = TokenResponse {
        access_token: grants.sign_jwt(&claims)?,
        client_id: &identity.client_id,
        expires_in: lifetime.to_string(),
        expires_on: (now + lifetime).to_string(),
        ext_expires_in: lifetime.to_string(),
        not_before: (now - SKEW).to_string(),
        resource,
        token_type: "Bearer",
        object_id: query.get("object_id"),
        msi_res_id: query.get("msi_res_id"),
    };
    Ok(Reply::json(200, &body))
}

/// Entra's `uti`: 22 base64url characters, unique per token.
fn token_id(now: i64, identity: &Identity, resource: &str, now_ms: u64) -> String {
    let text = format!("{now}/{now_ms}/{}/{resource}", identity.object_id);
    let bytes = [
        hash("uti", &text).to_le_bytes(),
        hash("uti/2", &text).to_le_bytes(),
    ]
    .concat();
    let encoded = base64(&bytes).replace('+', "-").replace('/', "_");
    encoded.trim_end_matches('=').to_owned()
}

#[derive(Serialize)]
struct Info<'a> {
    #[serde(rename = "tenantId")]
    tenant_id: &'a str,
}

/// `identity/info`: the tenant of the system-assigned identity.
pub fn info(config: &Config) -> Reply {
    Reply::json(
        200,
        &Info {
            tenant_id: &config.tenant_id,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::fake::Host;
    use serde_json::Value;

    const USER: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";
    const USER2: &str = "bbbbbbbb-bbbb-4ccc-8ddd-eeeeeeeeeeee";
    const TENANT: &str = "11111111-2222-4333-8444-555555555555";

    fn ask(config: &str, query: &str) -> (Reply, Value) {
        let host = Host::new(config);
        let config = Config::load(config).unwrap();
        let vm = Vm::gather(&config, &host);
        let reply = token(&Query::parse(Some(query)), &config, &vm, &host).unwrap();
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        (reply, body)
    }

    /// The fake host's "JWT" is `header.CLAIMS.signature`.
    fn claims(body: &Value) -> Value {
        let token = body["access_token"].as_str().unwrap();
        let claims = token
            .strip_prefix("header.")
            .unwrap()
            .strip_suffix(".signature")
            .unwrap();
        serde_json::from_str(claims).unwrap()
    }

    fn with_user() -> String {
        format!(
            r#"{{"tenant_id":"{TENANT}","user_identities":[{{"client_id":"{USER}","name":"app"}}]}}"#
        )
    }

    #[test]
    fn the_system_identity_by_default() {
        let (reply, body) = ask(&with_user(), "resource=https://vault.azure.net");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.max_age, 0);
        for field in ["expires_in", "expires_on", "ext_expires_in", "not_before"] {
            assert!(
                body[field].as_str().unwrap().parse::<i64>().is_ok(),
                "{field}"
            );
        }
        assert_eq!(body["expires_in"], "86400");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["resource"], "https://vault.azure.net");
        let claims = claims(&body);
        assert_eq!(claims["aud"], "https://vault.azure.net");
        assert_eq!(claims["iss"], format!("https://sts.windows.net/{TENANT}/"));
        assert_eq!(claims["tid"], TENANT);
        assert_eq!(claims["appid"], body["client_id"]);
        assert_eq!(claims["oid"], claims["sub"]);
        assert!(claims["xms_mirid"]
            .as_str()
            .unwrap()
            .contains("/virtualMachines/"));
        assert!(claims.get("xms_az_rid").is_none());
        assert_eq!(
            claims["exp"].as_i64().unwrap().to_string(),
            body["expires_on"]
        );
    }

    #[test]
    fn a_user_identity_by_any_selector() {
        let (_, by_client) = ask(
            &with_user(),
            &format!("resource=r&client_id={}", USER.to_uppercase()),
        );
        let claims = claims(&by_client);
        assert_eq!(claims["appid"], USER);
        let mirid = claims["xms_mirid"].as_str().unwrap().to_owned();
        assert!(mirid.ends_with("/userAssignedIdentities/app"), "{mirid}");
        let oid = claims["oid"].as_str().unwrap().to_owned();
        let (_, by_object) = ask(&with_user(), &format!("resource=r&object_id={oid}"));
        assert_eq!(by_object["client_id"], USER);
        assert_eq!(by_object["object_id"], oid);
        let (_, by_res) = ask(
            &with_user(),
            &format!("resource=r&msi_res_id={}", mirid.to_uppercase()),
        );
        assert_eq!(by_res["client_id"], USER);
    }

    #[test]
    fn errors_are_azures() {
        let cases = [
            ("", "Required query variable 'resource' is missing"),
            (
                "resource=r&client_id=00000000-0000-4000-8000-000000000000",
                "Identity not found",
            ),
            (
                &format!("resource=r&client_id={USER}&object_id={USER}") as &str,
                "Only one of",
            ),
        ];
        for (query, description) in cases {
            let (reply, body) = ask(&with_user(), query);
            assert_eq!(reply.status, 400, "{query}");
            assert_eq!(body["error"], "invalid_request");
            assert!(body["error_description"]
                .as_str()
                .unwrap()
                .starts_with(description));
        }
    }

    #[test]
    fn without_a_system_identity_the_only_user_identity_answers() {
        let one = format!(
            r#"{{"system_identity":{{"enabled":false}},"user_identities":[{{"client_id":"{USER}"}}]}}"#
        );
        assert_eq!(ask(&one, "resource=r").1["client_id"], USER);
        let two = format!(
            r#"{{"system_identity":{{"enabled":false}},"user_identities":[{{"client_id":"{USER}"}},{{"client_id":"{USER2}"}}]}}"#
        );
        let (reply, body) = ask(&two, "resource=r");
        assert_eq!(reply.status, 400);
        assert!(body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("Multiple user assigned"));
        let none = r#"{"system_identity":{"enabled":false}}"#;
        assert_eq!(
            ask(none, "resource=r").1["error_description"],
            "Identity not found"
        );
    }
}
