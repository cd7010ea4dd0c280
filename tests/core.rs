//! Core: the IMDS wire contract, the default instance, configuration and the
//! CLI, driven over HTTP against the built `ersatz` binary with real clients
//! (aws-config, boto3, cloud-init).

mod common;
#[path = "core/layers.rs"]
mod layers;

use std::io::{Read, Write};
use std::time::Duration;

use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::imds::region::ImdsRegionProvider;
use aws_credential_types::provider::ProvideCredentials;
use common::{ersatz, python, run_python, workspace, Ersatz};
use http::{Method, StatusCode};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const TTL: &str = "X-aws-ec2-metadata-token-ttl-seconds";
const TOKEN: &str = "X-aws-ec2-metadata-token";
const V1_DISABLED: &str = "[imds]\nv1 = \"disabled\"\n";

// ---- real clients -------------------------------------------------------

async fn aws_config_reads_instance_and_credentials(url: &str) {
    let client = common::imds_client(url).build();
    let id = client.get("/latest/meta-data/instance-id").await.unwrap();
    let document = client
        .get("/latest/dynamic/instance-identity/document")
        .await
        .unwrap();
    let document: Value = serde_json::from_str(document.as_ref()).unwrap();
    assert_eq!(document["instanceId"], id.as_ref());
    let region = ImdsRegionProvider::builder()
        .imds_client(client.clone())
        .build()
        .region()
        .await
        .expect("a region");
    assert_eq!(region.as_ref(), "us-east-1");

    let credentials = ImdsCredentialsProvider::builder()
        .imds_client(client)
        .build()
        .provide_credentials()
        .await
        .expect("credentials from IMDS");
    assert_eq!(credentials.access_key_id(), "ASIAERSATZFAKEKEY000");
    assert!(credentials
        .session_token()
        .is_some_and(|t| t.starts_with("ErsatzFake")));
    let expiry = credentials.expiry().expect("an expiry");
    assert!(expiry > std::time::SystemTime::now() + Duration::from_secs(3600));
}

// These two run ersatz in the test's own process, through the library.
#[tokio::test(flavor = "multi_thread")]
async fn aws_config_imds_client_and_credentials_provider_with_v1_allowed() {
    let server = ersatz::Server::builder().start().await.unwrap();
    aws_config_reads_instance_and_credentials(server.metadata_url()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_config_imds_client_and_credentials_provider_with_v1_disabled() {
    let server = ersatz::Server::builder()
        .toml(V1_DISABLED)
        .start()
        .await
        .unwrap();
    let v1 = common::send(
        server.metadata_url(),
        Method::GET,
        "/latest/meta-data/instance-id",
        &[],
    )
    .await;
    assert_eq!(v1.status, StatusCode::UNAUTHORIZED);
    aws_config_reads_instance_and_credentials(server.metadata_url()).await;
}

#[test]
fn boto3_finds_iam_role_credentials_through_the_endpoint_variable() {
    let server = Ersatz::with_toml(V1_DISABLED);
    let script = "import boto3, json\n\
        c = boto3.Session(region_name='us-east-1').get_credentials()\n\
        f = c.get_frozen_credentials()\n\
        print(json.dumps({'method': c.method, 'key': f.access_key, 'token': f.token}))";
    let out = run_python(
        &python(),
        &["-c", script],
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &server.url)],
    );
    let got: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(got["method"], "iam-role");
    assert_eq!(got["key"], "ASIAERSATZFAKEKEY000");
    assert!(got["token"].as_str().unwrap().starts_with("ErsatzFake"));
}

#[tokio::test]
async fn cloud_init_crawls_the_whole_tree_with_v2_tokens() {
    let server = Ersatz::with_toml(V1_DISABLED);
    let crawl = common::cloud_init_crawl(&server.url);
    let md = &crawl["meta-data"];
    assert_eq!(
        md["instance-id"],
        server.get_v2("/latest/meta-data/instance-id").await.text()
    );
    assert_eq!(md["placement"]["availability-zone"], "us-east-1a");
    let mac = md["mac"].as_str().unwrap();
    let nic = &md["network"]["interfaces"]["macs"][mac];
    assert_eq!(nic["local-ipv4s"], md["local-ipv4"]);
    assert!(md["public-keys"]["ersatz-key"]
        .to_string()
        .contains("ssh-ed25519"));
    assert_eq!(md["iam"]["info"]["Code"], "Success");
    let document = &crawl["dynamic"]["instance-identity"]["document"];
    assert_eq!(document["instanceId"], md["instance-id"]);
    assert_eq!(crawl["user-data"]["present"], false);
    assert!(
        crawl["token"]["gets_with_token"].as_u64().unwrap_or(0) > 10,
        "{}",
        crawl["token"]
    );
}

// ---- wire contract ------------------------------------------------------

