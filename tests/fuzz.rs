//! Property-based fuzzing of everything that parses outside input: paths,
//! token headers, configuration files (TOML, JSON, YAML, .fintorc),
//! bootstrap bodies, plugin results and plugin binaries (the contract version
//! is read from them before compiling). Each property runs a bounded number
//! of cases (`PROPTEST_CASES` overrides); a panic or a broken property is a
//! failed test, and proptest prints the shrunk input.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ersatz::instance::VERSIONS;
use ersatz::normalise::{normalise, Target};
use ersatz::plugin::{resolved, types};
use ersatz::provider::{Provider, Request, Resolved};
use ersatz::router::Router;
use ersatz::session::{parse_ttl, Sessions};
use http::Method;
use proptest::prelude::*;

const CASES: u32 = 4000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(CASES),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Paths as clients write them: versions, known segments, slashes, dots,
/// percent signs and anything else.
fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        prop::sample::select(VERSIONS.to_vec()).prop_map(str::to_owned),
        prop::sample::select(vec![
            "meta-data",
            "iam",
            "info",
            "dynamic",
            "api",
            "token",
            "..",
            ".",
            ""
        ])
        .prop_map(str::to_owned),
        "[a-zA-Z0-9=%._~-]{0,12}",
        any::<String>(),
    ];
    prop::collection::vec(segment, 0..8).prop_map(|segments| format!("/{}", segments.join("/")))
}

struct Named;

#[async_trait]
impl Provider for Named {
    async fn resolve(&self, _: &Request<'_>) -> Resolved {
        Resolved::NotFound
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn normalised_paths_are_clean_tree_paths(raw in path()) {
        match normalise(&raw) {
            Target::Versions => prop_assert!(raw.chars().all(|c| c == '/')),
            Target::Tree { path, latest } => {
                prop_assert!(!path.starts_with('/') && !path.ends_with('/') && !path.contains("//"), "{path:?}");
                prop_assert!(path.split('/').all(|s| s != ".." && s != "."), "{path:?}");
                prop_assert_eq!(latest, raw.split('/').find(|s| !s.is_empty()) == Some("latest"));
            }
            Target::Unknown => {}
        }
    }

    #[test]
    fn paths_of_known_segments_normalise_to_their_tree_path(
        version in prop::sample::select([VERSIONS.to_vec(), vec!["latest"]].concat()),
        segments in prop::collection::vec("[a-z][a-z0-9-]{0,10}", 0..6),
        slashes in prop::collection::vec(1usize..4, 8),
        trailing in any::<bool>(),
    ) {
        // The other direction of the property above: a path that climbs
        // nowhere, however it is slashed, is a tree path, never Unknown.
        let mut raw = format!("{}{version}", "/".repeat(slashes[7]));
        for (segment, count) in segments.iter().zip(&slashes) {
            raw.push_str(&"/".repeat(*count));
            raw.push_str(segment);
        }
        if trailing {
            raw.push('/');
        }
        match normalise(&raw) {
            Target::Tree { latest, path } => {
                prop_assert_eq!(path.as_ref(), segments.join("/"), "{}", raw);
                prop_assert_eq!(latest, version == "latest");
            }
            _ => prop_assert!(false, "{raw} did not normalise to a tree path"),
        }
    }

    #[test]
    fn routing_picks_the_longest_whole_segment_mount(raw in path()) {
        let router = Router::new(vec![
            (String::new(), Arc::new(Named) as Arc<dyn Provider>),
            ("meta-data/iam".into(), Arc::new(Named)),
            ("meta-data/public-keys".into(), Arc::new(Named)),
        ]);
        if let Target::Tree { path, .. } = normalise(&raw) {
            let (_, rest) = router.route(&path).expect("the root mount takes everything");
            prop_assert!(path.ends_with(rest));
            for mount in ["meta-data/iam", "meta-data/public-keys"] {
                if path == mount || path.starts_with(&format!("{mount}/")) {
                    prop_assert_eq!(rest, path[mount.len()..].trim_start_matches('/'));
                }
            }
        }
    }

    #[test]
    fn token_ttls_are_whole_numbers_from_1_to_21600(bytes in prop::collection::vec(any::<u8>(), 0..12), n in any::<i64>()) {
        let parsed = parse_ttl(Some(&bytes));
        let text = String::from_utf8_lossy(&bytes);
        // Plain digits only: no sign, no leading zero, no white space.
        let plain = bytes.first().is_some_and(|b| *b != b'0') && bytes.iter().all(u8::is_ascii_digit);
        let expected = text.parse::<u64>().ok().filter(|t| plain && (1..=21_600).contains(t));
        prop_assert_eq!(parsed.ok(), expected);
        let number = n.to_string();
        prop_assert_eq!(parse_ttl(Some(number.as_bytes())).is_ok(), (1..=21_600).contains(&n));
    }

    #[test]
    fn only_issued_tokens_verify(noise in prop::collection::vec(any::<u8>(), 0..120), flip in 0usize..75) {
        let sessions = Sessions::with_key([42; 32]);
        prop_assert_eq!(sessions.check(&noise), None);
        let token = sessions.issue(60).into_bytes();
        prop_assert!(sessions.check(&token).is_some());
        let mut altered = token.clone();
        let at = flip % altered.len();
        altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
        prop_assert_eq!(sessions.check(&altered), None);
    }

    #[test]
    fn bootstrap_bodies_are_accepted_only_with_both_keys(body in bootstrap_body()) {
        let parsed = ersatz::admin::bootstrap::parse(body.as_bytes());
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&body) {
            let has = |k: &str| value.get(k).and_then(|v| v.as_str()).is_some_and(|v| !v.is_empty());
            if parsed.is_ok() {
                prop_assert!(has("AccessKeyId") && has("SecretAccessKey"));
            }
        } else {
            prop_assert!(parsed.is_err());
        }
        if let Err(reason) = parsed {
            prop_assert!(!reason.contains("fuzzSecretValue"), "a reason quoted a secret: {reason}");
        }
    }

