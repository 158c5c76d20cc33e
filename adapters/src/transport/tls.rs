//! rustls client configuration shared by the HTTP and syslog-over-TLS transports.
//!
//! * Trust: the system roots (via `rustls-native-certs`, loaded and parsed once per process
//!   and shared; roots that fail to load or parse are skipped with a debug log) plus every
//!   certificate in the optional `ca_cert` PEM file.
//! * Mutual TLS: `client_cert` (PEM chain) and `client_key` (PEM PKCS#8, PKCS#1 or SEC1), both
//!   or neither.
//! * `insecure_skip_verify`: any server certificate is accepted (handshake signatures are
//!   still checked, so the peer must hold the key of the certificate it shows). Logged as a
//!   warning each time a configuration is built.
//!
//! The `ring` provider is passed explicitly, so no process-wide default provider is needed.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{TlsOptions, TransportSetupError};

/// The crypto provider every transport uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system roots as a trust store, parsed once per process and shared by every
/// configuration without a private CA: an MSSP runs one transport per customer, and each
/// parse held ~85 KB of trust anchors (8.4 MB of the heap with 100 destinations).
fn system_root_store() -> Arc<RootCertStore> {
    static STORE: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let native = rustls_native_certs::load_native_certs();
            for err in &native.errors {
                tracing::debug!(error = %err, "skipping unloadable system root certificates");
            }
            let mut roots = RootCertStore::empty();
            let (_added, ignored) = roots.add_parsable_certificates(native.certs);
            if ignored > 0 {
                tracing::debug!(ignored, "skipped unparsable system root certificates");
            }
            Arc::new(roots)
        })
        .clone()
}

/// Builds the rustls client configuration for `tls`.
pub fn client_config(tls: &TlsOptions) -> Result<ClientConfig, TransportSetupError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportSetupError::Tls(e.to_string()))?;

    let builder = if tls.insecure_skip_verify {
        // The factory warns once per adapter; a transport is built per adapter too.
        tracing::debug!(
            "TLS certificate verification is DISABLED (insecure_skip_verify = true): \
             any server certificate is accepted"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert {
                algorithms: provider().signature_verification_algorithms,
            }))
    } else {
        let roots = match &tls.ca_cert {
            None => system_root_store(),
            Some(path) => {
                let mut roots = RootCertStore::clone(&system_root_store());
                let certs = read_ca_certs(path)?;
                let (added, _ignored) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(TransportSetupError::NoCaCertificates { path: path.clone() });
                }
                Arc::new(roots)
            }
        };
        builder.with_root_certificates(roots)
    };

    match (&tls.client_cert, &tls.client_key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(_), None) => Err(TransportSetupError::ClientCertWithoutKey),
        (None, Some(_)) => Err(TransportSetupError::ClientKeyWithoutCert),
        (Some(cert_path), Some(key_path)) => {
            let chain = read_client_certs(cert_path)?;
            let key = read_client_key(key_path)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TransportSetupError::InvalidClientAuth(e.to_string()))
        }
    }
}

fn read_ca_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportSetupError> {
    let read_err = |e: rustls::pki_types::pem::Error| TransportSetupError::CaCertRead {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    if certs.is_empty() {
        return Err(TransportSetupError::NoCaCertificates {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_client_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportSetupError> {
    let read_err = |e: rustls::pki_types::pem::Error| TransportSetupError::ClientCertRead {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    if certs.is_empty() {
        return Err(TransportSetupError::NoClientCertificates {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_client_key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportSetupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let reason = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no private key found".to_string(),
            rustls::pki_types::pem::Error::Io(io) => io.to_string(),
            // Other variants describe PEM syntax; keep them generic so nothing of the key
            // file's content can end up in a log.
            _ => "malformed PEM".to_string(),
        };
        TransportSetupError::ClientKeyRead {
            path: path.to_path_buf(),
            reason,
        }
    })
}

/// `insecure_skip_verify`: trusts any certificate chain, but still checks that the peer
/// signed the handshake with the key of the certificate it presented.
#[derive(Debug)]
struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The next error in a source chain. `std::io::Error::source` skips the custom error an
/// `io::Error` wraps (it returns the wrapped error's source), so step into it explicitly.
fn next_source<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if let Some(inner) = io.get_ref() {
            return Some(inner);
        }
    }
    e.source()
}

/// Finds a rustls error anywhere in an error's source chain (rustls errors travel inside
/// `std::io::Error`s through tokio-rustls and hyper).
pub(crate) fn find_rustls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        cur = next_source(e);
    }
    None
}

/// Finds the first `std::io::Error` in an error's source chain.
pub(crate) fn find_io_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a std::io::Error> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = next_source(e);
    }
    None
}

/// Renders an error and its sources as `a: b: c`, skipping repeated texts.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = next_source(e);
    }
    parts.join(": ")
}
