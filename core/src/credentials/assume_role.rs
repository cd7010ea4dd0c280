//! STS AssumeRole, called with another source's credentials.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials};
use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role::AssumeRoleError;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use tokio::sync::OnceCell;

use super::{sentence, CredentialSource, Credentials, SourceError};
use crate::metrics::METRICS;
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct AssumeParams {
    pub arn: String,
    pub session_name: String,
    pub duration: Duration,
    pub external_id: Option<String>,
    pub region: Option<String>,
    /// Else `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`, else AWS's.
    pub sts_endpoint: Option<String>,
}

pub struct AssumeRole {
    params: AssumeParams,
    caller: Arc<dyn CredentialSource>,
    client: OnceCell<aws_sdk_sts::Client>,
}

impl AssumeRole {
    pub fn new(params: AssumeParams, caller: Arc<dyn CredentialSource>) -> Self {
        Self {
            params,
            caller,
            client: OnceCell::new(),
        }
    }

    fn client(&self) -> aws_sdk_sts::Client {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let region = self
            .params
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let mut config = aws_sdk_sts::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .http_client(super::https::client())
            .credentials_provider(Caller(self.caller.clone()))
            // Ask our source every time: it does its own caching, and a
            // re-bootstrapped source must be used at once.
            .identity_cache(aws_sdk_sts::config::IdentityCache::no_cache())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(15))
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(3));
        if let Some(endpoint) = self
            .params
            .sts_endpoint
            .clone()
            .or_else(|| env("AWS_ENDPOINT_URL_STS"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
        {
            config = config.endpoint_url(endpoint);
        }
        aws_sdk_sts::Client::from_conf(config.build())
    }
}

#[async_trait]
impl CredentialSource for AssumeRole {
    async fn credentials(&self) -> Result<Arc<Credentials>, SourceError> {
        let client = self.client.get_or_init(|| async { self.client() }).await;
        let p = &self.params;
        let issued = SystemTime::now();
        let started = std::time::Instant::now();
        let output = client
            .assume_role()
            .role_arn(&p.arn)
            .role_session_name(&p.session_name)
            .duration_seconds(p.duration.as_secs().min(i32::MAX as u64) as i32)
            .set_external_id(p.external_id.clone())
            .send()
            .await;
        METRICS.sts_call(started.elapsed(), output.is_ok());
        let output = output.map_err(|error| SourceError(failure(&p.arn, &error)))?;
        let credentials = output.credentials().ok_or_else(|| {
            SourceError(format!(
                "AssumeRole {}: STS answered without credentials",
                p.arn
            ))
        })?;
        Ok(Arc::new(Credentials {
            access_key_id: credentials.access_key_id().to_owned(),
            secret_access_key: Secret::new(credentials.secret_access_key()),
            session_token: Some(Secret::new(credentials.session_token())),
            expiration: SystemTime::try_from(*credentials.expiration())
                .ok()
                .map(Credentials::whole_seconds),
            issued,
        }))
    }
}

/// Why AssumeRole failed, as a sentence that says where to look.
fn failure(arn: &str, error: &SdkError<AssumeRoleError>) -> String {
    match error {
        SdkError::ServiceError(refused) => {
            let refused = refused.err();
            format!(
                "STS refused AssumeRole {arn}: {} ({}); check that the source's identity may assume this role",
                refused.message().unwrap_or("no reason given"),
                refused.code().unwrap_or("no error code"),
            )
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => format!(
            "cannot reach STS for AssumeRole {arn}: {}; check the role's sts_endpoint (or AWS_ENDPOINT_URL_STS) and the network",
            sentence(error)
        ),
        _ => format!("AssumeRole {arn} failed: {}", sentence(error)),
    }
}

/// Hands our source's credentials to the STS client.
struct Caller(Arc<dyn CredentialSource>);

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Caller")
    }
}

impl ProvideCredentials for Caller {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let c = self
                .0
                .credentials()
                .await
                .map_err(|error| CredentialsError::not_loaded(error.0))?;
            Ok(aws_credential_types::Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.expose().to_owned(),
                c.session_token.as_ref().map(|t| t.expose().to_owned()),
                c.expiration,
                "ersatz",
            ))
        })
    }
}
