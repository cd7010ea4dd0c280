//! Checks that span keys (references between sections, value formats serde
//! cannot express), each error naming the key it is about.

use std::net::SocketAddr;
use std::time::Duration;

use super::{HumanDuration, Loaded, SourceConfig, LIFECYCLE_STATES, MAINTENANCE_CODES};
use crate::config::ConfigError;

/// The most connections a listener takes: far above what an IMDS sees, and
/// below every limit of the semaphore that counts them.
pub const MAX_CONNECTIONS: usize = 65_536;
/// The most requests the journal keeps: about 200 MB at the limit.
const MAX_JOURNAL: usize = 1_000_000;
const MIN_CLIENT_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_CLIENT_TIMEOUT: Duration = Duration::from_secs(3600);

pub fn validate(loaded: &Loaded) -> Result<(), ConfigError> {
    let config = &loaded.config;
    validate_server(loaded)?;
    fault_rules(loaded)?;
    super::listeners::validate(loaded)?;
    if config.journal.capacity > MAX_JOURNAL {
        return Err(loaded.error(
            "journal.capacity",
            format!(
                "{} is over the most kept, {MAX_JOURNAL}",
                config.journal.capacity
            ),
        ));
    }
    if !(1..=64).contains(&config.imds.hop_limit) {
        return Err(loaded.error(
            "imds.hop_limit",
            format!(
                "{} is out of range: EC2 takes 1 to 64",
                config.imds.hop_limit
            ),
        ));
    }
    for alias in config.roles.keys() {
        check_alias(loaded, &format!("roles.{alias}"), alias)?;
    }
    let source_exists = |key: &str, name: &str| {
        if config.sources.contains_key(name) {
            return Ok(());
        }
        Err(loaded.error(
            key,
            format!(
                "no source named \"{name}\" ({})",
                defined(config.sources.keys(), "[sources.NAME]")
            ),
        ))
    };
    for (alias, role) in &config.roles {
        source_exists(&format!("roles.{alias}.source"), &role.source)?;
        if let Some(arn) = &role.arn {
            check_arn(loaded, &format!("roles.{alias}.arn"), arn)?;
        }
        check_duration(loaded, &format!("roles.{alias}.duration"), role.duration)?;
    }
    for (name, source) in &config.sources {
        if let SourceConfig::Static {
            access_key_id,
            secret_access_key,
            ..
        } = source
        {
            if access_key_id.trim().is_empty() || secret_access_key.expose().trim().is_empty() {
                return Err(loaded.error(
                    &format!("sources.{name}"),
                    "a static source needs access_key_id and secret_access_key, neither empty",
                ));
            }
        }
        if let SourceConfig::AssumeRole {
            caller,
            arn,
            duration,
            ..
        } = source
        {
            source_exists(&format!("sources.{name}.caller"), caller)?;
            check_arn(loaded, &format!("sources.{name}.arn"), arn)?;
            check_duration(loaded, &format!("sources.{name}.duration"), *duration)?;
            let mut seen = vec![name.as_str()];
            let mut next = caller.as_str();
            while let Some(SourceConfig::AssumeRole { caller, .. }) = config.sources.get(next) {
                if seen.contains(&next) {
                    return Err(loaded.error(
                        &format!("sources.{name}.caller"),
                        format!("callers form a cycle: {} → {next}", seen.join(" → ")),
                    ));
                }
                seen.push(next);
                next = caller;
            }
        }
    }
    if !config.clients.is_empty() && config.server.finto_routes {
        return Err(loaded.error(
            "clients",
            "per-client roles cannot be combined with server.finto_routes: finto's routes hand any client any role",
        ));
    }
    for (i, client) in config.clients.iter().enumerate() {
        super::Cidr::parse(&client.cidr)
            .map_err(|reason| loaded.error(&format!("clients.{i}.cidr"), reason))?;
        if !config.roles.contains_key(&client.role) {
            return Err(loaded.error(
                &format!("clients.{i}.role"),
                format!("no role named \"{}\"", client.role),
            ));
        }
    }
    let identity = &config.identity;
    if identity.key.is_some() != identity.certificate.is_some() {
        let missing = if identity.key.is_some() {
            "identity.certificate"
        } else {
            "identity.key"
        };
        return Err(loaded.error(
            missing,
            "set both identity.key and identity.certificate, or neither",
        ));
    }
    for (i, event) in config.events.maintenance.iter().enumerate() {
        if !MAINTENANCE_CODES.contains(&event.code.as_str()) {
            return Err(loaded.error(
                &format!("events.maintenance.{i}.code"),
                format!(
                    "\"{}\" is not one of {}",
                    event.code,
                    MAINTENANCE_CODES.join(", ")
                ),
            ));
        }
        if !["active", "completed", "canceled"].contains(&event.state.as_str()) {
            return Err(loaded.error(
                &format!("events.maintenance.{i}.state"),
                "must be active, completed or canceled",
            ));
        }
    }
    if let Some(autoscaling) = &config.events.autoscaling {
        for (key, state) in [
            ("state", &autoscaling.state),
            ("target", &autoscaling.target),
        ] {
            if !LIFECYCLE_STATES.contains(&state.as_str()) {
                return Err(loaded.error(
                    &format!("events.autoscaling.{key}"),
                    format!("\"{state}\" is not one of {}", LIFECYCLE_STATES.join(", ")),
                ));
            }
        }
    }
    if config.events.spot.is_some()
        && config
            .instance
            .life_cycle
            .as_deref()
            .is_some_and(|l| l != "spot")
    {
        return Err(loaded.error(
            "events.spot",
            "spot notices need instance.life_cycle = \"spot\" (or leave it unset)",
        ));
    }
    let mut names = Vec::new();
    for (i, plugin) in config.plugins.iter().enumerate() {
        let name = plugin.name();
        if names.contains(&name) {
            return Err(loaded.error(
                &format!("plugins.{i}.name"),
                format!("a second plugin named \"{name}\": give each a distinct name"),
            ));
        }
        names.push(name);
        if let (Some(mount), None) = (&plugin.mount, &plugin.listener) {
            mount_path(mount)
                .map_err(|reason| loaded.error(&format!("plugins.{i}.mount"), reason))?;
        }
        let limits = plugin.limits;
        if limits.timeout.0.is_zero() || limits.timeout.0 > Duration::from_secs(10) {
            return Err(loaded.error(
                &format!("plugins.{i}.limits.timeout"),
                "must be more than 0 and at most 10s",
            ));
        }
        if limits.memory.0 < (1 << 20) || limits.memory.0 > super::MAX_PLUGIN_MEMORY {
            return Err(loaded.error(
                &format!("plugins.{i}.limits.memory"),
                "must be between 1MiB and 256MiB",
            ));
        }
    }
    for (name, source) in &config.sources {
        if let SourceConfig::Plugin { plugin } = source {
            if !names.contains(plugin) {
                return Err(loaded.error(
                    &format!("sources.{name}.plugin"),
                    format!(
                        "no [[plugins]] entry named \"{plugin}\" (defined: {})",
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    match &config.default_role {
        Some(role) if !config.roles.contains_key(role) => {
            return Err(loaded.error(
                "default_role",
                format!(
                    "no role named \"{role}\" ({})",
                    defined(config.roles.keys(), "[roles.ALIAS]")
                ),
            ));
        }
        None if config.roles.len() > 1 => {
            // Unset, default_role has no origin of its own: name where the roles are.
            let mut error = loaded.error(
                "roles",
                "several roles are defined: name the one to serve first with default_role (a top-level key, above the first [table])",
            );
            error.key = "default_role".into();
            return Err(error);
        }
        _ => {}
    }
    Ok(())
}

fn validate_server(loaded: &Loaded) -> Result<(), ConfigError> {
    let server = &loaded.config.server;
    if server.listen.is_empty() {
        return Err(loaded.error("server.listen", "at least one address is needed"));
    }
    let mut bound: Vec<(&str, SocketAddr)> = server
        .listen
        .iter()
        .map(|addr| ("server.listen", *addr))
        .collect();
    bound.push(("server.admin_listen", server.admin_listen));
    for (i, (key, addr)) in bound.iter().enumerate() {
        if let Some((other, _)) = bound[..i]
            .iter()
            .find(|(_, earlier)| overlap(addr, earlier))
        {
            let reason = if key == other {
                format!("{addr} is listed twice, or overlaps another entry")
            } else {
                format!("{addr} overlaps {other}: the admin API needs an address of its own")
            };
            return Err(loaded.error(key, reason));
        }
    }
    if !(1..=MAX_CONNECTIONS).contains(&server.max_connections) {
        return Err(loaded.error(
            "server.max_connections",
            format!("must be from 1 to {MAX_CONNECTIONS}"),
        ));
    }
    if server.max_connections_per_client == 0 {
        return Err(loaded.error("server.max_connections_per_client", "must be at least 1"));
    }
    for (i, host) in server.allowed_hosts.iter().enumerate() {
        check_allowed_host(loaded, &format!("server.allowed_hosts.{i}"), host)?;
    }
    let timeout = server.client_timeout.0;
    if !(MIN_CLIENT_TIMEOUT..=MAX_CLIENT_TIMEOUT).contains(&timeout) {
        return Err(loaded.error(
            "server.client_timeout",
            "must be from 100ms to 1h: shorter cuts off clients on a busy host",
        ));
    }
    Ok(())
}

/// Whether binding both would fail: the same port (0 asks for any free
/// one, so it never clashes) on the same address, or on any address and a
/// wildcard that covers it.
fn overlap(a: &SocketAddr, b: &SocketAddr) -> bool {
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    let (a, b) = (a.ip(), b.ip());
    a == b
        || (a.is_unspecified() && (a.is_ipv6() || b.is_ipv4()))
        || (b.is_unspecified() && (b.is_ipv6() || a.is_ipv4()))
}

/// A host as a `Host` header names it, without a port: a name, an IPv4
/// address, or an IPv6 address in brackets. Anything else could never match.
fn check_allowed_host(loaded: &Loaded, key: &str, host: &str) -> Result<(), ConfigError> {
    let fits = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        }
    };
    if fits {
        return Ok(());
    }
    let hint = if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("write IPv6 addresses in brackets, like [{host}]")
    } else {
        "give a host name or address without a port, like localhost or 169.254.169.254".to_owned()
    };
    Err(loaded.error(
        key,
        format!("\"{host}\" can never match a Host header: {hint}"),
    ))
}

/// Role aliases are path segments (`iam/security-credentials/ALIAS`,
/// `/ecs/ALIAS`) and metric labels: letters, digits and `+=,.@_-` (IAM's
/// role name characters), 1 to 64.
fn check_alias(loaded: &Loaded, key: &str, name: &str) -> Result<(), ConfigError> {
    let fits = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if fits {
        Ok(())
    } else {
        Err(loaded.error(
            key,
            format!("{name:?} is not a name: use 1 to 64 letters, digits and + = , . @ _ -"),
        ))
    }
}

/// "defined: a, b", or how to define the first one.
fn defined<'a>(names: impl Iterator<Item = &'a String>, table: &str) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        format!("none is defined: add a {table} table")
    } else {
        format!("defined: {}", names.join(", "))
    }
}

