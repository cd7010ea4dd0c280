//! Plugins: the shipped ones served through the metadata listener and read
//! by real clients, misbehaving ones contained, a plugin credential source
//! beside STS, and hot reload under load.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_credential_types::provider::ProvideCredentials;
use common::{ersatz, metric, python, run_python, send, wasm, Ersatz, Moto};
use http::{Method, StatusCode};
use serde_json::Value;

fn shipped_plugins() -> String {
    format!(
        r#"
[[plugins]]
mount = "/latest/meta-data/public-keys"
wasm = "{}"
config = {{ keys = [{{ name = "alice", openssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlice alice@host" }}, {{ name = "bob", openssh = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABBob bob@host" }}] }}

[[plugins]]
mount = "/latest/meta-data/network/interfaces"
wasm = "{}"
config = {{ interfaces = [{{}}, {{ mac = "0e:aa:bb:cc:dd:02", local_ipv4s = ["172.31.16.77"] }}] }}

[[plugins]]
mount = "/latest/meta-data/block-device-mapping"
wasm = "{}"
config = {{ ebs = ["sdb", "sdc"], ephemeral = ["sdd"] }}
"#,
        wasm("public_keys").display(),
        wasm("network_interfaces").display(),
        wasm("block_device_mapping").display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn shipped_plugins_serve_through_the_metadata_listener() {
    let server = Ersatz::with_toml(&shipped_plugins());
    let get = |path: &'static str| {
        let server = &server;
        async move {
            let reply = server.get(&format!("/latest/meta-data/{path}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
            reply.text()
        }
    };
    assert_eq!(get("public-keys/").await, "0=alice\n1=bob");
    assert_eq!(get("public-keys/1/").await, "openssh-key");
    assert_eq!(
        get("public-keys/1/openssh-key").await,
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABBob bob@host"
    );

    // The primary interface is the core's own mac and address.
    let mac = get("mac").await;
    let macs = get("network/interfaces/macs/").await;
    assert_eq!(
        macs.lines().collect::<Vec<_>>(),
        vec![format!("{mac}/").as_str(), "0e:aa:bb:cc:dd:02/"]
    );
    let primary = |leaf: &str| format!("/latest/meta-data/network/interfaces/macs/{mac}/{leaf}");
    assert_eq!(
        server.get(&primary("local-ipv4s")).await.text(),
        get("local-ipv4").await
    );
    assert_eq!(server.get(&primary("device-number")).await.text(), "0");
    let second =
        |leaf: &str| format!("/latest/meta-data/network/interfaces/macs/0e:aa:bb:cc:dd:02/{leaf}");
    assert_eq!(server.get(&second("device-number")).await.text(), "1");
    assert_eq!(
        server.get(&second("local-ipv4s")).await.text(),
        "172.31.16.77"
    );
    for leaf in [
        "device-number",
        "interface-id",
        "local-hostname",
        "local-ipv4s",
        "mac",
        "owner-id",
        "security-group-ids",
        "security-groups",
        "subnet-id",
        "subnet-ipv4-cidr-block",
        "vpc-id",
        "vpc-ipv4-cidr-block",
        "vpc-ipv4-cidr-blocks",
    ] {
        for nic in [primary(leaf), second(leaf)] {
            let reply = server.get(&nic).await;
            assert_eq!(reply.status, StatusCode::OK, "{nic}");
            assert!(!reply.body.is_empty(), "{nic}");
        }
    }

    assert_eq!(
        get("block-device-mapping/").await,
        "ami\nebs1\nebs2\nephemeral0\nroot"
    );
    assert_eq!(get("block-device-mapping/ebs2").await, "sdc");

    // The parent listing names each mount once, and the Rust SDK reads leaves.
    let listing = get("").await;
    assert_eq!(listing.lines().filter(|l| *l == "public-keys/").count(), 1);
    let client = common::imds_client(&server.url).build();
    let key = client
        .get("/latest/meta-data/public-keys/0/openssh-key")
        .await
        .unwrap();
    assert!(key.as_ref().ends_with("alice@host"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_init_sees_the_plugins_keys_and_interfaces() {
    let server = Ersatz::with_toml(&format!("[imds]\nv1 = \"disabled\"\n{}", shipped_plugins()));
    let crawl = common::cloud_init_crawl(&server.url);
    let md = &crawl["meta-data"];
    assert!(
        md["public-keys"]["alice"]
            .to_string()
            .contains("alice@host"),
        "{}",
        md["public-keys"]
    );
    assert!(md["public-keys"]["bob"].to_string().contains("bob@host"));
    let macs = md["network"]["interfaces"]["macs"].as_object().unwrap();
    assert_eq!(macs.len(), 2, "{macs:?}");
    assert_eq!(macs["0e:aa:bb:cc:dd:02"]["device-number"], "1");
}

fn misbehaving(timeout_ms: u64) -> String {
    format!(
        "[[plugins]]\nmount = \"/latest/meta-data/misbehave\"\nwasm = \"{}\"\nlimits = {{ timeout = \"{timeout_ms}ms\", memory = \"16MiB\" }}\n",
        wasm("misbehave").display()
    )
}

/// When to give up on a bad call: not a bound on its speed (how late a
/// deadline is noticed under load is the benchmark's business), but far
/// beyond any deadline, so that a call the deadline did not stop (`loop`,
/// `sleep` run forever) fails the test instead of hanging it.
const GIVE_UP: Duration = Duration::from_secs(20);

/// A GET that must be answered within [`GIVE_UP`].
async fn answered(url: &str, path: &str) -> StatusCode {
    tokio::time::timeout(GIVE_UP, send(url, Method::GET, path, &[]))
        .await
        .unwrap_or_else(|_| {
            panic!("{path}: no answer within {GIVE_UP:?}: the deadline did not stop it")
        })
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traps_loops_and_runaway_allocation_answer_500_and_nothing_else_suffers() {
    // With a good plugin (reused answers off) and a role beside the bad one.
    let server = Ersatz::with_toml(&format!(
        "{}{}",
        misbehaving(50),
        versioned("1").replace("timeout = \"2s\"", "timeout = \"2s\", max_age = \"0s\"")
    ));
    for path in ["trap", "loop", "alloc", "sleep", "error"] {
        let status = answered(&server.url, &format!("/latest/meta-data/misbehave/{path}")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
    }
    assert_eq!(
        server.get("/latest/meta-data/misbehave/ok").await.text(),
        "fine"
    );

    // 1,000 bad calls, 50 at a time, while a static leaf, a credential
    // path and a good plugin path are read alongside.
    let url = server.url.clone();
    let other_failures = Arc::new(AtomicUsize::new(0));
    let others_done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (url, failures, done, stop) = (
            url.clone(),
            other_failures.clone(),
            others_done.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let paths = [
                "/latest/meta-data/instance-id",
                "/latest/meta-data/iam/security-credentials/ersatz-default",
                "/latest/meta-data/probe/version",
            ];
            let mut next = 0;
            while !stop.load(Ordering::SeqCst) {
                let reply = send(&url, Method::GET, paths[next % 3], &[]).await;
                if reply.status != StatusCode::OK {
                    failures.fetch_add(1, Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
                next += 1;
            }
        })
    };
    for batch in 0..20 {
        let calls: Vec<_> = (0..50)
            .map(|i| {
                let url = url.clone();
                let path = ["trap", "loop", "alloc"][(batch * 50 + i) % 3];
                tokio::spawn(async move {
                    answered(&url, &format!("/latest/meta-data/misbehave/{path}")).await
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), StatusCode::INTERNAL_SERVER_ERROR);
        }
    }
    stop.store(true, Ordering::SeqCst);
    reader.await.unwrap();
    assert_eq!(other_failures.load(Ordering::SeqCst), 0);
    assert!(
        others_done.load(Ordering::SeqCst) > 20,
        "other paths were served meanwhile"
    );
    assert_eq!(
        server.get("/latest/meta-data/misbehave/ok").await.text(),
        "fine",
        "still up after 1,000 failures"
    );
    let metrics = send(&server.admin_url, Method::GET, "/metrics", &[])
        .await
        .text();
    let count = |name: &str| {
        metric(
            &metrics,
            &format!("ersatz_plugin_{name}_total{{plugin=\"misbehave\"}}"),
        )
    };
    let (traps, timeouts, calls) = (count("traps"), count("timeouts"), count("calls"));
    // `trap` always traps and `loop` always runs out of time; `alloc` traps
    // at the memory limit, or meets its deadline first on a busy machine.
    // Either way, every one of the 1,000 bad calls is counted as one of the two.
    assert!(traps >= 334, "traps: {traps}");
    assert!(timeouts >= 333, "timeouts: {timeouts}");
    assert!(
        traps + timeouts >= 1000,
        "traps {traps} + timeouts {timeouts}"
    );
    assert!(calls >= 1000, "calls: {calls}");
    let logs = server.stderr();
    assert!(
        logs.contains("plugin call failed") && logs.contains("misbehave"),
        "failures are logged by plugin name"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_credential_source_and_sts_back_two_role_paths_in_one_run() {
    let moto = Moto::start();
    let server = Ersatz::with_toml(&format!(
        r#"
default_role = "plugged"

[[plugins]]
name = "vault"
wasm = "{}"
config = {{ access_key_id = "AKIAFROMPLUGIN000001", secret_access_key = "pluginSecret", session_token = "pluginToken", lifetime_seconds = 3600 }}

[sources.vault]
type = "plugin"
plugin = "vault"

[sources.caller]
type = "static"
access_key_id = "AKIACALLEREXAMPLE001"
secret_access_key = "s"

[roles.plugged]
source = "vault"

[roles.sts]
arn = "arn:aws:iam::123456789012:role/sts"
source = "caller"
sts_endpoint = "{}"
"#,
        wasm("static_creds").display(),
        moto.url
    ));
    let ecs = common::send(&server.admin_url, Method::GET, "/ecs", &[])
        .await
        .json();
    // One Python process: IMDS serves the plugin's role, the container
    // endpoint the STS role.
    let script = "import boto3, json, os, sys\n\
        imds = boto3.Session(region_name='us-east-1').get_credentials()\n\
        os.environ['AWS_CONTAINER_CREDENTIALS_FULL_URI'] = sys.argv[1]\n\
        os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN'] = sys.argv[2]\n\
        os.environ['AWS_EC2_METADATA_DISABLED'] = 'true'\n\
        s = boto3.Session(region_name='us-east-1')\n\
        arn = s.client('sts', endpoint_url=sys.argv[3]).get_caller_identity()['Arn']\n\
        print(json.dumps({'imds_key': imds.access_key, 'imds_method': imds.method, 'ecs_method': s.get_credentials().method, 'arn': arn}))";
    let out = run_python(
        &python(),
        &[
            "-c",
            script,
            ecs["roles"]["sts"]["urls"][0].as_str().unwrap(),
            ecs["roles"]["sts"]["token"].as_str().unwrap(),
            &moto.url,
        ],
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &server.url)],
    );
    let got: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(got["imds_key"], "AKIAFROMPLUGIN000001");
    assert_eq!(got["imds_method"], "iam-role");
    assert_eq!(got["ecs_method"], "container-role");
    assert_eq!(
        got["arn"],
        "arn:aws:sts::123456789012:assumed-role/sts/ersatz-sts"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_source_on_contract_0_2_gives_the_rust_sdk_its_keys_and_expiration() {
    // 2100-01-01T01:02:03Z: not a round number, so any rounding shows.
    const EXPIRATION: u64 = 4_102_448_523;
    let server = Ersatz::with_toml(&format!(
        r#"
default_role = "plugged"

[[plugins]]
name = "vault"
wasm = "{}"
config = {{ access_key_id = "ASIAFROMPLUGINV02001", secret_access_key = "pluginSecret/0.2", session_token = "pluginToken0.2", expiration = {EXPIRATION} }}

[sources.vault]
type = "plugin"
plugin = "vault"

[roles.plugged]
source = "vault"
"#,
        wasm("static_creds_v0_2").display()
    ));
    let client = common::imds_client(&server.url).build();
    let credentials = ImdsCredentialsProvider::builder()
        .imds_client(client)
        .build()
        .provide_credentials()
        .await
        .expect("credentials from the plugin through IMDS");
    assert_eq!(credentials.access_key_id(), "ASIAFROMPLUGINV02001");
    assert_eq!(credentials.secret_access_key(), "pluginSecret/0.2");
    assert_eq!(credentials.session_token(), Some("pluginToken0.2"));
    assert_eq!(
        credentials.expiry(),
        Some(UNIX_EPOCH + Duration::from_secs(EXPIRATION))
    );
    let document = server
        .get("/latest/meta-data/iam/security-credentials/plugged")
        .await
        .json();
    assert_eq!(document["Expiration"], "2100-01-01T01:02:03Z", "{document}");
}

/// Plugin calls one engine's pool holds at once (`POOL_INSTANCES`); on one
/// CPU ersatz makes one engine.
const POOL: usize = 256;
/// How long a call waits for a slot before its request is turned away
/// (`SLOT_WAIT`).
const SLOT_WAIT: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread")]
async fn calls_past_what_the_pool_holds_are_answered_503_and_counted_busy() {
    // Each call holds its slot for 2 s, while the whole burst arrives
    // within about 50 ms (measured).
    let server = Ersatz::builder()
        .one_cpu()
        .config(
            "ersatz.toml",
            &format!(
                "[[plugins]]\nname = \"slow\"\nmount = \"/latest/meta-data/slow\"\nwasm = \"{}\"\nconfig = {{ version = \"1\", slow_ms = 2000 }}\nlimits = {{ timeout = \"10s\" }}\n",
                wasm("echo_version").display()
            ),
        )
        .start();
    let requests = POOL + 44;
    let burst: Vec<_> = (0..requests)
        .map(|_| {
            let url = server.url.clone();
            tokio::spawn(async move {
                let sent = Instant::now();
                let reply = send(&url, Method::GET, "/latest/meta-data/slow/slow", &[]).await;
                (reply.status, sent.elapsed())
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for request in burst {
        let (status, took) = request.await.unwrap();
        *statuses.entry(status).or_insert(0) += 1;
        // A lower bound, which a slow machine only makes easier to meet.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(
                took >= SLOT_WAIT,
                "turned away after {took:?}, without waiting"
            );
        }
    }
    assert_eq!(
        statuses,
        [
            (StatusCode::OK, POOL),
            (StatusCode::SERVICE_UNAVAILABLE, requests - POOL)
        ]
        .into(),
        "every slot used, and the rest turned away"
    );
    let metrics = send(&server.admin_url, Method::GET, "/metrics", &[])
        .await
        .text();
    let count = |name: &str| {
        metric(
            &metrics,
            &format!("ersatz_plugin_{name}_total{{plugin=\"slow\"}}"),
        )
    };
    assert_eq!(count("busy"), (requests - POOL) as u64);
    assert_eq!(count("calls"), POOL as u64, "a busy request makes no call");
    for failure in ["traps", "timeouts", "errors", "instantiation_failures"] {
        assert_eq!(count(failure), 0, "{failure}");
    }
    // The slots come back with the calls.
    let after = server.get("/latest/meta-data/slow/version").await;
    assert_eq!(after.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_cannot_be_instantiated_answers_500_and_is_no_trap() {
    // Rust's wasm modules start with more than 1 MiB of memory (the stack
    // alone is 1 MiB), so the limit refuses the instance before any call.
    let server = Ersatz::with_toml(&format!(
        "[[plugins]]\nname = \"cramped\"\nmount = \"/latest/meta-data/cramped\"\nwasm = \"{}\"\nconfig = {{ version = \"1\" }}\nlimits = {{ memory = \"1MiB\" }}\n",
        wasm("echo_version").display()
    ));
    let reply = server.get("/latest/meta-data/cramped/version").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let metrics = send(&server.admin_url, Method::GET, "/metrics", &[])
        .await
        .text();
    let count = |name: &str| {
        metric(
            &metrics,
            &format!("ersatz_plugin_{name}_total{{plugin=\"cramped\"}}"),
        )
    };
    assert_eq!(
        (
            count("instantiation_failures"),
            count("traps"),
            count("busy")
        ),
        (1, 0, 0)
    );
    assert!(
        server.stderr().contains("could not be instantiated"),
        "{}",
        server.stderr()
    );
}

/// Mounts of the 0.2.0 echo-version plugin that differ in how long their
/// answers may be reused, and the 0.1.0 misbehave plugin.
fn reusing() -> String {
    let echo = wasm("echo_version");
    let mount = |name: &str, extra: &str| {
        format!(
            "[[plugins]]\nname = \"{name}\"\nmount = \"/latest/meta-data/{name}\"\nwasm = \"{}\"\n{extra}\n",
            echo.display()
        )
    };
    [
        mount("second", "config = { version = \"1\", max_age = 1 }"),
        mount("hour", "config = { version = \"1\", max_age = 3600 }"),
        mount(
            "capped",
            "config = { version = \"1\", max_age = 3600 }\nlimits = { max_age = \"0s\" }",
        ),
        format!(
            "[[plugins]]\nname = \"old\"\nmount = \"/latest/meta-data/old\"\nwasm = \"{}\"\n",
            wasm("misbehave").display()
        ),
    ]
    .concat()
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_are_reused_per_client_for_their_max_age_and_never_across_a_reload() {
    let server = Ersatz::with_toml(&reusing());
    let client = common::imds_client(&server.url).build();
    let nonce = |mount: &'static str| {
        let client = &client;
        async move {
            let path = format!("/latest/meta-data/{mount}/nonce");
            client.get(&path).await.unwrap().as_ref().to_owned()
        }
    };
    let from_other_client = |mount: &'static str| {
        let url = server.url.clone();
        async move {
            let path = format!("/latest/meta-data/{mount}/nonce");
            let reply = common::send_from("127.0.0.2", &url, &path).await;
            assert_eq!(reply.status, StatusCode::OK);
            reply.text()
        }
    };

    let first = nonce("second").await;
    assert_eq!(nonce("second").await, first, "reused within max_age");
    let other = from_other_client("second").await;
    assert_ne!(other, first, "never shared between client addresses");
    assert_eq!(from_other_client("second").await, other);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_ne!(nonce("second").await, first, "expired after max_age");

    let capped = nonce("capped").await;
    assert_ne!(nonce("capped").await, capped, "limits.max_age = 0s: never");

    // A 0.1.0 plugin still loads, and its answers are never reused.
    for _ in 0..2 {
        let reply = server.get("/latest/meta-data/old/ok").await;
        assert_eq!(reply.text(), "fine");
    }

    let hour = nonce("hour").await;
    assert_eq!(nonce("hour").await, hour);
    let metrics = send(&server.admin_url, Method::GET, "/metrics", &[])
        .await
        .text();
    let count = |name: &str, plugin: &str| {
        metric(
            &metrics,
            &format!("ersatz_plugin_{name}_total{{plugin=\"{plugin}\"}}"),
        )
    };
    for (plugin, calls, hits) in [
        ("second", 3, 2),
        ("capped", 2, 0),
        ("old", 2, 0),
        ("hour", 1, 1),
    ] {
        assert_eq!(
            (count("calls", plugin), count("cache_hits", plugin)),
            (calls, hits),
            "{plugin}: calls and cache hits"
        );
    }

    let reply = send(&server.admin_url, Method::POST, "/reload", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_ne!(nonce("hour").await, hour, "a reload drops reused answers");
}

fn versioned(version: &str) -> String {
    format!(
        "[[plugins]]\nmount = \"/latest/meta-data/probe\"\nwasm = \"{}\"\nconfig = {{ version = \"{version}\" }}\nlimits = {{ timeout = \"2s\" }}\n",
        wasm("echo_version").display()
    )
}

/// The version the probe plugin serves now.
async fn version_served(server: &Ersatz) -> String {
    server.get("/latest/meta-data/probe/version").await.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load_fails_no_request() {
    let server = Ersatz::with_toml(&versioned("1"));
    let config = server.dir.path().join("ersatz.toml");
    let failures = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (url, failures, seen, stop) = (
                server.url.clone(),
                failures.clone(),
                seen.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let mut requests = 0;
                while !stop.load(Ordering::SeqCst) {
                    let reply =
                        send(&url, Method::GET, "/latest/meta-data/probe/version", &[]).await;
                    if reply.status == StatusCode::OK {
                        seen.lock().unwrap().insert(reply.text());
                    } else {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    requests += 1;
                }
                requests
            })
        })
        .collect();
    for round in 0..10 {
        let version = if round % 2 == 0 { "2" } else { "1" };
        std::fs::write(&config, versioned(version)).unwrap();
        if round % 4 == 3 {
            let _ = std::process::Command::new("kill")
                .args(["-HUP", &server.pid().to_string()])
                .status();
            // A signal has no answer: the new version must appear by itself.
            let started = Instant::now();
            while version_served(&server).await != version {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "SIGHUP did not reload"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else {
            let reply = send(&server.admin_url, Method::POST, "/reload", &[]).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            assert_eq!(version_served(&server).await, version, "round {round}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A broken configuration is refused, and the last good one keeps serving.
    std::fs::write(
        &config,
        "[[plugins]]\nmount = \"/latest/meta-data/probe\"\nwasm = \"/nonexistent.wasm\"\n",
    )
    .unwrap();
    let refused = send(&server.admin_url, Method::POST, "/reload", &[]).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.text().contains("nonexistent.wasm"),
        "{}",
        refused.text()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let mut requests = 0;
    for task in load {
        requests += task.await.unwrap();
    }
    assert!(requests > 100, "{requests} requests under load");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "no request failed across reloads"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        ["1".to_string(), "2".to_string()].into(),
        "both versions served"
    );
    assert_eq!(
        server.get("/latest/meta-data/probe/version").await.text(),
        "1"
    );
}

#[test]
fn compiled_plugins_are_cached_across_restarts() {
    let state = tempfile::tempdir().unwrap();
    let start = || {
        Ersatz::builder()
            .env("ERSATZ_SERVER__STATE_DIR", state.path().to_str().unwrap())
            .config("ersatz.toml", &versioned("1"))
            .start()
    };
    let first = start();
    assert!(!first.stderr().contains("loaded from the cache"));
    drop(first);
    let cached: Vec<_> = std::fs::read_dir(state.path().join("plugins"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "one compiled component cached");
    let file = &cached[0];
    let (compiled, written) = (
        std::fs::read(file).unwrap(),
        std::fs::metadata(file).unwrap().modified().unwrap(),
    );

    // A restart loads the compilation: the log says so, the file is untouched.
    let again = start();
    assert!(
        again
            .stderr()
            .contains("compiled plugin loaded from the cache"),
        "{}",
        again.stderr()
    );
    drop(again);
    assert_eq!(
        std::fs::metadata(file).unwrap().modified().unwrap(),
        written
    );

    // A corrupted entry is noticed, warned about, compiled again and replaced.
    std::fs::write(file, b"not a compiled component").unwrap();
    let repaired = start();
    let stderr = repaired.stderr();
    assert!(
        stderr.contains("ignoring a bad compiled-plugin cache entry"),
        "{stderr}"
    );
    assert!(!stderr.contains("loaded from the cache"), "{stderr}");
    drop(repaired);
    assert_eq!(
        std::fs::read(file).unwrap(),
        compiled,
        "the entry is written anew"
    );
}

#[test]
fn plugin_mistakes_stop_start_up_with_the_file_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let not_wasm = dir.path().join("notes.wasm");
    std::fs::write(&not_wasm, "hello").unwrap();
    let core_module = dir.path().join("core.wasm");
    // A core module (no component): magic, version 1.
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").unwrap();
    for (plugin, key, reason) in [
        (
            format!(
                "wasm = \"{}/missing.wasm\"\nmount = \"/latest/meta-data/x\"",
                dir.path().display()
            ),
            "plugins.0.wasm",
            "missing.wasm",
        ),
        (
            format!(
                "wasm = \"{}\"\nmount = \"/latest/meta-data/x\"",
                not_wasm.display()
            ),
            "plugins.0.wasm",
            "not WebAssembly",
        ),
        (
            format!(
                "wasm = \"{}\"\nmount = \"/latest/meta-data/x\"",
                core_module.display()
            ),
            "plugins.0.wasm",
            "not a WebAssembly component",
        ),
        (
            format!(
                "wasm = \"{}\"\nmount = \"/latest/meta-data/x\"",
                wasm("future_version").display()
            ),
            "plugins.0.wasm",
            "built against ersatz:plugin@0.4.0",
        ),
        (
            format!(
                "wasm = \"{}\"\nmount = \"/elsewhere\"",
                wasm("echo_version").display()
            ),
            "plugins.0.mount",
            "not a path under",
        ),
        (
            format!(
                "wasm = \"{}\"\nlimits = {{ memory = \"lots\" }}",
                wasm("echo_version").display()
            ),
            "plugins.0.limits.memory",
            "not a size",
        ),
        (
            format!(
                "wasm = \"{}\"\nmount = \"/latest/meta-data/x\"\ngrants = [\"network\"]",
                wasm("contract_v0_3").display()
            ),
            "plugins.0.grants.0",
            "unknown value `network`; expected one of: sign-jwt",
        ),
        // Contract 0.3.0: the plugin's own `init` refuses its configuration.
        (
            format!(
                "wasm = \"{}\"\nmount = \"/latest/meta-data/x\"\nconfig = {{ refuse = \"zone must be set\" }}",
                wasm("contract_v0_3").display()
            ),
            "plugins.0.config",
            "plugin \"contract_v0_3\" refused it: zone must be set",
        ),
        (
            format!(
                "wasm = \"{}\"\nmount = \"/\"\nlistener = \"gce\"",
                wasm("contract_v0_3").display()
            ),
            "plugins.0.listener",
            "no [[listeners]] entry named \"gce\"",
        ),
        (
            format!(
                "wasm = \"{}\"\nmount = \"/latest/meta-data/x\"\ngates = [{{ refuse_header = \"X-Forwarded-For\", unique_query = true, status = 400 }}]",
                wasm("contract_v0_3").display()
            ),
            "plugins.0.gates.0.require_header",
            "exactly one of",
        ),
        (
            format!(
                "wasm = \"{}\"\nmount = \"/latest/meta-data/x\"\ngates = [{{ refuse_header = \"X-Forwarded-For\", status = 200 }}]",
                wasm("contract_v0_3").display()
            ),
            "plugins.0.gates.0.status",
            "not an error status",
        ),
    ] {
        let path = dir.path().join("ersatz.toml");
        std::fs::write(&path, format!("[[plugins]]\n{plugin}\n")).unwrap();
        let output = ersatz(
            &["config", "check", "--config", path.to_str().unwrap()],
            &[],
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{plugin}: {stderr}");
        assert!(
            stderr.contains(path.to_str().unwrap())
                && stderr.contains(&format!("`{key}`"))
                && stderr.contains(reason),
            "names the file, {key} and why: {stderr}"
        );
    }
    // The version is read before compiling: a plugin of a version this
    // ersatz does not implement is never compiled (nor cached); one it
    // implements is.
    let path = dir.path().join("ersatz.toml");
    let cached = |state: &std::path::Path| {
        std::fs::read_dir(state.join("plugins")).map_or(0, |dir| dir.count())
    };
    for plugin in ["future_version", "echo_version"] {
        std::fs::write(
            &path,
            format!(
                "[[plugins]]\nwasm = \"{}\"\nmount = \"/latest/meta-data/x\"\nconfig = {{ version = 1 }}\n",
                wasm(plugin).display()
            ),
        )
        .unwrap();
        let state = dir.path().join(format!("state-{plugin}"));
        let env = [("ERSATZ_SERVER__STATE_DIR", state.to_str().unwrap())];
        // A check compiles to check, and keeps nothing.
        let checked = ersatz(
            &["config", "check", "--config", path.to_str().unwrap()],
            &env,
        );
        let exit = if plugin == "future_version" { 2 } else { 0 };
        assert_eq!(checked.status.code(), Some(exit), "{plugin}");
        assert_eq!(
            cached(&state),
            0,
            "{plugin}: config check kept a compiled plugin"
        );
        // Serving keeps the compilation of the plugin it accepts, and of the
        // refused one there is none: it was never compiled.
        if plugin == "future_version" {
            let served = ersatz(
                &[
                    "serve",
                    "--config",
                    path.to_str().unwrap(),
                    "--port",
                    "0",
                    "--admin-addr",
                    "127.0.0.1:0",
                ],
                &env,
            );
            assert_eq!(served.status.code(), Some(2));
            assert_eq!(cached(&state), 0, "a refused version was compiled");
        } else {
            let server = Ersatz::builder()
                .config("ersatz.toml", &std::fs::read_to_string(&path).unwrap())
                .env("ERSATZ_SERVER__STATE_DIR", state.to_str().unwrap())
                .start();
            drop(server);
            assert_eq!(
                cached(&state),
                1,
                "the accepted plugin's compilation is kept"
            );
        }
    }
    // A metadata plugin cannot back a role.
    std::fs::write(
        &path,
        format!(
            "[[plugins]]\nname = \"p\"\nwasm = \"{}\"\n[sources.s]\ntype = \"plugin\"\nplugin = \"p\"\n[roles.r]\nsource = \"s\"\n",
            wasm("echo_version").display()
        ),
    )
    .unwrap();
    let output = ersatz(
        &["config", "check", "--config", path.to_str().unwrap()],
        &[],
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("exports no credential-source"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_rotating_keys_plugin_serves_keys_that_rotate() {
    let server = Ersatz::with_toml(&format!(
        "default_role = \"rotating\"\n\n[[plugins]]\nname = \"rotating\"\nwasm = \"{}\"\nconfig = {{ rotate_every = 2, seed = \"test\" }}\n\n[sources.rotating]\ntype = \"plugin\"\nplugin = \"rotating\"\n\n[roles.rotating]\nsource = \"rotating\"\n",
        wasm("rotating_keys").display()
    ));
    let read = || async {
        let reply = server
            .get("/latest/meta-data/iam/security-credentials/rotating")
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.json()
    };
    let first = read().await;
    assert_eq!(first["Code"], "Success", "{first}");
    let key = first["AccessKeyId"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ASIA") && key.len() == 20, "{key}");
    assert_eq!(first["SecretAccessKey"].as_str().unwrap().len(), 40);
    // boto3 takes them as any IMDS role credentials.
    let seen = run_python(
        &python(),
        &["-c", "import boto3; c = boto3.Session(region_name='us-east-1').get_credentials(); print(c.method, c.access_key)"],
        &[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &server.url)],
    );
    assert!(seen.starts_with("iam-role ASIA"), "{seen}");
    // Within a few periods the host refreshes, and the keys are new.
    let started = Instant::now();
    let rotated = loop {
        let now = read().await;
        if now["AccessKeyId"] != first["AccessKeyId"] {
            break now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "the keys never rotated"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(rotated["Code"], "Success");
    assert_ne!(rotated["SecretAccessKey"], first["SecretAccessKey"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_finish_on_the_version_they_started_on() {
    let server = Ersatz::with_toml(&versioned("1"));
    let config = server.dir.path().join("ersatz.toml");
    // Eight requests inside a 300 ms call when the reload lands.
    let inside: Vec<_> = (0..8)
        .map(|_| {
            let url = server.url.clone();
            tokio::spawn(async move {
                let reply = send(&url, Method::GET, "/latest/meta-data/probe/slow", &[]).await;
                (reply.status, reply.text(), Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(60)).await;
    std::fs::write(&config, versioned("2")).unwrap();
    let reply = send(&server.admin_url, Method::POST, "/reload", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reloaded = Instant::now();
    assert_eq!(version_served(&server).await, "2");
    for request in inside {
        let (status, version, finished) = request.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(
            finished > reloaded,
            "the request was still inside when the reload landed"
        );
        assert_eq!(version, "1", "a request in flight kept its version");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_and_bootstrapped_credentials_survive_a_reload() {
    let config = format!(
        "[sources.posted]\ntype = \"bootstrap\"\n[roles.daemon]\nsource = \"posted\"\n{}",
        versioned("1")
    );
    let server = Ersatz::with_toml(&config);
    let admin = server.admin_url.clone();
    let posted = common::send_body(
        &admin,
        Method::POST,
        "/bootstrap/creds",
        &[],
        r#"{"AccessKeyId":"AKIABOOTSTRAPPED0001","SecretAccessKey":"s"}"#,
    )
    .await;
    assert_eq!(posted.status, StatusCode::OK, "{}", posted.text());
    let event = common::send_body(&admin, Method::POST, "/events/rebalance", &[], "{}").await;
    assert_eq!(event.status, StatusCode::OK);
    let before = server
        .get("/latest/meta-data/events/recommendations/rebalance")
        .await;
    assert_eq!(before.status, StatusCode::OK);

    std::fs::write(
        server.dir.path().join("ersatz.toml"),
        config.replace("\"1\"", "\"2\""),
    )
    .unwrap();
    let reply = send(&admin, Method::POST, "/reload", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(version_served(&server).await, "2", "the reload happened");
    let credentials = server
        .get("/latest/meta-data/iam/security-credentials/daemon")
        .await
        .json();
    assert_eq!(
        credentials["AccessKeyId"], "AKIABOOTSTRAPPED0001",
        "{credentials}"
    );
    let after = server
        .get("/latest/meta-data/events/recommendations/rebalance")
        .await;
    assert_eq!(after.text(), before.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_request_in_flight_finish() {
    let server = Ersatz::with_toml(&versioned("1"));
    let url = server.url.clone();
    let inside =
        tokio::spawn(
            async move { send(&url, Method::GET, "/latest/meta-data/probe/slow", &[]).await },
        );
    tokio::time::sleep(Duration::from_millis(60)).await;
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    let reply = inside.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "1");
    assert!(status.success(), "exit status {status:?}");
}

/// Contract 0.3.0 on the EC2 listener and on a listener of its own: each
/// capability the host grants, and each check it makes of the answers.
#[tokio::test(flavor = "multi_thread")]
async fn contract_0_3_answers_with_its_own_status_and_headers_and_reaches_the_host() {
    let contract = wasm("contract_v0_3");
    let server = Ersatz::with_toml(&format!(
        r#"
[[listeners]]
name = "test"
listen = ["127.0.0.1:0"]
keys = {{ jwks = "/keys" }}

[[plugins]]
name = "contract"
mount = "/latest/meta-data/contract"
wasm = "{contract}"
grants = ["sign-jwt"]

[[plugins]]
name = "leafy"
mount = "/latest/meta-data/leafy"
wasm = "{contract}"
config = {{ shape = "leaf" }}

[[plugins]]
name = "on-a-listener"
listener = "test"
mount = "/v1"
wasm = "{contract}"

[[plugins]]
mount = "/latest/meta-data/version"
wasm = "{echo}"
config = {{ version = "two" }}
"#,
        contract = contract.display(),
        echo = wasm("echo_version").display()
    ));
    let at = |path: &str| format!("/latest/meta-data/contract/{path}");

    // `init` said what each mount is: the leaf is listed without a slash.
    let listing = server.get("/latest/meta-data/").await.text();
    let entries: Vec<&str> = listing.lines().collect();
    assert!(
        entries.contains(&"leafy") && entries.contains(&"contract/"),
        "{listing}"
    );
    assert_eq!(server.get("/latest/meta-data/leafy").await.text(), "a leaf");
    // Older contracts are still served beside it.
    assert_eq!(
        server.get("/latest/meta-data/version/version").await.text(),
        "two"
    );

    // Its own status and headers; content-type among them wins.
    let teapot = server.get(&at("status/418")).await;
    assert_eq!(
        (teapot.status.as_u16(), teapot.text().as_str()),
        (418, "status 418")
    );
    let good = server.get(&at("headers/good")).await;
    assert_eq!(good.status, StatusCode::OK);
    assert_eq!(good.header("content-type"), "application/json");
    let plugin: Vec<_> = good.headers.get_all("x-plugin").iter().collect();
    assert_eq!(plugin, ["yes", "twice"]);
    // What it may not set is refused whole, as a failed call.
    for refused in [
        "status/99",
        "status/600",
        "status/101",
        "headers/framing",
        "headers/smuggle",
    ] {
        let reply = server.get(&at(refused)).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{refused}");
        assert!(reply.headers.get("x-b").is_none() && reply.headers.get("x-a").is_none());
    }
    assert!(server
        .stderr()
        .contains("answered the header content-length, which only the server sets"));

    // The host's clock, and its tree, leaf and listing told apart.
    let now: u64 = server.get(&at("now")).await.text().parse().unwrap();
    let ours = UNIX_EPOCH.elapsed().unwrap().as_millis() as u64;
    assert!(now.abs_diff(ours) < 5_000, "host now {now}, ours {ours}");
    let instance_id = server.get("/latest/meta-data/instance-id").await.text();
    let leaf = server.get(&at("lookup/meta-data/instance-id")).await.json();
    assert_eq!(leaf, serde_json::json!({ "leaf": instance_id }));
    let listing = server.get(&at("lookup/meta-data/placement")).await.json();
    assert!(
        listing["listing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "availability-zone"),
        "{listing}"
    );
    let many = server
        .get(&at("lookup-many?meta-data/instance-id,meta-data/nothing"))
        .await
        .json();
    assert_eq!(many, serde_json::json!([{ "leaf": instance_id }, null]));

    // Signing: a JWT the listener's JWKS verifies, and the reasons it refuses.
    let token = server.get(&at("sign?audience-one")).await.text();
    let jwks = send(server.listener("test"), Method::GET, "/keys", &[])
        .await
        .json();
    let claims = verify_rs256(&token, &jwks);
    assert_eq!(claims["aud"], "audience-one");
    let not_object = server.get(&at("sign-not-object")).await;
    assert_eq!(
        (not_object.status.as_u16(), not_object.text().as_str()),
        (400, "the claims are not a JSON object")
    );
    assert!(server
        .get(&at("sign-other-key"))
        .await
        .text()
        .contains("no signing key with id"));
    // Only for a plugin granted it: this one is not.
    let refused = send(server.listener("test"), Method::GET, "/v1/sign?aud", &[]).await;
    assert_eq!(refused.status.as_u16(), 400);
    assert!(
        refused.text().contains("grants = [\"sign-jwt\"]"),
        "{}",
        refused.text()
    );

    // On a listener of its own: POST bodies reach it, with the trailing slash.
    let listener = server.listener("test");
    // Its own pages say no server name unless it is given one; not EC2's.
    let nothing = send(listener, Method::GET, "/nothing-here", &[]).await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND);
    assert!(
        nothing.headers.get("server").is_none(),
        "{:?}",
        nothing.headers
    );
    let seen = send(listener, Method::GET, "/v1/request/?x=1", &[])
        .await
        .json();
    assert_eq!(
        (seen["path"].as_str(), seen["trailing_slash"].as_bool()),
        (Some("request"), Some(true))
    );
    assert_eq!(seen["query"], "x=1");
    // The store: kept between calls (each on a fresh instance).
    let put = common::send_body(listener, Method::POST, "/v1/store/colour", &[], "blue").await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    assert_eq!(
        send(listener, Method::GET, "/v1/store/colour", &[])
            .await
            .text(),
        "blue"
    );
    let removed = common::send_body(listener, Method::POST, "/v1/store/colour", &[], "").await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(
        send(listener, Method::GET, "/v1/store/colour", &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

/// The signing key is made at start for a plugin granted `sign-jwt`, so
/// its first signature does not spend its deadline on it, and not for one
/// that is not: that would be start-up work for nothing.
#[tokio::test]
async fn the_signing_key_is_made_at_start_only_for_a_plugin_granted_it() {
    for (grants, made) in [("", false), ("grants = [\"sign-jwt\"]", true)] {
        let server = Ersatz::with_toml(&format!(
            "[[plugins]]\nmount = \"/latest/meta-data/contract\"\nwasm = \"{}\"\n{grants}\n",
            wasm("contract_v0_3").display()
        ));
        let key = server.dir.path().join("state/identity.key");
        assert_eq!(key.exists(), made, "{grants:?}");
    }
}

/// The claims of an RS256 JWT, once its signature verifies against a key of
/// `jwks` (the one its header's `kid` names).
fn verify_rs256(token: &str, jwks: &Value) -> Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use rsa::signature::Verifier;
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: Value = serde_json::from_slice(&decode(parts[0])).unwrap();
    assert_eq!(header["alg"], "RS256");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("no key {} in {jwks}", header["kid"]));
    let public = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(&decode(key["n"].as_str().unwrap())),
        rsa::BigUint::from_bytes_be(&decode(key["e"].as_str().unwrap())),
    )
    .unwrap();
    let verifier = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public);
    let signature = rsa::pkcs1v15::Signature::try_from(decode(parts[2]).as_slice()).unwrap();
    let signed = format!("{}.{}", parts[0], parts[1]);
    verifier
        .verify(signed.as_bytes(), &signature)
        .expect("the signature verifies");
    serde_json::from_slice(&decode(parts[1])).unwrap()
}
