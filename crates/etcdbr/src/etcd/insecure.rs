//! `--insecure-skip-tls-verify`: TLS to etcd without verifying its certificate.
//!
//! The handshake still checks that the server holds the key of the certificate it presents;
//! only the certificate chain and name are not verified. This exists because the original
//! offers it (and defaults to it); etcdbr defaults to verifying.

use std::sync::Arc;
use std::time::Duration;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::Result;

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A balanced channel over `endpoints` (https URLs) that accepts any server certificate.
pub(super) fn channel(
    endpoints: &[String],
    identity: Option<Identity>,
    connect_timeout: Duration,
) -> Result<Channel> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = Arc::new(AcceptAnyCertificate(provider));
    let mut list = Vec::with_capacity(endpoints.len());
    for url in endpoints {
        let mut tls = ClientTlsConfig::new();
        if let Some(id) = &identity {
            tls = tls.identity(id.clone());
        }
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| super::EtcdConfigError::BadEndpoint {
                url: url.clone(),
                message: e.to_string(),
            })?
            .tls_config_with_verifier(tls, Arc::clone(&verifier))
            .map_err(|e| super::EtcdConfigError::Tls {
                url: url.clone(),
                message: e.to_string(),
            })?
            .connect_timeout(connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        list.push(endpoint);
    }
    Ok(Channel::balance_list(list.into_iter()))
}
