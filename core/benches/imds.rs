//! `cargo bench --bench imds`: ersatz against a bare hyper server (the
//! ceiling) answering the same body, both on loopback, both driven by `wrk`
//! in the same run, one after the other. Prints requests/s and p99 for each
//! scenario and ersatz's throughput as a ratio of the ceiling's; then the
//! AssumeRole calls 1,000 concurrent cold requests cause (with moto as STS,
//! from the test setup's `.venv`), start-up times and memory.
//!
//! Each scenario alternates ceiling and ersatz for several rounds and
//! reports medians, so that drift in the machine's speed during the run
//! falls on both alike.
//!
//! With two CPUs or more, the servers run on all but the last and wrk on the
//! last, so load generator and server never compete for a core: on shared
//! cores a server that needs more CPU per request also slows wrk, which
//! flatters it.
//!
//! Environment: `ERSATZ_BENCH_SECONDS` (per measurement, default 3),
//! `ERSATZ_BENCH_ROUNDS` (default 3), `ERSATZ_BENCH_CONNECTIONS` (default 64),
//! `ERSATZ_BENCH_PIN=0` (servers and wrk share every CPU).

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[cfg(feature = "plugins")]
#[path = "imds/floor.rs"]
mod floor;

const ERSATZ: &str = env!("CARGO_BIN_EXE_ersatz");
/// Set in the child process that serves as the ceiling: the body to answer.
const CEILING_BODY: &str = "ERSATZ_BENCH_CEILING_BODY";
/// Set in the child process that measures the plugin host's floor: the
/// plugin's path.
#[cfg(feature = "plugins")]
const FLOOR_WASM: &str = "ERSATZ_BENCH_FLOOR_WASM";

