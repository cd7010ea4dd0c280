//! Sources that aws-config already knows how to read: a shared credentials
//! file profile, and the SDK's default chain (minus IMDS, which may be us).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::web_identity_token::WebIdentityTokenCredentialsProvider;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_runtime::env_config::file::{
    EnvConfigFileKind as ProfileFileKind, EnvConfigFiles as ProfileFiles,
};
use aws_sdk_sts::error::DisplayErrorContext;

use super::{CredentialSource, Credentials, SourceError};
use crate::config::Secret;

pub struct SdkSource {
    what: String,
    provider: SharedCredentialsProvider,
}

impl SdkSource {
    /// `file` and `profile` default as the SDKs do: `AWS_SHARED_CREDENTIALS_FILE`
    /// or `~/.aws/credentials`, and `AWS_PROFILE` or `default`.
    pub fn profile(file: Option<&Path>, profile: Option<&str>) -> Self {
        let mut files = ProfileFiles::builder().include_default_config_file(true);
        files = match file {
            Some(file) => files.with_file(ProfileFileKind::Credentials, file),
            None => files.include_default_credentials_file(true),
        };
        let mut builder = ProfileFileCredentialsProvider::builder().profile_files(files.build());
        if let Some(profile) = profile {
            builder = builder.profile_name(profile);
        }
        let what = format!(
            "profile {} in {}",
            profile.unwrap_or("(AWS_PROFILE or default)"),
            file.map_or("the default credentials file".into(), |f| f
                .display()
                .to_string())
        );
        Self {
            what,
            provider: SharedCredentialsProvider::new(builder.build()),
        }
    }

    /// Environment variables, then the shared profile (SSO and
    /// credential_process included), then web identity.
    pub fn chain() -> Self {
        let chain = CredentialsProviderChain::first_try(
            "Environment",
            EnvironmentVariableCredentialsProvider::new(),
        )
        .or_else("Profile", ProfileFileCredentialsProvider::builder().build())
        .or_else(
            "WebIdentityToken",
            WebIdentityTokenCredentialsProvider::builder().build(),
        );
        Self {
            what: "the default credential chain".into(),
            provider: SharedCredentialsProvider::new(chain),
        }
    }
}

#[async_trait]
impl CredentialSource for SdkSource {
    async fn credentials(&self) -> Result<Arc<Credentials>, SourceError> {
        let issued = SystemTime::now();
        let c = self.provider.provide_credentials().await.map_err(|error| {
            SourceError(format!("{}: {}", self.what, DisplayErrorContext(&error)))
        })?;
        Ok(Arc::new(Credentials {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: Secret::new(c.secret_access_key()),
            session_token: c.session_token().map(Secret::new),
            expiration: c.expiry().map(Credentials::whole_seconds),
            issued,
        }))
    }
}
