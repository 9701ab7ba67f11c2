//! The rustls server configuration behind [`OtlpReceiver::start_tls`](super::OtlpReceiver::start_tls).

use std::io;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::TlsOptions;

/// Builds the acceptor: aws-lc-rs crypto (explicitly, whatever the process default
/// provider is), default protocol versions, ALPN `h2` then `http/1.1`, and client
/// certificate verification against `client_ca_pem` when it is set.
pub(super) fn acceptor(options: &TlsOptions) -> io::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = certificates(&options.cert_chain_pem, "cert_chain_pem")?;
    let key = PrivateKeyDer::from_pem_slice(&options.key_pem)
        .map_err(|e| invalid(format!("key_pem: no usable private key: {e}")))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS protocol versions: {e}")))?;
    let builder = match &options.client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(pem, "client_ca_pem")? {
                roots
                    .add(cert)
                    .map_err(|e| invalid(format!("client_ca_pem: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid(format!("client_ca_pem: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| invalid(format!("cert_chain_pem/key_pem: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Every `CERTIFICATE` block in `pem`; at least one.
fn certificates(pem: &[u8], field: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{field}: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(format!("{field}: no CERTIFICATE block found")));
    }
    Ok(certs)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}
