//! Sources that aws-config already knows how to read: a shared credentials
//! file profile, and the SDK's default chain (minus IMDS, which may be us).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::web_identity_token::WebIdentityTokenCredentialsProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_runtime::env_config::file::{
    EnvConfigFileKind as ProfileFileKind, EnvConfigFiles as ProfileFiles,
};

use super::{sentence, CredentialSource, Credentials, SourceError};
use crate::config::expand_home;
use crate::secret::Secret;

pub struct SdkSource {
    looks_in: LooksIn,
    provider: SharedCredentialsProvider,
}

/// Where a source looks for credentials, as the SDK will resolve it, so
/// that a message can show the path.
enum LooksIn {
    Profile { file: String, profile: String },
    Chain,
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
        let mut builder = ProfileFileCredentialsProvider::builder()
            .configure(&with_https())
            .profile_files(files.build());
        if let Some(profile) = profile {
            builder = builder.profile_name(profile);
        }
        let looks_in = LooksIn::Profile {
            file: file.map_or_else(default_credentials_file, |f| f.display().to_string()),
            profile: profile.map_or_else(
                || std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into()),
                str::to_owned,
            ),
        };
        Self {
            looks_in,
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
        .or_else(
            "Profile",
            ProfileFileCredentialsProvider::builder()
                .configure(&with_https())
                .build(),
        )
        .or_else(
            "WebIdentityToken",
            WebIdentityTokenCredentialsProvider::builder()
                .configure(&with_https())
                .build(),
        );
        Self {
            looks_in: LooksIn::Chain,
            provider: SharedCredentialsProvider::new(chain),
        }
    }
}

impl SdkSource {
    /// What went wrong, and what to do about it, in a sentence.
    fn explain(&self, error: &CredentialsError) -> String {
        let what = match &self.looks_in {
            LooksIn::Profile { file, profile } => format!("profile {profile} of {file}"),
            LooksIn::Chain => "the default credential chain".to_owned(),
        };
        let missing_file = matches!(&self.looks_in, LooksIn::Profile { file, .. } if !Path::new(&expand_home(file)).is_file());
        match error {
            _ if missing_file => format!("no credentials in {what}: {}", self.fix()),
            CredentialsError::CredentialsNotLoaded(_) => {
                format!("no credentials in {what}: {}", self.fix())
            }
            CredentialsError::ProviderTimedOut(_) => {
                format!("{what} did not answer in time; try again")
            }
            _ => format!("{what}: {}", sentence(error)),
        }
    }

    fn fix(&self) -> String {
        match &self.looks_in {
            LooksIn::Profile { file, profile } if Path::new(&expand_home(file)).is_file() => format!(
                "add a [{profile}] profile to {file}, or name another with the source's profile key"
            ),
            LooksIn::Profile { file, .. } => format!(
                "{file} does not exist: create it (aws configure), or point the source's file key at yours"
            ),
            LooksIn::Chain => "give ersatz AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile (AWS_PROFILE), or web identity (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN)".to_owned(),
        }
    }
}

/// The SDK's defaults, with our HTTPS client for the calls a profile or web
/// identity makes (STS, SSO).
fn with_https() -> ProviderConfig {
    ProviderConfig::default().with_http_client(super::https::client())
}

/// `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`.
fn default_credentials_file() -> String {
    std::env::var("AWS_SHARED_CREDENTIALS_FILE").unwrap_or_else(|_| "~/.aws/credentials".into())
}

#[async_trait]
impl CredentialSource for SdkSource {
    async fn credentials(&self) -> Result<Arc<Credentials>, SourceError> {
        let issued = SystemTime::now();
        let c = self
            .provider
            .provide_credentials()
            .await
            .map_err(|error| SourceError(self.explain(&error)))?;
        Ok(Arc::new(Credentials {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: Secret::new(c.secret_access_key()),
            session_token: c.session_token().map(Secret::new),
            expiration: c.expiry().map(Credentials::whole_seconds),
            issued,
        }))
    }
}
