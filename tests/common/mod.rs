//! Shared end-to-end harness: start the built `ersatz` binary on free
//! loopback ports, talk HTTP to it, run the Python clients.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod netns;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_ersatz");

/// Two roles from static keys, `alpha` (the default) and `beta`.
pub const TWO_ROLES: &str = r#"
default_role = "alpha"

[sources.a]
type = "static"
access_key_id = "AKIAALPHAALPHAALPHA0"
secret_access_key = "alpha-secret"

[sources.b]
type = "static"
access_key_id = "AKIABETABETABETABETA"
secret_access_key = "beta-secret"

[roles.alpha]
source = "a"

[roles.beta]
source = "b"
"#;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Rust SDK's IMDS client for `url`, with the HTTP client ersatz itself
/// gives the SDK (ersatz builds the SDK without a default one).
pub fn imds_client(url: &str) -> aws_config::imds::client::Builder {
    let config = aws_config::provider_config::ProviderConfig::default()
        .with_http_client(ersatz::sdk_http_client());
    aws_config::imds::client::Client::builder()
        .configure(&config)
        .endpoint(url)
        .unwrap()
}

/// A running `ersatz serve`, stopped when dropped.
pub struct Ersatz {
    child: Child,
    /// `http://127.0.0.1:PORT` of the metadata listener.
    pub url: String,
    pub admin_url: String,
    /// Each `[[listeners]]` entry's name and URL, as announced.
    pub listeners: Vec<(String, String)>,
    pub dir: TempDir,
}

pub struct Builder {
    config: Option<(String, String)>,
    admin_addr: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    one_cpu: bool,
    /// Where metadata is served (default `127.0.0.1`, a free port).
    listen: (String, String),
    /// A network namespace to run in (`ip netns exec`).
    namespace: Option<String>,
}

impl Ersatz {
    pub fn builder() -> Builder {
        Builder {
            config: None,
            admin_addr: "127.0.0.1:0".to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            one_cpu: false,
            listen: ("127.0.0.1".to_owned(), "0".to_owned()),
            namespace: None,
        }
    }

    /// The embedded default instance.
    pub fn start() -> Self {
        Self::builder().start()
    }

    pub fn with_toml(toml: &str) -> Self {
        Self::builder().config("ersatz.toml", toml).start()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("ersatz did not stop within 5 s of SIGTERM");
    }

    /// The URL of the `[[listeners]]` entry `name`.
    pub fn listener(&self, name: &str) -> &str {
        let found = self.listeners.iter().find(|(n, _)| n == name);
        &found
            .unwrap_or_else(|| panic!("no listener {name} in {:?}", self.listeners))
            .1
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, &[]).await
    }

    pub async fn request(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
        send(&self.url, method, path, headers).await
    }

    /// A GET with a fresh IMDSv2 token.
    pub async fn get_v2(&self, path: &str) -> Reply {
        let token = self.token().await;
        self.request(Method::GET, path, &[("X-aws-ec2-metadata-token", &token)])
            .await
    }

    /// A GET carrying `token` as the IMDSv2 token.
    pub async fn get_with_token(&self, path: &str, token: &str) -> Reply {
        self.request(Method::GET, path, &[("X-aws-ec2-metadata-token", token)])
            .await
    }

    /// A fresh IMDSv2 token.
    pub async fn token(&self) -> String {
        let reply = self
            .request(
                Method::PUT,
                "/latest/api/token",
                &[("X-aws-ec2-metadata-token-ttl-seconds", "300")],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "token PUT: {}", reply.text());
        reply.text()
    }
}

impl Drop for Ersatz {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Builder {
    pub fn config(mut self, name: &str, contents: &str) -> Self {
        self.config = Some((name.to_owned(), contents.to_owned()));
        self
    }

    /// Where the admin API listens (default `127.0.0.1:0`).
    pub fn admin_addr(mut self, addr: &str) -> Self {
        addr.clone_into(&mut self.admin_addr);
        self
    }

    /// Serves metadata on `addr:port` instead of a free loopback port.
    pub fn listen(mut self, addr: &str, port: u16) -> Self {
        self.listen = (addr.to_owned(), port.to_string());
        self
    }

