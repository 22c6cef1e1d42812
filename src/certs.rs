//! rcgen CA and serving certificates: `applyguard certs` and the `--dev` server.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// Names a serving certificate covers when none are given: local development and the in-cluster
/// Service that `deploy/` creates.
pub const DEFAULT_DNS: &[&str] = &[
    "localhost",
    "applyguard.applyguard.svc",
    "applyguard.applyguard.svc.cluster.local",
];
pub const DEFAULT_IPS: &[&str] = &["127.0.0.1"];

const CA_VALIDITY_DAYS: i64 = 5 * 365;
const SERVING_VALIDITY_DAYS: i64 = 365;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} exists; pass --force to replace it")]
    Exists { path: PathBuf },
    #[error("cannot reuse the CA in {dir}: {message}; pass --force to create a new one")]
    BadCa { dir: PathBuf, message: String },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("invalid name {0:?}: {1}")]
    BadName(String, String),
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct CertRequest {
    pub out: PathBuf,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub force: bool,
}

impl CertRequest {
    /// Uses the default names when neither DNS names nor IPs were given.
    pub fn with_defaults(out: PathBuf, dns: Vec<String>, ips: Vec<IpAddr>, force: bool) -> Self {
        let (dns, ips) = if dns.is_empty() && ips.is_empty() {
            (
                DEFAULT_DNS.iter().map(|s| s.to_string()).collect(),
                DEFAULT_IPS.iter().filter_map(|s| s.parse().ok()).collect(),
            )
        } else {
            (dns, ips)
        };
        CertRequest {
            out,
            dns,
            ips,
            force,
        }
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct CertOutput {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub ca_reused: bool,
    /// base64 of the CA PEM, as a ValidatingWebhookConfiguration's `caBundle` wants it.
    pub ca_bundle: String,
    pub not_after: OffsetDateTime,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `contents` to `path`; private keys get mode 0600 from the moment they exist.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(if private { 0o600 } else { 0o644 });
        let mut file = options.open(path).map_err(io_err(path))?;
        // `mode` only applies on creation; tighten an existing file too.
        file.set_permissions(fs::Permissions::from_mode(if private {
            0o600
        } else {
            0o644
        }))
        .map_err(io_err(path))?;
        file.write_all(contents.as_bytes()).map_err(io_err(path))?;
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = private;
        let mut file = options.open(path).map_err(io_err(path))?;
        file.write_all(contents.as_bytes()).map_err(io_err(path))
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "applyguard CA");
    name.push(DnType::OrganizationName, "applyguard");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
    params
}

fn serving_params(dns: &[String], ips: &[IpAddr]) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        dns.first()
            .cloned()
            .unwrap_or_else(|| "applyguard".to_string()),
    );
    params.distinguished_name = name;
    for d in dns {
        let san = d
            .as_str()
            .try_into()
            .map_err(|e: rcgen::Error| CertError::BadName(d.clone(), e.to_string()))?;
        params.subject_alt_names.push(SanType::DnsName(san));
    }
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(SERVING_VALIDITY_DAYS);
    Ok(params)
}

/// Generates (or reuses) the CA in `out` and a serving certificate signed by it.
pub fn generate(request: &CertRequest) -> Result<CertOutput, CertError> {
    let dir = &request.out;
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let ca_cert_path = dir.join("ca.crt");
    let ca_key_path = dir.join("ca.key");
    let tls_cert_path = dir.join("tls.crt");
    let tls_key_path = dir.join("tls.key");

    let reuse = !request.force && ca_cert_path.exists() && ca_key_path.exists();
    let (ca_pem, issuer) = if reuse {
        let bad = |message: String| CertError::BadCa {
            dir: dir.clone(),
            message,
        };
        let ca_pem = fs::read_to_string(&ca_cert_path).map_err(io_err(&ca_cert_path))?;
        let key_pem = fs::read_to_string(&ca_key_path).map_err(io_err(&ca_key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(format!("ca.key: {e}")))?;
        let issuer =
            Issuer::from_ca_cert_pem(&ca_pem, key).map_err(|e| bad(format!("ca.crt: {e}")))?;
        (ca_pem, issuer)
    } else {
        if !request.force && (ca_cert_path.exists() || ca_key_path.exists()) {
            // Half a CA: refuse to overwrite the half that is there.
            let existing = if ca_cert_path.exists() {
                &ca_cert_path
            } else {
                &ca_key_path
            };
            return Err(CertError::Exists {
                path: existing.clone(),
            });
        }
        let key = KeyPair::generate()?;
        let params = ca_params();
        let cert = params.self_signed(&key)?;
        write_file(&ca_key_path, &key.serialize_pem(), true)?;
        write_file(&ca_cert_path, &cert.pem(), false)?;
        (cert.pem(), Issuer::new(params, key))
    };

    let params = serving_params(&request.dns, &request.ips)?;
    let not_after = params.not_after;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_file(&tls_key_path, &key.serialize_pem(), true)?;
    // The chain: leaf first, then the CA, so clients that only know the CA can verify it.
    write_file(&tls_cert_path, &format!("{}{}", cert.pem(), ca_pem), false)?;

    Ok(CertOutput {
        ca_cert: ca_cert_path,
        ca_key: ca_key_path,
        tls_cert: tls_cert_path,
        tls_key: tls_key_path,
        ca_reused: reuse,
        ca_bundle: base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes()),
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_then_reuses_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let req = CertRequest::with_defaults(dir.path().to_path_buf(), vec![], vec![], false);
        assert!(req.dns.contains(&"applyguard.applyguard.svc".to_string()));
        let first = generate(&req).unwrap();
        assert!(!first.ca_reused);
        let ca_before = fs::read(&first.ca_cert).unwrap();
        let second = generate(&req).unwrap();
        assert!(second.ca_reused);
        assert_eq!(ca_before, fs::read(&second.ca_cert).unwrap());
        assert_eq!(first.ca_bundle, second.ca_bundle);
        let forced = generate(&CertRequest { force: true, ..req }).unwrap();
        assert!(!forced.ca_reused);
        assert_ne!(ca_before, fs::read(&forced.ca_cert).unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let out = generate(&CertRequest::with_defaults(
            dir.path().into(),
            vec![],
            vec![],
            false,
        ))
        .unwrap();
        for key in [&out.ca_key, &out.tls_key] {
            let mode = fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
    }

    #[test]
    fn half_a_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ca.key"), "junk").unwrap();
        let err = generate(&CertRequest::with_defaults(
            dir.path().into(),
            vec![],
            vec![],
            false,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
    }

    #[test]
    fn corrupt_ca_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ca.key"), "junk").unwrap();
        fs::write(dir.path().join("ca.crt"), "junk").unwrap();
        let err = generate(&CertRequest::with_defaults(
            dir.path().into(),
            vec![],
            vec![],
            false,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("ca.key"), "{err}");
    }
}