fn main() {
    if let Ok(body) = std::env::var(CEILING_BODY) {
        return ceiling(body);
    }
    #[cfg(feature = "plugins")]
    if let Ok(wasm) = std::env::var(FLOOR_WASM) {
        let floor = floor::micros_per_call(Path::new(&wasm), &plugin_json(), PLUGIN_FRESH_BELOW);
        return println!("floor {floor}");
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!(
            "the benchmark drives both servers with wrk: install it (Debian: apt-get install wrk)"
        );
        std::process::exit(1);
    }
    let seconds: u64 = env_or("ERSATZ_BENCH_SECONDS", 3);
    let rounds = env_or("ERSATZ_BENCH_ROUNDS", 3).max(1);
    let connections: u64 = env_or("ERSATZ_BENCH_CONNECTIONS", 64);

    let plugin = plugin_config();
    let config = plugin.as_ref().map(|(config, _)| config.as_path());
    let state = tempfile::tempdir().unwrap();
    let (_, startup_bare) = Server::ersatz(None, state.path(), INSTANCE_ID);
    let (cold, startup_cold) = Server::ersatz(config, state.path(), PLUGIN_PATH);
    drop(cold);
    // The same state directory: the compiled plugin now comes from its cache.
    let (ersatz, startup_warm) = Server::ersatz(config, state.path(), PLUGIN_PATH);
    let peak = PeakRss::watch(ersatz.child.id());
    let token = http(
        ersatz.addr,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
    );
    let token_header = format!("X-aws-ec2-metadata-token: {token}");
    let role = http(
        ersatz.addr,
        "GET",
        "/latest/meta-data/iam/security-credentials/",
        &[],
    );
    let credentials_path = format!("/latest/meta-data/iam/security-credentials/{role}");

    let mut scenarios: Vec<Scenario> = vec![
        Scenario::get("static v1 GET", INSTANCE_ID, None),
        Scenario::get("v2 GET with token", INSTANCE_ID, Some(&token_header)),
        Scenario::get("cached credentials GET", &credentials_path, None),
        Scenario {
            name: "token PUT",
            path: "/latest/api/token".into(),
            script: Some("wrk.method = \"PUT\"\nwrk.headers[\"X-aws-ec2-metadata-token-ttl-seconds\"] = \"21600\"\n"),
            header: None,
            unjournaled: false,
        },
        Scenario::get("static v1 GET", INSTANCE_ID, None).without_journal("static, no journal"),
        Scenario::get("v2 GET with token", INSTANCE_ID, Some(&token_header))
            .without_journal("v2, no journal"),
    ];
    // The same state directory, so the token above is good here too.
    let (unjournaled, _) = Server::ersatz_with(
        config,
        state.path(),
        PLUGIN_PATH,
        &[("ERSATZ_JOURNAL__CAPACITY", "0")],
    );

    if plugin.is_some() {
        scenarios.push(Scenario::get("plugin GET, reused", PLUGIN_PATH, None));
        scenarios.push(Scenario::get(
            "plugin GET, new instance",
            PLUGIN_FRESH_PATH,
            None,
        ));
    }
    println!(
        "ersatz benchmark: wrk -t1 -c{connections} -d{seconds}s per measurement, medians of {rounds} alternating rounds, {}",
        placement().describe()
    );
    println!(
        "{:<24} {:>12} {:>12} {:>7} {:>13} {:>11} {:>11}",
        "scenario",
        "ceiling r/s",
        "ersatz r/s",
        "ratio",
        "ratio range",
        "ceiling p99",
        "ersatz p99"
    );
    // Requests per second, ceiling's and ersatz's, by scenario.
    let mut measured = std::collections::HashMap::new();
    for scenario in &scenarios {
        let body = match scenario.script {
            Some(_) => token.clone(),
            None => http(ersatz.addr, "GET", &scenario.path, &scenario.header_pair()),
        };
        let ceiling = Server::ceiling(&body);
        let (mut top, mut ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let round_top = wrk(ceiling.addr, scenario, seconds, connections);
            let ours_addr = if scenario.unjournaled {
                unjournaled.addr
            } else {
                ersatz.addr
            };
            let round_ours = wrk(ours_addr, scenario, seconds, connections);
            ratios.push(round_ours.requests_per_second / round_top.requests_per_second);
            top.push(round_top);
            ours.push(round_ours);
        }
        drop(ceiling);
        let (top, ours) = (Measured::median(top), Measured::median(ours));
        let range = format!(
            "{:.2}-{:.2}",
            ratios.iter().copied().fold(f64::MAX, f64::min),
            ratios.iter().copied().fold(0.0, f64::max)
        );
        measured.insert(
            scenario.name,
            (top.requests_per_second, ours.requests_per_second),
        );
        println!(
            "{:<24} {:>12.0} {:>12.0} {:>6.2}x {:>13} {:>9.0}us {:>9.0}us",
            scenario.name,
            top.requests_per_second,
            ours.requests_per_second,
            median(ratios),
            range,
            top.p99_micros,
            ours.p99_micros
        );
    }
    if plugin.is_some() {
        plugin_floor(&measured);
    } else {
        println!(
            "{:<24} {:>12}",
            "plugin GET",
            "n/a: build plugins/ for wasm32-unknown-unknown first (tests/run.sh does)"
        );
    }
    println!(
        "peak RSS under load: {:.1} MiB; idle RSS after the run: {:.1} MiB",
        peak.stop(),
        rss_mib(ersatz.child.id())
    );
    drop(ersatz);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "start-up to first answer, embedded defaults: {:.1} ms",
        ms(startup_bare)
    );
    if plugin.is_some() {
        println!(
            "start-up to first plugin answer: {:.1} ms cold (compiling), {:.1} ms warm (compiled cache)",
            ms(startup_cold),
            ms(startup_warm)
        );
    }
    cold_assume_role();
}

const INSTANCE_ID: &str = "/latest/meta-data/instance-id";
/// Served by public-keys, which lets ersatz reuse its answers for an hour.
const PLUGIN_PATH: &str = "/latest/meta-data/public-keys/0/openssh-key";
/// The same plugin mounted with `limits.max_age = "0s"`: a call per request.
const PLUGIN_FRESH_PATH: &str = "/latest/meta-data/public-keys-fresh/0/openssh-key";
/// That path below the plugin's mount, as the plugin is asked for it.
#[cfg(feature = "plugins")]
const PLUGIN_FRESH_BELOW: &str = "0/openssh-key";
/// The key public-keys serves.
const PLUGIN_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench bench@host";
const COLD_REQUESTS: usize = 1000;

