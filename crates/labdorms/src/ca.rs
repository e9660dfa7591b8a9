//! The lab's throwaway certificate authority.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The CA's common name.
const CA_NAME: &str = "mcast-lab DORMS CA (throwaway)";

/// Why a CA or certificate could not be made, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// rcgen failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// Reading or writing the CA files.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// rustls refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// A certificate authority that lives only as long as a lab run (or a test): its key is made
/// with rcgen, kept in the run directory, and never in the repository.
pub struct LabCa {
    key: KeyPair,
    params: CertificateParams,
    cert_pem: String,
}

impl std::fmt::Debug for LabCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabCa").field("name", &CA_NAME).finish_non_exhaustive()
    }
}

fn ca_params() -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "multicast-ingest lab");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

impl LabCa {
    /// A new CA with a fresh key.
    pub fn generate() -> Result<LabCa, CaError> {
        LabCa::with_key(KeyPair::generate()?)
    }

    /// The CA for an existing key. The certificate is made anew, but with the same subject and
    /// key it is the same trust anchor: certificates it issues verify against an earlier
    /// `ca.pem` of the same key.
    fn with_key(key: KeyPair) -> Result<LabCa, CaError> {
        let params = ca_params()?;
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(LabCa { key, params, cert_pem })
    }

    /// The CA kept in `dir`: `ca.key` (mode 0600) and `ca.pem` (0644) are created on first use
    /// and reused afterwards, so a restarted server keeps the CA its clients trust.
    pub fn load_or_create(dir: &Path) -> Result<LabCa, CaError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| CaError::Io { path, error }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let key_path = dir.join("ca.key");
        let cert_path = dir.join("ca.pem");
        let ca = match std::fs::read_to_string(&key_path) {
            Ok(pem) => LabCa::with_key(KeyPair::from_pem(&pem)?)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let ca = LabCa::generate()?;
                write_file(&key_path, ca.key.serialize_pem().as_bytes(), 0o600).map_err(io(&key_path))?;
                ca
            }
            Err(e) => return Err(io(&key_path)(e)),
        };
        if !cert_path.exists() {
            write_file(&cert_path, ca.cert_pem.as_bytes(), 0o644).map_err(io(&cert_path))?;
        }
        Ok(ca)
    }

    /// The CA certificate (PEM): what a client adds to its trust roots.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses), signed by this CA.
    pub fn issue(&self, names: &[String]) -> Result<ServerIdentity, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names.first().map_or("dorms", String::as_str));
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(ServerIdentity {
            names: names.to_vec(),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }
}

/// A server certificate and its key.
#[derive(Clone)]
pub struct ServerIdentity {
    /// The names it is valid for.
    pub names: Vec<String>,
    /// The certificate (PEM).
    pub cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity").field("names", &self.names).finish_non_exhaustive()
    }
}

impl ServerIdentity {
    /// A rustls server configuration (ring, TLS 1.2 and 1.3, ALPN http/1.1) presenting this
    /// certificate.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, CaError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reloaded_ca_issues_certificates_for_the_same_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let first = LabCa::load_or_create(dir.path()).unwrap();
        let pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        assert_eq!(pem, first.cert_pem());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = LabCa::load_or_create(dir.path()).unwrap();
        // Same key and subject: the stored ca.pem stays and is not rewritten.
        assert_eq!(std::fs::read_to_string(dir.path().join("ca.pem")).unwrap(), pem);
        let identity = second.issue(&["dorms.example.net".to_owned()]).unwrap();
        assert!(identity.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        identity.server_config().unwrap();
    }
}
