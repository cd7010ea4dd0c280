//! `ersatz net setup|teardown|print`: the link-local address on this host.
//!
//! Setup puts 169.254.169.254 (and fd00:ec2::254) on the loopback interface,
//! so SDKs with no endpoint variable reach ersatz, and adds firewall rules
//! that drop packets for those addresses arriving on any other interface, so
//! nothing off the host can reach them. `--allow-interface` lets one
//! interface through the guard: a node's pod bridge, whose pods should reach
//! ersatz as they reach IMDS on EC2. Teardown removes exactly what setup
//! added (given the same interfaces); both are idempotent. `print` shows the
//! commands without running them (and needs no root).

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
    /// bridge; `cni+` for every name starting `cni`). Repeatable; give
    /// teardown the same.
    #[arg(long = "allow-interface", value_name = "IFACE", global = true, value_parser = interface_name)]
    allowed: Vec<String>,
}

#[derive(Subcommand)]
enum NetCommand {
    /// Add the addresses and guard rules (root).
    Setup,
    /// Remove exactly what setup adds (root).
    Teardown,
    /// Print the commands setup and teardown run.
    Print,
}

impl Net {
    pub fn run(self) -> Result<(), Failure> {
        let changes = changes(!self.no_ipv6, &self.allowed);
        match self.command {
            NetCommand::Setup => setup(&changes)?,
            NetCommand::Teardown => teardown(&changes)?,
            NetCommand::Print => print(&changes),
        }
        Ok(())
    }
}

/// An interface name as the kernel allows it (1 to 15 bytes, no `/`, no
/// space), from a safe alphabet, optionally ending in iptables' `+`
/// wildcard; never an option the firewall tool would read as its own.
fn interface_name(name: &str) -> Result<String, String> {
    let stem = name.strip_suffix('+').unwrap_or(name);
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@');
    if stem.is_empty() || name.len() > 15 || stem.starts_with('-') || !stem.chars().all(safe) {
        return Err(format!(
            "{name:?} is not an interface name (1 to 15 letters, digits, '_', '-', '.', '@', not starting with '-'; '+' at the end matches any suffix)"
        ));
    }
    Ok(name.to_owned())
}

const IPV4: &str = "169.254.169.254/32";
const IPV6: &str = "fd00:ec2::254/128";

/// One change: how to check it is in place, make it, and undo it.
struct Change {
    check: Vec<String>,
    add: Vec<String>,
    remove: Vec<String>,
}

fn words(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|part| (*part).to_owned()).collect()
}

fn changes(ipv6: bool, allowed: &[String]) -> Vec<Change> {
    let address = |ip: &str, family: &[&str]| {
        let with =
            |verb: &str| words(&[&["ip"], family, &["addr", verb, ip, "dev", "lo"]].concat());
        Change {
            check: words(&[&["ip"], family, &["addr", "show", "dev", "lo", "to", ip]].concat()),
            add: with("add"),
            remove: with("del"),
        }
    };
    // The guard drops what arrives for the address on any interface but
    // loopback; an allowed interface's rule is inserted above it.
    let rule = |tool: &str, ip: &str, verb: &str, interface: &[&str], target: &str| {
        words(&[&[tool, verb, "INPUT", "-d", ip], interface, &["-j", target]].concat())
    };
    let guard = |tool: &str, ip: &str| Change {
        check: rule(tool, ip, "-C", &["!", "-i", "lo"], "DROP"),
        add: rule(tool, ip, "-A", &["!", "-i", "lo"], "DROP"),
        remove: rule(tool, ip, "-D", &["!", "-i", "lo"], "DROP"),
    };
    let allow = |tool: &str, ip: &str, interface: &str| Change {
        check: rule(tool, ip, "-C", &["-i", interface], "ACCEPT"),
        add: rule(tool, ip, "-I", &["-i", interface], "ACCEPT"),
        remove: rule(tool, ip, "-D", &["-i", interface], "ACCEPT"),
    };
    let mut families = vec![("iptables", IPV4, &[][..])];
    if ipv6 {
        families.push(("ip6tables", IPV6, &["-6"][..]));
    }
    let mut all = Vec::new();
    for (tool, ip, family) in families {
        all.push(address(ip, family));
        all.extend(allowed.iter().map(|interface| allow(tool, ip, interface)));
        all.push(guard(tool, ip));
    }
    all
}

fn shown(command: &[String]) -> String {
    command.join(" ")
}

/// Whether `check` says the change is in place (`ip addr show … to` prints
/// nothing when the address is absent; the firewall's `-C` fails).
fn in_place(check: &[String]) -> Result<bool, String> {
    let output = Command::new(&check[0])
        .args(&check[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e} (is it installed?)", check[0]))?;
    Ok(output.status.success() && (check[0] != "ip" || !output.stdout.is_empty()))
}

fn run(command: &[String]) -> Result<(), String> {
    let output = Command::new(&command[0])
        .args(&command[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e} (is it installed?)", command[0]))?;
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

fn print(changes: &[Change]) {
    println!("# setup");
    for change in changes {
        println!("{}", shown(&change.add));
    }
    println!("# teardown");
    for change in changes.iter().rev() {
        println!("{}", shown(&change.remove));
    }
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

fn setup(changes: &[Change]) -> Result<(), String> {
    require_root()?;
    for change in changes {
        if in_place(&change.check)? {
            println!("in place: {}", shown(&change.add));
        } else {
            run(&change.add)?;
            println!("done: {}", shown(&change.add));
        }
    }
    Ok(())
}

fn teardown(changes: &[Change]) -> Result<(), String> {
    require_root()?;
    for change in changes.iter().rev() {
        if in_place(&change.check)? {
            run(&change.remove)?;
            println!("done: {}", shown(&change.remove));
        } else {
            println!("not present: {}", shown(&change.add));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{changes, interface_name, shown};

    #[test]
    fn interface_names_are_checked_before_any_firewall_sees_them() {
        for good in ["cni0", "cali+", "eni+", "br-1a2b.10", "veth@if3"] {
            assert_eq!(interface_name(good).as_deref(), Ok(good));
        }
        for bad in [
            "",
            "+",
            "-j",
            "--flush",
            "eth 0",
            "a/b",
            "sixteen-letters!",
            "abcdefghijklmnop",
        ] {
            assert!(interface_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_allowed_interface_is_inserted_above_the_guard_and_removed_before_it() {
        let all = changes(false, &["cni0".to_owned()]);
        let added: Vec<String> = all.iter().map(|c| shown(&c.add)).collect();
        assert_eq!(
            added,
            [
                "ip addr add 169.254.169.254/32 dev lo",
                "iptables -I INPUT -d 169.254.169.254/32 -i cni0 -j ACCEPT",
                "iptables -A INPUT -d 169.254.169.254/32 ! -i lo -j DROP",
            ]
        );
        assert_eq!(
            shown(&all[1].remove),
            "iptables -D INPUT -d 169.254.169.254/32 -i cni0 -j ACCEPT"
        );
    }
}
