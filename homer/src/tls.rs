//! TLS on any listener, with rustls: [`Tls`] holds the server's certificate
//! chain and key; [`Homer::listen_https`](crate::Homer::listen_https) and
//! [`Homer::listen_tcp_tls`](crate::Homer::listen_tcp_tls) use it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        /// `certificate chain` or `private key`.
        what: &'static str,
        /// The file.
        path: String,
        /// Why (never the key's bytes).
        reason: String,
    },
    /// rustls refused the certificate and key (they do not match, say).
    #[error("invalid certificate or key: {0}")]
    Config(String),
}

/// A server's TLS configuration: certificate chain and private key, TLS 1.2
/// and 1.3, ALPN for HTTP/1.1. Cheap to clone.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = homer::Tls::from_pem_files("cert.pem", "key.pem")?;
/// let homer = homer::Homer::builder().build()?;
/// homer.listen_https("0.0.0.0:443", tls.clone()).await?;              // https and wss
/// homer.listen_tcp_tls("0.0.0.0:7443", homer::json_lines(), tls).await?; // TLS over TCP
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Tls {
    pub(crate) acceptor: TlsAcceptor,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Read a PEM certificate chain (the server's certificate first) and a
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Tls, TlsError> {
        let (cert_path, key_path) = (cert_chain.as_ref(), key.as_ref());
        let pem = |what, path: &Path, reason: String| TlsError::Pem {
            what,
            path: path.display().to_string(),
            reason,
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
            .map_err(|e| pem("certificate chain", cert_path, e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| pem("certificate chain", cert_path, e.to_string()))?;
        if chain.is_empty() {
            return Err(pem(
                "certificate chain",
                cert_path,
                "no certificate in it".into(),
            ));
        }
        // The key's error never carries its bytes.
        let key = PrivateKeyDer::from_pem_file(key_path)
            .map_err(|e| pem("private key", key_path, e.to_string()))?;
        Self::from_der(chain, key)
    }

    /// A certificate chain and key already in DER form.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Tls, TlsError> {
        #[expect(
            deprecated,
            reason = "ring builds with a C compiler only; aws-lc-rs (post-quantum key exchange) needs cmake and doubles the build on small machines"
        )]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls::from_config(Arc::new(config)))
    }

    /// Any rustls server configuration (client certificates, other ALPN, a
    /// certificate resolver).
    pub fn from_config(config: Arc<rustls::ServerConfig>) -> Tls {
        Tls {
            acceptor: TlsAcceptor::from(config),
        }
    }
}