    /// Runs in this network namespace; its URLs are reachable from there.
    pub fn namespace(mut self, name: &str) -> Self {
        self.namespace = Some(name.to_owned());
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Runs ersatz on one CPU (the first this process may use), so that it
    /// makes one plugin engine, and so one pool, whatever the machine.
    pub fn one_cpu(mut self) -> Self {
        self.one_cpu = true;
        self
    }

    pub fn start(self) -> Ersatz {
        let dir = tempfile::tempdir().unwrap();
        let mut command = match &self.namespace {
            None => Command::new(BIN),
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace, BIN]);
                command
            }
        };
        command
            .args([
                "serve",
                "--addr",
                &self.listen.0,
                "--port",
                &self.listen.1,
                "--admin-addr",
                &self.admin_addr,
            ])
            .env("ERSATZ_SERVER__STATE_DIR", dir.path().join("state"))
            .env("ERSATZ_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap());
        if let Some((name, contents)) = &self.config {
            let path = dir.path().join(name);
            std::fs::write(&path, contents).unwrap();
            command.arg("--config").arg(path);
        }
        command.args(&self.args);
        if self.one_cpu {
            let cpu = one_of_our_cpus();
            // SAFETY: sched_setaffinity is async-signal-safe, and its set is
            // made before the fork.
            unsafe {
                command.pre_exec(move || {
                    match libc::sched_setaffinity(0, std::mem::size_of_val(&cpu), &cpu) {
                        0 => Ok(()),
                        _ => Err(std::io::Error::last_os_error()),
                    }
                });
            }
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("ersatz starts");
        let stdout = child.stdout.take().unwrap();
        let (lines, announced) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut url, mut admin_url, mut listeners) = (None, None, Vec::new());
        while url.is_none() || admin_url.is_none() {
            match announced.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => {
                    if let Some(u) = line.strip_prefix("ersatz: metadata on ") {
                        url = Some(u.to_owned());
                    } else if let Some(u) = line.strip_prefix("ersatz: admin on ") {
                        admin_url = Some(u.to_owned());
                    } else if let Some((name, u)) = line
                        .strip_prefix("ersatz: ")
                        .and_then(|rest| rest.split_once(" on "))
                    {
                        listeners.push((name.to_owned(), u.to_owned()));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let stderr =
                        std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
                    panic!("ersatz did not announce its listeners; stderr:\n{stderr}");
                }
            }
        }
        Ersatz {
            child,
            url: url.unwrap(),
            admin_url: admin_url.unwrap(),
            listeners,
            dir,
        }
    }
}

