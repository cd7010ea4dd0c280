//! Credentials: STS roles through every offline-testable source kind, with
//! moto in server mode as STS (never a mock of ours), single-flight, refresh
//! and outage behaviour, finto's and mmds's APIs, the ECS endpoint and
//! `ersatz exec`, and no secret in any log.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_credential_types::provider::ProvideCredentials;
use common::{ersatz, metric, python, run_python, send, Ersatz, FaultProxy, Moto};
use http::{Method, StatusCode};
use serde_json::Value;

const ACCOUNT: &str = "123456789012";
const CALLER_SECRET: &str = "callerSecretKeyThatMustNeverBeLogged000001";

fn arn(role: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{role}")
}

/// A static caller source and a role `web` assumed through STS at `sts`.
fn static_role_config(sts: &str) -> String {
    format!(
        r#"
default_role = "web"

[sources.caller]
type = "static"
access_key_id = "AKIACALLEREXAMPLE001"
secret_access_key = "{CALLER_SECRET}"

[roles.web]
arn = "{}"
source = "caller"
sts_endpoint = "{sts}"
"#,
        arn("web")
    )
}

/// boto3 finds the role through IMDS and moto says who that is.
fn boto3_identity(server: &Ersatz, moto: &Moto) -> Value {
    let script = "import boto3, json, sys\n\
        s = boto3.Session(region_name='us-east-1')\n\
        c = s.get_credentials()\n\
        f = c.get_frozen_credentials()\n\
        arn = s.client('sts', endpoint_url=sys.argv[1]).get_caller_identity()['Arn']\n\
        print(json.dumps({'method': c.method, 'key': f.access_key, 'arn': arn}))";
    let out = run_python(
        &python(),
        &["-c", script, &moto.url],
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &server.url)],
    );
    serde_json::from_str(out.trim()).unwrap()
}

async fn aws_config_credentials(server: &Ersatz) -> aws_credential_types::Credentials {
    // The SDK's 1 s read timeout, on 2 loaded cores, can be shorter than the
    // first AssumeRole against a just-started moto; what is tested here is
    // what the SDK reads, not how fast moto answers.
    let client = common::imds_client(&server.url)
        .read_timeout(Duration::from_secs(5))
        .build();
    ImdsCredentialsProvider::builder()
        .imds_client(client)
        .build()
        .provide_credentials()
        .await
        .expect("credentials through IMDS")
}

async fn document(server: &Ersatz, alias: &str) -> Value {
    server
        .get(&format!(
            "/latest/meta-data/iam/security-credentials/{alias}"
        ))
        .await
        .json()
}

