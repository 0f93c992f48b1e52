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
