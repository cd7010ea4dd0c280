//! The HTTPS client that STS, SSO and web identity calls go through.
//!
//! The SDK's default client is hyper with rustls on aws-lc, whose C library
//! (built with cmake) was the largest part of a first build. This is the same
//! client, built the way the SDK builds its default, with rustls on ring.

use aws_sdk_sts::config::SharedHttpClient;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::{Builder, ConnectorBuilder};

/// A new client, as the SDK's default: TLS roots from the system, the
/// timeouts each SDK client asks for, and proxies from `HTTPS_PROXY`,
/// `HTTP_PROXY` and `NO_PROXY`.
pub fn client() -> SharedHttpClient {
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::AsyncReadExt;

    use crate::credentials::{AssumeParams, AssumeRole, CredentialSource, StaticSource};
    use crate::secret::Secret;

    /// AssumeRole against an `https://` endpoint opens a TLS connection
    /// (a handshake record arrives): the client has a TLS stack and picks it.
    #[tokio::test]
    async fn assume_role_speaks_tls_to_an_https_endpoint() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let first_byte = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.read_u8().await.unwrap()
        });
        let caller = StaticSource::new("AKIAERSATZTEST000001", &Secret::new("secret"), None);
        let assume = AssumeRole::new(
            AssumeParams {
                arn: "arn:aws:iam::123456789012:role/tls".into(),
                session_name: "tls".into(),
                duration: Duration::from_secs(900),
                external_id: None,
                region: Some("us-east-1".into()),
                sts_endpoint: Some(format!("https://127.0.0.1:{port}")),
            },
            Arc::new(caller),
        );
        let refused = tokio::time::timeout(Duration::from_secs(60), assume.credentials())
            .await
            .expect("AssumeRole gives up");
        assert!(refused.is_err());
        let record = tokio::time::timeout(Duration::from_secs(5), first_byte)
            .await
            .expect("a connection")
            .unwrap();
        assert_eq!(record, 0x16, "a TLS handshake record");
    }
}