/// A CPU set of one: the first CPU this process may run on.
fn one_of_our_cpus() -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain bits, all zero an empty set; the calls
    // write only within the size given.
    unsafe {
        let mut ours: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of_val(&ours);
        assert_eq!(libc::sched_getaffinity(0, size, &mut ours), 0);
        let first = (0..libc::CPU_SETSIZE as usize)
            .find(|&cpu| libc::CPU_ISSET(cpu, &ours))
            .expect("a CPU to run on");
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(first, &mut one);
        one
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("a UTF-8 body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request with the path sent exactly as given (no client-side
/// normalisation), so tests can send `//` and odd paths.
pub async fn send(base: &str, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
    send_body(base, method, path, headers, "").await
}

/// The same, with a body (admin API calls).
pub async fn send_body(
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .expect("connect");
    exchange(stream, base, method, path, headers, body).await
}

/// A GET from another loopback address (`127.0.0.2`), for per-client rules.
pub async fn send_from(source: &str, base: &str, path: &str) -> Reply {
    send_from_with(source, base, path, &[]).await
}

/// The same, with headers.
pub async fn send_from_with(
    source: &str,
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    exchange(
        connect_from(source, base).await,
        base,
        Method::GET,
        path,
        headers,
        "",
    )
    .await
}

/// A request with any method from another loopback address.
pub async fn send_from_as(source: &str, base: &str, method: Method, path: &str) -> Reply {
    exchange(
        connect_from(source, base).await,
        base,
        method,
        path,
        &[],
        "",
    )
    .await
}

async fn connect_from(source: &str, base: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket
        .connect(base.trim_start_matches("http://").parse().unwrap())
        .await
        .expect("connect")
}

async fn exchange(
    stream: tokio::net::TcpStream,
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let authority = base.trim_start_matches("http://");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut request = Request::builder().method(method).uri(path);
    // A Host among `headers` replaces the listener's own.
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request = request.header("host", authority);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = sender
        .send_request(
            request
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// Runs `ersatz` with `args` to completion.
pub fn ersatz(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    // From the repository root, as the README runs it (examples use relative paths).
    command
        .args(args)
        .stdin(Stdio::null())
        .current_dir(workspace());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("ersatz runs")
}

/// The Python with boto3 (and moto) that tests/run.sh prepares.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("ERSATZ_TEST_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = workspace().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python test environment: run tests/run.sh (or set ERSATZ_TEST_PYTHON to a python with boto3)"
    );
    venv
}

/// Runs a Python snippet; panics with its output unless it exits 0.
pub fn run_python(python: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    run_python_command(Command::new(python), args, env)
}

/// As [`run_python`], for a command that runs the Python (`ip netns exec`).
pub fn run_python_command(mut command: Command, args: &[&str], env: &[(&str, &str)]) -> String {
    command.args(args).stdin(Stdio::null());
    // Nothing from the developer's own AWS setup may leak into a test.
    for key in [
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE",
        "AWS_EC2_METADATA_DISABLED",
        "AWS_METADATA_SERVICE_TIMEOUT",
        "AWS_METADATA_SERVICE_NUM_ATTEMPTS",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ] {
        command.env_remove(key);
    }
    command
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A program installed in the Python test environment (`moto_server`).
pub fn venv_bin(name: &str) -> PathBuf {
    python().parent().unwrap().join(name)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start listening on port {port}");
}

/// moto in server mode: a real STS-compatible endpoint on loopback.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts (tests/run.sh installs it)");
        wait_for_port(port, "moto_server");
        Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback proxy in front of STS (or an IMDS) that counts AssumeRole calls
/// and can play an outage (connections dropped on accept) or a `Fault`. It runs on its own runtime
/// thread so that blocking test code cannot stall it.
pub struct FaultProxy {
    pub url: String,
    assume_calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The access key id that signed each AssumeRole call (SigV4's
    /// `Credential=AKID/…`), in order.
    signers: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    fault: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

/// What the proxy does to requests that reach it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    None = 0,
    /// Holds each request far past the STS client's timeouts.
    Slow = 1,
    /// Answers STS's throttling error.
    Throttle = 2,
    /// Never answers a PUT, as an IMDS token answer is lost behind a hop
    /// limit of 1; everything else passes.
    HangPuts = 3,
}

const THROTTLED: &str = "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>ersatz-test</RequestId></ErrorResponse>";

impl FaultProxy {
    pub fn start(upstream: &str) -> Self {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let assume_calls = Arc::new(AtomicUsize::new(0));
        let signers = Arc::new(std::sync::Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let fault = Arc::new(std::sync::atomic::AtomicU8::new(Fault::None as u8));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.to_owned();
        let (calls, is_down, dropped, faulty, signed) = (
            assume_calls.clone(),
            down.clone(),
            refused.clone(),
            fault.clone(),
            signers.clone(),
        );
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    if is_down.load(Ordering::SeqCst) {
                        dropped.fetch_add(1, Ordering::SeqCst);
                        drop(stream);
                        continue;
                    }
                    let (calls, upstream, faulty, signed) = (
                        calls.clone(),
                        upstream.clone(),
                        faulty.clone(),
                        signed.clone(),
                    );
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(
                            move |request: Request<hyper::body::Incoming>| {
                                let (calls, upstream, faulty, signed) = (
                                    calls.clone(),
                                    upstream.clone(),
                                    faulty.clone(),
                                    signed.clone(),
                                );
                                async move {
                                    let (parts, body) = request.into_parts();
                                    let body = body.collect().await?.to_bytes();
                                    if body.windows(17).any(|w| w == b"Action=AssumeRole") {
                                        calls.fetch_add(1, Ordering::SeqCst);
                                        let signer = parts
                                            .headers
                                            .get("authorization")
                                            .and_then(|v| v.to_str().ok())
                                            .and_then(|v| v.split("Credential=").nth(1))
                                            .and_then(|v| v.split('/').next())
                                            .unwrap_or("(unsigned)")
                                            .to_owned();
                                        signed.lock().unwrap().push(signer);
                                    }
                                    match faulty.load(Ordering::SeqCst) {
                                        1 => tokio::time::sleep(Duration::from_secs(60)).await,
                                        3 if parts.method == Method::PUT => {
                                            tokio::time::sleep(Duration::from_secs(60)).await
                                        }
                                        2 => {
                                            let mut throttled = http::Response::new(Full::new(
                                                Bytes::from(THROTTLED),
                                            ));
                                            *throttled.status_mut() = StatusCode::BAD_REQUEST;
                                            throttled.headers_mut().insert(
                                                "content-type",
                                                "text/xml".parse().unwrap(),
                                            );
                                            return Ok(throttled);
                                        }
                                        _ => {}
                                    }
                                    let mut forwarded = Request::from_parts(parts, Full::new(body));
                                    forwarded.headers_mut().remove("host");
                                    let path = forwarded
                                        .uri()
                                        .path_and_query()
                                        .map_or("/".into(), |p| p.to_string());
                                    *forwarded.uri_mut() = path.parse().unwrap();
                                    let authority =
                                        upstream.trim_start_matches("http://").to_owned();
                                    forwarded
                                        .headers_mut()
                                        .insert("host", authority.parse().unwrap());
                                    let stream =
                                        tokio::net::TcpStream::connect(&authority).await.unwrap();
                                    let (mut sender, connection) =
                                        hyper::client::conn::http1::handshake(TokioIo::new(stream))
                                            .await?;
                                    tokio::spawn(connection);
                                    let response = sender.send_request(forwarded).await?;
                                    let (parts, body) = response.into_parts();
                                    let body = body.collect().await?.to_bytes();
                                    Ok::<_, hyper::Error>(http::Response::from_parts(
                                        parts,
                                        Full::new(body),
                                    ))
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        FaultProxy {
            url,
            assume_calls,
            signers,
            refused,
            down,
            fault,
        }
    }

    pub fn set_fault(&self, fault: Fault) {
        self.fault
            .store(fault as u8, std::sync::atomic::Ordering::SeqCst);
    }

    /// Connections dropped while down: each an attempt to reach STS.
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The access key id that signed each AssumeRole call so far.
    pub fn assume_signers(&self) -> Vec<String> {
        self.signers.lock().unwrap().clone()
    }

    pub fn assume_calls(&self) -> usize {
        self.assume_calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// While down, every connection is dropped as soon as it is accepted.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The value of one sample (`name` with its labels) in `/metrics` text.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// A plugin built by tests/run.sh (shipped ones and test ones share a target dir).
/// A built plugin: a shipped one (`plugins/`, built for
/// wasm32-unknown-unknown) or a test one (`tests/plugins/`, wasm32-wasip2).
pub fn wasm(name: &str) -> PathBuf {
    let built = workspace().join("plugins/target");
    let file = format!("{name}.wasm");
    let shipped = built.join("wasm32-unknown-unknown/release").join(&file);
    let test = built.join("wasm32-wasip2/release").join(&file);
    let shipped_plugin = workspace()
        .join("plugins")
        .join(name.replace('_', "-"))
        .is_dir();
    let path = if shipped_plugin { shipped } else { test };
    assert!(
        path.is_file(),
        "{} is missing: run tests/run.sh, which builds the plugins",
        path.display()
    );
    path
}

/// cloud-init's own EC2 datasource crawl of `url` with IMDSv2 tokens
/// (Debian's cloud-init, in the system Python), as JSON.
pub fn cloud_init_crawl(url: &str) -> serde_json::Value {
    let script = workspace().join("tests/py/cloudinit_crawl.py");
    let out = run_python(
        Path::new("/usr/bin/python3"),
        &[script.to_str().unwrap(), "--url", url, "--require-token"],
        &[],
    );
    serde_json::from_str(&out).unwrap()
}