#[tokio::test]
async fn root_lists_versions_and_every_version_serves_the_same_tree() {
    let server = Ersatz::start();
    let root = server.get("/").await;
    assert_eq!(root.status, StatusCode::OK);
    assert_eq!(root.header("content-type"), "text/plain");
    let versions = root.text();
    assert!(versions.lines().any(|v| v == "2009-04-04"));
    assert!(
        versions.ends_with("\nlatest"),
        "no trailing newline, latest last: {versions:?}"
    );

    let latest = server.get("/latest/meta-data/").await.text();
    for version in ["1.0", "2009-04-04", "2021-03-23"] {
        assert_eq!(
            server.get(&format!("/{version}/meta-data/")).await.text(),
            latest
        );
    }
    assert_eq!(server.get("/latest").await.text(), "dynamic\nmeta-data");
    assert_eq!(
        server.get("/1999-01-01/meta-data/").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn listings_serve_with_and_without_slash_and_hold_direct_children() {
    let server = Ersatz::start();
    let with = server.get("/latest/meta-data/placement/").await;
    let without = server.get("/latest/meta-data/placement").await;
    assert_eq!(with.status, StatusCode::OK);
    assert_eq!(with.text(), without.text());
    assert_eq!(
        with.text(),
        "availability-zone\navailability-zone-id\nregion"
    );

    let meta = server.get("/latest/meta-data/").await.text();
    assert!(!meta.ends_with('\n'));
    let entries: Vec<&str> = meta.lines().collect();
    assert!(entries.contains(&"placement/") && entries.contains(&"instance-id"));
    assert_eq!(entries.iter().filter(|e| **e == "iam/").count(), 1);
    assert!(entries
        .iter()
        .all(|e| !e.contains("/") || e.ends_with('/') && e.matches('/').count() == 1));
    assert_eq!(
        server.get("/latest/meta-data/iam/").await.text(),
        "info\nsecurity-credentials/"
    );
}

#[tokio::test]
async fn double_and_trailing_slashes_are_folded_and_leaves_have_no_newline() {
    let server = Ersatz::start();
    let id = server.get("/latest/meta-data/instance-id").await;
    assert_eq!(id.header("content-type"), "text/plain");
    assert!(!id.text().ends_with('\n') && id.text().starts_with("i-"));
    for odd in [
        "//latest//meta-data//instance-id",
        "/latest/meta-data/instance-id/",
        "/2016-09-02/meta-data///instance-id//",
    ] {
        let reply = server.get(odd).await;
        assert_eq!(reply.status, StatusCode::OK, "{odd}");
        assert_eq!(reply.text(), id.text(), "{odd}");
    }
}

#[tokio::test]
async fn unknown_paths_get_the_imds_404_page() {
    let server = Ersatz::start();
    for path in [
        "/latest/meta-data/ami",
        "/latest/meta-data/nope",
        "/latest/meta-data/instance-id/more",
        "/latest/user-data",
        "/latest/meta-data/iam/security-credentials/not-a-role",
        "/latest/meta-data/../user-data",
    ] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.header("content-type"), "text/html", "{path}");
        assert_eq!(reply.header("server"), "EC2ws", "{path}");
        assert!(
            reply.text().contains("<title>404 - Not Found</title>"),
            "{path}"
        );
    }
    let post = server
        .request(Method::POST, "/latest/meta-data/", &[])
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn token_ttl_must_be_between_1_and_21600_and_is_echoed() {
    let server = Ersatz::start();
    let put = |ttl: Option<&'static str>| {
        let headers: Vec<(&str, &str)> = ttl.map(|t| (TTL, t)).into_iter().collect();
        let server = &server;
        async move {
            server
                .request(Method::PUT, "/latest/api/token", &headers)
                .await
        }
    };
    for bad in [
        None,
        Some("0"),
        Some("21601"),
        Some("-1"),
        Some("ten"),
        Some(""),
    ] {
        let reply = put(bad).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "ttl {bad:?}");
        assert!(reply.text().contains("400 - Bad Request"));
    }
    for good in ["1", "21600"] {
        let reply = put(Some(good)).await;
        assert_eq!(reply.status, StatusCode::OK, "ttl {good}");
        assert_eq!(reply.header(TTL), good);
        assert_eq!(reply.header("server"), "EC2ws");
        let token = reply.text();
        assert!(token.len() >= 40 && !token.ends_with('\n'), "{token:?}");
    }
    let first = put(Some("60")).await.text();
    let second = put(Some("60")).await.text();
    assert_ne!(first, second, "tokens must be unguessable, not repeated");
}