    #[test]
    fn plugin_results_always_make_a_response(content_type in any::<String>(), body in prop::collection::vec(any::<u8>(), 0..64), entries in prop::collection::vec(any::<String>(), 0..6)) {
        let leaf = resolved(types::Response::Leaf(types::Leaf { body: body.clone(), content_type }), None, Vec::new());
        match leaf {
            Ok(Resolved::Leaf { body: served, .. }) => prop_assert_eq!(served.as_ref(), body.as_slice()),
            _ => prop_assert!(false, "a leaf stays a leaf"),
        }
        let joined = entries.join("\n");
        match resolved(types::Response::Directory(entries), None, Vec::new()) {
            Ok(Resolved::Dir(listing)) => prop_assert_eq!(listing.as_ref(), joined.as_bytes()),
            _ => prop_assert!(false, "a directory stays a directory"),
        }
    }

    /// Whatever status and headers a plugin answers, the host either
    /// refuses them or keeps a status a server may send and headers that
    /// cannot frame the message.
    #[test]
    fn plugin_statuses_and_headers_are_refused_or_safe(
        status in any::<Option<u16>>(),
        headers in prop::collection::vec((prop_oneof![any::<String>(), Just("content-length".to_owned()), Just("X-Ok".to_owned())], any::<String>()), 0..4),
    ) {
        let leaf = types::Response::Leaf(types::Leaf { body: b"x".to_vec(), content_type: "text/plain".into() });
        if let Ok(Resolved::Shaped(shaped)) = resolved(leaf, status, headers) {
            prop_assert!((200..=599).contains(&shaped.status.as_u16()));
            prop_assert!(!shaped.headers.contains_key("content-length"));
            prop_assert!(!shaped.headers.contains_key("transfer-encoding"));
        }
    }
}

