//! `ersatz net setup|teardown|print`: the link-local address on this host.
//!
//! Setup puts 169.254.169.254 (and fd00:ec2::254) on the loopback interface,
//! so SDKs with no endpoint variable reach ersatz, and guards them: packets
//! for those addresses jump, first thing in `INPUT`, to a chain of ersatz's
//! own that drops them unless they arrive on loopback or an interface
//! `--allow-interface` names (a node's pod bridge, whose pods should reach
//! ersatz as they reach IMDS on EC2). Allowed packets return to `INPUT`, so
//! the host's other rules still judge them. The chain holds everything the
//! guard is: setup rewrites it, and teardown removes it whole, whatever
//! interfaces were allowed. Both are idempotent. `print` shows the commands
//! without running them (and needs no root).

use std::process::Command;

use clap::{Args, Subcommand};

use super::Failure;

#[derive(Args)]
pub struct Net {
    #[command(subcommand)]
    command: NetCommand,
    /// Leave IPv6 alone.
    #[arg(long, global = true)]
    no_ipv6: bool,
    /// Let packets for the addresses in through this interface too (a pod
    /// bridge; `cni+` for every name starting `cni`). Repeatable. Never the
    /// interface of the default route: that would hand credentials to the
    /// network.
    #[arg(long = "allow-interface", value_name = "IFACE", global = true, value_parser = interface_name)]
    allowed: Vec<String>,
}

#[derive(Subcommand)]
enum NetCommand {
    /// Add the addresses and the guard (root).
    Setup,
    /// Remove the addresses and the guard, whatever setup allowed (root).
    Teardown,
    /// Print the commands setup and teardown run.
    Print,
}

impl Net {
    pub fn run(self) -> Result<(), Failure> {
        let families = families(!self.no_ipv6);
        match self.command {
            NetCommand::Setup => {
                require_root()?;
                refuse_uplinks(&self.allowed).map_err(Failure::Usage)?;
                apply(&setup(&families, &self.allowed))?;
            }
            NetCommand::Teardown => {
                require_root()?;
                apply(&teardown(&families))?;
            }
            NetCommand::Print => print(&families, &self.allowed),
        }
        Ok(())
    }
}

/// An interface name as the kernel allows it (1 to 15 bytes, no `/`, no
/// space), from a safe alphabet, optionally ending in iptables' `+`
/// wildcard; never an option the firewall tool would read as its own.
fn interface_name(name: &str) -> Result<String, String> {
    let stem = name.strip_suffix('+').unwrap_or(name);
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let dots_only = stem.chars().all(|c| c == '.');
    if stem.is_empty()
        || name.len() > 15
        || stem.starts_with('-')
        || dots_only
        || !stem.chars().all(safe)
    {
        return Err(format!(
            "{name:?} is not an interface name (1 to 15 letters, digits, '_', '-', '.', not starting with '-'; '+' at the end matches any suffix)"
        ));
    }
    Ok(name.to_owned())
}

/// Whether the interface pattern `allowed` (iptables' syntax) names `interface`.
fn matches_interface(allowed: &str, interface: &str) -> bool {
    match allowed.strip_suffix('+') {
        Some(stem) => interface.starts_with(stem),
        None => allowed == interface,
    }
}

/// Refuses an allowed pattern that names an interface carrying a default
/// route: anyone on that network would reach ersatz, and its credentials.
fn refuse_uplinks(allowed: &[String]) -> Result<(), String> {
    for family in ["-4", "-6"] {
        let Ok(output) = Command::new("ip")
            // Every table: policy routing keeps default routes elsewhere.
            .args([family, "route", "show", "table", "all", "default"])
            .output()
        else {
            continue;
        };
        let routes = String::from_utf8_lossy(&output.stdout);
        let uplinks = routes.lines().filter_map(|route| {
            let mut words = route.split_whitespace();
            words.find(|word| *word == "dev")?;
            words.next()
        });
        for uplink in uplinks {
            if let Some(pattern) = allowed.iter().find(|a| matches_interface(a, uplink)) {
                return Err(format!(
                    "--allow-interface {pattern} names {uplink}, which carries this host's default route: anyone on that network would reach ersatz and its credentials. Allow the pods' own interfaces (a bridge, cni0, cali+)"
                ));
            }
        }
    }
    Ok(())
}

/// The guard's chain, in the filter table of each family.
const CHAIN: &str = "ERSATZ-GUARD";

/// What setup and teardown touch in one address family.
struct Family {
    /// `iptables` or `ip6tables`.
    firewall: &'static str,
    /// Its `-restore`, which replaces the chain's rules in one step.
    restore: &'static str,
    /// The address, with its prefix length.
    address: &'static str,
    /// `ip`'s option for the family.
    ip_family: &'static str,
}

