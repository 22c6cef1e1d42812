//! TLS for the webhook: loading a certificate chain and key with clear errors, and a rustls
//! server configuration limited to TLS 1.2 and 1.3 with ALPN for HTTP/2 and HTTP/1.1.

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, crypto::CryptoProvider};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS certificate {path}: {source}")]
    ReadCert {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read TLS key {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate: {message}")]
    NoCert { path: PathBuf, message: String },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {message}")]
    NoKey { path: PathBuf, message: String },
    #[error("{cert} and {key} do not belong together: {message}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("{path}: the certificate is not valid now (valid from {not_before} to {not_after})")]
    NotValidNow {
        path: PathBuf,
        not_before: String,
        not_after: String,
    },
    #[error("{path}: cannot parse the certificate: {message}")]
    BadCert { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The crypto provider applyguard uses everywhere (ring: no C toolchain beyond cc needed).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A loaded certificate pair and when its leaf expires.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub not_after: OffsetDateTime,
}

/// Reads a PEM certificate chain (leaf first) and its private key, and checks that they match
/// and that the leaf is valid now.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, TlsError> {
    let cert_pem = std::fs::read(cert_path).map_err(|source| TlsError::ReadCert {
        path: cert_path.into(),
        source,
    })?;
    let key_pem = std::fs::read(key_path).map_err(|source| TlsError::ReadKey {
        path: key_path.into(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::NoCert {
            path: cert_path.into(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: cert_path.into(),
            message: "no CERTIFICATE block found".to_string(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: key_path.into(),
        message: e.to_string(),
    })?;
    let (not_before, not_after) = validity(&chain[0]).map_err(|message| TlsError::BadCert {
        path: cert_path.into(),
        message,
    })?;
    let now = OffsetDateTime::now_utc();
    if now < not_before || now > not_after {
        return Err(TlsError::NotValidNow {
            path: cert_path.into(),
            not_before: not_before.to_string(),
            not_after: not_after.to_string(),
        });
    }
    let certified =
        CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Mismatch {
            cert: cert_path.into(),
            key: key_path.into(),
            message: e.to_string(),
        })?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        not_after,
    })
}

fn validity(der: &CertificateDer<'_>) -> Result<(OffsetDateTime, OffsetDateTime), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    let v = cert.validity();
    Ok((v.not_before.to_datetime(), v.not_after.to_datetime()))
}

/// Serves whichever certificate is current, so a renewed pair can be swapped in without a restart.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn new(cert: Arc<CertifiedKey>) -> Arc<CertStore> {
        Arc::new(CertStore {
            current: ArcSwap::new(cert),
        })
    }

    pub fn replace(&self, cert: Arc<CertifiedKey>) {
        self.current.store(cert);
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The server configuration: TLS 1.3 and 1.2 only, ALPN `h2` then `http/1.1`.
pub fn server_config(store: Arc<CertStore>) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{CertRequest, generate};

    #[test]
    fn loads_a_generated_pair() {
        let dir = tempfile::tempdir().unwrap();
        let out = generate(&CertRequest::with_defaults(
            dir.path().into(),
            vec![],
            vec![],
            false,
        ))
        .unwrap();
        let loaded = load_pair(&out.tls_cert, &out.tls_key).unwrap();
        assert_eq!(loaded.key.cert.len(), 2, "leaf and CA");
        server_config(CertStore::new(loaded.key)).unwrap();
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let out = generate(&CertRequest::with_defaults(
            dir.path().into(),
            vec![],
            vec![],
            false,
        ))
        .unwrap();
        let missing = dir.path().join("nope.crt");
        let err = load_pair(&missing, &out.tls_key).unwrap_err().to_string();
        assert!(
            err.contains("cannot read TLS certificate") && err.contains("nope.crt"),
            "{err}"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let err = load_pair(&junk, &out.tls_key).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
        let err = load_pair(&out.tls_cert, &junk).unwrap_err().to_string();
        assert!(err.contains("no PEM private key"), "{err}");
        // The CA key does not match the serving certificate.
        let err = load_pair(&out.tls_cert, &out.ca_key)
            .unwrap_err()
            .to_string();
        assert!(err.contains("do not belong together"), "{err}");
    }
}
