//! The one place operators are finished: the HTTP client (TLS options), the retry layer with
//! its logging, and the timeout layer.

use std::time::Duration;

use opendal::layers::{RetryEvent, RetryInterceptor, RetryLayer, TimeoutLayer};
use opendal::{HttpTransporter, OperationContext, Operator};

use crate::error::{Error, Result};

/// How the HTTP client reaches the provider.
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpOptions {
    /// Accept any server certificate.
    pub insecure_skip_verify: bool,
    /// An extra trusted CA (PEM).
    pub trusted_ca_pem: Option<String>,
}

/// Each request (and each part of an upload) is tried up to this many times in all.
pub const MAX_TRIES: usize = 6;
/// Timeout of one request, as the original's chunk upload timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy)]
struct LogRetries;

impl RetryInterceptor for LogRetries {
    fn intercept(&self, event: RetryEvent<'_>) {
        tracing::warn!(
            "Storage {:?} failed (attempt {}), retrying in {:.1}s: {}",
            event.op,
            event.attempt,
            event.retry_after.as_secs_f64(),
            event.err
        );
    }
}

/// Adds the HTTP transport, retries and timeouts to an operator.
///
/// # Errors
/// [`Error::Config`] when the TLS options cannot be used.
pub(crate) fn finish(op: Operator, http: &HttpOptions, provider: &str) -> Result<Operator> {
    let mut client = reqwest::Client::builder().connect_timeout(Duration::from_secs(30));
    if http.insecure_skip_verify {
        tracing::warn!(
            "{provider}: insecureSkipVerify is set; the storage server's certificate is not verified"
        );
        client = client.danger_accept_invalid_certs(true);
    }
    if let Some(pem) = &http.trusted_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| {
            Error::Config(format!(
                "{provider}: trustedCaCert is not a PEM certificate: {e}"
            ))
        })?;
        for c in certs {
            client = client.add_root_certificate(c);
        }
    }
    let client = client
        .build()
        .map_err(|e| Error::Config(format!("{provider}: cannot build the HTTP client: {e}")))?;
    let transport = HttpTransporter::new(opendal_http_transport_reqwest::ReqwestTransport::new(
        client,
    ));
    Ok(op
        .with_context(OperationContext::new().with_http_transport(transport))
        .layer(
            TimeoutLayer::new()
                .with_timeout(REQUEST_TIMEOUT)
                .with_io_timeout(REQUEST_TIMEOUT),
        )
        .layer(
            RetryLayer::new()
                .with_max_times(MAX_TRIES - 1)
                .with_factor(2.0)
                .with_min_delay(Duration::from_secs(1))
                .with_max_delay(Duration::from_secs(16))
                .with_jitter()
                .with_notify(LogRetries),
        ))
}
