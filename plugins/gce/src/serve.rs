//! One request to one answer, the way GCE decides: the node at the path,
//! then the method, the trailing '/', and `recursive`/`alt`.

use crate::ersatz::plugin::types::{Answer, Request};
use crate::http::{self, Alt, Query, HTML, JSON, NEVER, STATIC, TEXT};
use crate::machine::{Account, Machine};
use crate::render;
use crate::tokens::{self, IdentityRequest};
use crate::tree::{self, Node};

/// What the plugin takes from the host besides the config: kept apart so
/// that the logic is the same under test.
pub struct Env<'a> {
    pub now_ms: u64,
    pub sign: &'a dyn Fn(&str) -> Result<String, String>,
}

pub fn answer(req: &Request, m: &Machine, env: &Env) -> Result<Answer, String> {
    let mut answer = respond(req, m, env)?;
    answer.max_age = answer.max_age.min(max_age(req));
    Ok(answer)
}

/// The request as the handlers need it.
struct Asked<'a> {
    req: &'a Request,
    query: Query,
    /// The path as the client sent it, for error pages and redirects.
    url: String,
}

fn respond(req: &Request, m: &Machine, env: &Env) -> Result<Answer, String> {
    let slash = if req.trailing_slash && !req.path.is_empty() {
        "/"
    } else {
        ""
    };
    let url = format!("/{}{slash}", req.path);
    // Empty segments are skipped: GCE serves `project//project-id`.
    let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let root = tree::build(m);
    let node = match root.find(&segments) {
        // A leaf asked for as a directory is not found either.
        Some(node) if node.is_dir() || !req.trailing_slash => node,
        _ => return Ok(http::not_found(&url)),
    };
    // google-auth POSTs to `token` and `identity` when it binds tokens to a
    // certificate; nothing else takes a POST.
    if req.method == "POST" && !node.is_endpoint() {
        return Ok(http::method_not_allowed(&req.method, &url));
    }
    let asked = Asked {
        req,
        query: Query::parse(req.query.as_deref()),
        url,
    };
    match node {
        Node::Token(i) => Ok(token(&asked, &m.accounts[*i], env)),
        Node::Identity(i) => identity(&asked, m, &m.accounts[*i], env),
        _ if node.is_dir() => Ok(directory(&asked, node)),
        _ => Ok(leaf(&asked, node)),
    }
}

/// Answers that depend on nothing but the tree may be reused; none with a
/// query is (recursive, alt, long-poll parameters, an audience).
fn max_age(req: &Request) -> u32 {
    match req.query.as_deref() {
        Some(q) if !q.is_empty() => NEVER,
        _ => STATIC,
    }
}

/// A listing; without its '/', GCE's redirect to it.
fn directory(asked: &Asked, node: &Node) -> Answer {
    let req = asked.req;
    if !req.trailing_slash && !req.path.is_empty() {
        let host = req.headers.iter().find(|(k, _)| k == "host");
        return http::redirect(
            host.map(|(_, v)| v.as_str()),
            &asked.url,
            req.query.as_deref(),
        );
    }
    match (asked.query.flag("recursive"), http::alt(&asked.query)) {
        (true, Some(Alt::Text)) => http::ok(render::text(node, ""), TEXT, STATIC),
        (true, _) => http::ok(render::json(node), JSON, STATIC),
        // GCE formats only leaves and recursive answers.
        (false, Some(_)) => http::bad_request(),
        (false, None) => http::ok(render::listing(node), TEXT, STATIC),
    }
}

/// A leaf: text by default (`tags`: JSON), as asked with `alt`;
/// `recursive` means nothing here.
fn leaf(asked: &Asked, node: &Node) -> Answer {
    let json_default = matches!(node, Node::List { json: true, .. });
    match http::alt(&asked.query).map_or(json_default, |alt| alt == Alt::Json) {
        true => http::ok(render::json(node), JSON, STATIC),
        false => http::ok(render::leaf_text(node), TEXT, STATIC),
    }
}

