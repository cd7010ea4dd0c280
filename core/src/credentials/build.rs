//! Credentials built from their own configuration sections: the sources a
//! configuration names (callers first: an `assume-role` source needs its
//! caller), then the roles bound to them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::roles::RoleSpec;
use super::{
    AssumeParams, AssumeRole, BootstrapSource, Cached, CredentialSource, RefreshPolicy, Roles,
    SdkSource, StaticSource,
};
use crate::config::{expand_home, Config, HumanDuration, SourceConfig};

/// STS's default session length.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(3600);

/// What `[sources]`, `[roles]` and `[credentials]` describe.
pub struct Credentials {
    pub roles: Arc<Roles>,
    /// The `bootstrap` sources, which the admin API fills.
    pub bootstraps: BTreeMap<String, Arc<BootstrapSource>>,
}

/// Builds every source and role. `plugin_source` gives the credential
/// source a `[[plugins]]` entry exports (by name): plugins sit above this
/// layer, so they are reached only through it.
pub fn build(
    config: &Config,
    plugin_source: &dyn Fn(&str) -> Arc<dyn CredentialSource>,
) -> Credentials {
    let policy = RefreshPolicy {
        margin: config.credentials.refresh_margin.0,
    };
    let mut built = Sources {
        all: BTreeMap::new(),
        bootstraps: BTreeMap::new(),
    };
    let context = Context {
        config,
        policy,
        plugin_source,
    };
    for name in config.sources.keys() {
        context.source(name, &mut built);
    }
    let specs = config
        .roles
        .iter()
        .map(|(alias, role)| RoleSpec {
            alias: alias.clone(),
            source: role.source.clone(),
            assume: role.arn.as_ref().map(|arn| AssumeParams {
                arn: arn.clone(),
                session_name: session_name(role.session_name.as_ref(), alias),
                duration: duration(role.duration),
                external_id: role.external_id.clone(),
                region: role.region.clone(),
                sts_endpoint: role.sts_endpoint.clone(),
            }),
        })
        .collect();
    let roles = Roles::new(built.all, specs, config.initial_role(), policy);
    Credentials {
        roles: Arc::new(roles),
        bootstraps: built.bootstraps,
    }
}

/// `ersatz-NAME` unless the configuration names the session.
fn session_name(configured: Option<&String>, name: &str) -> String {
    configured
        .cloned()
        .unwrap_or_else(|| format!("ersatz-{name}"))
}

fn duration(configured: Option<HumanDuration>) -> Duration {
    configured.map_or(DEFAULT_DURATION, |d| d.0)
}

struct Sources {
    all: BTreeMap<String, Arc<dyn CredentialSource>>,
    bootstraps: BTreeMap<String, Arc<BootstrapSource>>,
}

struct Context<'a> {
    config: &'a Config,
    policy: RefreshPolicy,
    plugin_source: &'a dyn Fn(&str) -> Arc<dyn CredentialSource>,
}

impl Context<'_> {
    /// Builds `name` after its caller (the configuration has no cycles).
    fn source(&self, name: &str, built: &mut Sources) -> Arc<dyn CredentialSource> {
        if let Some(source) = built.all.get(name) {
            return source.clone();
        }
        let cached = |inner: Arc<dyn CredentialSource>| -> Arc<dyn CredentialSource> {
            Cached::new(format!("source {name}"), inner, self.policy)
        };
        let source: Arc<dyn CredentialSource> = match &self.config.sources[name] {
            SourceConfig::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => Arc::new(StaticSource::new(
                access_key_id,
                secret_access_key,
                session_token.as_ref(),
            )),
            SourceConfig::Profile { file, profile } => {
                let file = file.as_ref().map(|f| expand_home(&f.to_string_lossy()));
                cached(Arc::new(SdkSource::profile(
                    file.as_deref(),
                    profile.as_deref(),
                )))
            }
            SourceConfig::Chain {} => cached(Arc::new(SdkSource::chain())),
            SourceConfig::Plugin { plugin } => cached((self.plugin_source)(plugin)),
            SourceConfig::Bootstrap {} => {
                let bootstrap = Arc::new(BootstrapSource::default());
                built.bootstraps.insert(name.to_owned(), bootstrap.clone());
                bootstrap
            }
            SourceConfig::AssumeRole {
                caller,
                arn,
                duration: configured_duration,
                session_name: configured_session,
                external_id,
                region,
                sts_endpoint,
            } => {
                let caller = self.source(caller, built);
                let params = AssumeParams {
                    arn: arn.clone(),
                    session_name: session_name(configured_session.as_ref(), name),
                    duration: duration(*configured_duration),
                    external_id: external_id.clone(),
                    region: region.clone(),
                    sts_endpoint: sts_endpoint.clone(),
                };
                cached(Arc::new(AssumeRole::new(params, caller)))
            }
        };
        built.all.insert(name.to_owned(), source.clone());
        source
    }
}
