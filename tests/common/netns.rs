//! Network namespaces for tests that need real addresses and real routing
//! (root only): each is deleted, with its links, when dropped.

use std::process::{Command, Output};

/// Whether a root-only test may run: true as root. Otherwise it fails,
/// unless `ERSATZ_TEST_ALLOW_SKIP=1` asks for a skip (a silent skip proves
/// nothing), and then it says so and the test returns.
pub fn root_or_skip() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert_eq!(
        std::env::var("ERSATZ_TEST_ALLOW_SKIP").as_deref(),
        Ok("1"),
        "this test needs root (ip netns, iptables); run it as root, or set ERSATZ_TEST_ALLOW_SKIP=1 to skip it"
    );
    eprintln!("SKIPPED: needs root for ip netns (ERSATZ_TEST_ALLOW_SKIP=1)");
    false
}

/// `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A name no other test process uses: `ez`, a tag, this process's id.
/// Interface names must fit in 15 bytes.
pub fn unique(tag: &str) -> String {
    let name = format!("ez{tag}{}", std::process::id() % 100_000);
    assert!(name.len() <= 15, "{name} is too long for an interface");
    name
}

/// A network namespace with its loopback up.
pub struct Namespace(pub String);

impl Namespace {
    pub fn create(role: &str) -> Self {
        let name = format!("ersatz-{role}-{}", std::process::id());
        ip(&["netns", "add", &name]);
        let namespace = Self(name);
        namespace.ip(&["link", "set", "lo", "up"]);
        namespace
    }

    /// `ip -n NAME ARGS`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        ip(&[&["-n", self.0.as_str()][..], args].concat());
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.0, program]);
        command
    }

    pub fn run(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.command(program);
        command.args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().unwrap()
    }

    /// Sets a sysctl inside the namespace (`net.ipv4.ip_forward=1`).
    pub fn sysctl(&self, setting: &str) {
        let output = self.run("sysctl", &["-qw", setting], &[]);
        assert!(
            output.status.success(),
            "sysctl {setting}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A veth pair from here (`here`, with `address`) to `other` (`there`,
    /// with `other_address`); both up. `here` may then join a bridge.
    pub fn veth(
        &self,
        here: &str,
        address: Option<&str>,
        other: &Namespace,
        there: &str,
        other_address: &str,
    ) {
        ip(&[
            "link", "add", here, "netns", &self.0, "type", "veth", "peer", "name", there, "netns",
            &other.0,
        ]);
        if let Some(address) = address {
            self.ip(&["addr", "add", address, "dev", here]);
        }
        self.ip(&["link", "set", here, "up"]);
        other.ip(&["addr", "add", other_address, "dev", there]);
        other.ip(&["link", "set", there, "up"]);
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
