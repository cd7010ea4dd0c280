//! Other clouds: the GCE and Azure flavours, each on a listener of its own
//! and served by its shipped plugin as `examples/gce.toml` and
//! `examples/azure.toml` mount them, read by Google's and Microsoft's own
//! client libraries and cloud-init; and the wire rules the core keeps for
//! them (gates, headers, ETags, long-polls).

mod common;

use std::time::{Duration, Instant};

use common::{python, run_python, run_python_command, send, send_body, wasm, workspace, Ersatz};
use http::{Method, StatusCode};
use serde_json::{json, Value};

const GOOGLE: (&str, &str) = ("Metadata-Flavor", "Google");
const AZURE: (&str, &str) = ("Metadata", "true");

/// An example configuration, served on free ports, with its plugin from
/// this build.
fn example(name: &str, extra: &str) -> String {
    let text =
        std::fs::read_to_string(workspace().join("examples").join(format!("{name}.toml"))).unwrap();
    let shipped = format!("plugins/target/wasm32-unknown-unknown/release/{name}.wasm");
    assert!(
        text.contains(&shipped),
        "examples/{name}.toml mounts {shipped}"
    );
    let text = text.replace(&shipped, &wasm(name).display().to_string());
    let (before, after) = text
        .split_once("listen = [\"127.0.0.1:")
        .expect("a listen line");
    let (_, after) = after.split_once(']').unwrap();
    format!("{extra}\n{before}listen = [\"127.0.0.1:0\"]{after}")
}

/// `host:port` of a listener's URL.
fn authority(url: &str) -> &str {
    url.strip_prefix("http://").unwrap()
}

const GCE_EMAIL: &str = "487362019455-compute@developer.gserviceaccount.com";