fn check_arn(loaded: &Loaded, key: &str, arn: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() == 6 && parts[0] == "arn" && parts[2] == "iam" && parts[5].starts_with("role/") {
        Ok(())
    } else {
        Err(loaded.error(
            key,
            format!("\"{arn}\" is not a role ARN like arn:aws:iam::123456789012:role/NAME"),
        ))
    }
}

/// STS accepts 15 minutes to 12 hours; shorter is allowed for tests against
/// STS stand-ins, so only the upper bound and zero are refused.
fn check_duration(
    loaded: &Loaded,
    key: &str,
    duration: Option<HumanDuration>,
) -> Result<(), ConfigError> {
    match duration {
        Some(HumanDuration(d)) if d.is_zero() || d > Duration::from_secs(12 * 3600) => {
            Err(loaded.error(key, "must be more than 0 and at most 12h"))
        }
        _ => Ok(()),
    }
}

/// A mount as a tree path: `/latest/meta-data/x/` → `meta-data/x`. The
/// version prefix is optional; every version serves the same tree.
pub fn mount_path(mount: &str) -> Result<String, String> {
    let mut segments: Vec<&str> = mount.split('/').filter(|s| !s.is_empty()).collect();
    if segments
        .first()
        .is_some_and(|first| crate::instance::VERSIONS.contains(first))
    {
        segments.remove(0);
    }
    match segments.first() {
        Some(&("meta-data" | "dynamic" | "user-data")) if !segments.contains(&"..") => Ok(segments.join("/")),
        _ => Err(format!(
            "\"{mount}\" is not a path under /latest/meta-data, /latest/dynamic or /latest/user-data"
        )),
    }
}

/// Each `[[faults]]` rule, checked as the admin API checks one; names are unique.
pub fn fault_rules(loaded: &Loaded) -> Result<Vec<super::FaultRule>, ConfigError> {
    let mut rules: Vec<super::FaultRule> = Vec::new();
    let listeners: Vec<&str> = loaded
        .config
        .listeners
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    for (i, spec) in loaded.config.faults.iter().enumerate() {
        let rule = spec
            .check_listener(&listeners)
            .and_then(|()| spec.rule(i))
            .map_err(|(field, reason)| loaded.error(&format!("faults.{i}.{field}"), reason))?;
        if rules.iter().any(|earlier| earlier.name == rule.name) {
            return Err(loaded.error(
                &format!("faults.{i}.name"),
                format!("another rule is named \"{}\" already", rule.name),
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}