fn families(ipv6: bool) -> Vec<Family> {
    let mut all = vec![Family {
        firewall: "iptables",
        restore: "iptables-restore",
        address: "169.254.169.254/32",
        ip_family: "-4",
    }];
    if ipv6 {
        all.push(Family {
            firewall: "ip6tables",
            restore: "ip6tables-restore",
            address: "fd00:ec2::254/128",
            ip_family: "-6",
        });
    }
    all
}

/// A command (with what it reads, if anything), and when it runs: always,
/// only when a check succeeds (the thing is there) or fails (it is not), or
/// again and again while a check succeeds.
struct Step {
    command: Vec<String>,
    input: Option<String>,
    when: When,
}

enum When {
    Always,
    Present(Vec<String>),
    Absent(Vec<String>),
    WhilePresent(Vec<String>),
}

fn words(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|part| (*part).to_owned()).collect()
}

fn step(command: &[&str], when: When) -> Step {
    Step {
        command: words(command),
        input: None,
        when,
    }
}

impl Family {
    /// The address on loopback: `show` asks whether it is there (it prints
    /// it, or nothing), `add` and `del` change it.
    fn on_loopback(&self, verb: &'static str) -> Vec<String> {
        let (ip, family, address) = ("ip", self.ip_family, self.address);
        match verb {
            "show" => words(&[ip, family, "addr", "show", "dev", "lo", "to", address]),
            _ => words(&[ip, family, "addr", verb, address, "dev", "lo"]),
        }
    }

    fn jump(&self, verb: &'static str) -> Vec<String> {
        words(&[
            self.firewall,
            verb,
            "INPUT",
            "-d",
            self.address,
            "-j",
            CHAIN,
        ])
    }

    /// Removes the guard of earlier versions, one rule in `INPUT`, if there.
    fn remove_old_guard(&self) -> Step {
        let rule = |verb| {
            words(&[
                self.firewall,
                verb,
                "INPUT",
                "-d",
                self.address,
                "!",
                "-i",
                "lo",
                "-j",
                "DROP",
            ])
        };
        Step {
            command: rule("-D"),
            input: None,
            when: When::Present(rule("-C")),
        }
    }

    fn chain_exists(&self) -> Vec<String> {
        words(&[self.firewall, "-S", CHAIN])
    }
}

/// The guard first, then the address, so the address is never unguarded.
fn setup(families: &[Family], allowed: &[String]) -> Vec<Step> {
    let mut steps = Vec::new();
    for family in families {
        // Created or emptied and filled in one step: no moment in which
        // the chain lets everything through.
        let mut rules = format!("*filter\n:{CHAIN} - [0:0]\n");
        for interface in std::iter::once("lo").chain(allowed.iter().map(String::as_str)) {
            rules.push_str(&format!("-A {CHAIN} -i {interface} -j RETURN\n"));
        }
        rules.push_str(&format!("-A {CHAIN} -j DROP\nCOMMIT\n"));
        steps.push(Step {
            command: words(&[family.restore, "--noflush"]),
            input: Some(rules),
            when: When::Always,
        });
        steps.push(Step {
            command: family.jump("-I"),
            input: None,
            when: When::Absent(family.jump("-C")),
        });
        steps.push(family.remove_old_guard());
        steps.push(Step {
            command: family.on_loopback("add"),
            input: None,
            when: When::Absent(family.on_loopback("show")),
        });
    }
    steps
}

/// The address first, then the guard: never an address without one.
fn teardown(families: &[Family]) -> Vec<Step> {
    let mut steps = Vec::new();
    for family in families {
        let firewall = family.firewall;
        steps.push(Step {
            command: family.on_loopback("del"),
            input: None,
            when: When::Present(family.on_loopback("show")),
        });
        // Every jump, should setup have run twice at once.
        steps.push(Step {
            command: family.jump("-D"),
            input: None,
            when: When::WhilePresent(family.jump("-C")),
        });
        steps.push(family.remove_old_guard());
        steps.push(step(
            &[firewall, "-F", CHAIN],
            When::Present(family.chain_exists()),
        ));
        steps.push(step(
            &[firewall, "-X", CHAIN],
            When::Present(family.chain_exists()),
        ));
    }
    steps
}

fn shown(command: &[String]) -> String {
    command.join(" ")
}

fn output(command: &[String], input: Option<&str>) -> Result<std::process::Output, String> {
    use std::io::Write;
    use std::process::Stdio;
    let cannot = |e: std::io::Error| format!("cannot run {}: {e} (is it installed?)", command[0]);
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(cannot)?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes()).map_err(cannot)?;
    }
    child.wait_with_output().map_err(cannot)
}

/// Whether `check` says the thing is there (`ip addr show … to` prints
/// nothing when the address is absent; the firewall's `-C` and `-S` fail).
fn present(check: &[String]) -> Result<bool, String> {
    let output = output(check, None)?;
    Ok(output.status.success() && (check[0] != "ip" || !output.stdout.is_empty()))
}

