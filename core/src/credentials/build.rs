//! The credential sources a configuration names, built callers first (an
//! `assume-role` source needs its caller).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{
    AssumeParams, AssumeRole, BootstrapSource, Cached, CredentialSource, RefreshPolicy, SdkSource,
    StaticSource,
};
use crate::config::{expand_home, Config, SourceConfig};
use crate::plugin::{Plugin, PluginSource};

/// The sources a configuration names, built callers first.
pub struct Sources {
    pub all: BTreeMap<String, Arc<dyn CredentialSource>>,
    pub bootstraps: BTreeMap<String, Arc<BootstrapSource>>,
}

/// STS's default session length.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(3600);

pub fn build_sources(
    config: &Config,
    policy: RefreshPolicy,
    plugins: &[(Option<String>, Arc<Plugin>)],
) -> Sources {
    let mut sources = Sources {
        all: BTreeMap::new(),
        bootstraps: BTreeMap::new(),
    };
    for name in config.sources.keys() {
        build_source(config, name, policy, plugins, &mut sources);
    }
    sources
}

/// Builds `name` after its caller (the configuration has no cycles).
fn build_source(
    config: &Config,
    name: &str,
    policy: RefreshPolicy,
    plugins: &[(Option<String>, Arc<Plugin>)],
    built: &mut Sources,
) -> Arc<dyn CredentialSource> {
    if let Some(source) = built.all.get(name) {
        return source.clone();
    }
    let source: Arc<dyn CredentialSource> = match &config.sources[name] {
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
            let sdk = SdkSource::profile(file.as_deref(), profile.as_deref());
            Cached::new(format!("source {name}"), Arc::new(sdk), policy)
        }
        SourceConfig::Chain {} => Cached::new(
            format!("source {name}"),
            Arc::new(SdkSource::chain()),
            policy,
        ),
        SourceConfig::Plugin { plugin } => {
            let plugin = plugins
                .iter()
                .find(|(_, p)| &p.name == plugin)
                .map(|(_, p)| p.clone())
                .expect("the configuration checked the plugin exists");
            Cached::new(
                format!("source {name}"),
                Arc::new(PluginSource { plugin }),
                policy,
            )
        }
        SourceConfig::Bootstrap {} => {
            let bootstrap = Arc::new(BootstrapSource::default());
            built.bootstraps.insert(name.to_owned(), bootstrap.clone());
            bootstrap
        }
        SourceConfig::AssumeRole {
            caller,
            arn,
            duration,
            session_name,
            external_id,
            region,
            sts_endpoint,
        } => {
            let caller = build_source(config, caller, policy, plugins, built);
            let params = AssumeParams {
                arn: arn.clone(),
                session_name: session_name
                    .clone()
                    .unwrap_or_else(|| format!("ersatz-{name}")),
                duration: duration.map_or(DEFAULT_DURATION, |d| d.0),
                external_id: external_id.clone(),
                region: region.clone(),
                sts_endpoint: sts_endpoint.clone(),
            };
            Cached::new(
                format!("source {name}"),
                Arc::new(AssumeRole::new(params, caller)),
                policy,
            )
        }
    };
    built.all.insert(name.to_owned(), source.clone());
    source
}
