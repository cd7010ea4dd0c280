//! `cargo bench --bench imds`: ersatz against a bare hyper server (the
//! ceiling) answering the same body, both on loopback, both driven by `wrk`
//! in the same run, one after the other. Prints requests/s and p99 for each
//! scenario and ersatz's throughput as a ratio of the ceiling's.
//!
//! Environment: `ERSATZ_BENCH_SECONDS` (per measurement, default 5),
//! `ERSATZ_BENCH_CONNECTIONS` (default 64).

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

const ERSATZ: &str = env!("CARGO_BIN_EXE_ersatz");
/// Set in the child process that serves as the ceiling: the body to answer.
const CEILING_BODY: &str = "ERSATZ_BENCH_CEILING_BODY";

fn main() {
    if let Ok(body) = std::env::var(CEILING_BODY) {
        return ceiling(body);
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!(
            "the benchmark drives both servers with wrk: install it (Debian: apt-get install wrk)"
        );
        std::process::exit(1);
    }
    let seconds: u64 = env_or("ERSATZ_BENCH_SECONDS", 5);
    let connections: u64 = env_or("ERSATZ_BENCH_CONNECTIONS", 64);

    let plugin = plugin_config();
    let (ersatz, startup) = Server::ersatz(plugin.as_ref().map(|(config, _)| config.as_path()));
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
        Scenario::get("static v1 GET", "/latest/meta-data/instance-id", None),
        Scenario::get("v2 GET with token", "/latest/meta-data/instance-id", Some(&token_header)),
        Scenario::get("cached credentials GET", &credentials_path, None),
        Scenario {
            name: "token PUT",
            path: "/latest/api/token".into(),
            script: Some("wrk.method = \"PUT\"\nwrk.headers[\"X-aws-ec2-metadata-token-ttl-seconds\"] = \"21600\"\n"),
            header: None,
        },
    ];

    if plugin.is_some() {
        scenarios.push(Scenario::get(
            "plugin GET",
            "/latest/meta-data/public-keys/0/openssh-key",
            None,
        ));
    }
    println!(
        "ersatz benchmark: wrk -t1 -c{connections} -d{seconds}s per measurement, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<24} {:>12} {:>12} {:>7} {:>11} {:>11}",
        "scenario", "ceiling r/s", "ersatz r/s", "ratio", "ceiling p99", "ersatz p99"
    );
    for scenario in &scenarios {
        let body = match scenario.script {
            Some(_) => token.clone(),
            None => http(ersatz.addr, "GET", &scenario.path, &scenario.header_pair()),
        };
        let ceiling = Server::ceiling(&body);
        let top = wrk(ceiling.addr, scenario, seconds, connections);
        drop(ceiling);
        let ours = wrk(ersatz.addr, scenario, seconds, connections);
        println!(
            "{:<24} {:>12.0} {:>12.0} {:>6.2}x {:>11} {:>11}",
            scenario.name,
            top.requests_per_second,
            ours.requests_per_second,
            ours.requests_per_second / top.requests_per_second,
            top.p99,
            ours.p99
        );
    }
    if plugin.is_none() {
        println!(
            "{:<24} {:>12}",
            "plugin GET", "n/a: build plugins/ for wasm32-wasip2 first (tests/run.sh does)"
        );
    }
    println!(
        "start-up to first answer: {:.1} ms",
        startup.as_secs_f64() * 1000.0
    );
    println!(
        "idle RSS after the run: {:.1} MiB",
        rss_mib(ersatz.child.id())
    );
}

struct Scenario {
    name: &'static str,
    path: String,
    script: Option<&'static str>,
    header: Option<String>,
}

impl Scenario {
    fn get(name: &'static str, path: &str, header: Option<&str>) -> Self {
        Self {
            name,
            path: path.into(),
            script: None,
            header: header.map(str::to_owned),
        }
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
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// ersatz on its embedded defaults (plus `config`), and the time to its
    /// first answer.
    fn ersatz(config: Option<&Path>) -> (Self, Duration) {
        let state = std::env::temp_dir().join(format!("ersatz-bench-{}", std::process::id()));
        let started = Instant::now();
        let mut command = Command::new(ERSATZ);
        if let Some(config) = config {
            command.arg("serve").arg("--config").arg(config);
        } else {
            command.arg("serve");
        }
        let mut child = command
            .args(["--port", "0", "--admin-addr", "127.0.0.1:0"])
            .env("ERSATZ_SERVER__STATE_DIR", &state)
            .env("ERSATZ_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("ersatz starts");
        let addr = announced(&mut child, "ersatz: metadata on http://");
        http(addr, "GET", "/latest/meta-data/instance-id", &[]);
        let startup = started.elapsed();
        (Self { child, addr }, startup)
    }

    /// This benchmark re-run as the ceiling: a bare hyper server, in its own
    /// process like ersatz, answering `body` on every path.
    fn ceiling(body: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CEILING_BODY, body)
            .stdout(Stdio::piped())
            .spawn()
            .expect("ceiling starts");
        let addr = announced(&mut child, "ceiling on ");
        Self { child, addr }
    }
}

fn announced(child: &mut Child, prefix: &str) -> SocketAddr {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().expect("server announces its address").unwrap();
        if let Some(addr) = line.strip_prefix(prefix) {
            // Keep draining stdout so the server never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return addr.parse().unwrap();
        }
    }
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
    p99: String,
}

fn wrk(addr: SocketAddr, scenario: &Scenario, seconds: u64, connections: u64) -> Measured {
    let mut command = Command::new("wrk");
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
        p99: field("99%").unwrap_or_else(|| "?".into()),
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

/// A config mounting the shipped public-keys plugin, if it has been built;
/// the temporary directory holding it lives as long as the returned value.
fn plugin_config() -> Option<(PathBuf, tempfile::TempDir)> {
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/target/wasm32-wasip2/release/public_keys.wasm");
    if !wasm.is_file() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "[[plugins]]\nmount = \"/latest/meta-data/public-keys\"\nwasm = \"{}\"\nconfig = {{ keys = [{{ name = \"bench\", openssh = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench bench@host\" }}] }}\n",
            wasm.display()
        ),
    )
    .unwrap();
    Some((config, dir))
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