fn assert_assumed(identity: &Value, role: &str, session: &str) {
    assert_eq!(identity["method"], "iam-role");
    assert!(
        identity["key"].as_str().unwrap().starts_with("ASIA"),
        "{identity}"
    );
    assert_eq!(
        identity["arn"],
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}"),
        "{identity}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn static_source_role_is_assumed_and_served_to_aws_config_and_boto3() {
    let moto = Moto::start();
    let server = Ersatz::with_toml(&static_role_config(&moto.url));
    let rust = aws_config_credentials(&server).await;
    assert!(rust.access_key_id().starts_with("ASIA"));
    assert!(rust.expiry().unwrap() > std::time::SystemTime::now() + Duration::from_secs(1800));
    let identity = boto3_identity(&server, &moto);
    assert_assumed(&identity, "web", "ersatz-web");
    assert_eq!(
        identity["key"],
        rust.access_key_id(),
        "one cached set of credentials"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn profile_source_reads_a_credentials_file() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!("[default]\naws_access_key_id = AKIAWRONGPROFILE0001\naws_secret_access_key = x\n\n[dev]\naws_access_key_id = AKIADEVPROFILE000001\naws_secret_access_key = {CALLER_SECRET}\n"),
    )
    .unwrap();
    let server = Ersatz::with_toml(&format!(
        r#"
[sources.me]
type = "profile"
file = "{}"
profile = "dev"

[roles.ops]
arn = "{}"
source = "me"
session_name = "alice"
sts_endpoint = "{}"
"#,
        file.display(),
        arn("ops"),
        moto.url
    ));
    assert_assumed(&boto3_identity(&server, &moto), "ops", "alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn assume_role_source_chains_from_a_profile() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        "[default]\naws_access_key_id = AKIABASEPROFILE00001\naws_secret_access_key = s\n",
    )
    .unwrap();
    let server = Ersatz::with_toml(&format!(
        r#"
[sources.base]
type = "profile"
file = "{file}"

[sources.jump]
type = "assume-role"
caller = "base"
arn = "{jump}"
sts_endpoint = "{sts}"

[roles.target]
arn = "{target}"
source = "jump"
sts_endpoint = "{sts}"
"#,
        file = file.display(),
        jump = arn("jump"),
        target = arn("target"),
        sts = moto.url
    ));
    assert_assumed(&boto3_identity(&server, &moto), "target", "ersatz-target");
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_lifecycle_like_mmds_but_without_its_crashes() {
    let moto = Moto::start();
    let server = Ersatz::with_toml(&format!(
        r#"
[sources.posted]
type = "bootstrap"

[roles.daemon]
arn = "{}"
source = "posted"
sts_endpoint = "{}"
"#,
        arn("daemon"),
        moto.url
    ));
    let admin = |method: Method, path: &'static str, body: &'static str| {
        let url = server.admin_url.clone();
        async move { post_json(&url, method, path, body).await }
    };
    // Before: not valid, and the role path answers the Failure document.
    assert_eq!(admin(Method::GET, "/status", "").await.1, "false\n");
    let before = document(&server, "daemon").await;
    assert_eq!(before["Code"], "Failure");
    assert!(
        before["Message"].as_str().unwrap().contains("bootstrap"),
        "{before}"
    );

    // Write-only, and a bad body is refused with a reason.
    assert_eq!(
        admin(Method::GET, "/bootstrap/creds", "").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let (status, body) = admin(Method::POST, "/bootstrap/creds", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("error"), "{body}");
    let (status, body) = admin(
        Method::POST,
        "/bootstrap/creds",
        r#"{"AccessKeyId":"AKIABOOT000000000001"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("SecretAccessKey"), "{body}");
    assert_eq!(admin(Method::GET, "/status", "").await.1, "false\n");

    // Then: assumed at once, served, and accepted by STS.
    let (status, body) = admin(
        Method::POST,
        "/bootstrap/creds",
        r#"{"AccessKeyId":"AKIABOOT000000000001","SecretAccessKey":"bootSecretNeverLogged0000000000000000001","Token":""}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["assumed"], true, "{answer}");
    assert_eq!(admin(Method::GET, "/status", "").await.1, "true\n");
    assert_eq!(document(&server, "daemon").await["Code"], "Success");
    assert_assumed(&boto3_identity(&server, &moto), "daemon", "ersatz-daemon");
    assert!(!server.stderr().contains("bootSecretNeverLogged"));
}

async fn post_json(base: &str, method: Method, path: &str, body: &str) -> (StatusCode, String) {
    let reply = common::send_body(base, method, path, &[], body).await;
    (
        reply.status,
        String::from_utf8_lossy(&reply.body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_cold_requests_make_one_assume_role_call() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url);
    // `cold` is not the active role, so nothing fetches it ahead of time.
    let server = Ersatz::with_toml(&format!(
        r#"
default_role = "warm"

[sources.caller]
type = "static"
access_key_id = "AKIACALLEREXAMPLE001"
secret_access_key = "s"

[roles.warm]
source = "caller"

[roles.cold]
arn = "{}"
source = "caller"
sts_endpoint = "{}"
"#,
        arn("cold"),
        proxy.url
    ));
    let url = server.url.clone();
    let requests: Vec<_> = (0..1000)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                send(
                    &url,
                    Method::GET,
                    "/latest/meta-data/iam/security-credentials/cold",
                    &[],
                )
                .await
                .json()["AccessKeyId"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        })
        .collect();
    let mut keys = std::collections::BTreeSet::new();
    for request in requests {
        keys.insert(request.await.unwrap());
    }
    assert_eq!(
        keys.len(),
        1,
        "every request got the same credentials: {keys:?}"
    );
    assert_eq!(proxy.assume_calls(), 1);
}

fn parse_time(value: &Value) -> std::time::SystemTime {
    let at = time::OffsetDateTime::parse(
        value.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    std::time::UNIX_EPOCH + Duration::from_secs(at.unix_timestamp() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_before_expiry_and_rides_out_an_sts_outage() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url);
    // 6-second credentials refreshed 3 seconds before they expire.
    let server = Ersatz::with_toml(&format!(
        "{}duration = \"6s\"\n\n[credentials]\nrefresh_margin = \"3s\"\n",
        static_role_config(&proxy.url)
    ));
    let first = document(&server, "web").await;
    assert_eq!(first["Code"], "Success");
    let first_expiry = parse_time(&first["Expiration"]);

    // Replaced in the background while the first set is still valid.
    let mut second = first.clone();
    while second["AccessKeyId"] == first["AccessKeyId"] {
        assert!(
            std::time::SystemTime::now() < first_expiry,
            "not refreshed before expiry"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        second = document(&server, "web").await;
    }
    assert_eq!(second["Code"], "Success");
    let second_expiry = parse_time(&second["Expiration"]);
    assert!(second_expiry > first_expiry);

    // STS goes away: the last good set is served until it expires…
    proxy.set_down(true);
    let mut requests_during_outage = 0;
    while std::time::SystemTime::now() + Duration::from_millis(500) < second_expiry {
        let now = document(&server, "web").await;
        assert_eq!(now["Code"], "Success", "{now}");
        assert_eq!(now["AccessKeyId"], second["AccessKeyId"]);
        requests_during_outage += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // …then the Failure document, and /status tells the truth.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let failed = document(&server, "web").await;
    assert_eq!(failed["Code"], "Failure", "{failed}");
    assert!(
        failed["Message"].as_str().unwrap().contains("AssumeRole"),
        "{failed}"
    );
    let (_, status) = post_json(&server.admin_url, Method::GET, "/status", "").await;
    assert_eq!(status, "false\n");
    // The background refresh retried with backoff; requests did not each
    // try STS (the SDK makes up to 3 attempts per call).
    let attempts = proxy.refused();
    assert!(attempts > 0, "the refresher kept trying");
    assert!(
        attempts < 3 * 8 && attempts < 3 * requests_during_outage,
        "{attempts} attempts to reach STS for {requests_during_outage} requests"
    );

    // STS back: recovery without anyone restarting anything.
    proxy.set_down(false);
    let mut recovered = failed;
    for _ in 0..100 {
        recovered = document(&server, "web").await;
        if recovered["Code"] == "Success" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(recovered["Code"], "Success", "{recovered}");
    assert_ne!(recovered["AccessKeyId"], second["AccessKeyId"]);
    assert!(server
        .stderr()
        .contains("refresh failed; serving the last good credentials"));
    // Never role chaining: every AssumeRole, first, refreshes and the
    // recovery, was signed with the source's key, not a role's ASIA… key.
    let signers = proxy.assume_signers();
    assert!(signers.len() >= 3, "{signers:?}");
    assert!(
        signers.iter().all(|key| key == "AKIACALLEREXAMPLE001"),
        "{signers:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fintorc_is_accepted_and_finto_routes_answer_byte_for_byte() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        "[finto]\naws_access_key_id = AKIAFINTO00000000001\naws_secret_access_key = s\n",
    )
    .unwrap();
    let fintorc = format!(
        r#"{{
  "credentials": {{"file": "{}", "profile": "finto"}},
  "roles": {{"dev": "{}", "prod": "{}"}},
  "default_role": "dev"
}}"#,
        credentials.display(),
        arn("dev"),
        arn("prod")
    );
    let server = Ersatz::builder()
        .config(".fintorc", &fintorc)
        .env("AWS_ENDPOINT_URL_STS", &moto.url)
        .start();
    for base in [&server.url, &server.admin_url] {
        let call = |method: Method, path: &'static str, body: &'static str| {
            post_json(base, method, path, body)
        };
        assert_eq!(
            call(Method::GET, "/roles", "").await,
            (StatusCode::OK, "{\"roles\":[\"dev\",\"prod\"]}\n".into())
        );
        assert_eq!(
            call(Method::GET, "/roles?status=active", "").await.1,
            "{\"roles\":[\"dev\"]}\n"
        );
        assert_eq!(
            call(Method::GET, "/roles/prod", "").await.1,
            format!(
                "{{\"arn\":\"{}\",\"session_name\":\"ersatz-prod\"}}\n",
                arn("prod")
            )
        );
        let (status, body) = call(Method::PUT, "/roles", "{\"alias\":\"nope\"}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
        let (status, body) = call(Method::PUT, "/roles", "not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
        let credentials: Value =
            serde_json::from_str(&call(Method::GET, "/roles/dev/credentials", "").await.1).unwrap();
        assert_eq!(credentials["Code"], "Success");
    }
    // Switching roles switches what IMDS serves, and leaks nothing across.
    let dev = document(&server, "dev").await;
    let (status, body) =
        post_json(&server.url, Method::PUT, "/roles", "{\"alias\":\"prod\"}").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "{\"active_role\":\"prod\"}\n")
    );
    assert_eq!(
        server
            .get("/latest/meta-data/iam/security-credentials/")
            .await
            .text(),
        "prod"
    );
    assert_assumed(&boto3_identity(&server, &moto), "prod", "ersatz-prod");
    let prod = document(&server, "prod").await;
    assert_ne!(dev["AccessKeyId"], prod["AccessKeyId"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_path_can_be_rebound_to_another_source_at_run_time() {
    let server = Ersatz::with_toml(
        r#"
[sources.one]
type = "static"
access_key_id = "AKIAONE0000000000001"
secret_access_key = "s1"

[sources.two]
type = "static"
access_key_id = "AKIATWO0000000000002"
secret_access_key = "s2"

[roles.app]
source = "one"
"#,
    );
    assert_eq!(
        document(&server, "app").await["AccessKeyId"],
        "AKIAONE0000000000001"
    );
    let (status, body) = post_json(
        &server.admin_url,
        Method::PUT,
        "/roles/app/source",
        r#"{"source":"two"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        document(&server, "app").await["AccessKeyId"],
        "AKIATWO0000000000002"
    );
    let (status, _) = post_json(
        &server.admin_url,
        Method::PUT,
        "/roles/app/source",
        r#"{"source":"three"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        document(&server, "app").await["AccessKeyId"],
        "AKIATWO0000000000002"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn role_cli_talks_to_a_running_server() {
    let server = Ersatz::with_toml(
        r#"
default_role = "a"
[sources.s]
type = "static"
access_key_id = "AKIAEXAMPLE000000001"
secret_access_key = "s"
[roles.a]
source = "s"
[roles.b]
source = "s"
"#,
    );
    let env = [("ERSATZ_ADMIN_URL", server.admin_url.as_str())];
    let list = ersatz(&["role", "list"], &env);
    assert!(list.status.success());
    assert_eq!(String::from_utf8_lossy(&list.stdout), "* a\n  b\n");
    assert!(ersatz(&["role", "use", "b"], &env).status.success());
    assert_eq!(
        server
            .get("/latest/meta-data/iam/security-credentials/")
            .await
            .text(),
        "b"
    );
    let show = ersatz(&["role", "show", "b"], &env);
    assert!(String::from_utf8_lossy(&show.stdout).contains("source:       s"));
    let unknown = ersatz(&["role", "use", "zzz"], &env);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no role named"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_cli_posts_keys_from_the_environment() {
    let moto = Moto::start();
    let server = Ersatz::with_toml(&format!(
        "[sources.posted]\ntype = \"bootstrap\"\n\n[roles.daemon]\narn = \"{}\"\nsource = \"posted\"\nsts_endpoint = \"{}\"\n",
        arn("daemon"),
        moto.url
    ));
    let output = ersatz(
        &["bootstrap"],
        &[
            ("ERSATZ_ADMIN_URL", &server.admin_url),
            ("AWS_ACCESS_KEY_ID", "AKIABOOTCLI000000001"),
            ("AWS_SECRET_ACCESS_KEY", "cliSecret"),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(document(&server, "daemon").await["Code"], "Success");
}

#[test]
fn exec_hands_a_command_container_credentials() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ersatz.toml");
    std::fs::write(&config, static_role_config(&moto.url)).unwrap();
    let developer_keys = dir.path().join("credentials");
    std::fs::write(
        &developer_keys,
        "[default]\naws_access_key_id = AKIADEVELOPERSOWNKEY\naws_secret_access_key = y\n",
    )
    .unwrap();
    let script = "import boto3, json, os, sys\n\
        s = boto3.Session(region_name='us-east-1')\n\
        c = s.get_credentials()\n\
        arn = s.client('sts', endpoint_url=sys.argv[1]).get_caller_identity()['Arn']\n\
        print(json.dumps({'method': c.method, 'arn': arn, 'uri': os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI']}))\n\
        sys.exit(7)";
    let python = python();
    let output = ersatz(
        &[
            "exec",
            "--config",
            config.to_str().unwrap(),
            "--",
            python.to_str().unwrap(),
            "-c",
            script,
            &moto.url,
        ],
        &[
            // Everything a developer's own setup could slip in ahead of the
            // container endpoint: keys, a profile, a credentials file.
            ("AWS_ACCESS_KEY_ID", "AKIASHOULDBEREMOVED1"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("AWS_PROFILE", "default"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                developer_keys.to_str().unwrap(),
            ),
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(7),
        "exit code passed through; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(got["method"], "container-role");
    assert_eq!(
        got["arn"],
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/web/ersatz-web")
    );
    assert!(got["uri"].as_str().unwrap().ends_with("/ecs/web"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ecs_endpoint_requires_its_token() {
    let server = Ersatz::start();
    let ecs = post_json(&server.admin_url, Method::GET, "/ecs", "")
        .await
        .1;
    let ecs: Value = serde_json::from_str(&ecs).unwrap();
    let endpoint = &ecs["roles"]["ersatz-default"];
    let token = endpoint["token"].as_str().unwrap();
    let url = endpoint["urls"][0].as_str().unwrap();
    let path = &url[url.find("/ecs/").unwrap()..];
    assert_eq!(server.get(path).await.status, StatusCode::UNAUTHORIZED);
    let wrong = server
        .request(Method::GET, path, &[("Authorization", "guess")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let right = server
        .request(Method::GET, path, &[("Authorization", token)])
        .await;
    assert_eq!(right.status, StatusCode::OK);
    assert_eq!(right.json()["AccessKeyId"], "ASIAERSATZFAKEKEY000");
}

#[test]
fn credential_config_mistakes_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (contents, key, reason) in [
        ("[sources.s]\ntype = \"static\"\naccess_key_id = \"A\"\nsecret_access_key = \"s\"\n[roles.r]\nsource = \"s\"\narn = \"role/x\"\n", "roles.r.arn", "not a role ARN"),
        ("[sources.s]\ntype = \"static\"\naccess_key_id = \"A\"\nsecret_access_key = \"s\"\n[roles.r]\nsource = \"s\"\narn = \"arn:aws:iam::1:role/x\"\nduration = \"13h\"\n", "roles.r.duration", "at most 12h"),
        ("[sources.s]\ntype = \"static\"\naccess_key_id = \"A\"\nsecret_access_key = \"s\"\n[roles.r]\nsource = \"s\"\nsesion_name = \"typo\"\n", "roles.r.sesion_name", "unknown key"),
        ("[sources.a]\ntype = \"assume-role\"\ncaller = \"b\"\narn = \"arn:aws:iam::1:role/a\"\n[sources.b]\ntype = \"assume-role\"\ncaller = \"a\"\narn = \"arn:aws:iam::1:role/b\"\n", "sources.a.caller", "cycle"),
        ("[sources.a]\ntype = \"assume-role\"\ncaller = \"missing\"\narn = \"arn:aws:iam::1:role/a\"\n", "sources.a.caller", "no source named"),
        ("[credentials]\nrefresh_margin = \"soon\"\n", "credentials.refresh_margin", "not a duration"),
    ] {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, contents).unwrap();
        let output = ersatz(&["config", "check", "--config", path.to_str().unwrap()], &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{contents}: {stderr}");
        assert!(
            stderr.contains(path.to_str().unwrap()) && stderr.contains(&format!("`{key}`")) && stderr.contains(reason),
            "names the file, {key} and why: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_the_logs_at_any_level() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url);
    let config = format!(
        "{}\n[roles.other]\narn = \"{}\"\nsource = \"caller\"\nsts_endpoint = \"{}\"\n",
        static_role_config(&proxy.url),
        arn("other"),
        proxy.url
    );
    let server = Ersatz::builder()
        .config("ersatz.toml", &config)
        .env("ERSATZ_LOG", "trace")
        .start();
    let served = document(&server, "web").await;
    proxy.set_down(true);
    assert_eq!(document(&server, "other").await["Code"], "Failure");
    let (_, _) = post_json(&server.admin_url, Method::GET, "/status", "").await;
    drop(proxy);
    let logs = server.stderr();
    assert!(
        logs.contains("credentials obtained"),
        "the logs were captured at trace level"
    );
    for secret in [
        CALLER_SECRET,
        served["SecretAccessKey"].as_str().unwrap(),
        served["Token"].as_str().unwrap(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
}

/// Against real AWS, like finto's `make testall`: runs only when
/// ERSATZ_TEST_ROLE_ARN and ERSATZ_TEST_INVALID_ROLE_ARN are set (with
/// source credentials in the environment's default chain).
#[tokio::test(flavor = "multi_thread")]
async fn real_aws_roles_when_configured() {
    let (Ok(valid), Ok(invalid)) = (
        std::env::var("ERSATZ_TEST_ROLE_ARN"),
        std::env::var("ERSATZ_TEST_INVALID_ROLE_ARN"),
    ) else {
        eprintln!("skipped: set ERSATZ_TEST_ROLE_ARN and ERSATZ_TEST_INVALID_ROLE_ARN to run against real AWS");
        return;
    };
    let server = Ersatz::with_toml(&format!(
        "default_role = \"valid\"\n[sources.me]\ntype = \"chain\"\n[roles.valid]\narn = \"{valid}\"\nsource = \"me\"\n[roles.invalid]\narn = \"{invalid}\"\nsource = \"me\"\n"
    ));
    assert_eq!(document(&server, "valid").await["Code"], "Success");
    assert_eq!(document(&server, "invalid").await["Code"], "Failure");
}

#[test]
fn exec_can_use_a_running_server() {
    let moto = Moto::start();
    let server = Ersatz::with_toml(&static_role_config(&moto.url));
    let script = "import boto3, json, sys\n\
        s = boto3.Session(region_name='us-east-1')\n\
        print(json.dumps({'method': s.get_credentials().method, \
        'arn': s.client('sts', endpoint_url=sys.argv[1]).get_caller_identity()['Arn']}))";
    let python = python();
    let output = ersatz(
        &[
            "exec",
            "--admin",
            &server.admin_url,
            "--",
            python.to_str().unwrap(),
            "-c",
            script,
            &moto.url,
        ],
        &[
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(got["method"], "container-role");
    assert_eq!(
        got["arn"],
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/web/ersatz-web")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chain_source_takes_keys_from_the_environment() {
    let moto = Moto::start();
    let server = Ersatz::builder()
        .config(
            "ersatz.toml",
            &format!(
                "[sources.env]\ntype = \"chain\"\n\n[roles.ci]\narn = \"{}\"\nsource = \"env\"\nsts_endpoint = \"{}\"\n",
                arn("ci"),
                moto.url
            ),
        )
        .env("AWS_ACCESS_KEY_ID", "AKIAFROMENVIRONMENT1")
        .env("AWS_SECRET_ACCESS_KEY", CALLER_SECRET)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .start();
    assert_assumed(&boto3_identity(&server, &moto), "ci", "ersatz-ci");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_client_roles_from_several_loopback_addresses_fail_closed() {
    let server = Ersatz::with_toml(
        r#"
default_role = "a"

[sources.one]
type = "static"
access_key_id = "AKIAONE0000000000001"
secret_access_key = "s1"

[sources.two]
type = "static"
access_key_id = "AKIATWO0000000000002"
secret_access_key = "s2"

[roles.a]
source = "one"

[roles.b]
source = "two"

[[clients]]
cidr = "127.0.0.2/32"
role = "a"

[[clients]]
cidr = "127.0.0.3"
role = "b"
"#,
    );
    let listing = "/latest/meta-data/iam/security-credentials/";
    for (source, role, key, other) in [
        ("127.0.0.2", "a", "AKIAONE0000000000001", "b"),
        ("127.0.0.3", "b", "AKIATWO0000000000002", "a"),
    ] {
        assert_eq!(
            common::send_from(source, &server.url, listing).await.text(),
            role,
            "{source}"
        );
        let document = common::send_from(source, &server.url, &format!("{listing}{role}"))
            .await
            .json();
        assert_eq!(document["AccessKeyId"], key, "{source}");
        let info = common::send_from(source, &server.url, "/latest/meta-data/iam/info")
            .await
            .json();
        assert!(info["InstanceProfileArn"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{role}")));
        // Another client's role is not there for this one, however the
        // path is written.
        for path in [
            format!("{listing}{other}"),
            format!("/2021-07-15/meta-data/iam/security-credentials/{other}"),
            format!("/1.0/meta-data/iam/security-credentials/{other}/"),
            format!("//latest//meta-data/iam//security-credentials//{other}"),
        ] {
            for method in [Method::GET, Method::HEAD] {
                let foreign =
                    common::send_from_as(source, &server.url, method.clone(), &path).await;
                assert_eq!(
                    foreign.status,
                    StatusCode::NOT_FOUND,
                    "{source} reading {other} as {method} {path}"
                );
            }
        }
    }
    // A client no rule names gets no credentials at all: nothing of iam/.
    for path in [
        "/latest/meta-data/iam",
        "/latest/meta-data/iam/",
        listing,
        "/latest/meta-data/iam/security-credentials/a",
        "/latest/meta-data/iam/security-credentials/b",
        "/2016-09-02/meta-data/iam/security-credentials/a",
        "/latest/meta-data/iam/info",
    ] {
        for method in [Method::GET, Method::HEAD] {
            let reply = common::send_from_as("127.0.0.1", &server.url, method.clone(), path).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
        }
    }
    // finto's routes hand any client any role: refused with [[clients]].
    let dir = tempfile::tempdir().unwrap();
    let both = dir.path().join("both.toml");
    std::fs::write(
        &both,
        "[server]\nfinto_routes = true\n[[clients]]\ncidr = \"127.0.0.2\"\nrole = \"ersatz-default\"\n",
    )
    .unwrap();
    let refused = ersatz(
        &["config", "check", "--config", both.to_str().unwrap()],
        &[],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("finto_routes"));
    assert_eq!(
        common::send_from("127.0.0.1", &server.url, "/latest/meta-data/instance-id")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_tokens_sts_calls_and_cache_hits() {
    let moto = Moto::start();
    let server = Ersatz::with_toml(&static_role_config(&moto.url));
    server.token().await;
    for _ in 0..3 {
        assert_eq!(document(&server, "web").await["Code"], "Success");
    }
    let forged = server
        .request(
            Method::GET,
            "/latest/meta-data/",
            &[("X-aws-ec2-metadata-token", "forged")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let reply = common::send(&server.admin_url, Method::GET, "/metrics", &[]).await;
    assert!(reply.header("content-type").starts_with("text/plain"));
    let text = reply.text();
    assert_eq!(
        metric(&text, "ersatz_sts_calls_total"),
        1,
        "one AssumeRole for four reads"
    );
    assert_eq!(
        metric(&text, "ersatz_role_sts_calls_total{role=\"web\"}"),
        1
    );
    assert_eq!(metric(&text, "ersatz_sts_errors_total"), 0);
    assert_eq!(
        metric(
            &text,
            "ersatz_sts_call_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        1,
        "the one call is in the latency histogram"
    );
    assert_eq!(metric(&text, "ersatz_sts_call_duration_seconds_count"), 1);
    assert!(metric(&text, "ersatz_credential_cache_hits_total") >= 2);
    assert_eq!(metric(&text, "ersatz_tokens_issued_total"), 1);
    assert_eq!(metric(&text, "ersatz_tokens_rejected_total"), 1);
    assert_eq!(
        metric(
            &text,
            "ersatz_requests_total{route=\"credentials\",status=\"200\"}"
        ),
        3
    );
    assert_eq!(
        metric(
            &text,
            "ersatz_requests_total{route=\"token\",status=\"200\"}"
        ),
        1
    );
}

/// Credentials through an STS that turns `fault`: the last good set until it
/// expires, then the Failure document promptly (no request hangs on the
/// faulty STS), `/status` telling the truth, and recovery after.
async fn rides_out(fault: common::Fault) {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url);
    let server = Ersatz::with_toml(&format!(
        "{}duration = \"6s\"\n\n[credentials]\nrefresh_margin = \"3s\"\n",
        static_role_config(&proxy.url)
    ));
    let status = |server: &Ersatz| {
        let url = server.admin_url.clone();
        async move { post_json(&url, Method::GET, "/status", "").await.1 }
    };
    let good = document(&server, "web").await;
    let expiry = parse_time(&good["Expiration"]);
    proxy.set_fault(fault);
    while std::time::SystemTime::now() + Duration::from_millis(500) < expiry {
        let now = document(&server, "web").await;
        assert_eq!(now["AccessKeyId"], good["AccessKeyId"], "{fault:?}: {now}");
        assert_eq!(status(&server).await, "true\n");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let started = std::time::Instant::now();
    let failed = tokio::time::timeout(Duration::from_secs(6), document(&server, "web"))
        .await
        .unwrap_or_else(|_| panic!("{fault:?}: a request hung on the faulty STS"));
    assert_eq!(failed["Code"], "Failure", "{fault:?}: {failed}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{fault:?}: answered promptly"
    );
    assert_eq!(status(&server).await, "false\n");

    proxy.set_fault(common::Fault::None);
    let mut recovered = failed;
    for _ in 0..160 {
        recovered = document(&server, "web").await;
        if recovered["Code"] == "Success" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(recovered["Code"], "Success", "{fault:?}: {recovered}");
    assert_eq!(status(&server).await, "true\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sts_neither_stalls_requests_nor_loses_valid_credentials() {
    rides_out(common::Fault::Slow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_sts_neither_stalls_requests_nor_loses_valid_credentials() {
    rides_out(common::Fault::Throttle).await;
}

/// The resident set of `pid`; a reading that cannot be taken fails the
/// test, since a 0 would pass any bound.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// How much the server's RSS may grow from the first refresh to the end of
/// the soak: a few MiB of allocator slack, far below what a leak of one
/// buffer per request (hundreds of thousands of them) would add.
const SOAK_RSS_GROWTH_KIB: u64 = 4 * 1024;

/// The soak: several clients (v2 with tokens, v1, credentials, identity)
/// for `ERSATZ_SOAK_MINUTES` (15 s in the test run), sessions refreshing
/// throughout (15-minute sessions from a 30-minute soak up), and STS down for
/// a stretch in the middle. Zero failed requests, and no memory growth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_load_through_an_sts_outage() {
    let minutes: f64 = std::env::var("ERSATZ_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0.25);
    let total = Duration::from_secs_f64(minutes * 60.0);
    let session = if minutes >= 30.0 {
        Duration::from_secs(15 * 60)
    } else {
        (total / 6).max(Duration::from_secs(8))
    };
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url);
    let server = Ersatz::with_toml(&format!(
        "{}duration = \"{}s\"\n\n[credentials]\nrefresh_margin = \"{}s\"\n",
        static_role_config(&proxy.url),
        session.as_secs(),
        session.as_secs() / 3
    ));
    let deadline = std::time::Instant::now() + total;
    let requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clients: Vec<_> = (0..4)
        .map(|kind| {
            let (url, requests, failures) =
                (server.url.clone(), requests.clone(), failures.clone());
            tokio::spawn(async move {
                // Like the SDKs, client 0 renews its token before it expires.
                let mut token = String::new();
                let mut token_renewal = std::time::Instant::now();
                while std::time::Instant::now() < deadline {
                    let ok = match kind {
                        0 => {
                            if std::time::Instant::now() >= token_renewal {
                                token = common::send(
                                    &url,
                                    Method::PUT,
                                    "/latest/api/token",
                                    &[("X-aws-ec2-metadata-token-ttl-seconds", "900")],
                                )
                                .await
                                .text();
                                token_renewal =
                                    std::time::Instant::now() + Duration::from_secs(900 - 60);
                            }
                            let reply = common::send(
                                &url,
                                Method::GET,
                                "/latest/meta-data/iam/security-credentials/web",
                                &[("X-aws-ec2-metadata-token", &token)],
                            )
                            .await;
                            reply.status == StatusCode::OK && reply.json()["Code"] == "Success"
                        }
                        1 => {
                            common::send(&url, Method::GET, "/latest/meta-data/", &[])
                                .await
                                .status
                                == StatusCode::OK
                        }
                        2 => {
                            let reply = common::send(
                                &url,
                                Method::GET,
                                "/latest/meta-data/iam/security-credentials/web",
                                &[],
                            )
                            .await;
                            reply.status == StatusCode::OK && reply.json()["Code"] == "Success"
                        }
                        _ => {
                            common::send(
                                &url,
                                Method::GET,
                                "/latest/dynamic/instance-identity/document",
                                &[],
                            )
                            .await
                            .status
                                == StatusCode::OK
                        }
                    };
                    requests.fetch_add(1, Ordering::Relaxed);
                    if !ok && failures.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("soak: client {kind} failed");
                    }
                }
            })
        })
        .collect();
    // The outage starts just before a refresh is due (read off the served
    // Expiration), and lasts half the refresh margin: the refresh must fail,
    // be retried, and land before the credentials expire.
    let margin = session / 3;
    let mut rss = Vec::new();
    // Taken once warm: after the first refresh (the second AssumeRole).
    let mut baseline: Option<u64> = None;
    let sample = (total / 20).clamp(Duration::from_millis(200), Duration::from_millis(500));
    let started = std::time::Instant::now();
    let mut outage: Option<std::time::Instant> = None;
    while std::time::Instant::now() < deadline {
        if started.elapsed() >= total * 2 / 5 {
            match outage {
                None => {
                    let served = document(&server, "web").await;
                    let refresh_at = parse_time(&served["Expiration"]) - margin;
                    if std::time::SystemTime::now() + Duration::from_millis(300) >= refresh_at {
                        proxy.set_down(true);
                        outage = Some(std::time::Instant::now() + margin / 2);
                    }
                }
                Some(end) if std::time::Instant::now() >= end => proxy.set_down(false),
                Some(_) => {}
            }
        }
        let now = rss_kib(server.pid());
        if baseline.is_none() && proxy.assume_calls() >= 2 {
            baseline = Some(now);
        }
        rss.push(now);
        tokio::time::sleep(if outage.is_none() {
            Duration::from_millis(50)
        } else {
            sample
        })
        .await;
    }
    proxy.set_down(false);
    for client in clients {
        client.await.unwrap();
    }
    let (requests, failures) = (
        requests.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    let baseline = baseline.expect("a refresh happened during the soak");
    let last = *rss.last().unwrap();
    let peak = *rss.iter().max().unwrap();
    eprintln!(
        "soak: {minutes} min, {requests} requests, {failures} failures, {} STS refusals during the outage, RSS {baseline} KiB after warm-up, {peak} KiB peak, {last} KiB at the end",
        proxy.refused()
    );
    assert!(requests > 100, "{requests}");
    assert_eq!(failures, 0);
    assert!(
        outage.is_some() && proxy.refused() > 0,
        "a refresh met the outage"
    );
    assert!(
        proxy.assume_calls() >= 2,
        "credentials were refreshed during the soak"
    );
    assert!(
        last <= baseline + SOAK_RSS_GROWTH_KIB,
        "RSS grew from {baseline} to {last} KiB after warm-up"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_commands_exit_non_zero_with_the_servers_reason() {
    // A refusal: the admin API wants a token that was not given.
    let guarded = Ersatz::with_toml("[server]\nadmin_token = \"t0ken\"\n");
    let listed = ersatz(&["role", "list", "--admin", &guarded.admin_url], &[]);
    assert!(!listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stderr).contains("401"));
    assert!(listed.stdout.is_empty());

    // A failure after the request: keys stored, but STS is unreachable.
    let server = Ersatz::with_toml(&format!(
        "[sources.posted]\ntype = \"bootstrap\"\n\n[roles.daemon]\narn = \"{}\"\nsource = \"posted\"\nsts_endpoint = \"http://127.0.0.1:{}\"\n",
        arn("daemon"),
        common::free_port()
    ));
    let bootstrapped = ersatz(
        &["bootstrap", "--admin", &server.admin_url],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIABOOTCLI000000001"),
            ("AWS_SECRET_ACCESS_KEY", "cliSecret"),
        ],
    );
    let stderr = String::from_utf8_lossy(&bootstrapped.stderr);
    assert!(!bootstrapped.status.success(), "{stderr}");
    assert!(stderr.contains("could not be assumed"), "{stderr}");
}

/// The ConfigMap's `ersatz.toml` and the probes' paths, read from the
/// example manifest as a user would copy them.
fn daemonset() -> (String, Vec<String>) {
    let manifest =
        std::fs::read_to_string(common::workspace().join("examples/kubernetes/daemonset.yaml"))
            .unwrap();
    let mut lines = manifest.lines();
    lines.find(|l| l.trim() == "ersatz.toml: |").unwrap();
    let config: String = lines
        .take_while(|l| !l.starts_with("---"))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let probes = manifest
        .lines()
        .filter(|l| l.contains("httpGet:") && l.contains("port: 8998"))
        .map(|l| {
            let path = l.split("path: ").nth(1).unwrap();
            path.split([',', ' ']).next().unwrap().to_owned()
        })
        .collect();
    (config, probes)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemonset_probes_pass_against_its_own_config() {
    let (config, probes) = daemonset();
    assert_eq!(probes, ["/readyz", "/healthz"]);
    let moto = Moto::start();
    let start = |with_keys: bool| {
        let mut builder = Ersatz::builder()
            .config("ersatz.toml", &config)
            .env("AWS_ENDPOINT_URL_STS", &moto.url)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
        if with_keys {
            builder = builder
                .env("AWS_ACCESS_KEY_ID", "AKIANODEIDENTITY0001")
                .env("AWS_SECRET_ACCESS_KEY", CALLER_SECRET);
        }
        builder.start()
    };
    // The node has no identity: alive, and truthfully not ready.
    let unready = start(false);
    assert_eq!(
        unready.get("/latest/meta-data/instance-id").await.status,
        StatusCode::UNAUTHORIZED
    );
    let probe = |server: &Ersatz, path: &str| {
        let (admin, path) = (server.admin_url.clone(), path.to_owned());
        async move { common::send(&admin, Method::GET, &path, &[]).await.status }
    };
    assert_eq!(probe(&unready, "/healthz").await, StatusCode::OK);
    assert_eq!(
        probe(&unready, "/readyz").await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let ready = start(true);
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        status = probe(&ready, "/readyz").await;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for path in &probes {
        assert_eq!(probe(&ready, path).await, StatusCode::OK, "{path}");
    }
    assert_eq!(status, StatusCode::OK);
}