fn bootstrap_body() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just("\"fuzzSecretValue\"".to_owned()),
        Just("\"\"".to_owned()),
        Just("null".to_owned()),
        Just("12".to_owned()),
        "\"[A-Z0-9]{0,20}\"",
    ];
    let key = prop::sample::select(vec![
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "Source",
        "Other",
    ]);
    prop_oneof![
        prop::collection::btree_map(key, value, 0..5).prop_map(|fields: BTreeMap<&str, String>| {
            let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", inner.join(","))
        }),
        any::<String>(),
    ]
}

/// Configuration files: known keys with values of every type, and noise, in
/// every format. Loading one must give a configuration or an error that
/// names the file, never a panic.
fn config_file() -> impl Strategy<Value = (String, String)> {
    let key = prop::sample::select(vec![
        "server.listen",
        "server.admin_listen",
        "server.max_connections",
        "server.max_connections_per_client",
        "server.client_timeout",
        "server.admin_token",
        "server.allowed_hosts",
        "imds.v1",
        "instance.id",
        "instance.region",
        "instance.availability_zone",
        "instance.type",
        "instance.local_ipv4",
        "instance.mac",
        "instance.tags",
        "default_role",
        "roles.r.source",
        "roles.r.arn",
        "roles.r.duration",
        "sources.s.type",
        "sources.s.access_key_id",
        "sources.s.secret_access_key",
        "events.spot.after",
        "events.spot.warning",
        "events.rebalance.after",
        "events.autoscaling.after",
        "roles.r.duration",
        "plugins.0.limits.memory",
        "credentials.refresh_margin",
        "clients",
        "metadata.x",
        "snapshot",
        "plugins",
    ]);
    let value = prop_oneof![
        Just("\"127.0.0.1:0\"".to_owned()),
        Just("[\"127.0.0.1:0\"]".to_owned()),
        Just("\"static\"".to_owned()),
        Just("\"1h\"".to_owned()),
        Just("\"disabled\"".to_owned()),
        Just("\"us-east-1\"".to_owned()),
        Just("0".to_owned()),
        Just("true".to_owned()),
        Just("[]".to_owned()),
        "\"[ -~]{0,12}\"",
        "-?[0-9]{1,6}",
        // The integer limits, and sizes and durations that overflow.
        Just("9223372036854775807".to_owned()),
        Just("-9223372036854775808".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("\"17592186044432MiB\"".to_owned()),
        Just("\"292277024626y\"".to_owned()),
        Just("\"1ns\"".to_owned()),
    ];
    let toml = prop::collection::vec((key, value), 0..6).prop_map(|pairs| {
        // Dotted keys, one per line: TOML's own syntax for nested tables.
        pairs
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect::<String>()
    });
    prop_oneof![
        toml.prop_map(|t| ("c.toml".to_owned(), t)),
        any::<String>().prop_map(|t| ("c.toml".to_owned(), t)),
        any::<String>().prop_map(|t| ("c.json".to_owned(), t)),
        any::<String>().prop_map(|t| ("c.yaml".to_owned(), t)),
        any::<String>().prop_map(|t| (".fintorc".to_owned(), t)),
        "\\{\"roles\": \\{\"[a-z]{1,5}\": \"[ -~]{0,30}\"\\}, \"default_role\": \"[a-z]{0,5}\"\\}"
            .prop_map(|t| (".fintorc".to_owned(), t)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: config().cases / 4, ..config() })]

    #[test]
    fn configuration_files_load_or_say_why((name, contents) in config_file()) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(&name);
        std::fs::write(&file, &contents).unwrap();
        match ersatz::config::load(Some(&file), &Default::default()) {
            Err(error) => {
                let message = error.to_string();
                prop_assert!(!message.is_empty());
                prop_assert!(message.contains(&file.display().to_string()) || !error.key.is_empty() || message.contains("ERSATZ_"), "{message}");
            }
            // Whatever is accepted holds what serving relies on.
            Ok(loaded) => {
                let config = &loaded.config;
                let server = &config.server;
                prop_assert!(!server.listen.is_empty());
                prop_assert!((1..=65_536).contains(&server.max_connections));
                prop_assert!(server.max_connections_per_client >= 1);
                let timeout = server.client_timeout.0;
                prop_assert!(timeout >= Duration::from_millis(100) && timeout <= Duration::from_secs(3600));
                prop_assert!(config.roles.contains_key(config.initial_role()));
                for role in config.roles.values() {
                    prop_assert!(config.sources.contains_key(&role.source));
                }
                if let Some(spot) = &config.events.spot {
                    prop_assert!(spot.after.0 <= ersatz::config::MAX_DURATION);
                }
                prop_assert!(loaded.needs_restart(&loaded).is_empty(), "a configuration differs from itself");
            }
        }
    }
}

