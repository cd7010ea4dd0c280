//! A realistic instance: lifecycle events before, at and after their time
//! and triggered at run time, user data and tags.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::netns::{root_or_skip, unique, Namespace};
use common::{ersatz, Ersatz};
use http::{Method, StatusCode};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn iso(text: &str) -> SystemTime {
    let at = OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    UNIX_EPOCH + Duration::from_secs(at.unix_timestamp() as u64)
}

/// `21 Jan 2019 09:00:43 GMT`
fn aws_date(text: &str) -> SystemTime {
    let format = time::macros::format_description!(
        "[day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at =
        time::PrimitiveDateTime::parse(text, format).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    UNIX_EPOCH + Duration::from_secs(at.assume_utc().unix_timestamp() as u64)
}

fn near(a: SystemTime, b: SystemTime, slack: Duration) -> bool {
    a.duration_since(b).unwrap_or_else(|e| e.duration()) <= slack
}

async fn admin(server: &Ersatz, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
    let reply = common::send_body(&server.admin_url, method, path, &[], body).await;
    let value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status, value)
}

// Events configured to appear 3 s after start-up: long enough that the
// "before" reads land before it on two busy cores (1 s was not).
#[tokio::test(flavor = "multi_thread")]
async fn spot_notice_before_at_and_after_its_time() {
    let started = SystemTime::now();
    let server =
        Ersatz::with_toml("[events.spot]\nafter = \"3s\"\naction = \"stop\"\nwarning = \"1m\"\n");
    assert_eq!(
        server
            .get("/latest/meta-data/instance-life-cycle")
            .await
            .text(),
        "spot"
    );
    assert!(server
        .get("/latest/meta-data/")
        .await
        .text()
        .lines()
        .any(|l| l == "spot/"));
    // Before: no notice.
    assert_eq!(
        server
            .get("/latest/meta-data/spot/instance-action")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(server.get("/latest/meta-data/spot/").await.text(), "");
    // At and after: the notice, for an action a minute later; no
    // termination-time for a stop.
    tokio::time::sleep(Duration::from_millis(3300)).await;
    let notice = server
        .get("/latest/meta-data/spot/instance-action")
        .await
        .json();
    assert_eq!(notice["action"], "stop");
    assert!(near(
        iso(notice["time"].as_str().unwrap()),
        started + Duration::from_secs(63),
        Duration::from_secs(3)
    ));
    assert_eq!(
        server.get("/latest/meta-data/spot/").await.text(),
        "instance-action"
    );
    assert_eq!(
        server
            .get("/latest/meta-data/spot/termination-time")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // At run time: a termination in 30 s, then cleared.
    let (status, _) = admin(
        &server,
        Method::POST,
        "/events/spot",
        r#"{"action":"terminate","in":"30s"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let notice = server
        .get("/latest/meta-data/spot/instance-action")
        .await
        .json();
    assert_eq!(notice["action"], "terminate");
    let termination = server
        .get("/latest/meta-data/spot/termination-time")
        .await
        .text();
    assert_eq!(notice["time"], termination.as_str());
    assert!(near(
        iso(&termination),
        SystemTime::now() + Duration::from_secs(30),
        Duration::from_secs(3)
    ));
    let (status, _) = admin(&server, Method::DELETE, "/events", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        server
            .get("/latest/meta-data/spot/instance-action")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // The CLI does the same.
    let out = ersatz(
        &["event", "spot", "--in", "2m", "--action", "hibernate"],
        &[("ERSATZ_ADMIN_URL", &server.admin_url)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        server
            .get("/latest/meta-data/spot/instance-action")
            .await
            .json()["action"],
        "hibernate"
    );
    assert!(ersatz(
        &["event", "clear"],
        &[("ERSATZ_ADMIN_URL", &server.admin_url)]
    )
    .status
    .success());
    assert_eq!(
        server
            .get("/latest/meta-data/spot/instance-action")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn on_demand_instances_have_no_spot_path() {
    let server = Ersatz::start();
    assert_eq!(
        server
            .get("/latest/meta-data/instance-life-cycle")
            .await
            .text(),
        "on-demand"
    );
    assert!(!server
        .get("/latest/meta-data/")
        .await
        .text()
        .contains("spot/"));
    let (status, body) = admin(&server, Method::POST, "/events/spot", "{}").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rebalance_recommendation_on_its_timeline_and_on_demand() {
    let server = Ersatz::with_toml("[events.rebalance]\nafter = \"3s\"\n");
    assert_eq!(
        server
            .get("/latest/meta-data/events/recommendations/rebalance")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server
            .get("/latest/meta-data/events/recommendations/")
            .await
            .text(),
        ""
    );
    tokio::time::sleep(Duration::from_millis(3300)).await;
    assert_eq!(
        server
            .get("/latest/meta-data/events/recommendations/")
            .await
            .text(),
        "rebalance"
    );
    let notice = server
        .get("/latest/meta-data/events/recommendations/rebalance")
        .await
        .json();
    assert!(near(
        iso(notice["noticeTime"].as_str().unwrap()),
        SystemTime::now(),
        Duration::from_secs(3)
    ));

    let (status, _) = admin(&server, Method::DELETE, "/events", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        server
            .get("/latest/meta-data/events/recommendations/rebalance")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let out = ersatz(
        &["event", "rebalance"],
        &[("ERSATZ_ADMIN_URL", &server.admin_url)],
    );
    assert!(out.status.success());
    assert_eq!(
        server
            .get("/latest/meta-data/events/recommendations/rebalance")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_maintenance_lists_events_in_aws_shape() {
    let server = Ersatz::with_toml(
        r#"
[[events.maintenance]]
code = "system-reboot"
after = "3s"
not_before = "2h"
duration = "30m"

[[events.maintenance]]
code = "instance-stop"
not_before = "1h"
state = "completed"
"#,
    );
    let started = SystemTime::now();
    assert_eq!(
        server
            .get("/latest/meta-data/events/maintenance/")
            .await
            .text(),
        "history\nscheduled"
    );
    assert_eq!(
        server
            .get("/latest/meta-data/events/maintenance/scheduled")
            .await
            .text(),
        "[]"
    );
    let history: Value = server
        .get("/latest/meta-data/events/maintenance/history")
        .await
        .json();
    assert_eq!(history[0]["Code"], "instance-stop");
    assert_eq!(history[0]["State"], "completed");

    tokio::time::sleep(Duration::from_millis(3300)).await;
    let reply = server
        .get("/latest/meta-data/events/maintenance/scheduled")
        .await;
    assert!(
        reply.text().contains("\"Code\" : \"system-reboot\""),
        "AWS's style: {}",
        reply.text()
    );
    let scheduled = reply.json();
    let event = &scheduled.as_array().unwrap()[0];
    assert_eq!(event["Code"], "system-reboot");
    assert_eq!(event["Description"], "scheduled reboot");
    assert_eq!(event["State"], "active");
    assert!(event["EventId"]
        .as_str()
        .unwrap()
        .starts_with("instance-event-"));
    let not_before = aws_date(event["NotBefore"].as_str().unwrap());
    let not_after = aws_date(event["NotAfter"].as_str().unwrap());
    assert!(near(
        not_before,
        started + Duration::from_secs(7200),
        Duration::from_secs(3)
    ));
    assert_eq!(
        not_after.duration_since(not_before).unwrap(),
        Duration::from_secs(1800)
    );
    assert!(aws_date(event["NotBeforeDeadline"].as_str().unwrap()) > not_after);

    let (status, timeline) = admin(
        &server,
        Method::POST,
        "/events/maintenance",
        r#"{"code":"instance-retirement","in":"10m","duration":"1h"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{timeline}");
    let scheduled = server
        .get("/latest/meta-data/events/maintenance/scheduled")
        .await
        .json();
    assert_eq!(scheduled.as_array().unwrap().len(), 2);
    let (status, _) = admin(
        &server,
        Method::POST,
        "/events/maintenance",
        r#"{"code":"coffee-break"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn autoscaling_target_lifecycle_state_changes_on_its_timeline() {
    let server = Ersatz::with_toml("[events.autoscaling]\nafter = \"3s\"\n");
    let path = "/latest/meta-data/autoscaling/target-lifecycle-state";
    assert_eq!(server.get(path).await.text(), "InService");
    tokio::time::sleep(Duration::from_millis(3300)).await;
    assert_eq!(server.get(path).await.text(), "Terminated");
    let out = ersatz(
        &["event", "autoscaling", "--state", "Warmed:Stopped"],
        &[("ERSATZ_ADMIN_URL", &server.admin_url)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.get(path).await.text(), "Warmed:Stopped");
}

#[tokio::test(flavor = "multi_thread")]
async fn event_config_mistakes_name_the_key() {
    for (contents, key) in [
        (
            "[[events.maintenance]]\ncode = \"tea\"\nnot_before = \"1h\"\n",
            "events.maintenance.0.code",
        ),
        (
            "[events.autoscaling]\nafter = \"3s\"\ntarget = \"Gone\"\n",
            "events.autoscaling.target",
        ),
        (
            "[instance]\nlife_cycle = \"on-demand\"\n[events.spot]\n",
            "events.spot",
        ),
        (
            "[events.spot]\naction = \"explode\"\n",
            "events.spot.action",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.toml");
        std::fs::write(&path, contents).unwrap();
        let out = ersatz(
            &["config", "check", "--config", path.to_str().unwrap()],
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{contents}");
        assert!(stderr.contains(&format!("`{key}`")), "{key}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn user_data_is_served_byte_for_byte() {
    let server =
        Ersatz::with_toml("[instance]\nuser_data = \"#cloud-config\\nruncmd:\\n  - echo hi\\n\"\n");
    let reply = server.get("/latest/user-data").await;
    assert_eq!(reply.header("content-type"), "application/octet-stream");
    assert_eq!(
        reply.body.as_ref(),
        b"#cloud-config\nruncmd:\n  - echo hi\n"
    );
    assert_eq!(
        server.get("/latest/").await.text(),
        "dynamic\nmeta-data\nuser-data"
    );

    // Binary (gzip) user data from a file, untouched.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("user-data.gz");
    let bytes: Vec<u8> = vec![0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x00, 0x0a, 0x80, 0x7f];
    std::fs::write(&file, &bytes).unwrap();
    let server = Ersatz::with_toml(&format!(
        "[instance]\nuser_data_file = \"{}\"\n",
        file.display()
    ));
    assert_eq!(
        server.get("/latest/user-data").await.body.as_ref(),
        bytes.as_slice()
    );
    assert_eq!(
        server.get("/2009-04-04/user-data/").await.body.as_ref(),
        bytes.as_slice()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_appear_only_when_allowed_in_metadata() {
    let tags = "[instance.tags]\nName = \"web-1\"\nEnvironment = \"test\"\n";
    let hidden = Ersatz::with_toml(tags);
    assert_eq!(
        hidden.get("/latest/meta-data/tags/instance/").await.status,
        StatusCode::NOT_FOUND
    );
    let shown = Ersatz::with_toml(&format!("[instance]\ntags_in_metadata = true\n{tags}"));
    assert_eq!(
        shown.get("/latest/meta-data/tags/instance/").await.text(),
        "Environment\nName"
    );
    assert_eq!(
        shown
            .get("/latest/meta-data/tags/instance/Name")
            .await
            .text(),
        "web-1"
    );
    assert!(shown
        .get("/latest/meta-data/")
        .await
        .text()
        .lines()
        .any(|l| l == "tags/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_init_crawls_an_instance_with_every_event() {
    let server = Ersatz::with_toml(
        "[imds]\nv1 = \"disabled\"\n[instance]\nuser_data = \"#!/bin/sh\\necho hi\\n\"\n[events.spot]\n[events.rebalance]\n[events.autoscaling]\nafter = \"1h\"\n[[events.maintenance]]\ncode = \"system-reboot\"\nnot_before = \"1h\"\n",
    );
    let crawl = common::cloud_init_crawl(&server.url);
    let md = &crawl["meta-data"];
    assert_eq!(
        md["spot"]["instance-action"]["action"], "terminate",
        "{}",
        md["spot"]
    );
    assert_eq!(md["autoscaling"]["target-lifecycle-state"], "InService");
    assert_eq!(crawl["user-data"]["utf8"], "#!/bin/sh\necho hi\n");
}

fn openssl(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs")
}

/// `openssl smime -verify` of a served PKCS #7 body (armoured as AWS tells
/// users to) over the file `content`, with `certificate`.
fn verify_pkcs7(
    dir: &std::path::Path,
    name: &str,
    body: &[u8],
    content: &str,
    certificate: &str,
) -> std::process::Output {
    let armoured = format!(
        "-----BEGIN PKCS7-----\n{}\n-----END PKCS7-----\n",
        String::from_utf8_lossy(body)
    );
    std::fs::write(dir.join(name), armoured).unwrap();
    openssl(
        &[
            "smime",
            "-verify",
            "-in",
            name,
            "-inform",
            "PEM",
            "-content",
            content,
            "-certfile",
            certificate,
            "-noverify",
        ],
        dir,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_signatures_verify_with_stock_openssl_and_fail_when_tampered() {
    let state = tempfile::tempdir().unwrap();
    let server = Ersatz::builder()
        .env("ERSATZ_SERVER__STATE_DIR", state.path().to_str().unwrap())
        .start();
    assert_eq!(
        server
            .get("/latest/dynamic/instance-identity/")
            .await
            .text(),
        "document\npkcs7\nrsa2048\nsignature"
    );
    let dir = tempfile::tempdir().unwrap();
    let fetch = |leaf: &'static str| {
        let server = &server;
        async move {
            let reply = server
                .get(&format!("/latest/dynamic/instance-identity/{leaf}"))
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{leaf}");
            reply.body
        }
    };
    let document = fetch("document").await;
    std::fs::write(dir.path().join("document"), &document).unwrap();
    let mut tampered = document.to_vec();
    let at = tampered.iter().position(|b| *b == b'1').unwrap();
    tampered[at] = b'2';
    std::fs::write(dir.path().join("tampered"), &tampered).unwrap();

    // The certificate, as `ersatz cert` prints it for the same state directory.
    let cert = ersatz(
        &["cert"],
        &[("ERSATZ_SERVER__STATE_DIR", state.path().to_str().unwrap())],
    );
    assert!(
        cert.status.success(),
        "{}",
        String::from_utf8_lossy(&cert.stderr)
    );
    assert!(String::from_utf8_lossy(&cert.stdout).starts_with("-----BEGIN CERTIFICATE-----"));
    std::fs::write(dir.path().join("certificate"), &cert.stdout).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(state.path().join("identity.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);

    // signature: RSA SHA-256, checked with the certificate's public key.
    use base64::Engine as _;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(fetch("signature").await)
        .unwrap();
    std::fs::write(dir.path().join("signature.bin"), signature).unwrap();
    let key = openssl(
        &["x509", "-pubkey", "-noout", "-in", "certificate"],
        dir.path(),
    );
    std::fs::write(dir.path().join("key.pem"), key.stdout).unwrap();
    for (file, ok) in [("document", true), ("tampered", false)] {
        let out = openssl(
            &[
                "dgst",
                "-sha256",
                "-verify",
                "key.pem",
                "-signature",
                "signature.bin",
                file,
            ],
            dir.path(),
        );
        assert_eq!(
            out.status.success(),
            ok,
            "signature over {file}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // Another self-signed certificate, for a key that signed nothing here.
    let foreign = openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "foreign.key",
            "-out",
            "foreign.crt",
            "-days",
            "1",
            "-subj",
            "/CN=not ersatz",
        ],
        dir.path(),
    );
    assert!(
        foreign.status.success(),
        "{}",
        String::from_utf8_lossy(&foreign.stderr)
    );

    // pkcs7 and rsa2048: PKCS #7 as AWS documents verifying them.
    for form in ["pkcs7", "rsa2048"] {
        let body = fetch(form).await;
        assert!(
            body.split(|b| *b == b'\n').all(|line| line.len() <= 64),
            "{form} in 64-column lines"
        );
        for (file, certificate, ok) in [
            ("document", "certificate", true),
            ("tampered", "certificate", false),
            // As on AWS, the signature carries no certificate: the one
            // given is the one checked, so another key's fails.
            ("document", "foreign.crt", false),
        ] {
            let out = verify_pkcs7(dir.path(), form, &body, file, certificate);
            assert_eq!(
                out.status.success(),
                ok,
                "{form} over {file} with {certificate}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    // The same key after a restart: signatures still verify with that certificate.
    drop(server);
    let again = Ersatz::builder()
        .env("ERSATZ_SERVER__STATE_DIR", state.path().to_str().unwrap())
        .start();
    let body = again
        .get("/latest/dynamic/instance-identity/pkcs7")
        .await
        .body;
    let out = verify_pkcs7(dir.path(), "again", &body, "document", "certificate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A second namespace joined to `ns` by a veth pair (10.199.0.2 here,
/// 10.199.0.1 there), routing 169.254.169.254 to `ns`: a host one link
/// away, as a container or a neighbour would be.
fn linked_peer(ns: &Namespace) -> Namespace {
    let peer = Namespace::create("peer");
    ns.veth(
        &unique("a"),
        Some("10.199.0.1/24"),
        &peer,
        &unique("b"),
        "10.199.0.2/24",
    );
    peer.ip(&["route", "add", "169.254.169.254/32", "via", "10.199.0.1"]);
    peer
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_link_local_address_in_a_network_namespace() {
    if !root_or_skip() {
        return;
    }
    let print = ersatz(&["net", "print"], &[]);
    assert!(
        String::from_utf8_lossy(&print.stdout).contains("ip -4 addr add 169.254.169.254/32 dev lo")
    );

    let ns = Namespace::create("test");
    let setup = ns.run(common::BIN, &["net", "setup"], &[]);
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let addresses =
        String::from_utf8_lossy(&ns.run("ip", &["addr", "show", "dev", "lo"], &[]).stdout)
            .into_owned();
    assert!(
        addresses.contains("169.254.169.254/32") && addresses.contains("fd00:ec2::254/128"),
        "{addresses}"
    );
    let rules = String::from_utf8_lossy(&ns.run("iptables", &["-S"], &[]).stdout).into_owned();
    for rule in [
        "-A INPUT -d 169.254.169.254/32 -j ERSATZ-GUARD",
        "-A ERSATZ-GUARD -i lo -j RETURN",
        "-A ERSATZ-GUARD -j DROP",
    ] {
        assert!(rules.contains(rule), "{rule}:\n{rules}");
    }

    // ersatz on the real address and port, and boto3 with no endpoint variable.
    let state = tempfile::tempdir().unwrap();
    let mut server = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            common::BIN,
            "serve",
            "--addr",
            "169.254.169.254",
            "--port",
            "80",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .env("ERSATZ_SERVER__STATE_DIR", state.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(server.stdout.take().unwrap()));
    let announced = lines.next().unwrap().unwrap();
    assert_eq!(announced, "ersatz: metadata on http://169.254.169.254:80");
    std::thread::spawn(move || lines.for_each(drop));
    // The guard, by traffic: from a host on a veth link, whose route to
    // 169.254.169.254 points at this namespace, nothing answers; before
    // the rule (deleted for a moment) the same host is answered.
    let peer = linked_peer(&ns);
    let python = common::python();
    let connects = |ns_name: &str| {
        let script = "import socket,sys\n\
            try:\n socket.create_connection(('169.254.169.254', 80), 2).close(); print('answered')\n\
            except OSError as e:\n print('unanswered', e)";
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                ns_name,
                python.to_str().unwrap(),
                "-c",
                script,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(
        connects(&ns.0),
        "answered",
        "from the namespace's own loopback"
    );
    assert!(
        connects(&peer.0).starts_with("unanswered"),
        "from the veth peer"
    );
    let rule = ["INPUT", "-d", "169.254.169.254/32", "-j", "ERSATZ-GUARD"];
    let without = ns.run("iptables", &[&["-D"][..], &rule[..]].concat(), &[]);
    assert!(
        without.status.success(),
        "{}",
        String::from_utf8_lossy(&without.stderr)
    );
    let unguarded = connects(&peer.0);
    let restored = ns.run("iptables", &[&["-I"][..], &rule[..]].concat(), &[]);
    assert!(restored.status.success());
    assert_eq!(
        unguarded, "answered",
        "the peer reaches ersatz once the guard is gone"
    );
    drop(peer);

    let script = "import boto3, json\n\
        c = boto3.Session(region_name='us-east-1').get_credentials()\n\
        print(json.dumps({'method': c.method, 'key': c.access_key}))";
    let python = common::python();
    let out = ns.run(
        python.to_str().unwrap(),
        &["-c", script],
        &[
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["method"], "iam-role");
    assert_eq!(got["key"], "ASIAERSATZFAKEKEY000");

    // Setup again, with an interface: the chain is replaced, not added
    // to, and a guard rule of earlier versions goes.
    let iptables = |args: &[&str]| {
        let out = ns.run("iptables", args, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    iptables(&[
        "-A",
        "INPUT",
        "-d",
        "169.254.169.254/32",
        "!",
        "-i",
        "lo",
        "-j",
        "DROP",
    ]);
    let again = ns.run(
        common::BIN,
        &["net", "setup", "--allow-interface", "cni0"],
        &[],
    );
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let rules = String::from_utf8_lossy(&ns.run("iptables", &["-S"], &[]).stdout).into_owned();
    assert!(
        rules.contains("-A ERSATZ-GUARD -i cni0 -j RETURN"),
        "{rules}"
    );
    assert!(!rules.contains("! -i lo -j DROP"), "{rules}");
    assert_eq!(
        rules.matches("-A ERSATZ-GUARD -j DROP").count(),
        1,
        "{rules}"
    );
    assert_eq!(rules.matches("-j ERSATZ-GUARD").count(), 1, "{rules}");
    // A second jump (two setups at once) does not stop teardown.
    iptables(&[
        "-I",
        "INPUT",
        "-d",
        "169.254.169.254/32",
        "-j",
        "ERSATZ-GUARD",
    ]);

    // Teardown removes every rule and address setup added.
    let teardown = ns.run(common::BIN, &["net", "teardown"], &[]);
    assert!(
        teardown.status.success(),
        "{}",
        String::from_utf8_lossy(&teardown.stderr)
    );
    let addresses =
        String::from_utf8_lossy(&ns.run("ip", &["addr", "show", "dev", "lo"], &[]).stdout)
            .into_owned();
    assert!(
        !addresses.contains("169.254.169.254") && !addresses.contains("fd00:ec2::254"),
        "{addresses}"
    );
    for tool in ["iptables", "ip6tables"] {
        let rules = String::from_utf8_lossy(&ns.run(tool, &["-S"], &[]).stdout).into_owned();
        assert_eq!(
            rules.trim(),
            "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT",
            "{tool}: {rules}"
        );
    }

    // Without root it refuses, clearly.
    let refused = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            common::BIN,
            "net",
            "setup",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("needs root"));
}

/// cloud-init's crawl without what legitimately differs between two
/// servers: iam/info's LastUpdated (each server's start) and the request log.
fn comparable(crawl: &Value) -> Value {
    let mut meta = crawl["meta-data"].clone();
    if let Some(info) = meta.pointer_mut("/iam/info").and_then(Value::as_object_mut) {
        info.remove("LastUpdated");
    }
    serde_json::json!({ "meta-data": meta, "dynamic": crawl["dynamic"], "user-data": crawl["user-data"] })
}

/// An IMDS whose answers to the token PUT never arrive (a hop limit of 1
/// behind a container's extra hop): the crawl falls back to IMDSv1 after a
/// second, as the SDKs do, instead of waiting forever.
#[tokio::test(flavor = "multi_thread")]
async fn snapshot_falls_back_to_imdsv1_when_the_token_never_comes() {
    let source = Ersatz::with_toml("[instance]\nid = \"i-0aaaabbbbccccdddd\"\n");
    let proxy = common::FaultProxy::start(&source.url);
    proxy.set_fault(common::Fault::HangPuts);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snapshot.json");
    let mut crawl = std::process::Command::new(env!("CARGO_BIN_EXE_ersatz"))
        .args(["snapshot", &proxy.url, "-o", file.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = crawl.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = crawl.kill();
            panic!("the snapshot still waits for the token after 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut crawl.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("crawling with IMDSv1"), "{stderr}");
    let document: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        document["leaves"]["meta-data/instance-id"],
        "i-0aaaabbbbccccdddd"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_then_replay_crawls_identically() {
    let state = tempfile::tempdir().unwrap();
    let state_env = state.path().to_str().unwrap().to_owned();
    let source = Ersatz::builder()
        .env("ERSATZ_SERVER__STATE_DIR", &state_env)
        .config(
            "ersatz.toml",
            &format!(
                r##"
[imds]
v1 = "disabled"

[instance]
id = "i-0fedcba9876543210"
availability_zone = "eu-west-2b"
type = "m6i.large"
user_data = "#cloud-config\nhostname: replayed\n"
tags_in_metadata = true

[instance.tags]
Name = "web-1"

[metadata]
"instance-action" = "reboot"

[[plugins]]
mount = "/latest/meta-data/public-keys"
wasm = "{}"
config = {{ keys = [{{ name = "alice", openssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlice alice@host" }}] }}
"##,
                common::wasm("public_keys").display()
            ),
        )
        .start();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snapshot.json");
    let taken = ersatz(
        &["snapshot", &source.url, "-o", file.to_str().unwrap()],
        &[],
    );
    assert!(
        taken.status.success(),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    let document = std::fs::read_to_string(&file).unwrap();
    assert!(
        !document.contains("AccessKeyId") && !document.contains("security-credentials"),
        "no credentials captured"
    );
    assert!(document.contains("0=alice"), "listings captured as served");

    let replay = Ersatz::builder()
        .env("ERSATZ_SERVER__STATE_DIR", &state_env)
        .config(
            "replay.toml",
            &format!(
                "snapshot = \"{}\"\n\n[imds]\nv1 = \"disabled\"\n",
                file.display()
            ),
        )
        .start();
    assert_eq!(
        replay.get_v2("/latest/meta-data/instance-id").await.text(),
        "i-0fedcba9876543210"
    );
    let original = comparable(&common::cloud_init_crawl(&source.url));
    let replayed = comparable(&common::cloud_init_crawl(&replay.url));
    assert_eq!(
        original["meta-data"]["public-keys"]["alice"],
        replayed["meta-data"]["public-keys"]["alice"]
    );
    assert_eq!(original, replayed);

    // `serve --snapshot FILE` replays with no configuration file at all…
    let direct = Ersatz::builder()
        .env("ERSATZ_SERVER__STATE_DIR", &state_env)
        .arg("--snapshot")
        .arg(file.to_str().unwrap())
        .start();
    assert_eq!(
        direct.get("/latest/meta-data/instance-id").await.text(),
        "i-0fedcba9876543210"
    );
    // …and a snapshot given as a configuration says what to type instead.
    let mistaken = ersatz(
        &["config", "check", "--config", file.to_str().unwrap()],
        &[],
    );
    let stderr = String::from_utf8_lossy(&mistaken.stderr);
    assert_eq!(mistaken.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ersatz serve --snapshot"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_key_and_certificate_can_come_from_the_configuration() {
    // Let one server generate a pair, then hand it to another through [identity].
    let generated = tempfile::tempdir().unwrap();
    let cert = ersatz(
        &["cert"],
        &[(
            "ERSATZ_SERVER__STATE_DIR",
            generated.path().to_str().unwrap(),
        )],
    );
    assert!(cert.status.success());
    let (key, certificate) = (
        generated.path().join("identity.key"),
        generated.path().join("identity.crt"),
    );
    let server = Ersatz::with_toml(&format!(
        "[identity]\nkey = \"{}\"\ncertificate = \"{}\"\n",
        key.display(),
        certificate.display()
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("document"),
        server
            .get("/latest/dynamic/instance-identity/document")
            .await
            .body,
    )
    .unwrap();
    let body = server
        .get("/latest/dynamic/instance-identity/rsa2048")
        .await
        .body;
    let out = verify_pkcs7(
        dir.path(),
        "rsa2048",
        &body,
        "document",
        certificate.to_str().unwrap(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let half = dir.path().join("half.toml");
    std::fs::write(&half, format!("[identity]\nkey = \"{}\"\n", key.display())).unwrap();
    let refused = ersatz(
        &["config", "check", "--config", half.to_str().unwrap()],
        &[],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("`identity.certificate`"));
}