/// The plugin host's floor (see `floor.rs`), measured on one of the
/// servers' CPUs, and the most a fresh-instance plugin GET could reach with
/// it: the reused plugin GET's time per request (the same HTTP path,
/// routing and plugin mount, without the call) plus the floor, shared out
/// over the servers' CPUs.
#[cfg(feature = "plugins")]
fn plugin_floor(measured: &std::collections::HashMap<&str, (f64, f64)>) {
    let output = placement()
        .server(std::env::current_exe().unwrap())
        .env(FLOOR_WASM, plugin_wasm())
        .stderr(Stdio::inherit())
        .output()
        .expect("the floor's measurement runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let floor: f64 = text
        .trim()
        .strip_prefix("floor ")
        .and_then(|micros| micros.parse().ok())
        .unwrap_or_else(|| panic!("the floor's measurement printed {text:?}"));
    let (_, reused) = measured["plugin GET, reused"];
    let (ceiling, _) = measured["plugin GET, new instance"];
    let cpus = placement().server_cpus();
    let reachable = 1.0 / (1.0 / reused + floor / 1e6 / cpus as f64);
    println!(
        "plugin host floor (wasmtime alone: new store and instance, the call, teardown; in-process, no HTTP): {floor:.2} us per call on one CPU; with the servers' {cpus}, a new-instance plugin GET can reach at most {reachable:.0} r/s, {:.2}x of its ceiling",
        reachable / ceiling
    );
}

#[cfg(not(feature = "plugins"))]
fn plugin_floor(_: &std::collections::HashMap<&str, (f64, f64)>) {}

/// 1,000 requests at once for a role nobody has asked for yet, with moto as
/// STS: how many AssumeRole calls they cause (ersatz's `/metrics`), and how
/// long the last one waited.
fn cold_assume_role() {
    let moto_server = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
    if !moto_server.is_file() {
        println!("cold AssumeRole: n/a: needs moto in .venv (tests/run.sh installs it)");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let moto = Server {
        child: Command::new(moto_server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts"),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        admin: None,
    };
    while TcpStream::connect(moto.addr).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cold.toml");
    std::fs::write(
        &config,
        format!(
            "default_role = \"warm\"\n[sources.caller]\ntype = \"static\"\naccess_key_id = \"AKIABENCHEXAMPLE0001\"\nsecret_access_key = \"bench\"\n[roles.warm]\nsource = \"caller\"\n[roles.cold]\nsource = \"caller\"\narn = \"arn:aws:iam::123456789012:role/cold\"\nsts_endpoint = \"http://{}\"\n",
            moto.addr
        ),
    )
    .unwrap();
    let (ersatz, _) = Server::ersatz(Some(&config), dir.path(), INSTANCE_ID);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = ersatz.addr;
    let started = Instant::now();
    let statuses = runtime.block_on(async move {
        let requests: Vec<_> = (0..COLD_REQUESTS)
            .map(|_| {
                tokio::spawn(get_status(
                    addr,
                    "/latest/meta-data/iam/security-credentials/cold",
                ))
            })
            .collect();
        let mut ok = 0;
        for request in requests {
            ok += usize::from(request.await.unwrap() == 200);
        }
        ok
    });
    let waited = started.elapsed();
    let metrics = http(ersatz.admin.unwrap(), "GET", "/metrics", &[]);
    let calls = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ersatz_sts_calls_total "))
        .unwrap_or("?");
    println!(
        "cold AssumeRole: {COLD_REQUESTS} concurrent requests, {statuses} answered 200, {calls} STS call(s), all answered in {:.0} ms",
        waited.as_secs_f64() * 1000.0
    );
}

async fn get_status(addr: SocketAddr, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// The largest RSS a process reaches while watched, sampled every 50 ms.
struct PeakRss {
    stop: std::sync::mpsc::Sender<()>,
    sampler: std::thread::JoinHandle<f64>,
}

impl PeakRss {
    fn watch(pid: u32) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0f64;
            while stopped.recv_timeout(Duration::from_millis(50)).is_err() {
                peak = peak.max(rss_mib(pid));
            }
            peak
        });
        Self { stop, sampler }
    }

    fn stop(self) -> f64 {
        let _ = self.stop.send(());
        self.sampler.join().unwrap()
    }
}

struct Scenario {
    name: &'static str,
    path: String,
    script: Option<&'static str>,
    header: Option<String>,
    /// Against a second ersatz that keeps no journal (`journal.capacity = 0`),
    /// to show what the journal costs.
    unjournaled: bool,
}

impl Scenario {
    fn get(name: &'static str, path: &str, header: Option<&str>) -> Self {
        Self {
            name,
            path: path.into(),
            script: None,
            header: header.map(str::to_owned),
            unjournaled: false,
        }
    }

    fn without_journal(mut self, name: &'static str) -> Self {
        self.name = name;
        self.unjournaled = true;
        self
    }

    fn header_pair(&self) -> Vec<(&str, &str)> {
        self.header
            .as_deref()
            .and_then(|h| h.split_once(": "))
            .into_iter()
            .collect()
    }
}

struct Server {
    child: Child,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// ersatz on its embedded defaults (plus `config`), and the time from
    /// its start to its first answer to `GET first`.
    fn ersatz(config: Option<&Path>, state: &Path, first: &str) -> (Self, Duration) {
        Self::ersatz_with(config, state, first, &[])
    }

    /// [`Server::ersatz`] with more environment variables.
    fn ersatz_with(
        config: Option<&Path>,
        state: &Path,
        first: &str,
        env: &[(&str, &str)],
    ) -> (Self, Duration) {
        let started = Instant::now();
        let mut command = placement().server(ERSATZ);
        if let Some(config) = config {
            command.arg("serve").arg("--config").arg(config);
        } else {
            command.arg("serve");
        }
        let mut child = command
            .args(["--port", "0", "--admin-addr", "127.0.0.1:0"])
            .env("ERSATZ_SERVER__STATE_DIR", state)
            .env("ERSATZ_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .expect("ersatz starts");
        let [addr, admin] = announced(
            &mut child,
            ["ersatz: metadata on http://", "ersatz: admin on http://"],
        );
        http(addr, "GET", first, &[]);
        let startup = started.elapsed();
        let admin = Some(admin);
        (Self { child, addr, admin }, startup)
    }

    /// This benchmark re-run as the ceiling: a bare hyper server, in its own
    /// process like ersatz, answering `body` on every path.
    fn ceiling(body: &str) -> Self {
        let mut child = placement()
            .server(std::env::current_exe().unwrap())
            .env(CEILING_BODY, body)
            .stdout(Stdio::piped())
            .spawn()
            .expect("ceiling starts");
        let [addr] = announced(&mut child, ["ceiling on "]);
        Self {
            child,
            addr,
            admin: None,
        }
    }
}

/// The addresses a server prints after each of `prefixes`, in that order.
fn announced<const N: usize>(child: &mut Child, prefixes: [&str; N]) -> [SocketAddr; N] {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addrs = prefixes.map(|prefix| loop {
        let line = lines.next().expect("server announces its address").unwrap();
        if let Some(addr) = line.strip_prefix(prefix) {
            break addr.parse().unwrap();
        }
    });
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    addrs
}

fn ceiling(body: String) {
    let body = Bytes::from(body);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("ceiling on {}", listener.local_addr().unwrap());
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    let body = body.clone();
                    async move {
                        let mut response = hyper::Response::new(Full::new(body));
                        response.headers_mut().insert(
                            "content-type",
                            hyper::header::HeaderValue::from_static("text/plain"),
                        );
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

struct Measured {
    requests_per_second: f64,
    p99_micros: f64,
}

impl Measured {
    fn median(rounds: Vec<Measured>) -> Measured {
        let (rates, p99s): (Vec<f64>, Vec<f64>) = rounds
            .into_iter()
            .map(|m| (m.requests_per_second, m.p99_micros))
            .unzip();
        Measured {
            requests_per_second: median(rates),
            p99_micros: median(p99s),
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// wrk's latency (`850.00us`, `1.20ms`, `2.00s`) in microseconds.
fn micros(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        _ => return None,
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

fn wrk(addr: SocketAddr, scenario: &Scenario, seconds: u64, connections: u64) -> Measured {
    let mut command = placement().load("wrk");
    command.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if let Some(header) = &scenario.header {
        command.args(["-H", header]);
    }
    let script_file;
    if let Some(script) = scenario.script {
        script_file = std::env::temp_dir().join(format!("ersatz-bench-{}.lua", std::process::id()));
        std::fs::write(&script_file, script).unwrap();
        command.args(["-s", script_file.to_str().unwrap()]);
    }
    let output = command
        .arg(format!("http://{addr}{}", scenario.path))
        .output()
        .expect("wrk runs");
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("Non-2xx") {
        panic!("{} answered errors under load:\n{text}", scenario.name);
    }
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
    };
    Measured {
        requests_per_second: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}")),
        p99_micros: field("99%")
            .and_then(|p99| micros(&p99))
            .unwrap_or(f64::NAN),
    }
}

/// A minimal HTTP/1.0 exchange, for setup only (not measured).
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{method} {path}: {head}"
    );
    body.to_owned()
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A config mounting the shipped public-keys plugin twice, once with its
/// answers reused and once without, if it has been built; the temporary
/// directory holding it lives as long as the returned value.
fn plugin_config() -> Option<(PathBuf, tempfile::TempDir)> {
    let wasm = plugin_wasm();
    if !wasm.is_file() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bench.toml");
    let mount = |name: &str, limits: &str| {
        format!(
            "[[plugins]]\nname = \"{name}\"\nmount = \"/latest/meta-data/{name}\"\nwasm = \"{}\"\nconfig = {{ keys = [{{ name = \"bench\", openssh = \"{PLUGIN_KEY}\" }}] }}\n{limits}\n",
            wasm.display()
        )
    };
    let mounts =
        mount("public-keys", "") + &mount("public-keys-fresh", "limits = { max_age = \"0s\" }");
    std::fs::write(&config, mounts).unwrap();
    Some((config, dir))
}

/// The shipped public-keys plugin, as tests/run.sh builds it.
fn plugin_wasm() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-unknown-unknown/release/public_keys.wasm")
}

/// public-keys' configuration as the plugin reads it (JSON).
#[cfg(feature = "plugins")]
fn plugin_json() -> String {
    serde_json::json!({ "keys": [{ "name": "bench", "openssh": PLUGIN_KEY }] }).to_string()
}

/// The CPUs the servers under test run on, and the one wrk runs on.
struct Placement {
    /// `taskset -c` lists; none when everything shares every CPU.
    pinned: Option<(String, String)>,
}

fn placement() -> &'static Placement {
    static PLACEMENT: OnceLock<Placement> = OnceLock::new();
    PLACEMENT.get_or_init(|| {
        let wanted = std::env::var("ERSATZ_BENCH_PIN").map_or(true, |v| v != "0");
        let taskset = Command::new("taskset").arg("--version").output().is_ok();
        let cpus = allowed_cpus();
        let pinned = match cpus.split_last() {
            Some((load, servers)) if wanted && taskset && !servers.is_empty() => {
                let list: Vec<String> = servers.iter().map(u32::to_string).collect();
                Some((list.join(","), load.to_string()))
            }
            _ => None,
        };
        Placement { pinned }
    })
}

impl Placement {
    fn server(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.on(self.pinned.as_ref().map(|(servers, _)| servers), program)
    }

    fn load(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.on(self.pinned.as_ref().map(|(_, load)| load), program)
    }

    fn on(&self, cpus: Option<&String>, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match cpus {
            Some(cpus) => {
                let mut command = Command::new("taskset");
                command.args(["-c", cpus]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// How many CPUs the servers have.
    #[cfg(feature = "plugins")]
    fn server_cpus(&self) -> usize {
        match &self.pinned {
            Some((servers, _)) => servers.split(',').count(),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }

    fn describe(&self) -> String {
        match &self.pinned {
            Some((servers, load)) => format!("servers on CPU {servers}, wrk on CPU {load}"),
            None => format!(
                "servers and wrk sharing {} CPUs",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ),
        }
    }
}

/// This process's CPUs, from `Cpus_allowed_list` (`0-3,8`).
fn allowed_cpus() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let Some(list) = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
    else {
        return Vec::new();
    };
    list.trim()
        .split(',')
        .filter_map(|range| match range.split_once('-') {
            Some((first, last)) => Some(first.parse().ok()?..=last.parse().ok()?),
            None => range.parse().ok().map(|cpu| cpu..=cpu),
        })
        .flatten()
        .collect()
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
