//! `ersatz net setup|teardown|print`: the link-local address on this host.
//!
//! Setup puts 169.254.169.254 (and fd00:ec2::254) on the loopback interface,
//! so SDKs with no endpoint variable reach ersatz, and adds firewall rules
//! that drop packets for those addresses arriving on any other interface, so
//! nothing off the host can reach them. Teardown removes exactly what setup
//! added; both are idempotent. `print` shows the commands without running
//! them (and needs no root).

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
        let ipv6 = !self.no_ipv6;
        match self.command {
            NetCommand::Setup => setup(ipv6)?,
            NetCommand::Teardown => teardown(ipv6)?,
            NetCommand::Print => print(ipv6),
        }
        Ok(())
    }
}

const IPV4: &str = "169.254.169.254/32";
const IPV6: &str = "fd00:ec2::254/128";

/// One change: how to check it is in place, make it, and undo it.
struct Change {
    check: Vec<&'static str>,
    add: Vec<&'static str>,
    remove: Vec<&'static str>,
}

fn changes(ipv6: bool) -> Vec<Change> {
    let address = |ip: &'static str, family: &'static [&'static str]| {
        let with =
            |verb: &'static str| [&["ip"], family, &["addr", verb, ip, "dev", "lo"]].concat();
        Change {
            check: [&["ip"], family, &["addr", "show", "dev", "lo", "to", ip]].concat(),
            add: with("add"),
            remove: with("del"),
        }
    };
    let guard = |tool: &'static str, ip: &'static str| {
        let rule =
            |verb: &'static str| vec![tool, verb, "INPUT", "-d", ip, "!", "-i", "lo", "-j", "DROP"];
        Change {
            check: rule("-C"),
            add: rule("-A"),
            remove: rule("-D"),
        }
    };
    let mut all = vec![address(IPV4, &[]), guard("iptables", IPV4)];
    if ipv6 {
        all.push(address(IPV6, &["-6"]));
        all.push(guard("ip6tables", IPV6));
    }
    all
}

fn shown(command: &[&str]) -> String {
    command.join(" ")
}

/// Whether `check` says the change is in place (`ip addr show … to` prints
/// nothing when the address is absent; the firewall's `-C` fails).
fn in_place(check: &[&str]) -> Result<bool, String> {
    let output = Command::new(check[0])
        .args(&check[1..])
        .output()
        .map_err(|e| format!("cannot run {}: {e} (is it installed?)", check[0]))?;
    Ok(output.status.success() && (check[0] != "ip" || !output.stdout.is_empty()))
}

fn run(command: &[&str]) -> Result<(), String> {
    let output = Command::new(command[0])
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

fn print(ipv6: bool) {
    println!("# setup");
    for change in changes(ipv6) {
        println!("{}", shown(&change.add));
    }
    println!("# teardown");
    for change in changes(ipv6).iter().rev() {
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

fn setup(ipv6: bool) -> Result<(), String> {
    require_root()?;
    for change in changes(ipv6) {
        if in_place(&change.check)? {
            println!("in place: {}", shown(&change.add));
        } else {
            run(&change.add)?;
            println!("done: {}", shown(&change.add));
        }
    }
    Ok(())
}

fn teardown(ipv6: bool) -> Result<(), String> {
    require_root()?;
    for change in changes(ipv6).iter().rev() {
        if in_place(&change.check)? {
            run(&change.remove)?;
            println!("done: {}", shown(&change.remove));
        } else {
            println!("not present: {}", shown(&change.add));
        }
    }
    Ok(())
}