/// `token`: JSON unless `alt=text`; `scopes=` is accepted and, as on GCE
/// VMs with a fixed token, changes nothing.
fn token(asked: &Asked, account: &Account, env: &Env) -> Answer {
    let token = tokens::access_token(account, env.now_ms);
    match http::alt(&asked.query) {
        Some(Alt::Text) => http::ok(render::text(&token, ""), TEXT, NEVER),
        _ => http::ok(render::json(&token), JSON, NEVER),
    }
}

/// `identity?audience=A[&format=full][&licenses=TRUE]`: a fresh JWT each
/// time (it carries `iat`), signed by the host.
fn identity(asked: &Asked, m: &Machine, account: &Account, env: &Env) -> Result<Answer, String> {
    let query = &asked.query;
    let audience = query.get("audience").unwrap_or_default();
    if audience.is_empty() {
        return Ok(http::no_audience());
    }
    let full = query
        .get("format")
        .is_some_and(|f| f.eq_ignore_ascii_case("full"));
    let ask = IdentityRequest {
        audience,
        full,
        licenses: full && query.flag("licenses"),
    };
    let claims = tokens::identity_claims(m, account, &ask, env.now_ms);
    let jwt = (env.sign)(&claims).map_err(|e| format!("gce: signing an identity token: {e}"))?;
    Ok(http::ok(jwt, HTML, NEVER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::ersatz::plugin::types::Response;
    use crate::machine::Ec2;

    const V1: &str = "computeMetadata/v1";

    fn machine(config: &str) -> Machine {
        let mut ec2 = Ec2::new();
        ec2.insert("meta-data/instance-id", "i-0123456789abcdef0".into());
        ec2.insert("meta-data/local-ipv4", "172.31.40.7".into());
        ec2.insert("meta-data/mac", "0e:11:22:33:44:55".into());
        Machine::new(Config::load(config).unwrap(), &ec2)
    }

    fn get(m: &Machine, target: &str) -> (u16, String, String, Answer) {
        request(m, "GET", target)
    }

    /// `target` as sent: path (with or without its '/') and query.
    fn request(m: &Machine, method: &str, target: &str) -> (u16, String, String, Answer) {
        let (path, query) = target
            .split_once('?')
            .map_or((target, None), |(p, q)| (p, Some(q)));
        let req = Request {
            method: method.into(),
            path: path.trim_matches('/').into(),
            trailing_slash: path.ends_with('/') || path.is_empty(),
            query: query.map(String::from),
            headers: vec![("host".into(), "metadata.google.internal".into())],
            body: Vec::new(),
            client: "127.0.0.1:5000".into(),
        };
        let sign = |claims: &str| Ok(format!("header|{claims}|signature"));
        let env = Env {
            now_ms: 1_700_000_123_456,
            sign: &sign,
        };
        let answer = answer(&req, m, &env).unwrap();
        let Response::Leaf(leaf) = &answer.response else {
            panic!("{target}: not a leaf")
        };
        let body = String::from_utf8(leaf.body.clone()).unwrap();
        (
            answer.status.unwrap(),
            leaf.content_type.clone(),
            body,
            answer,
        )
    }

    fn ok(m: &Machine, target: &str) -> (String, String) {
        let (status, ct, body, _) = get(m, target);
        assert_eq!(status, 200, "{target}: {body}");
        (ct, body)
    }

    #[test]
    fn roots_and_listings_end_in_a_newline() {
        let m = machine("{}");
        assert_eq!(ok(&m, "/"), (TEXT.into(), "computeMetadata/\n".into()));
        assert_eq!(ok(&m, "computeMetadata/").1, "v1/\n");
        assert_eq!(
            ok(&m, &format!("{V1}/")).1,
            "instance/\nproject/\nuniverse/\n"
        );
        assert_eq!(
            ok(&m, &format!("{V1}/project/")).1,
            "attributes/\nnumeric-project-id\nproject-id\n"
        );
        let instance = ok(&m, &format!("{V1}/instance/")).1;
        assert!(
            instance.starts_with("attributes/\ncpu-platform\ndescription\ndisks/\nhostname\nid\n")
        );
        assert!(instance.ends_with("service-accounts/\ntags\nvirtual-clock/\nzone\n"));
        let accounts = ok(&m, &format!("{V1}/instance/service-accounts/")).1;
        assert_eq!(
            accounts,
            "123456789012-compute@developer.gserviceaccount.com/\ndefault/\n"
        );
        let account = ok(&m, &format!("{V1}/instance/service-accounts/default/")).1;
        assert_eq!(account, "aliases\nemail\nidentity\nscopes\ntoken\n");
        assert_eq!(ok(&m, &format!("{V1}/instance/attributes/")).1, "");
    }

    #[test]
    fn leaves_follow_the_ec2_facts_and_the_config() {
        let m = machine("{}");
        assert_eq!(ok(&m, &format!("{V1}/instance/id")).1, m.id.to_string());
        assert_eq!(m.id.to_string().len(), 19);
        assert_eq!(
            ok(&m, &format!("{V1}/instance/name")).1,
            "i-0123456789abcdef0"
        );
        let hostname = ok(&m, &format!("{V1}/instance/hostname")).1;
        assert_eq!(
            hostname,
            "i-0123456789abcdef0.us-central1-a.c.ersatz-project.internal"
        );
        let nic = format!("{V1}/instance/network-interfaces/0");
        assert_eq!(ok(&m, &format!("{nic}/ip")).1, "172.31.40.7");
        assert_eq!(ok(&m, &format!("{nic}/mac")).1, "0e:11:22:33:44:55");
        assert_eq!(ok(&m, &format!("{nic}/gateway")).1, "172.31.32.1");
        assert_eq!(ok(&m, &format!("{nic}/access-configs/")).1, "");
        assert_eq!(
            ok(&m, &format!("{V1}/instance/zone")).1,
            "projects/123456789012/zones/us-central1-a"
        );
        assert_eq!(
            ok(&m, &format!("{V1}/project/numeric-project-id?alt=json")),
            (JSON.into(), "123456789012".into())
        );
        assert_eq!(
            ok(&m, &format!("{V1}/project//project-id")).1,
            "ersatz-project"
        );
        assert_eq!(
            ok(&m, &format!("{V1}/universe/universe-domain")).1,
            "googleapis.com"
        );

        let m = machine(
            r#"{"instance":{"name":"web-1","id":42,"network_interface":{"external_ip":"34.1.2.3"}}}"#,
        );
        assert_eq!(ok(&m, &format!("{V1}/instance/id")).1, "42");
        assert_eq!(
            ok(
                &m,
                &format!("{V1}/instance/network-interfaces/0/access-configs/0/external-ip")
            )
            .1,
            "34.1.2.3"
        );
        assert_eq!(
            ok(&m, &format!("{V1}/instance/hostname")).1,
            "web-1.us-central1-a.c.ersatz-project.internal"
        );
    }

    #[test]
    fn leaf_formats() {
        let m = machine(r#"{"instance":{"tags":["a","b"]}}"#);
        let scopes = format!("{V1}/instance/service-accounts/default/scopes");
        assert_eq!(
            ok(&m, &scopes),
            (
                TEXT.into(),
                "https://www.googleapis.com/auth/cloud-platform\n".into()
            )
        );
        assert_eq!(
            ok(&m, &format!("{scopes}?alt=json")).1,
            r#"["https://www.googleapis.com/auth/cloud-platform"]"#
        );
        assert_eq!(
            ok(&m, &format!("{V1}/instance/tags")),
            (JSON.into(), r#"["a","b"]"#.into())
        );
        assert_eq!(
            ok(&m, &format!("{V1}/instance/tags?alt=text")),
            (TEXT.into(), "a\nb\n".into())
        );
        assert_eq!(
            ok(&m, &format!("{V1}/project/project-id?alt=json")).1,
            r#""ersatz-project""#
        );
        // recursive means nothing on a leaf; unknown and long-poll parameters are ignored.
        assert_eq!(
            ok(
                &m,
                &format!("{V1}/project/numeric-project-id?recursive=true")
            ),
            (TEXT.into(), "123456789012".into())
        );
        let polled = format!("{V1}/instance/scheduling/automatic-restart?wait_for_change=true&last_etag=abc&timeout_sec=5&foo=x");
        assert_eq!(ok(&m, &polled).1, "TRUE");
    }

    #[test]
    fn recursive_json_camel_cases_gce_names_only() {
        let m = machine(r#"{"project_attributes":{"ssh-keys":"k","my_key":"v"}}"#);
        let (ct, body) = ok(&m, &format!("{V1}/project/?recursive=true"));
        assert_eq!(ct, JSON);
        assert_eq!(
            body,
            r#"{"attributes":{"my_key":"v","ssh-keys":"k"},"numericProjectId":123456789012,"projectId":"ersatz-project"}"#
        );
        assert_eq!(
            ok(&m, &format!("{V1}/project/attributes/?recursive=True")).1,
            r#"{"my_key":"v","ssh-keys":"k"}"#
        );
        let account = ok(
            &m,
            &format!("{V1}/instance/service-accounts/default/?recursive=true"),
        )
        .1;
        let email = "123456789012-compute@developer.gserviceaccount.com";
        let expected = format!(
            r#"{{"aliases":["default"],"email":"{email}","scopes":["https://www.googleapis.com/auth/cloud-platform"]}}"#
        );
        assert_eq!(account, expected);
        let instance: serde_json::Value =
            serde_json::from_str(&ok(&m, &format!("{V1}/instance/?recursive=true")).1).unwrap();
        assert_eq!(
            instance["machineType"],
            "projects/123456789012/machineTypes/n2-standard-2"
        );
        assert_eq!(instance["networkInterfaces"][0]["ip"], "172.31.40.7");
        assert_eq!(
            instance["networkInterfaces"][0]["accessConfigs"],
            serde_json::json!([])
        );
        assert_eq!(instance["serviceAccounts"]["default"]["email"], email);
        assert!(instance["id"].is_u64());
        assert_eq!(instance["disks"][0]["deviceName"], "persistent-disk-0");
        let all: serde_json::Value = serde_json::from_str(&ok(&m, "/?recursive=true").1).unwrap();
        assert_eq!(
            all["computeMetadata"]["v1"]["universe"]["universeDomain"],
            "googleapis.com"
        );
    }

    #[test]
    fn recursive_text_keeps_dashes_and_repeats_lists() {
        let m = machine(r#"{"instance":{"attributes":{"user-data":"x"}}}"#);
        let text = ok(
            &m,
            &format!("{V1}/instance/service-accounts/default/?recursive=true&alt=text"),
        )
        .1;
        let email = "123456789012-compute@developer.gserviceaccount.com";
        assert_eq!(text, format!("aliases default\nemail {email}\nscopes https://www.googleapis.com/auth/cloud-platform\n"));
        let text = ok(&m, &format!("{V1}/instance/?recursive=true&alt=text")).1;
        assert!(
            text.contains("\nnetwork-interfaces/0/ip 172.31.40.7\n"),
            "{text}"
        );
        assert!(text.contains("\nmachine-type projects/"), "{text}");
        assert!(text.starts_with("attributes/user-data x\n"), "{text}");
    }

    #[test]
    fn directories_redirect_to_their_slash_keeping_the_query() {
        let m = machine("{}");
        let (status, _, _, answer) = get(&m, &format!("{V1}/instance?recursive=true"));
        assert_eq!(status, 301);
        let location =
            "http://metadata.google.internal/computeMetadata/v1/instance/?recursive=true";
        assert_eq!(
            answer.headers,
            vec![("location".to_string(), location.to_string())]
        );
        assert_eq!(answer.max_age, 0);
        assert_eq!(get(&m, "computeMetadata").0, 301);
    }

    #[test]
    fn errors() {
        let m = machine("{}");
        let (status, ct, body, _) = get(&m, &format!("{V1}/project/bar"));
        assert_eq!((status, ct.as_str()), (404, HTML));
        assert!(body.contains("<code>/computeMetadata/v1/project/bar</code> was not found"));
        assert_eq!(
            get(&m, &format!("{V1}/instance/virtual-clock/drift-token/")).0,
            404
        );
        assert_eq!(
            get(
                &m,
                &format!("{V1}/instance/service-accounts/default/token/")
            )
            .0,
            404
        );
        assert_eq!(
            get(&m, &format!("{V1}/instance/service-accounts/nobody/email")).0,
            404
        );
        assert_eq!(get(&m, &format!("{V1}/instance/disks/01")).0, 404);
        assert_eq!(get(&m, &format!("{V1}/instance/scopes/0")).0, 404);
        assert_eq!(get(&m, &format!("{V1}/project/?alt=json")).0, 400);
        assert_eq!(
            request(&m, "POST", &format!("{V1}/project/project-id")).0,
            405
        );
        let (status, _, body, _) = get(
            &m,
            &format!("{V1}/instance/service-accounts/default/identity"),
        );
        assert_eq!(
            (status, body.as_str()),
            (400, "non-empty audience parameter required\n")
        );
    }

    #[test]
    fn token_counts_down_and_renders_as_text() {
        let m = machine(
            r#"{"service_accounts":[{"token":"ya29.one"},{"email":"b@p.iam.gserviceaccount.com","token":"ya29.two"}]}"#,
        );
        let (ct, body) = ok(
            &m,
            &format!("{V1}/instance/service-accounts/default/token?scopes=a,b"),
        );
        assert_eq!(ct, JSON);
        let token: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(token["access_token"], "ya29.one");
        assert_eq!(token["token_type"], "Bearer");
        assert_eq!(token["expires_in"], tokens::expires_in(1_700_000_123_456));
        let other = ok(
            &m,
            &format!("{V1}/instance/service-accounts/b@p.iam.gserviceaccount.com/token?alt=text"),
        )
        .1;
        assert!(
            other.starts_with("access_token ya29.two\nexpires_in "),
            "{other}"
        );
        assert_eq!(
            request(
                &m,
                "POST",
                &format!("{V1}/instance/service-accounts/default/token")
            )
            .0,
            200
        );
        for now in [0, 299_999, 3_299_999, 3_300_000, 9_999_999_999] {
            assert!((300..=3599).contains(&tokens::expires_in(now)));
        }
    }

    #[test]
    fn identity_claims_follow_the_format() {
        let m = machine(r#"{"instance":{"licenses":["123"]}}"#);
        let path = format!("{V1}/instance/service-accounts/default/identity");
        let claims = |target: &str| -> serde_json::Value {
            let (ct, jwt) = ok(&m, target);
            assert_eq!(ct, HTML);
            serde_json::from_str(jwt.split('|').nth(1).unwrap()).unwrap()
        };
        let standard = claims(&format!("{path}?audience=https%3A%2F%2Fexample.com%2Fx"));
        assert_eq!(standard["aud"], "https://example.com/x");
        assert_eq!(standard["iss"], "https://accounts.google.com");
        assert_eq!(standard["sub"], standard["azp"]);
        assert_eq!(
            standard["exp"].as_u64().unwrap(),
            standard["iat"].as_u64().unwrap() + 3600
        );
        assert!(standard.get("email").is_none() && standard.get("google").is_none());
        let full = claims(&format!("{path}?audience=a&format=full&licenses=TRUE"));
        assert_eq!(
            full["email"],
            "123456789012-compute@developer.gserviceaccount.com"
        );
        assert_eq!(full["email_verified"], true);
        let gce = &full["google"]["compute_engine"];
        assert_eq!(gce["project_id"], "ersatz-project");
        assert_eq!(gce["project_number"], 123456789012u64);
        assert_eq!(gce["zone"], "us-central1-a");
        assert_eq!(gce["instance_id"], m.id.to_string());
        assert_eq!(gce["instance_name"], "i-0123456789abcdef0");
        assert_eq!(gce["instance_creation_timestamp"], 1_704_067_200u64);
        assert_eq!(gce["license_id"], serde_json::json!(["123"]));
    }

    #[test]
    fn static_answers_may_be_reused_the_rest_not() {
        let m = machine("{}");
        assert_eq!(
            get(&m, &format!("{V1}/project/project-id")).3.max_age,
            STATIC
        );
        assert_eq!(
            get(&m, &format!("{V1}/project/project-id?alt=text"))
                .3
                .max_age,
            NEVER
        );
        assert_eq!(
            get(&m, &format!("{V1}/instance/service-accounts/default/token"))
                .3
                .max_age,
            NEVER
        );
    }
}