fn run(command: &[String], input: Option<&str>) -> Result<(), String> {
    let output = output(command, input)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            shown(command),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Runs what is due, having first checked that every tool is there, so
/// that a missing one changes nothing.
fn apply(steps: &[Step]) -> Result<(), String> {
    let mut tools: Vec<&str> = steps.iter().map(|s| s.command[0].as_str()).collect();
    tools.sort_unstable();
    tools.dedup();
    for tool in tools {
        output(&words(&[tool, "-V"]), None)
            .map_err(|e| format!("{e}; nothing was changed (--no-ipv6 leaves ip6tables alone)"))?;
    }
    for step in steps {
        loop {
            let due = match &step.when {
                When::Always => true,
                When::Present(check) | When::WhilePresent(check) => present(check)?,
                When::Absent(check) => !present(check)?,
            };
            if !due {
                break;
            }
            run(&step.command, step.input.as_deref())?;
            println!("done: {}", shown(&step.command));
            if !matches!(step.when, When::WhilePresent(_)) {
                break;
            }
        }
    }
    Ok(())
}

/// A check as a shell test: `ip addr show` succeeds either way, and tells
/// by printing the address or nothing (see [`present`]).
fn as_test(check: &[String]) -> String {
    if check[0] == "ip" {
        format!("[ -n \"$({})\" ]", shown(check))
    } else {
        shown(check)
    }
}

/// The steps as a shell would run them, each with its condition.
fn print(families: &[Family], allowed: &[String]) {
    let show = |steps: Vec<Step>| {
        for step in steps {
            let command = shown(&step.command);
            let command = match &step.input {
                Some(input) => format!("{command} <<'EOF'\n{input}EOF"),
                None => command,
            };
            match &step.when {
                When::Always => println!("{command}"),
                When::Present(check) => println!("{} && {command}", as_test(check)),
                When::Absent(check) => println!("{} || {command}", as_test(check)),
                When::WhilePresent(check) => {
                    println!("while {}; do {command}; done", as_test(check))
                }
            }
        }
    };
    println!("# setup");
    show(setup(families, allowed));
    println!("# teardown");
    show(teardown(families));
    println!("# macOS has no firewall step here: sudo ifconfig lo0 alias 169.254.169.254");
}

fn require_root() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err("changing addresses and firewall rules needs root: run with sudo, or see `ersatz net print`".into())
    }
}

#[cfg(test)]
mod tests {
    use super::{families, interface_name, matches_interface, setup, shown, teardown};

    #[test]
    fn interface_names_are_checked_before_any_firewall_sees_them() {
        for good in ["cni0", "cali+", "eni+", "br-1a2b.10"] {
            assert_eq!(interface_name(good).as_deref(), Ok(good));
        }
        for bad in [
            "",
            "+",
            "-j",
            "--flush",
            "eth 0",
            "a/b",
            ".",
            "..",
            "veth@if3",
            "abcdefghijklmnop",
        ] {
            assert!(interface_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn patterns_match_as_iptables_does() {
        assert!(matches_interface("eth0", "eth0"));
        assert!(!matches_interface("eth0", "eth01"));
        assert!(matches_interface("e+", "eth0"));
        assert!(!matches_interface("cni+", "eth0"));
    }

    #[test]
    fn the_guard_is_a_chain_of_its_own_that_allowed_interfaces_return_from() {
        let commands = |steps: Vec<super::Step>| -> Vec<String> {
            steps.iter().map(|s| shown(&s.command)).collect()
        };
        let setup = setup(&families(false), &["cni0".to_owned()]);
        // The guard before the address: never an address without one.
        assert_eq!(
            commands(setup),
            [
                "iptables-restore --noflush",
                "iptables -I INPUT -d 169.254.169.254/32 -j ERSATZ-GUARD",
                "iptables -D INPUT -d 169.254.169.254/32 ! -i lo -j DROP",
                "ip -4 addr add 169.254.169.254/32 dev lo",
            ]
        );
        // The chain is replaced in one step, loopback and cni0 returning.
        let rules = super::setup(&families(false), &["cni0".to_owned()])[0]
            .input
            .clone()
            .unwrap();
        assert_eq!(
            rules,
            "*filter\n:ERSATZ-GUARD - [0:0]\n-A ERSATZ-GUARD -i lo -j RETURN\n-A ERSATZ-GUARD -i cni0 -j RETURN\n-A ERSATZ-GUARD -j DROP\nCOMMIT\n"
        );
        // Teardown needs no interfaces: the address first, then the chain whole.
        assert_eq!(
            commands(teardown(&families(false))),
            [
                "ip -4 addr del 169.254.169.254/32 dev lo",
                "iptables -D INPUT -d 169.254.169.254/32 -j ERSATZ-GUARD",
                "iptables -D INPUT -d 169.254.169.254/32 ! -i lo -j DROP",
                "iptables -F ERSATZ-GUARD",
                "iptables -X ERSATZ-GUARD",
            ]
        );
    }
}