/// A real component, as `tests/run.sh` builds it.
fn echo_component() -> &'static [u8] {
    static WASM: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    WASM.get_or_init(|| {
        let path = common::wasm("echo_version");
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn plugin_binaries_have_their_contract_read_or_refused(
        corruptions in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        keep in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut wasm = echo_component().to_vec();
        for (at, byte) in &corruptions {
            let at = at.index(wasm.len());
            wasm[at] = *byte;
        }
        if truncate {
            wasm.truncate(keep.index(wasm.len()));
        }
        match ersatz::plugin::contract::read(&wasm) {
            Ok(contract) => prop_assert!(ersatz::plugin::Version::ALL.contains(&contract.version)),
            Err(reason) => {
                prop_assert!(!reason.is_empty());
                prop_assert!(!corruptions.is_empty() || truncate, "the intact component is refused: {reason}");
            }
        }
        if corruptions.is_empty() && !truncate {
            let contract = ersatz::plugin::contract::read(&wasm).unwrap();
            prop_assert_eq!((contract.version, contract.credential), (ersatz::plugin::Version::V0_2, false));
        }
    }
}

/// Durations as a user may write them: numbers at every magnitude, and text
/// with any unit.
fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            "[0-9]{1,22}",
            prop::sample::select(vec!["", "s", "m", "h", "d", "y", "ms", "ns", "w", "x"])
        )
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn durations_are_bounded_or_refused_with_the_accepted_forms(text in duration_text(), seconds in any::<u64>(), negative in i64::MIN..0) {
        use ersatz::config::{HumanDuration, MAX_DURATION};
        match serde_json::from_value::<HumanDuration>(serde_json::json!(text)) {
            Ok(HumanDuration(d)) => prop_assert!(d <= MAX_DURATION, "{text}"),
            Err(error) => {
                let message = error.to_string();
                prop_assert!(message.contains("like 5s") || message.contains("365d"), "{message}");
            }
        }
        let numeric = serde_json::from_value::<HumanDuration>(serde_json::json!(seconds));
        prop_assert_eq!(numeric.is_ok(), seconds <= MAX_DURATION.as_secs());
        prop_assert!(serde_json::from_value::<HumanDuration>(serde_json::json!(negative)).is_err());
    }
}

/// Admin requests with hostile bodies and query values, for every route
/// that reads one.
fn admin_request() -> impl Strategy<Value = (Method, String, String)> {
    let value = prop_oneof![
        duration_text().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        Just(serde_json::json!([1, "x"])),
    ];
    let key = prop::sample::select(vec![
        "in",
        "action",
        "code",
        "duration",
        "description",
        "state",
        "alias",
        "source",
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "Source",
    ]);
    let body = prop_oneof![
        prop::collection::btree_map(key, value, 0..4)
            .prop_map(|map| serde_json::to_string(&map).unwrap()),
        any::<String>(),
    ];
    let route = prop::sample::select(vec![
        (Method::POST, "/events/spot"),
        (Method::POST, "/events/rebalance"),
        (Method::POST, "/events/maintenance"),
        (Method::POST, "/events/autoscaling"),
        (Method::DELETE, "/events"),
        (Method::POST, "/bootstrap/creds"),
        (Method::PUT, "/roles"),
        (Method::PUT, "/roles/ersatz-default/source"),
        (Method::GET, "/roles?status="),
        (Method::GET, "/roles/"),
        (Method::GET, "/ecs?"),
    ]);
    (route, body, "[a-zA-Z0-9%=&._-]{0,16}").prop_map(|((method, path), body, query)| {
        let path = if path.ends_with(['=', '/', '?']) {
            format!("{path}{query}")
        } else {
            path.to_owned()
        };
        (method, path, body)
    })
}

