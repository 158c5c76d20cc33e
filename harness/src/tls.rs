//! A TLS front for a local receiver, with a server certificate issued by a private CA the
//! client does not know: `raxe` must refuse the handshake (and keep the events queued) until
//! the destination is reconfigured with `--ca-cert`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};

pub struct TlsProxy {
    pub addr: SocketAddr,
    /// PEM of the private CA (for `--ca-cert`).
    pub ca_pem: PathBuf,
    failures: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsProxy {
    /// Terminates TLS on 127.0.0.1 and forwards the plain bytes to `backend`.
    pub async fn start(backend: SocketAddr, dir: &Path) -> Result<TlsProxy> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "raxe-harness private CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key)?;
        let server_key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = params.signed_by(&server_key, &ca, &ca_key)?;
        let ca_pem = dir.join("harness-ca.pem");
        std::fs::write(&ca_pem, ca.pem())?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(server.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .context("TLS server config")?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let failures = Arc::new(AtomicU64::new(0));
        let fails = failures.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, fails) = (acceptor.clone(), fails.clone());
                tokio::spawn(async move {
                    match acceptor.accept(stream).await {
                        Err(_) => {
                            fails.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(mut tls) => {
                            if let Ok(mut plain) = TcpStream::connect(backend).await {
                                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                            }
                        }
                    }
                });
            }
        });
        Ok(TlsProxy {
            addr,
            ca_pem,
            failures,
            task,
        })
    }

    /// Handshakes that failed (the client refused the certificate).
    pub fn handshake_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub fn url(&self) -> String {
        format!(
            "https://127.0.0.1:{}/services/collector/event",
            self.addr.port()
        )
    }
}
