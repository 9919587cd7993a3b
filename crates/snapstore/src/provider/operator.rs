//! The one place operators are finished: the HTTP client (TLS options), the retry layer with
//! its logging, and the timeout layer. A server certificate that does not verify is not
//! retried: no retry can fix it, and retrying hid the cause behind a minute of waiting.

use std::time::Duration;

use opendal::layers::{RetryEvent, RetryInterceptor, RetryLayer, TimeoutLayer};
use opendal::{Buffer, HttpBody, HttpTransport, HttpTransporter, OperationContext, Operator};
use opendal_http_transport_reqwest::ReqwestTransport;

use crate::error::{ConfigError, Result};

/// How the HTTP client reaches the provider.
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpOptions {
    /// Accept any server certificate.
    pub insecure_skip_verify: bool,
    /// An extra trusted CA (PEM).
    pub trusted_ca_pem: Option<String>,
}

/// `endpoint` with a scheme: as given when it has one, else `https://` (`http://` when
/// `insecure_http`), as the original's SDKs complete a bare host.
pub(crate) fn with_scheme(endpoint: &str, insecure_http: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else if insecure_http {
        format!("http://{endpoint}")
    } else {
        format!("https://{endpoint}")
    }
}

/// Each request (and each part of an upload) is tried up to this many times in all.
pub const MAX_TRIES: usize = 6;
/// The first retry's delay, doubled for each further one up to [`MAX_RETRY_DELAY`].
pub const MIN_RETRY_DELAY: Duration = Duration::from_secs(1);
/// The longest delay between two tries.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(16);
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

/// The reqwest transport, with TLS verification failures made permanent for the retry layer.
struct Transport(ReqwestTransport);

impl HttpTransport for Transport {
    async fn fetch(&self, req: http::Request<Buffer>) -> opendal::Result<http::Response<HttpBody>> {
        self.0.fetch(req).await.map_err(|e| {
            if is_tls_failure(&e) {
                e.set_persistent()
            } else {
                e
            }
        })
    }
}

/// Whether `e` comes from a TLS handshake that failed (an untrusted or invalid certificate).
pub(crate) fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // An io::Error's `source` skips the error it wraps; rustls's hides there.
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && is_tls_failure(inner)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// An operator for `builder`'s service, finished as every provider's is ([`finish`]).
///
/// # Errors
/// [`Error::Config`] naming the provider, for unusable settings.
pub(crate) fn operator<B: opendal::Builder>(
    builder: B,
    http: &HttpOptions,
    provider: &str,
) -> Result<Operator> {
    let op = Operator::new(builder).map_err(|source| ConfigError::Builder {
        provider: provider.to_owned(),
        source,
    })?;
    finish(op, http, provider)
}

/// The HTTP client of a provider, with its TLS options; also used for the requests made
/// besides OpenDAL's (STS, bucket settings, tags).
///
/// # Errors
/// [`Error::Config`] when the TLS options cannot be used.
pub(crate) fn http_client(http: &HttpOptions, provider: &str) -> Result<reqwest::Client> {
    let mut client = reqwest::Client::builder().connect_timeout(Duration::from_secs(30));
    if http.insecure_skip_verify {
        tracing::warn!(
            "{provider}: insecureSkipVerify is set; the storage server's certificate is not verified"
        );
        client = client.danger_accept_invalid_certs(true);
    }
    if let Some(pem) = &http.trusted_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|source| {
            ConfigError::TrustedCa {
                provider: provider.to_owned(),
                source,
            }
        })?;
        for c in certs {
            client = client.add_root_certificate(c);
        }
    }
    Ok(client.build().map_err(|source| ConfigError::HttpClient {
        provider: provider.to_owned(),
        source,
    })?)
}

/// Adds the HTTP transport (over [`http_client`]), retries and timeouts to an operator.
///
/// # Errors
/// [`Error::Config`] when the TLS options cannot be used.
pub(crate) fn finish(op: Operator, http: &HttpOptions, provider: &str) -> Result<Operator> {
    Ok(finish_with(op, http_client(http, provider)?))
}

/// [`finish`] over an existing client.
pub(crate) fn finish_with(op: Operator, client: reqwest::Client) -> Operator {
    let transport = HttpTransporter::new(Transport(ReqwestTransport::new(client)));
    op.with_context(OperationContext::new().with_http_transport(transport))
        .layer(
            TimeoutLayer::new()
                .with_timeout(REQUEST_TIMEOUT)
                .with_io_timeout(REQUEST_TIMEOUT),
        )
        .layer(
            RetryLayer::new()
                .with_max_times(MAX_TRIES - 1)
                .with_factor(2.0)
                .with_min_delay(MIN_RETRY_DELAY)
                .with_max_delay(MAX_RETRY_DELAY)
                .with_jitter()
                .with_notify(LogRetries),
        )
}
