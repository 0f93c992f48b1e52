//! Reading certificates for listeners and CA bundles for external services (semantics §1.1
//! datasources, §3.7). A listener has one or two datasources (an RSA and an ECDSA pair), each a
//! PEM bundle with the private key and the certificate chain (server certificate first). They
//! are parsed when the snapshot is compiled, so a bad certificate is a violation naming the
//! field, never a handshake-time panic.

use crate::model::gateway::DataSource;
use crate::model::{Secret, Valid};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use std::path::Path;
use std::sync::Arc;

/// Reads a datasource's bytes. Relative `file` paths are resolved against the policy
/// directory, so a policy directory with its certificates can be moved as a whole.
pub fn read_datasource(
    ds: &DataSource,
    policy_dir: &Path,
    mesh: &str,
    secrets: &[Valid<Secret>],
) -> Result<Vec<u8>, String> {
    match ds {
        DataSource::File(file) => {
            let path = policy_dir.join(file);
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        }
        DataSource::Inline(bytes) => Ok(bytes.clone()),
        DataSource::Secret(name) => secrets
            .iter()
            .find(|s| &s.meta.name == name && s.meta.mesh == mesh)
            .map(|s| s.spec.data.clone())
            .ok_or_else(|| format!("secret {name:?} not found in mesh {mesh:?}")),
    }
}

/// Parses a PEM bundle holding exactly one private key and a certificate chain.
pub fn parse_pem_pair(pem: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let mut certs: Vec<CertificateDer<'static>> = Vec::new();
    let mut keys: Vec<PrivateKeyDer<'static>> = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
        let (kind, der) = section.map_err(|e| format!("invalid PEM: {e}"))?;
        match kind {
            SectionKind::Certificate => certs.push(CertificateDer::from(der)),
            SectionKind::RsaPrivateKey => keys.push(PrivatePkcs1KeyDer::from(der).into()),
            SectionKind::PrivateKey => keys.push(PrivatePkcs8KeyDer::from(der).into()),
            SectionKind::EcPrivateKey => keys.push(PrivateSec1KeyDer::from(der).into()),
            _ => {}
        }
    }
    if certs.is_empty() {
        return Err("missing server certificate".to_string());
    }
    let key = match keys.len() {
        0 => return Err("missing private key".to_string()),
        1 => keys.remove(0),
        _ => return Err("contains multiple private keys".to_string()),
    };
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("unsupported private key: {e}"))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match()
        .map_err(|e| format!("private key does not match the certificate: {e}"))?;
    Ok(Arc::new(ck))
}

/// DER certificates of a PEM CA bundle.
pub fn parse_ca_bundle(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in CA bundle".to_string());
    }
    Ok(certs)
}

/// The signature algorithm family of a key, used to reject two pairs of the same type.
pub fn key_family(ck: &CertifiedKey) -> rustls::SignatureAlgorithm {
    ck.key.algorithm()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_without_key_is_rejected_with_kuma_wording() {
        let err = parse_pem_pair(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(
            err.contains("missing private key") || err.contains("invalid"),
            "{err}"
        );
        let err = parse_pem_pair(b"").unwrap_err();
        assert_eq!(err, "missing server certificate");
    }
}