#[test]
fn admin_requests_get_a_clear_answer_and_the_server_keeps_answering() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = common::Ersatz::with_toml(
        "[instance]\nlife_cycle = \"spot\"\n[events.autoscaling]\nafter = \"1h\"\n",
    );
    let cases = config().cases / 10;
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases, ..config() });
    runner
        .run(&admin_request(), |(method, path, body)| {
            let reply = runtime.block_on(common::send_body(
                &server.admin_url,
                method.clone(),
                &path,
                &[],
                &body,
            ));
            prop_assert!(
                reply.status.is_success() || reply.status.is_client_error(),
                "{method} {path} {body:?}: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
            let alive =
                runtime.block_on(server.get("/latest/meta-data/events/maintenance/scheduled"));
            prop_assert_eq!(alive.status.as_u16(), 200);
            Ok(())
        })
        .unwrap();
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

/// Snapshot documents as a tampered or truncated file may hold them: known
/// and odd paths, any text, any format number.
fn snapshot_document() -> impl Strategy<Value = String> {
    let path = prop_oneof![
        prop::sample::select(vec![
            "meta-data/instance-id",
            "meta-data/iam/info",
            "meta-data/placement/region",
            "meta-data/network/interfaces/macs/0e:00:00:00:00:01/mac",
            "dynamic/instance-identity/document",
            "user-data",
            "meta-data",
            "meta-data/",
            "",
        ])
        .prop_map(str::to_owned),
        "[a-z/.-]{0,24}",
        any::<String>(),
    ];
    let leaves = prop::collection::btree_map(path, any::<String>(), 0..8);
    prop_oneof![
        (0u32..3, leaves).prop_map(|(format, leaves)| {
            serde_json::json!({ "format": format, "source": "fuzz", "leaves": leaves, "listings": leaves, "user_data": null }).to_string()
        }),
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: config().cases / 4, ..config() })]

    #[test]
    fn snapshot_documents_replay_or_say_why(document in snapshot_document()) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("snapshot.json");
        std::fs::write(&file, &document).unwrap();
        match ersatz::snapshot::Snapshot::load(&file) {
            Ok(snapshot) => {
                if let Err(reason) = ersatz::provider::static_tree::snapshot_tree(&snapshot) {
                    prop_assert!(!reason.is_empty());
                }
            }
            Err(reason) => prop_assert!(reason.contains(&file.display().to_string()), "{reason}"),
        }
    }

    #[test]
    fn host_headers_pass_only_when_exactly_an_allowed_host(value in any::<String>(), port in any::<u16>()) {
        use ersatz::guard::{Guard, Refusal};
        let guard = Guard::new(&["localhost".to_owned(), "[::1]".to_owned()], &[]);
        let check = |host: &str| {
            let request = http::Request::builder().uri("/").header("host", host).body(()).ok()?;
            Some(guard.check(&request))
        };
        // Whatever the header holds, an answer and no panic; and it passes
        // only when it names an allowed host, with at most a port.
        if let Some(Ok(())) = check(&value) {
            let lower = value.to_ascii_lowercase();
            let host = match lower.rsplit_once(':') {
                Some((host, port)) if !port.is_empty() && port.parse::<u16>().is_ok() && port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(':') => host,
                _ => lower.as_str(),
            };
            let loopback_v6 = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
                == Some(std::net::Ipv6Addr::LOCALHOST);
            prop_assert!(host == "localhost" || loopback_v6, "{:?} passed", value);
        }
        prop_assert_eq!(check(&format!("localhost:{port}")), Some(Ok(())));
        prop_assert_eq!(check(&format!("[::1]:{port}")), Some(Ok(())));
        prop_assert_eq!(check(&format!("evil{port}.example:{port}")), Some(Err(Refusal::HostNotAllowed)));
    }
}
