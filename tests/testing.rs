//! For testers: fault rules, the request journal and the IMDSv1 audit,
//! driven over HTTP with real clients (boto3/botocore, the Rust aws-config
//! IMDS client) against the built `ersatz` binary.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::netns::{root_or_skip, unique, Namespace};
use common::{ersatz, metric, python, run_python, send_body, Ersatz, TWO_ROLES};
use http::{Method, StatusCode};
use serde_json::{json, Value};

/// Adds a rule over the admin API; returns its name.
async fn add_fault(server: &Ersatz, rule: Value) -> String {
    let reply = send_body(
        &server.admin_url,
        Method::POST,
        "/faults",
        &[("content-type", "application/json")],
        &rule.to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    reply.json()["name"].as_str().unwrap().to_owned()
}

/// The journal's entries, oldest first (`query` as `GET /requests` takes it).
async fn journal(server: &Ersatz, query: &str) -> Vec<Value> {
    let reply = send_body(
        &server.admin_url,
        Method::GET,
        &format!("/requests{query}"),
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["requests"].as_array().unwrap().clone()
}

async fn admin(server: &Ersatz, method: Method, path: &str) -> common::Reply {
    send_body(&server.admin_url, method, path, &[], "").await
}

fn statuses(entries: &[Value]) -> Vec<u64> {
    entries
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect()
}

/// boto3's credential lookup, printing the method, the key and expiry.
const BOTO3_CREDENTIALS: &str = "import boto3, json, logging, sys\n\
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format='LOG %(message)s')\n\
    c = boto3.Session(region_name='us-east-1').get_credentials()\n\
    f = c.get_frozen_credentials()\n\
    expiry = getattr(c, '_expiry_time', None)\n\
    print(json.dumps({'method': c.method, 'key': f.access_key, 'expiry': expiry.isoformat() if expiry else None}))";

fn boto3_credentials(server: &Ersatz, attempts: &str) -> (Value, String) {
    let out = run_python(
        &python(),
        &["-c", BOTO3_CREDENTIALS],
        &[
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &server.url),
            ("AWS_METADATA_SERVICE_NUM_ATTEMPTS", attempts),
        ],
    );
    let last = out.lines().last().unwrap_or_default();
    (serde_json::from_str(last).expect(&out), out)
}

// ---- boto3 ------------------------------------------------------------------

#[tokio::test]
async fn boto3_retries_through_500s_and_used_a_token_on_every_request() {
    let server = Ersatz::start();
    let rule = add_fault(
        &server,
        json!({ "name": "outage", "action": "status", "status": 500, "route": "credentials", "for": 2 }),
    )
    .await;
    let (got, _) = boto3_credentials(&server, "3");
    assert_eq!(got["method"], "iam-role");
    assert_eq!(got["key"], "ASIAERSATZFAKEKEY000");

    let entries = journal(&server, "").await;
    let credential_requests: Vec<Value> = entries
        .iter()
        .filter(|e| e["path"].as_str().unwrap().contains("/iam/"))
        .cloned()
        .collect();
    // The role listing twice refused, then answered; then the role itself.
    assert_eq!(statuses(&credential_requests), [500, 500, 200, 200]);
    assert_eq!(credential_requests[0]["fault"], rule);
    assert_eq!(credential_requests[3]["role"], "ersatz-default");
    // IMDSv2 throughout: the token PUT first, then a token on every GET.
    assert_eq!(entries[0]["method"], "PUT");
    for entry in &entries {
        assert_eq!(entry["version"], "v2", "{entry}");
    }
    let metrics = admin(&server, Method::GET, "/metrics").await.text();
    assert_eq!(
        metric(&metrics, "ersatz_faults_applied_total{kind=\"status\"}"),
        2
    );
}

#[tokio::test]
async fn boto3_retries_until_a_throttle_lets_it_through() {
    // Room for every attempt: botocore may make a thousand in half a second.
    let server = Ersatz::with_toml("[journal]\ncapacity = 100000\n");
    // Two a second after a burst of one: boto3 needs two in a row (the
    // role, then its credentials), so it is refused until the bucket refills
    // (botocore retries at once, so its attempts span the half second).
    add_fault(
        &server,
        json!({ "action": "throttle", "rate": 2, "burst": 1, "route": "credentials" }),
    )
    .await;
    let (got, _) = boto3_credentials(&server, "20000");
    assert_eq!(got["key"], "ASIAERSATZFAKEKEY000");
    let answered = statuses(&journal(&server, "?path=/latest/meta-data/iam/").await);
    assert!(answered.contains(&429), "{answered:?}");
    assert_eq!(answered.iter().filter(|s| **s == 200).count(), 2);
    assert_eq!(answered.last(), Some(&200));
    // Past its bucket a throttle says when to come back: one an hour, so
    // the second request is refused however slow this machine is.
    add_fault(
        &server,
        json!({ "action": "throttle", "rate": 0.0003, "burst": 1, "path": "/latest/meta-data/ami-id", "retry_after": "1s" }),
    )
    .await;
    assert_eq!(
        server.get("/latest/meta-data/ami-id").await.status,
        StatusCode::OK
    );
    let throttled = server.get("/latest/meta-data/ami-id").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.header("retry-after"), "1");
}

