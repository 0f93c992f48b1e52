//! The certificates of an HTTPS/TLS listener hostname (semantics §3.7), parsed when the
//! snapshot was compiled (`compile::certs`); the TLS acceptor picks the pair the client can
//! verify.

use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// The certificates of one listener hostname.
#[derive(Debug)]
pub struct CertSet {
    pub keys: Vec<Arc<CertifiedKey>>,
}

/// When the soonest-expiring leaf of `keys` expires (Unix seconds), if it can be read.
pub fn not_after(keys: &[Arc<CertifiedKey>]) -> Option<i64> {
    keys.iter()
        .filter_map(|k| k.cert.first())
        .filter_map(|der| x509_parser::parse_x509_certificate(der.as_ref()).ok())
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .min()
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