/// What google-auth read from the example GCE listener at `gce`
/// (`host:port`), through `tests/py/gce_clients.py`, which checks it.
fn google_auth(gce: &str) -> Value {
    let expect = json!({
        "project_id": "ersatz-demo",
        "email": GCE_EMAIL,
        "token": "ya29.ersatz-demo-default",
        "audience": "https://service.example/ersatz",
    });
    let script = workspace().join("tests/py/gce_clients.py");
    let out = run_python(
        &python(),
        &[script.to_str().unwrap()],
        &[
            ("GCE_METADATA_HOST", gce),
            ("GCE_METADATA_IP", gce),
            ("ERSATZ_GCE_EXPECT", &expect.to_string()),
        ],
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn google_auth_and_cloud_init_read_the_gce_flavour() {
    let server = Ersatz::with_toml(&example("gce", ""));
    let gce = authority(server.listener("gce"));
    let seen = google_auth(gce);
    assert_eq!(seen["ping"], true, "{seen}");
    assert_eq!(seen["access_token"]["token"], "ya29.ersatz-demo-default");
    // verify_token checked the signature against ersatz's certs: these
    // claims come from a token that verified.
    let claims = &seen["id_token_claims"];
    assert_eq!(claims["aud"], "https://service.example/ersatz");
    assert_eq!(claims["email"], GCE_EMAIL);
    assert_eq!(claims["google"]["compute_engine"]["zone"], "europe-west2-b");

    // Debian's cloud-init, its GCE datasource's own crawl.
    let script = workspace().join("tests/py/gce_cloudinit.py");
    let out = run_python_command(
        std::process::Command::new("/usr/bin/python3"),
        &[script.to_str().unwrap(), "--host", gce],
        &[],
    );
    let read: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(read["ok"], true, "{read}");
    assert_eq!(read["meta-data"]["instance-id"], "4306570268266786072");
    assert_eq!(read["meta-data"]["availability-zone"], "europe-west2-b");
    assert_eq!(read["derived"]["hostname"], "web-1");
    assert!(
        read["user-data"].to_string().contains("hostname: web-1"),
        "{read}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gce_flavours_wire_rules() {
    let server = Ersatz::with_toml(&example("gce", ""));
    let gce = server.listener("gce");
    let get = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        send(gce, Method::GET, path, headers)
    };
    // The gates, before the plugin; the flavour's header on every answer.
    for (headers, why) in [
        (&[][..], "no Metadata-Flavor"),
        (
            &[("Metadata-Flavor", "Amazon")][..],
            "a wrong Metadata-Flavor",
        ),
        (
            &[GOOGLE, ("X-Forwarded-For", "10.0.0.9")][..],
            "X-Forwarded-For",
        ),
    ] {
        let reply = send(gce, Method::GET, "/computeMetadata/v1/instance/id", headers).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{why}");
        assert_eq!(reply.header("metadata-flavor"), "Google", "{why}");
        assert!(reply.text().contains("403."), "{why}: {}", reply.text());
    }
    // Every listener's DNS-rebinding and browser defences apply here too:
    // a page that rebinds a name to this address could send the header.
    for (header, why) in [
        ("Host", "a Host it does not serve"),
        ("Origin", "a web page"),
    ] {
        let headers = [GOOGLE, (header, "rebound.example")];
        let reply = send(
            gce,
            Method::GET,
            "/computeMetadata/v1/instance/id",
            &headers,
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{why}");
        // The listener's own refusal, not dressed as EC2's.
        assert_eq!(reply.header("server"), "Metadata Server for VM", "{why}");
    }
    let named = [GOOGLE, ("Host", "metadata.google.internal")];
    let reply = send(gce, Method::GET, "/computeMetadata/v1/instance/id", &named).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "a name in the listener's hosts"
    );
    // Another spelling of a path cannot reach a mount past its gates.
    for path in [
        "/./computeMetadata/v1/instance/id",
        "/computeMetadata/v1//instance/id",
        "/x/../computeMetadata/v1/",
    ] {
        assert_eq!(get_path(gce, path).await, StatusCode::BAD_REQUEST, "{path}");
    }
    let root = get("/", &[GOOGLE]).await;
    assert_eq!(
        (root.status, root.text().as_str()),
        (StatusCode::OK, "computeMetadata/\n")
    );
    // A directory without its slash is moved there, query and all.
    let moved = get("/computeMetadata/v1/instance?alt=json", &[GOOGLE]).await;
    assert_eq!(moved.status, StatusCode::MOVED_PERMANENTLY);
    assert!(moved
        .header("location")
        .ends_with("/computeMetadata/v1/instance/?alt=json"));
    // Leaves as text, or as JSON; every 200 has a content type and an ETag.
    let id = get("/computeMetadata/v1/instance/id", &[GOOGLE]).await;
    assert_eq!(id.text(), "4306570268266786072");
    assert_eq!(id.header("content-type"), "application/text");
    let as_json = get("/computeMetadata/v1/instance/id?alt=json", &[GOOGLE]).await;
    assert_eq!(as_json.json(), json!(4306570268266786072u64));
    assert_eq!(as_json.header("content-type"), "application/json");
    let again = get("/computeMetadata/v1/instance/id", &[GOOGLE]).await;
    assert_eq!(
        id.header("etag"),
        again.header("etag"),
        "an ETag names the value"
    );
    // recursive (in any case): the subtree as JSON, GCE's own names in camelCase,
    // the user's attribute names as written.
    let tree = get("/computeMetadata/v1/instance/?recursive=TRUE", &[GOOGLE])
        .await
        .json();
    assert_eq!(
        tree["machineType"], "projects/487362019455/machineTypes/e2-standard-4",
        "{tree}"
    );
    assert_eq!(
        tree["networkInterfaces"][0]["accessConfigs"][0]["externalIp"],
        "34.89.10.20"
    );
    assert_eq!(tree["attributes"]["enable-oslogin"], "FALSE");
    let text = get(
        "/computeMetadata/v1/instance/attributes/?recursive=true&alt=text",
        &[GOOGLE],
    )
    .await;
    assert!(
        text.text().lines().any(|l| l == "enable-oslogin FALSE"),
        "{}",
        text.text()
    );
    let missing = get("/computeMetadata/v1/instance/nothing", &[GOOGLE]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.header("metadata-flavor"), "Google");
    // The certificates ID tokens are verified with need no header, as Google's.
    let certs = get("/oauth2/v1/certs", &[]).await.json();
    assert!(certs.as_object().unwrap().values().all(|pem| pem
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----")));
}

async fn get_path(listener: &str, path: &str) -> StatusCode {
    send(listener, Method::GET, path, &[GOOGLE]).await.status
}

/// `[plugins.config.instance.attributes]` of the GCE example, as `role`.
fn gce_with_role(role: &str, extra: &str) -> String {
    let config = example("gce", extra);
    let marker = "enable-oslogin = \"FALSE\"";
    assert!(config.contains(marker));
    config.replace(marker, &format!("{marker}, role = \"{role}\""))
}

async fn reload(server: &Ersatz, config: &str) {
    std::fs::write(server.dir.path().join("ersatz.toml"), config).unwrap();
    let reloaded = send(&server.admin_url, Method::POST, "/reload", &[]).await;
    assert_eq!(reloaded.status, StatusCode::OK, "{}", reloaded.text());
}

const ROLE: &str = "/computeMetadata/v1/instance/attributes/role";

fn waiting(etag: &str, timeout_sec: u64) -> String {
    format!("{ROLE}?wait_for_change=true&last_etag={etag}&timeout_sec={timeout_sec}")
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_for_change_answers_a_stale_etag_at_once_a_change_when_it_comes_and_the_timeout() {
    let server = Ersatz::with_toml(&gce_with_role("web", ""));
    let gce = server.listener("gce").to_owned();
    let now = send(&gce, Method::GET, ROLE, &[GOOGLE]).await;
    let etag = now.header("etag").to_owned();

    // A stale ETag: the value now, at once.
    let stale_path = waiting("0000000000000000", 300);
    let stale = send(&gce, Method::GET, &stale_path, &[GOOGLE]);
    let stale = tokio::time::timeout(Duration::from_secs(20), stale).await;
    assert_eq!(
        stale.expect("a stale ETag is answered at once").text(),
        "web"
    );

    // The current ETag: parked until a change arrives over the admin API.
    let parked = tokio::spawn({
        let gce = gce.clone();
        let path = waiting(&etag, 300);
        async move { send(&gce, Method::GET, &path, &[GOOGLE]).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!parked.is_finished(), "answered before anything changed");
    reload(&server, &gce_with_role("db", "")).await;
    let changed = tokio::time::timeout(Duration::from_secs(20), parked)
        .await
        .expect("a change wakes a parked request")
        .unwrap();
    assert_eq!(changed.text(), "db");
    assert_ne!(changed.header("etag"), etag);

    // Nothing changes: the value as it is, after timeout_sec.
    let etag = changed.header("etag").to_owned();
    let started = Instant::now();
    let timed_out = send(&gce, Method::GET, &waiting(&etag, 2), &[GOOGLE]).await;
    assert_eq!(timed_out.text(), "db");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    let bad = send(&gce, Method::GET, &waiting(&etag, 0), &[GOOGLE]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // What GCE's agents wait on: a host maintenance, here an event set
    // over the admin API as for EC2.
    const MAINTENANCE: &str = "/computeMetadata/v1/instance/maintenance-event";
    let none = send(&gce, Method::GET, MAINTENANCE, &[GOOGLE]).await;
    assert_eq!(none.text(), "NONE");
    let path = format!("{MAINTENANCE}?wait_for_change=true&timeout_sec=300");
    let parked = tokio::spawn(async move { send(&gce, Method::GET, &path, &[GOOGLE]).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!parked.is_finished(), "answered before the event");
    let event = r#"{"code": "system-maintenance", "in": "1h"}"#;
    let set = send_body(
        &server.admin_url,
        Method::POST,
        "/events/maintenance",
        &[],
        event,
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text());
    let event = tokio::time::timeout(Duration::from_secs(20), parked).await;
    let event = event.expect("the event wakes the waiter").unwrap();
    assert_eq!(event.text(), "MIGRATE_ON_HOST_MAINTENANCE");
}

/// Fault rules name another cloud's listener: google-auth rides out its
/// token endpoint answering 503 twice (it retries), the journal names the
/// rule, and the EC2 listener is left alone; a rule added at run time
/// closes connections there unanswered; one naming no listener is refused.
#[tokio::test(flavor = "multi_thread")]
async fn fault_rules_reach_another_clouds_listener_by_name() {
    const TOKEN: &str = "/computeMetadata/v1/instance/service-accounts/*/token";
    let rule = format!(
        "[[faults]]\nname = \"token-down\"\nlistener = \"gce\"\npath = \"{TOKEN}\"\naction = \"status\"\nstatus = 503\nfor = 2\n"
    );
    let server = Ersatz::with_toml(&example("gce", &rule));
    let gce = authority(server.listener("gce")).to_owned();
    let seen = google_auth(&gce);
    assert_eq!(seen["access_token"]["token"], "ya29.ersatz-demo-default");
    let journal = send(&server.admin_url, Method::GET, "/requests", &[]).await;
    let entries = journal.json()["requests"].as_array().unwrap().clone();
    let tokens: Vec<&Value> = entries
        .iter()
        .filter(|e| e["path"].as_str().unwrap().ends_with("/token"))
        .collect();
    let statuses: Vec<u64> = tokens
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses[..3], [503, 503, 200], "{tokens:?}");
    assert_eq!(tokens[0]["fault"], "token-down");
    assert_eq!(tokens[2]["fault"], Value::Null);
    let ec2_answers = || async {
        let instance_id = "/latest/meta-data/instance-id";
        send(&server.url, Method::GET, instance_id, &[])
            .await
            .status
            == StatusCode::OK
    };
    assert!(ec2_answers().await, "the EC2 listener is left alone");

    // At run time, over the admin API: a hang, then a drop, on this
    // listener only.
    let add = |rule: Value| {
        let body = rule.to_string();
        let admin = server.admin_url.clone();
        async move { send_body(&admin, Method::POST, "/faults", &[], &body).await }
    };
    let unanswered = |path: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&gce).unwrap();
        let head = format!("GET {path} HTTP/1.1\r\nHost: {gce}\r\nMetadata-Flavor: Google\r\n\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let timeout = Some(Duration::from_secs(10));
        stream.set_read_timeout(timeout).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    };
    let hang = json!({ "name": "stuck", "listener": "gce", "action": "hang", "max": "1s",
        "path": "/computeMetadata/v1/project/*" });
    assert_eq!(add(hang).await.status, StatusCode::CREATED);
    let started = Instant::now();
    assert_eq!(unanswered("/computeMetadata/v1/project/project-id"), "");
    assert!(started.elapsed() >= Duration::from_secs(1), "held for max");
    let drop_rule = json!({ "name": "gone", "listener": "gce", "action": "drop" });
    let added = add(drop_rule).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text());
    assert_eq!(unanswered("/computeMetadata/v1/instance/id"), "", "dropped");
    assert!(ec2_answers().await, "the EC2 listener is left alone");
    let nowhere = json!({ "listener": "gcp", "action": "drop" }).to_string();
    let refused = send_body(&server.admin_url, Method::POST, "/faults", &[], &nowhere).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.text().contains("no [[listeners]] entry is named"),
        "{}",
        refused.text()
    );
}

/// An event's time coming is a change too: a waiter on `preempted` hears
/// of a spot notice configured for after start-up when it appears, not at
/// its timeout.
#[tokio::test(flavor = "multi_thread")]
async fn an_events_time_coming_wakes_its_waiters() {
    const PREEMPTED: &str = "/computeMetadata/v1/instance/preempted";
    // Counted from start-up, which compiles the plugin: time to spare.
    let server = Ersatz::with_toml(&example("gce", "[events.spot]\nafter = \"12s\"\n"));
    let gce = server.listener("gce").to_owned();
    let before = send(&gce, Method::GET, PREEMPTED, &[GOOGLE]).await;
    assert_eq!(before.text(), "FALSE");
    let etag = before.header("etag").to_owned();
    let path = format!("{PREEMPTED}?wait_for_change=true&last_etag={etag}&timeout_sec=120");
    let waiting = tokio::spawn(async move { send(&gce, Method::GET, &path, &[GOOGLE]).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "answered before the notice");
    let woke = tokio::time::timeout(Duration::from_secs(60), waiting).await;
    let woke = woke.expect("the notice wakes its waiter before its timeout");
    assert_eq!(woke.unwrap().text(), "TRUE");
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn plugin_calls(server: &Ersatz) -> u64 {
    let metrics = send(&server.admin_url, Method::GET, "/metrics", &[])
        .await
        .text();
    common::metric(&metrics, "ersatz_plugin_calls_total{plugin=\"gce\"}")
}

/// A thousand clients waiting for a change hold no plugin instance and
/// little memory, and all of them hear of the change.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_parked_waiters_cost_no_plugin_instances_and_bounded_memory() {
    const WAITERS: usize = 1000;
    raise_open_files_limit();
    let server_config = "[server]\nmax_connections = 4096\nmax_connections_per_client = 4096\n";
    let server = Ersatz::with_toml(&gce_with_role("web", server_config));
    let gce = server.listener("gce").to_owned();
    let etag = send(&gce, Method::GET, ROLE, &[GOOGLE])
        .await
        .header("etag")
        .to_owned();
    let before_calls = plugin_calls(&server).await;
    let before_rss = vm_rss_kib(server.pid());
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            let (gce, path) = (gce.clone(), waiting(&etag, 300));
            tokio::spawn(async move { send(&gce, Method::GET, &path, &[GOOGLE]).await })
        })
        .collect();
    // Each asked the plugin once, then parked.
    let deadline = Instant::now() + Duration::from_secs(60);
    while plugin_calls(&server).await < before_calls + WAITERS as u64 {
        assert!(Instant::now() < deadline, "the waiters never all asked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let parked_calls = plugin_calls(&server).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        plugin_calls(&server).await,
        parked_calls,
        "parked waiters called the plugin"
    );
    assert!(
        waiters.iter().all(|w| !w.is_finished()),
        "a waiter was answered before any change"
    );
    let grown_kib = vm_rss_kib(server.pid()).saturating_sub(before_rss);
    assert!(
        grown_kib < 64 * 1024,
        "{WAITERS} parked waiters grew the server by {grown_kib} KiB"
    );

    reload(&server, &gce_with_role("db", server_config)).await;
    for waiter in waiters {
        let reply = tokio::time::timeout(Duration::from_secs(60), waiter)
            .await
            .unwrap()
            .unwrap();
        let failures = || {
            let stderr = server.stderr();
            let failed = stderr.lines().filter(|l| l.contains("call failed"));
            failed.take(3).collect::<Vec<_>>().join("\n")
        };
        assert_eq!(reply.text(), "db", "{}", failures());
    }
}

/// The client side of a thousand connections needs more descriptors than
/// some machines' default soft limit (1024).
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit write and read only `limit`.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max.min(16384);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

fn azure_expectations(server: &Ersatz) -> Value {
    json!({
        "resource": "https://management.azure.com",
        "tenant": "72f1c5a0-3b8e-4d2a-9c6f-0e4b7d1a2c3e",
        "system_client_id": "0e8b5c2a-6d41-4f7e-9a3b-c1d2e3f40516",
        "user_client_id": "4a5b6c7d-8e9f-4a0b-9c1d-2e3f4a5b6c7d",
        "jwks_url": format!("{}/keys/jwks", server.listener("azure")),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_identity_gets_verifiable_tokens_from_the_azure_flavour() {
    let server = Ersatz::with_toml(&example("azure", ""));
    let expect = azure_expectations(&server);
    let script = workspace().join("tests/py/azure_clients.py");
    let out = run_python(
        &python(),
        &[script.to_str().unwrap()],
        &[
            (
                "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                server.listener("azure"),
            ),
            ("ERSATZ_AZURE_EXPECT", &expect.to_string()),
        ],
    );
    let seen: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    // Each token verified against ersatz's JWKS in the script.
    assert_eq!(
        seen["system"]["appid"], expect["system_client_id"],
        "{seen}"
    );
    assert_eq!(seen["system"]["aud"], "https://management.azure.com");
    assert_eq!(seen["user"]["appid"], expect["user_client_id"]);
    assert!(
        seen["unknown"]
            .as_str()
            .unwrap()
            .contains("Identity not found"),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_azure_flavours_wire_rules() {
    let server = Ersatz::with_toml(&example("azure", ""));
    let azure = server.listener("azure");
    let instance = "/metadata/instance?api-version=2021-02-01";
    let refused = |reply: common::Reply, why: &str| {
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{why}: {}",
            reply.text()
        );
        reply.json()
    };
    let no_header = refused(
        send(azure, Method::GET, instance, &[]).await,
        "no Metadata header",
    );
    assert_eq!(
        no_header["error"],
        "Bad request. Required metadata header not specified"
    );
    refused(
        send(azure, Method::GET, instance, &[("Metadata", "false")]).await,
        "Metadata: false",
    );
    refused(
        send(
            azure,
            Method::GET,
            instance,
            &[AZURE, ("X-Forwarded-For", "10.1.1.1")],
        )
        .await,
        "XFF",
    );
    let twice = "/metadata/instance?api-version=2021-02-01&api-version=2021-02-01";
    refused(
        send(azure, Method::GET, twice, &[AZURE]).await,
        "a repeated parameter",
    );
    for (path, why) in [
        ("/metadata/instance", "no api-version"),
        (
            "/metadata/instance?api-version=2001-01-01",
            "an unknown api-version",
        ),
    ] {
        let body = refused(send(azure, Method::GET, path, &[AZURE]).await, why);
        assert!(
            body["newest-versions"]
                .as_array()
                .is_some_and(|v| !v.is_empty()),
            "{why}: {body}"
        );
    }
    let versions = send(azure, Method::GET, "/metadata/versions", &[AZURE]).await;
    assert_eq!(versions.status, StatusCode::OK);
    assert!(versions.json()["apiVersions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "2021-02-01"));
    // Every value a string; drill down by path; text for a leaf.
    let document = send(azure, Method::GET, instance, &[AZURE]).await.json();
    assert_eq!(document["compute"]["name"], "web-1");
    assert_eq!(
        document["network"]["interface"][0]["ipv4"]["ipAddress"][0]["privateIpAddress"],
        "10.1.0.4"
    );
    let vm_size = "/metadata/instance/compute/vmSize?api-version=2021-02-01&format=text";
    assert_eq!(
        send(azure, Method::GET, vm_size, &[AZURE]).await.text(),
        "Standard_D4s_v5"
    );
    let token =
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net";
    let token = send(azure, Method::GET, token, &[AZURE]).await.json();
    for field in ["expires_in", "expires_on", "not_before"] {
        assert!(
            token[field]
                .as_str()
                .is_some_and(|n| n.parse::<u64>().is_ok()),
            "{field}: {token}"
        );
    }
    let unknown = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=r&client_id=00000000-0000-0000-0000-000000000000";
    let unknown = refused(
        send(azure, Method::GET, unknown, &[AZURE]).await,
        "an unknown identity",
    );
    assert_eq!(unknown["error"], "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_scheduled_events_come_from_run_time_events_and_are_approved_by_post() {
    let server = Ersatz::with_toml(&example("azure", ""));
    let azure = server.listener("azure");
    let events = "/metadata/scheduledevents?api-version=2020-07-01";
    let none = send(azure, Method::GET, events, &[AZURE]).await.json();
    assert_eq!(none["Events"], json!([]), "{none}");
    let first = none["DocumentIncarnation"].as_u64().unwrap();

    // The operator's spot notice, over the admin API, as for EC2.
    let spot = send_body(
        &server.admin_url,
        Method::POST,
        "/events/spot",
        &[],
        r#"{"in": "10m"}"#,
    )
    .await;
    assert_eq!(spot.status, StatusCode::OK, "{}", spot.text());
    let scheduled = send(azure, Method::GET, events, &[AZURE]).await.json();
    let event = &scheduled["Events"][0];
    assert_eq!(event["EventType"], "Preempt", "{scheduled}");
    assert_eq!(event["EventStatus"], "Scheduled");
    assert!(scheduled["DocumentIncarnation"].as_u64().unwrap() > first);

    let approve = json!({ "StartRequests": [{ "EventId": event["EventId"] }] }).to_string();
    let approved = send_body(azure, Method::POST, events, &[AZURE], &approve).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text());
    let started = send(azure, Method::GET, events, &[AZURE]).await.json();
    assert_eq!(started["Events"][0]["EventStatus"], "Started", "{started}");
    let unknown = json!({ "StartRequests": [{ "EventId": "no-such-event" }] }).to_string();
    let refused = send_body(azure, Method::POST, events, &[AZURE], &unknown).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
}

/// Long-polls whose clients gave up give their places back, and a body
/// that never comes is given `server.client_timeout`, not forever.
#[tokio::test(flavor = "multi_thread")]
async fn parked_places_come_back_when_clients_go_and_slow_bodies_time_out() {
    // max_parked is half of max_connections: 4.
    let limits = "[server]\nmax_connections = 8\nclient_timeout = \"1s\"\n";
    let server = Ersatz::with_toml(&gce_with_role("web", limits));
    let gce = server.listener("gce").to_owned();
    let etag = send(&gce, Method::GET, ROLE, &[GOOGLE])
        .await
        .header("etag")
        .to_owned();
    for _ in 0..6 {
        // Parked, then given up on by its client.
        let path = waiting(&etag, 300);
        let parked = send(&gce, Method::GET, &path, &[GOOGLE]);
        assert!(tokio::time::timeout(Duration::from_millis(300), parked)
            .await
            .is_err());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let timed = send(&gce, Method::GET, &waiting(&etag, 1), &[GOOGLE]).await;
    assert_eq!(
        timed.status,
        StatusCode::OK,
        "parked places leaked: {}",
        timed.text()
    );

    // A POST that promises a body and sends none.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(authority(&gce))
        .await
        .unwrap();
    let head = format!(
        "POST /computeMetadata/v1/instance/id HTTP/1.1\r\nHost: {}\r\nMetadata-Flavor: Google\r\nContent-Length: 100\r\n\r\n",
        authority(&gce)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let read = stream.read_to_string(&mut answer);
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("answered")
        .ok();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// A flavour listener over its connection cap answers 503 as itself, with
/// its own headers: `Server: EC2ws` is EC2's alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_flavour_listener_answers_503_in_its_own_headers() {
    use std::io::Read;
    let server = Ersatz::with_toml(&example("gce", "[server]\nmax_connections = 2\n"));
    let gce = authority(server.listener("gce")).to_owned();
    let held: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(&gce).unwrap())
        .collect();
    // Give the server a moment to accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = std::net::TcpStream::connect(&gce).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    let _ = over.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("ec2ws"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("\r\nmetadata-flavor: google\r\n"),
        "{answer}"
    );
    assert!(
        lower.contains("\r\nserver: metadata server for vm\r\n"),
        "{answer}"
    );
    drop(held);
}

#[test]
fn config_show_keeps_plugins_secrets_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gce.toml");
    std::fs::write(&path, example("gce", "")).unwrap();
    let shown = common::ersatz(&["config", "show", "--config", path.to_str().unwrap()], &[]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("plugins.0.config.project_id"), "{shown}");
    assert!(!shown.contains("ya29.ersatz-demo-default"), "{shown}");
}