#[tokio::test]
async fn boto3_extends_expired_credentials_as_botocore_documents() {
    let server = Ersatz::start();
    add_fault(
        &server,
        json!({ "action": "expired-credentials", "route": "credentials" }),
    )
    .await;
    let document = server
        .get("/latest/meta-data/iam/security-credentials/ersatz-default")
        .await
        .json();
    let expiration = time::OffsetDateTime::parse(
        document["Expiration"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(expiration < time::OffsetDateTime::now_utc());
    assert_eq!(document["Code"], "Success");

    let (got, out) = boto3_credentials(&server, "1");
    // botocore keeps the credentials and tries again within 12 to 20 minutes.
    assert!(
        out.contains("Attempting credential expiration extension"),
        "{out}"
    );
    let expiry = time::OffsetDateTime::parse(
        got["expiry"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(expiry > time::OffsetDateTime::now_utc() + time::Duration::minutes(10));
}

// ---- the Rust aws-config IMDS client -------------------------------------------

#[tokio::test]
async fn aws_config_times_out_past_its_read_timeout_and_not_before() {
    let server = Ersatz::start();
    let client = || {
        common::imds_client(&server.url)
            .read_timeout(Duration::from_secs(1))
            .max_attempts(1)
            .build()
    };
    let slow = add_fault(
        &server,
        json!({ "name": "slow", "action": "latency", "latency": "3s", "route": "metadata" }),
    )
    .await;
    let error = client()
        .get("/latest/meta-data/instance-id")
        .await
        .unwrap_err();
    assert!(
        format!("{error:?}").to_lowercase().contains("timeout"),
        "{error:?}"
    );
    admin(&server, Method::DELETE, &format!("/faults/{slow}")).await;
    add_fault(
        &server,
        json!({ "action": "latency", "latency": "50ms", "route": "metadata" }),
    )
    .await;
    let id = client().get("/latest/meta-data/instance-id").await.unwrap();
    assert_eq!(id.as_ref(), "i-0123456789abcdef0");
}

#[tokio::test]
async fn aws_config_reports_a_token_put_closed_without_an_answer() {
    let server = Ersatz::start();
    add_fault(&server, json!({ "action": "drop", "route": "token" })).await;
    let client = common::imds_client(&server.url).max_attempts(1).build();
    let error = client
        .get("/latest/meta-data/instance-id")
        .await
        .unwrap_err();
    let shown = format!("{error:?}");
    assert!(
        shown.contains("FailedToLoadToken") && shown.contains("IncompleteMessage"),
        "a token that never came, on a connection closed early: {shown}"
    );
    let token_requests = journal(&server, "?path=/latest/api/token").await;
    assert_eq!(token_requests.len(), 1);
    assert_eq!(token_requests[0]["fault"], "fault-1");
}

// ---- every rule kind, over HTTP ----------------------------------------------------

/// What one request on a new connection got.
#[derive(Debug, PartialEq)]
enum Got {
    Status(u16),
    /// The connection closed without an answer.
    Closed,
    /// Neither an answer nor a close within the client's patience.
    Nothing,
}

fn raw_get(url: &str, path: &str, patience: Duration) -> Got {
    let mut stream = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(patience)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return Got::Nothing,
            Err(_) => break,
        }
    }
    let head = String::from_utf8_lossy(&answer);
    match head.split(' ').nth(1).and_then(|s| s.parse().ok()) {
        Some(status) => Got::Status(status),
        None => Got::Closed,
    }
}

#[tokio::test]
async fn drop_and_hang_close_the_connection_without_an_answer() {
    let server = Ersatz::start();
    add_fault(
        &server,
        json!({ "action": "drop", "path": "/latest/meta-data/ami-id" }),
    )
    .await;
    add_fault(
        &server,
        json!({ "action": "hang", "max": "1s", "path": "/latest/meta-data/hostname" }),
    )
    .await;
    let url = server.url.clone();
    let patient = Duration::from_secs(20);
    let got = tokio::task::spawn_blocking(move || {
        [
            raw_get(&url, "/latest/meta-data/ami-id", patient),
            raw_get(&url, "/latest/meta-data/hostname", patient),
            raw_get(&url, "/latest/meta-data/instance-id", patient),
            // A client that gives up first has had nothing either.
            raw_get(
                &url,
                "/latest/meta-data/hostname",
                Duration::from_millis(200),
            ),
        ]
    })
    .await
    .unwrap();
    assert_eq!(
        got,
        [Got::Closed, Got::Closed, Got::Status(200), Got::Nothing]
    );
    let metrics = admin(&server, Method::GET, "/metrics").await.text();
    assert_eq!(
        metric(&metrics, "ersatz_faults_applied_total{kind=\"drop\"}"),
        1
    );
    assert_eq!(
        metric(&metrics, "ersatz_faults_applied_total{kind=\"hang\"}"),
        2
    );
}

/// Connections to `port` (IPv4, this host) that their client has closed
/// and the server not yet: TCP's CLOSE-WAIT, from `/proc/net/tcp`.
fn close_waits(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&local) && fields[3] == "08"
        })
        .count()
}