#[tokio::test]
async fn token_put_through_a_proxy_or_to_a_dated_path_is_forbidden() {
    let server = Ersatz::start();
    let proxied = server
        .request(
            Method::PUT,
            "/latest/api/token",
            &[(TTL, "60"), ("X-Forwarded-For", "10.0.0.9")],
        )
        .await;
    assert_eq!(proxied.status, StatusCode::FORBIDDEN);
    let dated = server
        .request(Method::PUT, "/2021-03-23/api/token", &[(TTL, "60")])
        .await;
    assert_eq!(dated.status, StatusCode::FORBIDDEN);
    let get = server.get("/latest/api/token").await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn invalid_tokens_are_401_even_when_v1_is_allowed() {
    let server = Ersatz::start();
    assert_eq!(
        server.get("/latest/meta-data/instance-id").await.status,
        StatusCode::OK
    );
    let forged = server
        .request(
            Method::GET,
            "/latest/meta-data/instance-id",
            &[(TOKEN, "AAAAforgedtoken")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);

    let token = server.token().await;
    let good = server
        .request(
            Method::GET,
            "/latest/meta-data/instance-id",
            &[(TOKEN, &token)],
        )
        .await;
    assert_eq!(good.status, StatusCode::OK);
    let left: u64 = good.header(TTL).parse().unwrap();
    assert!((290..=300).contains(&left), "remaining TTL echoed: {left}");
}

#[tokio::test]
async fn expired_tokens_are_401() {
    let server = Ersatz::start();
    let token = server
        .request(Method::PUT, "/latest/api/token", &[(TTL, "1")])
        .await
        .text();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let reply = server
        .request(Method::GET, "/latest/meta-data/", &[(TOKEN, &token)])
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tokens_survive_a_restart_with_the_same_state_directory() {
    let state = tempfile::tempdir().unwrap();
    let start = || {
        Ersatz::builder()
            .env("ERSATZ_SERVER__STATE_DIR", state.path().to_str().unwrap())
            .config("ersatz.toml", V1_DISABLED)
            .start()
    };
    let token = start().token().await;
    let again = start();
    let reply = again
        .request(
            Method::GET,
            "/latest/meta-data/instance-id",
            &[(TOKEN, &token)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let key = state.path().join("token.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn v1_disabled_requires_a_token_for_every_get() {
    let server = Ersatz::with_toml(V1_DISABLED);
    for path in [
        "/",
        "/latest/meta-data/",
        "/latest/meta-data/iam/security-credentials/",
    ] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(reply.text().contains("401 - Unauthorized"));
    }
    let token = server.token().await;
    let reply = server
        .request(Method::GET, "/latest/meta-data/", &[(TOKEN, &token)])
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// Sends raw bytes and returns the raw response, so header case is ours.
fn raw_http(url: &str, request: &str) -> String {
    let mut stream = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[tokio::test]
async fn header_names_are_case_insensitive_and_server_is_ec2ws() {
    let server = Ersatz::with_toml(V1_DISABLED);
    let response = raw_http(
        &server.url,
        "PUT /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\nX-AWS-EC2-METADATA-TOKEN-TTL-SECONDS: 30\r\nConnection: close\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let lower = response.to_ascii_lowercase();
    assert!(lower.contains("server: ec2ws"));
    assert!(lower.contains("x-aws-ec2-metadata-token-ttl-seconds: 30"));
    let token = response.rsplit("\r\n\r\n").next().unwrap();
    let get = raw_http(
        &server.url,
        &format!("GET /latest/meta-data/instance-id HTTP/1.1\r\nhost: 127.0.0.1\r\nx-Aws-Ec2-Metadata-Token: {token}\r\nConnection: close\r\n\r\n"),
    );
    assert!(get.starts_with("HTTP/1.1 200"), "{get}");
}

#[tokio::test]
async fn foreign_host_headers_are_refused() {
    let server = Ersatz::start();
    let response = raw_http(
        &server.url,
        "GET /latest/meta-data/ HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
    );
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
}

// ---- the default instance -----------------------------------------------

fn iso(value: &Value) -> OffsetDateTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    assert_eq!(text.len(), 20, "whole seconds, UTC: {text}");
    assert!(text.ends_with('Z'));
    OffsetDateTime::parse(text, &Rfc3339).unwrap()
}

#[tokio::test]
async fn default_instance_covers_every_category_and_agrees_with_itself() {
    let server = Ersatz::start();
    for leaf in [
        "ami-id",
        "ami-launch-index",
        "ami-manifest-path",
        "block-device-mapping/ami",
        "block-device-mapping/root",
        "hostname",
        "instance-action",
        "instance-id",
        "instance-life-cycle",
        "instance-type",
        "local-hostname",
        "local-ipv4",
        "mac",
        "placement/availability-zone",
        "placement/availability-zone-id",
        "placement/region",
        "profile",
        "public-hostname",
        "public-ipv4",
        "public-keys/0/openssh-key",
        "reservation-id",
        "security-groups",
        "services/domain",
        "services/partition",
        "iam/info",
    ] {
        let reply = server.get(&format!("/latest/meta-data/{leaf}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{leaf}");
        assert!(!reply.body.is_empty(), "{leaf}");
    }
    let get = |path: &'static str| {
        let server = &server;
        async move {
            server
                .get(&format!("/latest/meta-data/{path}"))
                .await
                .text()
        }
    };
    let document = server
        .get("/latest/dynamic/instance-identity/document")
        .await
        .json();
    assert_eq!(document["instanceId"], get("instance-id").await);
    assert_eq!(document["instanceType"], get("instance-type").await);
    assert_eq!(document["privateIp"], get("local-ipv4").await);
    assert_eq!(document["imageId"], get("ami-id").await);
    let zone = get("placement/availability-zone").await;
    assert_eq!(document["availabilityZone"], zone);
    assert_eq!(get("placement/region").await, zone[..zone.len() - 1]);
    assert_eq!(document["region"], get("placement/region").await);

    let mac = get("mac").await;
    assert_eq!(get("network/interfaces/macs/").await, format!("{mac}/"));
    let nic = |leaf: &str| format!("/latest/meta-data/network/interfaces/macs/{mac}/{leaf}");
    assert_eq!(
        server.get(&nic("local-ipv4s")).await.text(),
        get("local-ipv4").await
    );
    assert_eq!(server.get(&nic("mac")).await.text(), mac);
    assert_eq!(
        server.get(&nic("owner-id")).await.text(),
        document["accountId"]
    );
    assert_eq!(get("public-keys/").await, "0=ersatz-key");
    assert_eq!(get("public-keys/0/").await, "openssh-key");
    assert_eq!(
        server
            .get("/latest/dynamic/instance-identity/")
            .await
            .text(),
        "document\npkcs7\nrsa2048\nsignature"
    );
}

#[tokio::test]
async fn default_credentials_have_the_imds_shape_and_a_future_expiry() {
    let server = Ersatz::start();
    let role = server
        .get("/latest/meta-data/iam/security-credentials/")
        .await
        .text();
    assert_eq!(role, "ersatz-default");
    let reply = server
        .get(&format!(
            "/latest/meta-data/iam/security-credentials/{role}"
        ))
        .await;
    assert_eq!(reply.header("content-type"), "text/plain");
    assert!(
        reply.text().contains("\"Code\" : \"Success\""),
        "AWS's JSON style"
    );
    let doc = reply.json();
    assert_eq!(doc["Code"], "Success");
    assert_eq!(doc["Type"], "AWS-HMAC");
    for field in ["AccessKeyId", "SecretAccessKey", "Token"] {
        assert!(
            doc[field].as_str().is_some_and(|v| !v.is_empty()),
            "{field}"
        );
    }
    let now = OffsetDateTime::now_utc();
    assert!(iso(&doc["LastUpdated"]) <= now);
    assert!(iso(&doc["Expiration"]) > now + time::Duration::hours(1));

    let info = server.get("/latest/meta-data/iam/info").await.json();
    assert_eq!(info["Code"], "Success");
    let arn = info["InstanceProfileArn"].as_str().unwrap();
    assert!(arn.ends_with(&format!(":instance-profile/{role}")), "{arn}");
    assert!(info["InstanceProfileId"]
        .as_str()
        .unwrap()
        .starts_with("AIPA"));
    iso(&info["LastUpdated"]);
}

#[tokio::test]
async fn instance_facts_and_metadata_overrides_change_every_path_that_shows_them() {
    let server = Ersatz::with_toml(
        r#"
[instance]
id = "i-0fedcba9876543210"
availability_zone = "eu-west-2b"
type = "m5.large"
local_ipv4 = "10.1.2.3"

[metadata]
"tags/instance/Name" = "web-1"
"instance-action" = "reboot"
"#,
    );
    let get = |path: &'static str| {
        let server = &server;
        async move {
            server
                .get(&format!("/latest/meta-data/{path}"))
                .await
                .text()
        }
    };
    assert_eq!(get("instance-id").await, "i-0fedcba9876543210");
    assert_eq!(get("placement/region").await, "eu-west-2");
    assert_eq!(get("placement/availability-zone-id").await, "euw2-az2");
    assert_eq!(
        get("local-hostname").await,
        "ip-10-1-2-3.eu-west-2.compute.internal"
    );
    assert_eq!(get("tags/instance/Name").await, "web-1");
    assert_eq!(get("tags/instance").await, "Name");
    assert_eq!(get("instance-action").await, "reboot");
    let document = server
        .get("/latest/dynamic/instance-identity/document")
        .await
        .json();
    assert_eq!(document["instanceId"], "i-0fedcba9876543210");
    assert_eq!(document["region"], "eu-west-2");
    assert_eq!(document["instanceType"], "m5.large");
    assert_eq!(document["privateIp"], "10.1.2.3");
}

// ---- configuration ------------------------------------------------------

/// `ersatz config check` on a file; returns (exit code, stderr).
fn check(name: &str, contents: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    let output = ersatz(
        &["config", "check", "--config", path.to_str().unwrap()],
        env,
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (
        output.status.code().unwrap_or(-1),
        stderr,
        path.display().to_string(),
    )
}

fn assert_config_error(name: &str, contents: &str, key: &str, reason: &str) {
    let (code, stderr, path) = check(name, contents, &[]);
    assert_eq!(code, 2, "exit code for {contents:?}: {stderr}");
    assert!(stderr.contains(&path), "names the file {path}: {stderr}");
    assert!(
        stderr.contains(&format!("`{key}`")),
        "names the key {key}: {stderr}"
    );
    assert!(stderr.contains(reason), "says why ({reason}): {stderr}");
}

#[test]
fn config_errors_name_the_file_the_key_and_the_reason() {
    assert_config_error(
        "a.toml",
        "[server]\nlisten_on = [\"127.0.0.1:1\"]\n",
        "server.listen_on",
        "unknown key",
    );
    assert_config_error(
        "b.toml",
        "[imds]\nv1 = \"sometimes\"\n",
        "imds.v1",
        "sometimes",
    );
    assert_config_error(
        "c.toml",
        "[server]\nlisten = \"127.0.0.1\"\n",
        "server.listen",
        "invalid type",
    );
    assert_config_error(
        "d.toml",
        "[server]\nlisten = [\"nowhere:80\"]\n",
        "server.listen.0",
        "socket address",
    );
    assert_config_error(
        "e.toml",
        "[instance]\nregion = \"us-east-1\"\navailability_zone = \"eu-west-1a\"\n",
        "instance.availability_zone",
        "not a zone of region",
    );
    assert_config_error(
        "f.toml",
        "[instance]\nid = \"i-nothex\"\n",
        "instance.id",
        "not an id",
    );
    assert_config_error(
        "g.toml",
        "default_role = \"web\"\n[roles.web]\nsource = \"missing\"\n",
        "roles.web.source",
        "no source named \"missing\"",
    );
    assert_config_error(
        "h.toml",
        "default_role = \"nope\"\n[sources.s]\ntype = \"static\"\naccess_key_id = \"AKIAEXAMPLE\"\nsecret_access_key = \"x\"\n[roles.web]\nsource = \"s\"\n",
        "default_role",
        "no role named \"nope\"",
    );
    assert_config_error(
        "i.toml",
        "[metadata]\nplacement = \"x\"\n",
        "metadata.\"placement\"",
        "is a directory",
    );
    assert_config_error(
        "j.toml",
        "[sources.s]\ntype = \"magic\"\n",
        "sources.s.type",
        "magic",
    );
    assert_config_error(
        "k.yaml",
        "instance:\n  ami_launch_index: many\n",
        "instance.ami_launch_index",
        "invalid type",
    );
    assert_config_error(
        "l.json",
        "{\"imds\": {\"v2\": true}}",
        "imds.v2",
        "unknown key",
    );
}

#[test]
fn unreadable_or_malformed_files_are_named() {
    let (code, stderr, path) = check("broken.toml", "[server\nlisten = 1", &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&path) && stderr.contains("line"),
        "{stderr}"
    );

    let (code, stderr, path) = check("settings.ini", "a=b", &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&path) && stderr.contains("unknown format"),
        "{stderr}"
    );

    let output = ersatz(
        &["config", "check", "--config", "/nonexistent/ersatz.toml"],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/ersatz.toml") && stderr.contains("no such file"),
        "{stderr}"
    );

    // `serve` refuses the same way, before binding anything.
    let output = ersatz(&["serve", "--config", "/nonexistent/ersatz.toml"], &[]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn environment_and_flag_errors_name_the_variable_or_flag() {
    let (code, stderr, _) = check("ok.toml", "", &[("ERSATZ_IMDS__V1", "sometimes")]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("ERSATZ_IMDS__V1") && stderr.contains("`imds.v1`"),
        "{stderr}"
    );

    let output = ersatz(&["config", "check", "--addr", "not-an-ip"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--addr") && stderr.contains("not-an-ip"),
        "{stderr}"
    );

    let ok = ersatz(&["config", "check"], &[("ERSATZ_TEST_UNRELATED", "1")]);
    assert!(
        ok.status.success(),
        "non-config ERSATZ_ variables are not config: {:?}",
        ok
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("embedded defaults"));
}

#[test]
fn config_check_writes_no_access_log_but_says_when_it_could_not() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let check =
        |path: &std::path::Path| ersatz(&["config", "check", "--log", path.to_str().unwrap()], &[]);
    let ok = check(&log);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(!log.exists(), "config check created the access log");
    let bad = check(&dir.path().join("missing-dir/access.log"));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("server.access_log"), "{stderr}");
}

#[test]
fn a_command_whose_reader_has_gone_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = std::process::Command::new(common::BIN)
        .args(["config", "check"])
        .current_dir(workspace())
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGPIPE),
        "ended by SIGPIPE, as `head` expects: {:?}",
        output.status
    );
}

#[tokio::test]
async fn layers_stack_defaults_file_env_flags() {
    let server = Ersatz::builder()
        .config(
            "ersatz.yaml",
            "server:\n  listen: [\"127.0.0.1:1\"]\ninstance:\n  type: m5.large\n  region: ap-southeast-2\n",
        )
        .env("ERSATZ_INSTANCE__TYPE", "c5.xlarge")
        .start();
    // The file moved the region, env beat the file's type, the harness's
    // --port 0 flag beat the file's listen address (we reached the server).
    assert_eq!(
        server.get("/latest/meta-data/instance-type").await.text(),
        "c5.xlarge"
    );
    assert_eq!(
        server
            .get("/latest/meta-data/placement/region")
            .await
            .text(),
        "ap-southeast-2"
    );

    let json = Ersatz::builder()
        .config(
            "ersatz.json",
            r#"{"instance": {"account_id": "210987654321"}}"#,
        )
        .start();
    let document = json
        .get("/latest/dynamic/instance-identity/document")
        .await
        .json();
    assert_eq!(document["accountId"], "210987654321");
}

// ---- CLI and process ------------------------------------------------------

#[tokio::test]
async fn access_log_appends_a_line_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(&log, "earlier line\n").unwrap();
    let server = Ersatz::builder()
        .arg("--log")
        .arg(log.to_str().unwrap())
        .start();
    server.get("/latest/meta-data/instance-id").await;
    server.get("/latest/meta-data/nope").await;
    let mut contents = String::new();
    for _ in 0..100 {
        contents = std::fs::read_to_string(&log).unwrap();
        if contents.lines().count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines: Vec<&str> = contents.lines().collect();
    assert_eq!(lines[0], "earlier line");
    assert!(
        lines[1].starts_with("127.0.0.1 - - [")
            && lines[1].contains("\"GET /latest/meta-data/instance-id HTTP/1.1\" 200 19"),
        "{contents}"
    );
    assert!(
        lines[2].contains("\"GET /latest/meta-data/nope HTTP/1.1\" 404"),
        "{contents}"
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let server = Ersatz::start();
    assert_eq!(
        server.get("/latest/meta-data/").await.status,
        StatusCode::OK
    );
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn admin_status_reports_valid_credentials() {
    let server = Ersatz::start();
    let status = common::send(&server.admin_url, Method::GET, "/status", &[]).await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.json(), Value::Bool(true));
}

#[test]
fn manual_pages_cover_every_command() {
    let output = ersatz(&["man"], &[]);
    assert!(output.status.success());
    let page = String::from_utf8_lossy(&output.stdout);
    assert!(page.contains(".TH ersatz 1"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let written = ersatz(&["man", "--dir", dir.path().to_str().unwrap()], &[]);
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    // Every page the main one refers to exists, and names its command.
    for command in [
        "serve",
        "config",
        "snapshot",
        "exec",
        "event",
        "role",
        "bootstrap",
        "net",
        "cert",
        "completions",
        "man",
    ] {
        assert!(
            page.contains(&format!("ersatz\\-{command}(1)")),
            "{command} not listed"
        );
        let file = dir.path().join(format!("ersatz-{command}.1"));
        let sub =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(sub.contains(&format!(".TH ersatz-{command} 1")), "{sub}");
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = ersatz(&["completions", shell], &[]);
        assert!(output.status.success());
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            script.contains("ersatz") && script.contains("serve"),
            "{shell}"
        );
    }
}

#[test]
fn every_example_config_is_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(workspace().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let is_config = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("toml" | "json" | "yaml" | "yml")
        );
        if !is_config {
            continue;
        }
        let output = ersatz(
            &["config", "check", "--config", path.to_str().unwrap()],
            &[],
        );
        assert!(
            output.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 3, "examples/ holds ready-to-run configs");
}

#[tokio::test]
async fn requests_from_web_pages_are_refused_on_both_listeners() {
    let server = Ersatz::start();
    for header in [
        "Origin: http://evil.example",
        "Referer: http://evil.example/page",
    ] {
        let response = raw_http(
            &server.url,
            &format!("GET /latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\nConnection: close\r\n\r\n"),
        );
        assert!(response.starts_with("HTTP/1.1 403"), "{header}: {response}");
        let admin = raw_http(
            &server.admin_url,
            &format!(
                "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert!(
            admin.starts_with("HTTP/1.1 403"),
            "admin, {header}: {admin}"
        );
    }
}

/// Reads until the server closes the connection, or gives up after `limit`.
fn closed_within(stream: &mut std::net::TcpStream, limit: Duration) -> Option<String> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => Some(String::from_utf8_lossy(&received).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn slow_and_idle_clients_are_disconnected_after_client_timeout() {
    let server = Ersatz::with_toml("[server]\nclient_timeout = \"1s\"\n");
    let authority = server.url.trim_start_matches("http://").to_owned();

    // Half a request head, then nothing.
    let mut slow = std::net::TcpStream::connect(&authority).unwrap();
    slow.write_all(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .unwrap();
    let answered = closed_within(&mut slow, Duration::from_secs(5));
    assert!(
        answered.as_deref().is_some_and(|a| !a.contains("200 OK")),
        "a client that never finishes its head is cut off: {answered:?}"
    );

    // A keep-alive connection that goes quiet after one answer.
    let mut idle = std::net::TcpStream::connect(&authority).unwrap();
    idle.write_all(b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let answered = closed_within(&mut idle, Duration::from_secs(5));
    assert!(
        answered
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
        "an idle keep-alive connection is closed after its answer: {answered:?}"
    );

    // A request body that stops halfway (the admin API's bootstrap reads one).
    let admin = server.admin_url.trim_start_matches("http://").to_owned();
    let mut stalled = std::net::TcpStream::connect(&admin).unwrap();
    stalled
        .write_all(b"POST /bootstrap/creds HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"AccessKeyId\":")
        .unwrap();
    let answered = closed_within(&mut stalled, Duration::from_secs(5));
    assert!(
        answered
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 408") && a.contains("client_timeout")),
        "a body that never arrives is answered 408: {answered:?}"
    );

    // None of them took anything from anyone else.
    assert_eq!(
        server.get("/latest/meta-data/instance-id").await.status,
        StatusCode::OK
    );
}

/// Holds two connections to the listener at `url` (a cap of two), then
/// sends `request` on a third: its answer, and the held connections.
async fn over_a_cap_of_two(url: &str, request: &str) -> (String, Vec<std::net::TcpStream>) {
    let authority = url.trim_start_matches("http://");
    let held = (0..2)
        .map(|_| std::net::TcpStream::connect(authority).unwrap())
        .collect();
    // Give the server a moment to accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    (raw_http(url, request), held)
}

#[tokio::test]
async fn connections_over_the_cap_get_503_and_capacity_comes_back() {
    let server = Ersatz::with_toml("[server]\nmax_connections = 2\n");
    let request = "GET /latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let (over, held) = over_a_cap_of_two(&server.url, request).await;
    assert!(over.starts_with("HTTP/1.1 503"), "{over}");
    assert!(over.contains("\r\nServer: EC2ws\r\n"), "{over}");
    // The admin listener has the same cap, and is not EC2's.
    let request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let (over_admin, held_admin) = over_a_cap_of_two(&server.admin_url, request).await;
    assert!(over_admin.starts_with("HTTP/1.1 503"), "{over_admin}");
    assert!(!over_admin.contains("EC2ws"), "{over_admin}");
    drop(held_admin);
    drop(held);
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if raw_http(
            &server.url,
            "GET /latest/meta-data/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .starts_with("HTTP/1.1 200")
        {
            status = StatusCode::OK;
            break;
        }
    }
    assert_eq!(
        status,
        StatusCode::OK,
        "capacity is released when connections close"
    );
    assert!(server
        .stderr()
        .contains("connections refused (server.max_connections reached)"));
}

// ---- the first hour: messages that name the thing and the fix -------------

#[test]
fn configuration_messages_name_the_thing_and_the_fix() {
    // default_role written after a table belongs to that table.
    assert_config_error(
        "c.toml",
        "[sources.s]\ntype = \"chain\"\n[roles.a]\nsource = \"s\"\n[roles.b]\nsource = \"s\"\ndefault_role = \"a\"\n",
        "roles.b.default_role",
        "above the first [table]",
    );
    // A reference with nothing to refer to says how to define one.
    assert_config_error(
        "c.toml",
        "[roles.r]\nsource = \"nope\"\n",
        "roles.r.source",
        "none is defined: add a [sources.NAME] table",
    );
    // An unset default_role is blamed on the file that holds the roles.
    assert_config_error(
        "c.toml",
        "[sources.s]\ntype = \"chain\"\n[roles.a]\nsource = \"s\"\n[roles.b]\nsource = \"s\"\n",
        "default_role",
        "name the one to serve first with default_role",
    );
    // A listen address from the environment, written without the list.
    let out = ersatz(
        &["config", "check"],
        &[("ERSATZ_SERVER__LISTEN", "127.0.0.1:1")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ERSATZ_SERVER__LISTEN='[\"127.0.0.1:16925\"]'"),
        "{stderr}"
    );
    // A relative path says where it was looked for.
    assert_config_error(
        "c.toml",
        "snapshot = \"no-such-snapshot.json\"\n",
        "snapshot",
        "taken from the working directory",
    );
    // A check that took variables says so.
    let out = ersatz(&["config", "check"], &[("ERSATZ_IMDS__V1", "disabled")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("embedded defaults with ERSATZ_IMDS__V1"),
        "{stdout}"
    );
}

#[tokio::test]
async fn client_messages_name_the_thing_and_the_fix() {
    let server = Ersatz::with_toml(
        "[sources.posted]\ntype = \"bootstrap\"\n[roles.daemon]\nsource = \"posted\"\n",
    );
    let admin = server.admin_url.as_str();
    let bootstrap = ersatz(
        &["bootstrap", "--source", "nope", "--admin", admin],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
        ],
    );
    let stderr = String::from_utf8_lossy(&bootstrap.stderr);
    assert!(!bootstrap.status.success());
    assert!(
        stderr.contains("unknown bootstrap source \"nope\" (bootstrap sources: posted)"),
        "{stderr}"
    );
    let autoscaling = ersatz(
        &[
            "event",
            "autoscaling",
            "--state",
            "Terminated",
            "--admin",
            admin,
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&autoscaling.stderr);
    assert!(!autoscaling.status.success());
    assert!(
        stderr.contains("409") && stderr.contains("[events.autoscaling]"),
        "{stderr}"
    );
    let event = ersatz(&["event", "rebalance", "--in", "5", "--admin", admin], &[]);
    let stderr = String::from_utf8_lossy(&event.stderr);
    assert!(!event.status.success());
    assert!(stderr.contains("like 5s, 2m or 1h"), "{stderr}");
    // A snapshot of an IMDS URL as it is usually written works; a deeper
    // path says which form to use.
    let base = format!("{}/latest/", server.url);
    let snapshot = ersatz(&["snapshot", &base], &[]);
    assert!(
        snapshot.status.success(),
        "{}",
        String::from_utf8_lossy(&snapshot.stderr)
    );
    let deep = ersatz(&["snapshot", &format!("{base}meta-data/")], &[]);
    let stderr = String::from_utf8_lossy(&deep.stderr);
    assert!(
        stderr.contains(&format!("without a path, like {}", server.url)),
        "{stderr}"
    );
}

#[tokio::test]
async fn credential_failures_are_sentences_that_say_where_to_look() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-credentials");
    let server = Ersatz::with_toml(&format!(
        "default_role = \"p\"\n[sources.file]\ntype = \"profile\"\nfile = \"{}\"\n[sources.keys]\ntype = \"static\"\naccess_key_id = \"AKIAEXAMPLE\"\nsecret_access_key = \"x\"\n[roles.p]\nsource = \"file\"\n[roles.sts]\nsource = \"keys\"\narn = \"arn:aws:iam::123456789012:role/x\"\nsts_endpoint = \"http://127.0.0.1:{}\"\n",
        missing.display(),
        common::free_port()
    ));
    let message = |alias: &'static str| {
        let server = &server;
        async move {
            let document = server
                .get(&format!(
                    "/latest/meta-data/iam/security-credentials/{alias}"
                ))
                .await
                .json();
            assert_ne!(document["Code"], "Success");
            document["Message"].as_str().unwrap().to_owned()
        }
    };
    let profile = message("p").await;
    assert!(
        profile.contains(&missing.display().to_string()) && profile.contains("does not exist"),
        "{profile}"
    );
    let sts = message("sts").await;
    assert!(
        sts.contains("cannot reach STS") && sts.contains("sts_endpoint"),
        "{sts}"
    );
    for text in [&profile, &sts] {
        assert!(
            !text.contains("{ source") && !text.contains("(Dispatch"),
            "a debug dump: {text}"
        );
    }
}

#[tokio::test]
async fn logs_to_a_file_carry_no_colour_codes() {
    let server = Ersatz::start();
    let _ = server.get("/latest/meta-data/instance-id").await;
    let stderr = server.stderr();
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
}

#[test]
fn config_show_prints_each_value_with_its_layer_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[instance]\ntype = \"m5.large\"\n").unwrap();
    let out = ersatz(
        &[
            "config",
            "show",
            "--config",
            file.to_str().unwrap(),
            "--port",
            "17777",
        ],
        &[
            ("ERSATZ_SERVER__ADMIN_TOKEN", "very-secret-token"),
            ("ERSATZ_IMDS__V1", "disabled"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in:\n{stdout}"))
            .to_owned()
    };
    assert!(line("instance.type").contains(&file.display().to_string()));
    assert!(line("imds.v1").contains("ERSATZ_IMDS__V1"));
    assert!(line("server.listen").contains("17777") && line("server.listen").contains("flag"));
    assert!(line("server.client_timeout").contains("embedded defaults"));
    assert!(line("server.admin_token").contains("<redacted>"));
    assert!(!stdout.contains("very-secret-token"), "{stdout}");
}

#[test]
fn config_check_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        format!(
            "[[plugins]]\nmount = \"/latest/meta-data/public-keys\"\nwasm = \"{}\"\nconfig = {{ keys = [] }}\n",
            common::wasm("public_keys").display()
        ),
    )
    .unwrap();
    let out = ersatz(
        &["config", "check", "--config", file.to_str().unwrap()],
        &[("ERSATZ_SERVER__STATE_DIR", state.to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!state.exists(), "config check wrote {}", state.display());
}

// ---- the library (ersatz::Server, in this process) ----------------------

#[tokio::test(flavor = "multi_thread")]
async fn embedded_server_env_gives_boto3_container_credentials() {
    let server = ersatz::Server::builder().start().await.unwrap();
    let env = server.env();
    let script = "import boto3, json\n\
        c = boto3.Session(region_name='us-east-1').get_credentials()\n\
        f = c.get_frozen_credentials()\n\
        print(json.dumps({'method': c.method, 'key': f.access_key}))";
    let python = python();
    // boto3 calls back into this process's server while we wait for it.
    let out = tokio::task::spawn_blocking(move || {
        let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_python(&python, &["-c", script], &vars)
    });
    let got: Value = serde_json::from_str(out.await.unwrap().trim()).unwrap();
    // The container endpoint wins over IMDS in boto3's chain: env() set it.
    assert_eq!(got["method"], "container-role");
    assert_eq!(got["key"], "ASIAERSATZFAKEKEY000");
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_server_controls_roles_and_events_and_refuses_bad_ones() {
    let server = ersatz::Server::builder()
        .toml(
            "default_role = \"first\"\n[instance]\nlife_cycle = \"spot\"\n\
             [sources.a]\ntype = \"static\"\naccess_key_id = \"AKIAAAAAAAAAAAAAAAAA\"\nsecret_access_key = \"a\"\n\
             [sources.b]\ntype = \"static\"\naccess_key_id = \"AKIABBBBBBBBBBBBBBBB\"\nsecret_access_key = \"b\"\n\
             [roles.first]\nsource = \"a\"\n[roles.second]\nsource = \"b\"\n",
        )
        .start()
        .await
        .unwrap();
    let listing = |server: &ersatz::Handle| {
        let url = server.metadata_url().to_owned();
        async move {
            common::send(
                &url,
                Method::GET,
                "/latest/meta-data/iam/security-credentials/",
                &[],
            )
            .await
            .text()
        }
    };
    assert_eq!(listing(&server).await, "first");
    server.roles().use_role("second").await.unwrap();
    assert_eq!(server.roles().active(), "second");
    assert_eq!(listing(&server).await, "second");
    match server.roles().use_role("nobody").await {
        Err(ersatz::Error::Refused { status, message }) => {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(message.contains("nobody"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    server
        .events()
        .spot("stop", Duration::from_secs(90))
        .await
        .unwrap();
    let action = common::send(
        server.metadata_url(),
        Method::GET,
        "/latest/meta-data/spot/instance-action",
        &[],
    )
    .await;
    assert_eq!(action.status, StatusCode::OK);
    assert_eq!(action.json()["action"], "stop");
    server.events().clear().await.unwrap();
    let action = common::send(
        server.metadata_url(),
        Method::GET,
        "/latest/meta-data/spot/instance-action",
        &[],
    )
    .await;
    assert_eq!(action.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_server_reports_config_errors_and_stops_on_drop() {
    let error = ersatz::Server::builder()
        .toml("[instance]\nregion = \"eu-west-1\"\n")
        .toml("[imds]\nv1 = \"sometimes\"\n")
        .start()
        .await
        .err()
        .expect("a bad value is refused");
    assert!(matches!(error, ersatz::Error::Config(_)), "{error:?}");
    // Named as the caller counts the layers (the builder's own state
    // directory layer is not one of them).
    assert!(
        error
            .to_string()
            .starts_with("configuration error: builder layer 2 (TOML): key `imds.v1`"),
        "{error}"
    );

    let server = ersatz::Server::builder().start().await.unwrap();
    let url = server.metadata_url().to_owned();
    let authority = url.trim_start_matches("http://").to_owned();
    assert_eq!(
        common::send(&url, Method::GET, "/latest/meta-data/", &[])
            .await
            .status,
        StatusCode::OK
    );
    drop(server);
    // The listener task ends on its own after the stop signal.
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&authority).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "{authority} still accepts after the handle was dropped"
    );
}

// ---- distribution ---------------------------------------------------------

/// The image core/build-image.sh made (tests/run.sh builds it and names it in
/// ERSATZ_TEST_IMAGE): its static binary runs with nothing else around it.
/// Containers cannot run here, so the image is mounted and entered with
/// chroot, which also proves there is no dynamic loader to find.
#[test]
fn the_image_runs_its_binary_from_scratch() {
    let Some(image) = std::env::var_os("ERSATZ_TEST_IMAGE") else {
        eprintln!("skipped: ERSATZ_TEST_IMAGE names no image (tests/run.sh builds one)");
        return;
    };
    let image = image.to_string_lossy().into_owned();
    let podman = |args: &[&str]| {
        let output = std::process::Command::new("podman")
            .args(args)
            .output()
            .expect("ERSATZ_TEST_IMAGE is set, so podman must be installed");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "podman {args:?}: {stderr}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let mounted = podman(&["image", "mount", &image]);
    // A copy, so that a configuration can be put beside the binary.
    let root = tempfile::tempdir().unwrap();
    let copied = std::process::Command::new("cp")
        .args(["-a", &format!("{mounted}/."), root.path().to_str().unwrap()])
        .status()
        .unwrap();
    podman(&["image", "unmount", &image]);
    assert!(copied.success());
    let top: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut top = top;
    top.sort();
    assert_eq!(
        top,
        ["ersatz", "plugins"],
        "nothing but the binary and the plugins"
    );

    let config = "[[plugins]]\nmount = \"/latest/meta-data/public-keys\"\nwasm = \"/plugins/public_keys.wasm\"\nconfig = { keys = [] }\n";
    std::fs::write(root.path().join("ersatz.toml"), config).unwrap();
    // Found before the environment is cleared for the image's binary.
    let chroot_bin = ["/usr/sbin/chroot", "/sbin/chroot", "/usr/bin/chroot"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chroot (coreutils) is installed");
    let chroot = |args: &[&str]| {
        let output = std::process::Command::new(chroot_bin)
            .arg(root.path())
            .arg("/ersatz")
            .args(args)
            .env_clear()
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "/ersatz {args:?}: {text}");
        text
    };
    assert!(chroot(&["--version"]).starts_with("ersatz "));
    assert!(chroot(&["config", "check"]).contains("configuration is valid"));
    // The plugin host is in the static binary, and the shipped plugins load.
    let checked = chroot(&["config", "check", "--config", "/ersatz.toml"]);
    assert!(checked.contains("configuration is valid"), "{checked}");
}
