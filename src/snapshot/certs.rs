//! TLS certificates of HTTPS/TLS listeners (semantics §1.1 datasources, §3.7).
//!
//! A listener has one or two datasources (an RSA and an ECDSA pair), each a PEM bundle with the
//! private key and the certificate chain (server certificate first). They are parsed when the
//! snapshot is compiled, so a bad certificate is a validation error naming the field, never a
//! handshake-time panic; the TLS acceptor later picks the pair the client can verify.

use base64::Engine;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use std::path::Path;
use std::sync::Arc;

use crate::resources::gateway::DataSource;
use crate::resources::Secret;

/// The certificates of one listener hostname.
#[derive(Debug)]
pub struct CertSet {
    pub keys: Vec<Arc<CertifiedKey>>,
}

impl CertSet {
    /// The first certificate whose key can sign with a scheme the client offered (so an
    /// ECDSA-only client gets the ECDSA pair), else the first one.
    pub fn choose(&self, schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.keys
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .or_else(|| self.keys.first())
            .cloned()
    }
}

/// Reads a datasource's bytes. Relative `file` paths are resolved against the policy
/// directory, so a policy directory with its certificates can be moved as a whole.
pub fn read_datasource(
    ds: &DataSource,
    policy_dir: &Path,
    mesh: &str,
    secrets: &[crate::resources::Shared<Secret>],
) -> Result<Vec<u8>, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(file) = &ds.file {
        let path = policy_dir.join(file);
        return std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    }
    if let Some(inline) = &ds.inline {
        return b64
            .decode(inline.trim())
            .map_err(|e| format!("inline is not valid base64: {e}"));
    }
    if let Some(s) = &ds.inline_string {
        return Ok(s.clone().into_bytes());
    }
    if let Some(name) = &ds.secret {
        let secret = secrets
            .iter()
            .find(|s| &s.meta.name == name && s.meta.mesh == mesh)
            .ok_or_else(|| format!("secret {name:?} not found in mesh {mesh:?}"))?;
        let payload = secret
            .spec
            .base64_payload()
            .ok_or_else(|| format!("secret {name:?} has no data"))?;
        return b64
            .decode(payload.trim())
            .map_err(|e| format!("secret {name:?} data is not valid base64: {e}"));
    }
    Err("one of file, inline, inlineString or secret must be set".to_string())
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