/// A hang ends when its client gives up, as the connection of a lost answer
/// does, not only at its bound: the server closes its end long before the
/// 60 s the hang may last. (hyper drops a pending answer when its client
/// closes the connection.)
#[tokio::test]
async fn a_hang_lets_go_of_a_client_that_gave_up() {
    let server = Ersatz::start();
    add_fault(
        &server,
        json!({ "action": "hang", "max": "60s", "path": "/latest/meta-data/hostname" }),
    )
    .await;
    let url = server.url.clone();
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let (gave_up, let_go) = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
        write!(
            stream,
            "GET /latest/meta-data/hostname HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let gave_up = stream.read(&mut [0; 64]).map_err(|e| e.kind());
        drop(stream);
        let patience = std::time::Instant::now() + Duration::from_secs(20);
        while close_waits(port) > 0 && std::time::Instant::now() < patience {
            std::thread::sleep(Duration::from_millis(50));
        }
        (gave_up, close_waits(port))
    })
    .await
    .unwrap();
    assert_eq!(gave_up, Err(std::io::ErrorKind::WouldBlock));
    assert_eq!(
        let_go, 0,
        "the server still holds a connection its client closed"
    );
}

/// Held requests are bounded, a quarter of `server.max_connections`: past
/// that, a request that would be held closes at once, so that no client can
/// pin the listener with them. A stopping server lets go of them at once
/// instead of waiting out its drain (`terminate` allows 5 s; the drain 10).
#[tokio::test]
async fn held_requests_are_bounded_and_let_go_when_the_server_stops() {
    let server = Ersatz::builder()
        .env("ERSATZ_SERVER__MAX_CONNECTIONS", "8")
        .start();
    add_fault(
        &server,
        json!({ "action": "hang", "max": "60s", "path": "/latest/meta-data/hostname" }),
    )
    .await;
    let held: Vec<_> = (0..2)
        .map(|_| {
            let url = server.url.clone();
            std::thread::spawn(move || {
                raw_get(&url, "/latest/meta-data/hostname", Duration::from_secs(30))
            })
        })
        .collect();
    // Journalled as they are held.
    let patience = std::time::Instant::now() + Duration::from_secs(20);
    while journal(&server, "?path=/latest/meta-data/hostname")
        .await
        .len()
        < 2
    {
        assert!(std::time::Instant::now() < patience, "never held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = server.url.clone();
    let third = tokio::task::spawn_blocking(move || {
        raw_get(&url, "/latest/meta-data/hostname", Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(third, Got::Closed, "a third held request");
    assert!(server.terminate().success());
    for client in held {
        assert_eq!(client.join().unwrap(), Got::Closed);
    }
}

/// The statuses a run of requests gets under `rule`, on a fresh server.
async fn outcomes_under(rule: Value, requests: usize) -> Vec<u16> {
    let server = Ersatz::start();
    add_fault(&server, rule).await;
    let mut outcomes = Vec::new();
    for _ in 0..requests {
        outcomes.push(
            server
                .get("/latest/meta-data/instance-id")
                .await
                .status
                .as_u16(),
        );
    }
    outcomes
}

#[tokio::test]
async fn a_seed_repeats_its_run_exactly() {
    let rule = |seed: u64| json!({ "action": "status", "status": 503, "probability": 0.5, "seed": seed, "route": "metadata" });
    let first = outcomes_under(rule(42), 40).await;
    assert_eq!(first, outcomes_under(rule(42), 40).await);
    assert_ne!(first, outcomes_under(rule(43), 40).await);
    assert!(first.contains(&503) && first.contains(&200), "{first:?}");
}

#[tokio::test]
async fn after_and_for_choose_which_requests_and_rules_clear_at_run_time() {
    let outcomes = outcomes_under(
        json!({ "action": "status", "status": 500, "after": 2, "for": 3 }),
        7,
    )
    .await;
    assert_eq!(outcomes, [200, 200, 500, 500, 500, 200, 200]);

    let server = Ersatz::start();
    let name = add_fault(&server, json!({ "action": "status", "status": 503 })).await;
    assert_eq!(
        server.get("/latest/meta-data/instance-id").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let listed = admin(&server, Method::GET, "/faults").await.json();
    assert_eq!(listed["faults"][0]["name"], name);
    assert_eq!(listed["faults"][0]["applied"], 1);
    let cleared = admin(&server, Method::DELETE, &format!("/faults/{name}")).await;
    assert_eq!(cleared.status, StatusCode::OK);
    assert_eq!(
        server.get("/latest/meta-data/instance-id").await.status,
        StatusCode::OK
    );
    let again = admin(&server, Method::DELETE, &format!("/faults/{name}")).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

/// A route class is the path as the tree sees it: another spelling of a
/// credentials or token path is still that route.
#[tokio::test]
async fn rules_see_paths_as_the_tree_does() {
    let server = Ersatz::start();
    add_fault(
        &server,
        json!({ "action": "status", "status": 503, "route": "credentials" }),
    )
    .await;
    for path in [
        "/latest/meta-data/iam/security-credentials/",
        "/latest/meta-data/iam//security-credentials/ersatz-default",
        "/latest//meta-data/iam/security-credentials/ersatz-default/",
    ] {
        assert_eq!(
            server.get(path).await.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}"
        );
    }
    assert_eq!(
        server.get("/latest/meta-data/instance-id").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rules_from_the_configuration_apply_from_start_and_bad_ones_say_why() {
    let server = Ersatz::with_toml(
        "[[faults]]\nname = \"v1-outage\"\naction = \"status\"\nstatus = 502\nmethod = \"GET\"\npath = \"/latest/meta-data/local-*\"\n",
    );
    assert_eq!(
        server.get("/latest/meta-data/local-ipv4").await.status,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        server.get("/latest/meta-data/instance-id").await.status,
        StatusCode::OK
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[[faults]]\naction = \"status\"\nstatus = 200\n").unwrap();
    let checked = ersatz(
        &["config", "check", "--config", file.to_str().unwrap()],
        &[],
    );
    assert_eq!(checked.status.code(), Some(2));
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(said.contains("faults.0.status"), "{said}");
    assert!(said.contains("400 to 599"), "{said}");
    // A rule for a listener: one that exists, matched by path alone.
    for (rule, key, why) in [
        ("listener = \"gce\"", "faults.0.listener", "(there is none)"),
        (
            "listener = \"gce\"\nroute = \"token\"\n[[listeners]]\nname = \"gce\"\nlisten = [\"127.0.0.1:0\"]",
            "faults.0.route",
            "matches by path",
        ),
    ] {
        let toml = format!("[[faults]]\naction = \"drop\"\n{rule}\n");
        std::fs::write(&file, toml).unwrap();
        let checked = ersatz(&["config", "check", "--config", file.to_str().unwrap()], &[]);
        assert_eq!(checked.status.code(), Some(2));
        let said = String::from_utf8_lossy(&checked.stderr);
        assert!(said.contains(key) && said.contains(why), "{said}");
    }

    let refused = send_body(
        &server.admin_url,
        Method::POST,
        "/faults",
        &[],
        &json!({ "action": "throttle", "rate": -1 }).to_string(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.text().contains("rate"), "{}", refused.text());
}

#[test]
fn the_cli_adds_lists_and_clears_rules() {
    let server = Ersatz::start();
    let admin = ["--admin", server.admin_url.as_str()];
    let run = |args: &[&str]| {
        let output = ersatz(&[args, &admin].concat(), &[]);
        assert!(output.status.success(), "{args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let added = run(&[
        "fault", "add", "--action", "status", "--status", "503", "--route", "metadata", "--for",
        "1", "--name", "blip",
    ]);
    assert!(added.contains("blip"), "{added}");
    // --listener reaches the server, which has no such listener.
    let elsewhere = ["fault", "add", "--action", "drop", "--listener", "gce"];
    let refused = ersatz(&[&elsewhere[..], &admin].concat(), &[]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("no [[listeners]] entry is named \"gce\""),
        "{said}"
    );
    let listed = run(&["fault", "list"]);
    assert!(listed.contains("\"status\":503"), "{listed}");
    run(&["fault", "clear", "blip"]);
    // An empty name is not "every rule" by accident.
    let empty = ersatz(&[&["fault", "clear", ""][..], &admin].concat(), &[]);
    assert_eq!(empty.status.code(), Some(2));
    let refused = ersatz(&[&["fault", "clear", "blip"][..], &admin].concat(), &[]);
    assert_eq!(refused.status.code(), Some(1));
    let bad = ersatz(
        &[&["fault", "add", "--action", "teleport"][..], &admin].concat(),
        &[],
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an action"));
}

// ---- the journal and the audit -------------------------------------------------------

#[tokio::test]
async fn with_v1_disabled_the_journal_shows_the_401s() {
    let server = Ersatz::with_toml("[imds]\nv1 = \"disabled\"\n");
    assert_eq!(
        server.get("/latest/meta-data/instance-id").await.status,
        StatusCode::UNAUTHORIZED
    );
    server.get_v2("/latest/meta-data/instance-id").await;
    let entries = journal(&server, "?path=/latest/meta-data/").await;
    let shown: Vec<(String, u64)> = entries
        .iter()
        .map(|e| {
            (
                e["version"].as_str().unwrap().to_owned(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shown, [("v1".to_owned(), 401), ("v2".to_owned(), 200)]);
    let refused = journal(&server, "?status=401").await;
    assert_eq!(refused.len(), 1);
    // Never a token: the token answer's body is not kept, nor its header.
    let everything = admin(&server, Method::GET, "/requests").await.text();
    let token = server.token().await;
    let after = admin(&server, Method::GET, "/requests").await.text();
    assert!(!everything.contains(&token) && !after.contains(&token));
    let bad = admin(&server, Method::GET, "/requests?status=abc").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let cleared = admin(&server, Method::DELETE, "/requests").await.json();
    assert!(cleared["cleared"].as_u64().unwrap() >= 3);
    let metrics = admin(&server, Method::GET, "/metrics").await.text();
    assert_eq!(metric(&metrics, "ersatz_imds_v1_requests_total"), 1);
}

#[tokio::test]
async fn requests_follow_streams_new_entries_as_json_lines() {
    let server = Ersatz::start();
    let mut stream = tokio::net::TcpStream::connect(server.admin_url.trim_start_matches("http://"))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /requests?follow&path=/latest/meta-data/instance HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    server.get("/latest/meta-data/ami-id").await;
    server.get("/latest/meta-data/instance-id").await;
    server.get("/latest/meta-data/instance-type").await;
    let mut seen = String::new();
    let mut buffer = [0; 4096];
    while seen.matches("\"path\"").count() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buffer))
            .await
            .expect("lines arrive")
            .unwrap();
        assert!(n > 0, "the stream ended: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    assert!(seen.contains("application/x-ndjson"), "{seen}");
    assert!(seen.contains("/latest/meta-data/instance-id"));
    assert!(seen.contains("/latest/meta-data/instance-type"));
    assert!(!seen.contains("ami-id"), "filtered out: {seen}");
}

#[test]
fn the_audit_names_the_python_process_that_used_imdsv1() {
    let server = Ersatz::start();
    // The process keeps its connection open until the audit names it, as a
    // long-lived SDK client does: found off the request path, a process that
    // exits at once may be gone before it is looked up.
    let script = "import http.client, json, os, sys, time\n\
        c = http.client.HTTPConnection(sys.argv[1])\n\
        for path in ['/latest/meta-data/instance-id', '/latest/meta-data/instance-id', '/latest/meta-data/ami-id']:\n\
        \x20   c.request('GET', path)\n\
        \x20   c.getresponse().read()\n\
        a = http.client.HTTPConnection(sys.argv[2])\n\
        for _ in range(200):\n\
        \x20   a.request('GET', '/audit')\n\
        \x20   if str(os.getpid()) in a.getresponse().read().decode(): break\n\
        \x20   time.sleep(0.05)\n\
        print(os.getpid())";
    let authority = server.url.trim_start_matches("http://");
    let admin = server.admin_url.trim_start_matches("http://");
    let out = run_python(
        &python(),
        &["-c", script, authority, admin, "audit-marker"],
        &[],
    );
    let pid: u64 = out.trim().parse().unwrap();

    let output = ersatz(&["audit", "--admin", &server.admin_url], &[]);
    assert!(output.status.success(), "{output:?}");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains("127.0.0.1: 3 requests without a token"),
        "{report}"
    );
    assert!(report.contains(&format!("process {pid}:")), "{report}");
    assert!(
        report.contains("audit-marker"),
        "the command line: {report}"
    );
    assert!(
        report.contains("2  /latest/meta-data/instance-id"),
        "{report}"
    );

    let listed = ersatz(
        &["requests", "--admin", &server.admin_url, "--limit", "1"],
        &[],
    );
    let lines = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert!(lines.contains("ami-id"), "the newest: {lines}");
}

// ---- the hop limit ----------------------------------------------------------------

/// The IP TTL of this process's socket connected from `local` to `peer`.
fn ttl_of_socket(local: std::net::SocketAddr, peer: std::net::SocketAddr) -> Option<i32> {
    use std::os::fd::AsRawFd;
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: borrowed only for these calls; /proc/self/fd lists open fds
        // (one may close meanwhile, then the calls fail and it is skipped).
        let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let Ok(stream) = socket.try_clone_to_owned().map(std::net::TcpStream::from) else {
            continue;
        };
        if stream.local_addr().ok() == Some(local) && stream.peer_addr().ok() == Some(peer) {
            let mut ttl: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: a valid socket and an int-sized buffer.
            let got = unsafe {
                libc::getsockopt(
                    stream.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_TTL,
                    (&mut ttl as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            return (got == 0).then_some(ttl);
        }
    }
    None
}

/// The server's end of a connection: the token answer leaves with the hop
/// limit, the next answer on the same connection with the system's TTL
/// again. (That routers then drop it is the kernel's part.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_answer_leaves_with_the_hop_limit_and_other_answers_do_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let handle = ersatz::Server::builder()
        .toml("[imds]\nhop_limit = 3\n")
        .start()
        .await
        .unwrap();
    let authority = handle
        .metadata_url()
        .trim_start_matches("http://")
        .to_owned();
    let server: std::net::SocketAddr = authority.parse().unwrap();
    let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let client = stream.local_addr().unwrap();
    async fn exchange(stream: &mut tokio::net::TcpStream, request: String) -> String {
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buffer = vec![0; 4096];
        let n = stream.read(&mut buffer).await.unwrap();
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    }
    let default_ttl: i32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_default_ttl")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let put = exchange(
        &mut stream,
        format!(
        "PUT /latest/api/token HTTP/1.1\r\nHost: {authority}\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\r\n"
    ))
    .await;
    assert!(put.starts_with("HTTP/1.1 200"), "{put}");
    assert_eq!(ttl_of_socket(server, client), Some(3));
    let get = exchange(
        &mut stream,
        format!("GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: {authority}\r\n\r\n"),
    )
    .await;
    assert!(get.starts_with("HTTP/1.1 200"), "{get}");
    assert_eq!(ttl_of_socket(server, client), Some(default_ttl));
    handle.shutdown().await;
}

// ---- the fleet, in network namespaces ----------------------------------------------

/// A Kubernetes-like node, for real: ersatz in the node's namespace on
/// 169.254.169.254:80 (put there by `ersatz net setup`, with the pod bridge
/// let through its guard), two pods on the node's bridge whose default
/// route is the node, and a third pod one router further (a namespace that
/// forwards between the bridge and its own link). Everything is deleted
/// when dropped.
struct Fleet {
    node: Namespace,
    pods: [Namespace; 2],
    router: Namespace,
    far: Namespace,
    bridge: String,
}

/// Each pod its role; the far pod shares beta's.
const FLEET_CLIENTS: &str = r#"
[[clients]]
cidr = "10.200.0.2"
role = "alpha"

[[clients]]
cidr = "10.200.0.3"
role = "beta"

[[clients]]
cidr = "10.201.0.2"
role = "beta"
"#;
impl Fleet {
    fn build() -> Self {
        let node = Namespace::create("node");
        let bridge = unique("br");
        node.ip(&["link", "add", &bridge, "type", "bridge"]);
        node.ip(&["addr", "add", "10.200.0.1/24", "dev", &bridge]);
        node.ip(&["link", "set", &bridge, "up"]);
        let on_bridge = |tag: &str, namespace: &Namespace, address: &str| {
            let port = unique(tag);
            node.veth(&port, None, namespace, "eth0", address);
            node.ip(&["link", "set", &port, "master", &bridge]);
        };
        let pods = [Namespace::create("pod-a"), Namespace::create("pod-b")];
        for (pod, (tag, address)) in pods
            .iter()
            .zip([("pa", "10.200.0.2/24"), ("pb", "10.200.0.3/24")])
        {
            on_bridge(tag, pod, address);
            pod.ip(&["route", "add", "default", "via", "10.200.0.1"]);
        }
        let router = Namespace::create("router");
        on_bridge("rt", &router, "10.200.0.4/24");
        let far = Namespace::create("far");
        router.veth("eth1", Some("10.201.0.1/24"), &far, "eth0", "10.201.0.2/24");
        router.sysctl("net.ipv4.ip_forward=1");
        router.ip(&["route", "add", "default", "via", "10.200.0.1"]);
        far.ip(&["route", "add", "default", "via", "10.201.0.1"]);
        node.ip(&["route", "add", "10.201.0.0/24", "via", "10.200.0.4"]);

        let setup = node.run(
            common::BIN,
            &["net", "setup", "--allow-interface", &bridge],
            &[],
        );
        assert!(
            setup.status.success(),
            "{}",
            String::from_utf8_lossy(&setup.stderr)
        );
        Self {
            node,
            pods,
            router,
            far,
            bridge,
        }
    }

    /// ersatz on the node's 169.254.169.254:80 with this hop limit and v1 policy.
    fn serve(&self, hop_limit: u8, v1: &str) -> Ersatz {
        let toml =
            format!("{TWO_ROLES}{FLEET_CLIENTS}\n[imds]\nhop_limit = {hop_limit}\nv1 = \"{v1}\"\n");
        Ersatz::builder()
            .namespace(&self.node.0)
            .listen("169.254.169.254", 80)
            .config("fleet.toml", &toml)
            .start()
    }

    /// The journal's entries for `client`, read with `ersatz requests` on
    /// the node (the admin API is on the node's loopback).
    fn journal(&self, server: &Ersatz, client: &str) -> Vec<Value> {
        let out = self.node.run(
            common::BIN,
            &["requests", "--admin", &server.admin_url, "--client", client],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // The namespaces go with their links and rules; teardown is the
        // test's own last step.
    }
}

/// What boto3 in `namespace` finds, with no endpoint variable: the
/// credentials' method and key, or null when it finds none.
fn boto3_in(namespace: &Namespace) -> Value {
    let script = "import boto3, json\n\
        c = boto3.Session(region_name='us-east-1').get_credentials()\n\
        print(json.dumps(c and {'method': c.method, 'key': c.access_key}))";
    let python = python();
    let out = common::run_python_command(
        namespace.command(python.to_str().unwrap()),
        &["-c", script],
        &[],
    );
    serde_json::from_str(out.trim()).unwrap()
}

/// How a client's token PUTs went, and the versions of its other requests.
fn token_puts_and_versions(entries: &[Value]) -> (Vec<Value>, Vec<String>) {
    let (puts, others): (Vec<&Value>, Vec<&Value>) = entries
        .iter()
        .partition(|e| e["path"] == "/latest/api/token");
    (
        puts.iter()
            .map(|e| json!([e["status"], e["fault"]]))
            .collect(),
        others
            .iter()
            .map(|e| e["version"].as_str().unwrap().to_owned())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_in_network_namespaces_gets_its_own_roles_and_the_hop_limit_counts_the_node() {
    if !root_or_skip() {
        return;
    }
    let fleet = Fleet::build();
    let rules =
        String::from_utf8_lossy(&fleet.node.run("iptables", &["-S"], &[]).stdout).into_owned();
    let allow = format!("-A ERSATZ-GUARD -i {} -j RETURN", fleet.bridge);
    let guard = "-A ERSATZ-GUARD -j DROP";
    assert!(
        rules.contains("-A INPUT -d 169.254.169.254/32 -j ERSATZ-GUARD")
            && rules
                .find(&allow)
                .is_some_and(|at| rules.find(guard).is_some_and(|drop| at < drop)),
        "the bridge returns from the guard before its drop:\n{rules}"
    );
    // An uplink is never let through: a pod's eth0 carries its default route.
    let uplink = fleet.pods[0].run(
        common::BIN,
        &["net", "setup", "--no-ipv6", "--allow-interface", "eth+"],
        &[],
    );
    assert_eq!(uplink.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&uplink.stderr).contains("carries this host's default route"),
        "{}",
        String::from_utf8_lossy(&uplink.stderr)
    );
    let [pod_a, pod_b] = &fleet.pods;
    let alpha = json!({"method": "iam-role", "key": "AKIAALPHAALPHAALPHA0"});
    let beta = json!({"method": "iam-role", "key": "AKIABETABETABETABETA"});

    // hop_limit = 2: the pods behind the node get tokens, each its own role.
    let server = fleet.serve(2, "disabled");
    assert_eq!(boto3_in(pod_a), alpha);
    assert_eq!(boto3_in(pod_b), beta);
    let (puts, versions) = token_puts_and_versions(&fleet.journal(&server, "10.200.0.2"));
    assert_eq!(puts, vec![json!([200, null])]);
    assert!(versions.iter().all(|v| v == "v2"), "{versions:?}");
    // Nothing else: pod a's token does not read pod b's role, and a
    // client no entry names (the router) is given no role at all.
    let with_token = "import urllib.request as u, sys\n\
        base = 'http://169.254.169.254/latest/'\n\
        t = u.urlopen(u.Request(base + 'api/token', method='PUT', headers={'X-aws-ec2-metadata-token-ttl-seconds': '60'}), timeout=5).read().decode()\n\
        try:\n u.urlopen(u.Request(base + 'meta-data/' + sys.argv[1], headers={'X-aws-ec2-metadata-token': t}), timeout=5); print(200)\n\
        except u.HTTPError as e:\n print(e.code)";
    let status_of = |namespace: &Namespace, path: &str| {
        let python = python();
        common::run_python_command(
            namespace.command(python.to_str().unwrap()),
            &["-c", with_token, path],
            &[],
        )
        .trim()
        .to_owned()
    };
    let role = |name: &str| format!("iam/security-credentials/{name}");
    assert_eq!(status_of(pod_a, &role("alpha")), "200");
    assert_eq!(status_of(pod_a, &role("beta")), "404");
    assert_eq!(status_of(&fleet.router, &role("alpha")), "404");
    // The far pod is two routers from IMDS as EC2 counts (its router and the
    // node): ersatz answers its PUT with a TTL of 1, and the router, a real
    // one, drops the answer. v1 is disabled, so boto3 finds nothing.
    assert_eq!(boto3_in(&fleet.far), Value::Null);
    let (puts, _) = token_puts_and_versions(&fleet.journal(&server, "10.201.0.2"));
    assert!(
        !puts.is_empty() && puts.iter().all(|p| *p == json!([200, null])),
        "answered, and lost on the way: {puts:?}"
    );
    drop(server);

    // hop_limit = 3 reaches it.
    let server = fleet.serve(3, "disabled");
    assert_eq!(boto3_in(&fleet.far), beta);
    drop(server);

    // hop_limit = 1: a pod's token answer would die at the node. boto3
    // times out on the PUT and falls back to IMDSv1, which is allowed…
    let server = fleet.serve(1, "allowed");
    assert_eq!(boto3_in(pod_a), alpha);
    let (puts, versions) = token_puts_and_versions(&fleet.journal(&server, "10.200.0.2"));
    assert_eq!(puts, vec![json!([null, "hop-limit"])]);
    assert!(
        !versions.is_empty() && versions.iter().all(|v| v == "v1"),
        "{versions:?}"
    );
    // …while the node's own processes are no hop away and get tokens, also
    // one that speaks from another of the node's addresses (its bridge's).
    assert_eq!(status_of(&fleet.node, "instance-id"), "200");
    let from_bridge = "import http.client as h\n\
        c = h.HTTPConnection('169.254.169.254', 80, timeout=5, source_address=('10.200.0.1', 0))\n\
        c.request('PUT', '/latest/api/token', headers={'X-aws-ec2-metadata-token-ttl-seconds': '60'})\n\
        print(c.getresponse().status)";
    let python = python();
    let put = common::run_python_command(
        fleet.node.command(python.to_str().unwrap()),
        &["-c", from_bridge],
        &[],
    );
    assert_eq!(put.trim(), "200");
    let (puts, versions) = token_puts_and_versions(&fleet.journal(&server, "169.254.169.254"));
    assert_eq!(
        (puts, versions),
        (vec![json!([200, null])], vec!["v2".to_owned()])
    );
    let (puts, _) = token_puts_and_versions(&fleet.journal(&server, "10.200.0.1"));
    assert_eq!(puts, vec![json!([200, null])]);
    drop(server);

    // …and fails when v1 is disabled.
    let server = fleet.serve(1, "disabled");
    assert_eq!(boto3_in(pod_b), Value::Null);
    let entries = fleet.journal(&server, "10.200.0.3");
    let (puts, _) = token_puts_and_versions(&entries);
    assert!(
        !puts.is_empty() && puts.iter().all(|p| *p == json!([null, "hop-limit"])),
        "{puts:?}"
    );
    assert!(entries.iter().any(|e| e["status"] == 401), "{entries:?}");
    drop(server);

    // Teardown needs no interfaces named: the guard goes whole.
    let teardown = fleet.node.run(common::BIN, &["net", "teardown"], &[]);
    assert!(
        teardown.status.success(),
        "{}",
        String::from_utf8_lossy(&teardown.stderr)
    );
    let rules =
        String::from_utf8_lossy(&fleet.node.run("iptables", &["-S"], &[]).stdout).into_owned();
    assert!(!rules.contains("ERSATZ"), "{rules}");
}
