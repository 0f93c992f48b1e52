//! TLS for HTTPS and TLS listeners (semantics §3.3, §3.7, §7.3).
//!
//! Certificates are chosen per handshake from the *current* snapshot by a rustls
//! `ResolvesServerCert`: the SNI picks the listener-hostname chain (exact, longest wildcard,
//! catch-all) and the chain's certificate set picks the RSA or ECDSA pair the client can use.
//! A new certificate in the policy files is therefore served to the next connection without
//! rebuilding listeners. No chain for the SNI (or no SNI without a catch-all) → no
//! certificate → the handshake fails, as Envoy closes it.
//!
//! PASSTHROUGH needs the SNI without terminating: [`peek_sni`] parses it from the
//! ClientHello bytes, which are then replayed to the backend untouched.

use crate::runtime::state::GatewayState;
use crate::snapshot::certs::CertSet;
use crate::snapshot::{Serving, Snapshot};
use async_trait::async_trait;
use pingora::listeners::tls::Acceptor;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::any::Any;
use std::sync::Arc;

/// The SNI a connection was accepted with, attached to its `SslDigest` so the HTTP layer can
/// use the route table of the chain the handshake chose.
#[derive(Debug, Clone)]
pub struct SniName(pub String);

struct SnapshotCerts {
    state: Arc<GatewayState>,
    port: u16,
}

impl std::fmt::Debug for SnapshotCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotCerts(port {})", self.port)
    }
}

/// The certificates configured for `sni` on `port` in `snap`.
pub fn certs_for(snap: &Snapshot, port: u16, sni: &str) -> Option<Arc<CertSet>> {
    match &snap.port(port)?.serving {
        Serving::Https { chains } => chains.lookup(sni).map(|c| c.certs.clone()),
        Serving::Tls { chains } => chains.lookup(sni).and_then(|c| c.certs.clone()),
        _ => None,
    }
}

impl ResolvesServerCert for SnapshotCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().unwrap_or("").to_ascii_lowercase();
        let snap = self.state.snapshot.load();
        certs_for(&snap, self.port, &sni)?.choose(hello.signature_schemes())
    }
}

struct SniToDigest;

#[async_trait]
impl TlsAccept for SniToDigest {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let sni = tls.server_name().unwrap_or("").to_ascii_lowercase();
        Some(Arc::new(SniName(sni)))
    }
}

/// A TLS acceptor for one port. `http` enables ALPN h2 + http/1.1 (HTTPS listeners).
pub struct PortAcceptor {
    acceptor: Acceptor,
    callbacks: SniToDigest,
}

impl PortAcceptor {
    pub fn new(state: Arc<GatewayState>, port: u16, http: bool) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            // Kuma's gateway: TLS 1.2 minimum.
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SnapshotCerts { state, port }));
        if http {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        Ok(PortAcceptor {
            acceptor: Acceptor::from_server_config(Arc::new(config)),
            callbacks: SniToDigest,
        })
    }

    pub async fn handshake(
        &self,
        stream: pingora::protocols::l4::stream::Stream,
    ) -> pingora::Result<pingora::protocols::Stream> {
        let tls = pingora::protocols::tls::server::handshake_with_callback(
            &self.acceptor,
            stream,
            &self.callbacks,
        )
        .await?;
        Ok(Box::new(tls))
    }
}

/// Reads the SNI from a TLS ClientHello record, without consuming it. Returns
/// `Ok(None)` for a ClientHello without SNI, `Err` for bytes that are not a ClientHello.
/// `buf` must hold the whole first record (the caller peeks until it does).
pub fn parse_sni(buf: &[u8]) -> Result<Option<String>, SniError> {
    let mut r = Reader(buf);
    if r.u8()? != 0x16 {
        return Err(SniError::NotTls);
    }
    r.skip(2)?; // record version
    let len = r.u16()? as usize;
    let mut rec = Reader(r.take(len)?);
    if rec.u8()? != 0x01 {
        return Err(SniError::NotTls); // not a ClientHello
    }
    let hlen = rec.u24()? as usize;
    let mut h = Reader(rec.take(hlen)?);
    h.skip(2 + 32)?; // client version, random
    let sid = h.u8()? as usize;
    h.skip(sid)?;
    let cs = h.u16()? as usize;
    h.skip(cs)?;
    let comp = h.u8()? as usize;
    h.skip(comp)?;
    if h.0.is_empty() {
        return Ok(None);
    }
    let ext_len = h.u16()? as usize;
    let mut ext = Reader(h.take(ext_len)?);
    while !ext.0.is_empty() {
        let typ = ext.u16()?;
        let len = ext.u16()? as usize;
        let body = ext.take(len)?;
        if typ == 0 {
            let mut b = Reader(body);
            let list_len = b.u16()? as usize;
            let mut list = Reader(b.take(list_len)?);
            while !list.0.is_empty() {
                let name_type = list.u8()?;
                let n = list.u16()? as usize;
                let name = list.take(n)?;
                if name_type == 0 {
                    let s = std::str::from_utf8(name).map_err(|_| SniError::NotTls)?;
                    return Ok(Some(s.to_ascii_lowercase()));
                }
            }
        }
    }
    Ok(None)
}

/// Total length of the first TLS record, once its 5-byte header is available.
pub fn record_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 5 {
        return None;
    }
    Some(5 + u16::from_be_bytes([buf[3], buf[4]]) as usize)
}

#[derive(Debug, PartialEq, Eq)]
pub enum SniError {
    NotTls,
    Truncated,
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SniError> {
        if self.0.len() < n {
            return Err(SniError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn skip(&mut self, n: usize) -> Result<(), SniError> {
        self.take(n).map(|_| ())
    }
    fn u8(&mut self) -> Result<u8, SniError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, SniError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Result<u32, SniError> {
        let b = self.take(3)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello with SNI `a.test`.
    fn hello(sni: Option<&str>) -> Vec<u8> {
        let mut ext = Vec::new();
        if let Some(name) = sni {
            let n = name.as_bytes();
            let mut list = vec![0u8];
            list.extend((n.len() as u16).to_be_bytes());
            list.extend(n);
            let mut body = (list.len() as u16).to_be_bytes().to_vec();
            body.extend(list);
            ext.extend(0u16.to_be_bytes());
            ext.extend((body.len() as u16).to_be_bytes());
            ext.extend(body);
        }
        let mut h = vec![3, 3];
        h.extend([0u8; 32]);
        h.push(0); // session id
        h.extend(2u16.to_be_bytes());
        h.extend([0x13, 0x01]);
        h.push(1);
        h.push(0);
        h.extend((ext.len() as u16).to_be_bytes());
        h.extend(ext);
        let mut hs = vec![1];
        hs.extend(&(h.len() as u32).to_be_bytes()[1..]);
        hs.extend(h);
        let mut rec = vec![0x16, 3, 1];
        rec.extend((hs.len() as u16).to_be_bytes());
        rec.extend(hs);
        rec
    }

    #[test]
    fn sni_is_read_from_a_client_hello() {
        let h = hello(Some("A.Test"));
        assert_eq!(record_len(&h), Some(h.len()));
        assert_eq!(parse_sni(&h), Ok(Some("a.test".to_string())));
        assert_eq!(parse_sni(&hello(None)), Ok(None));
    }

    #[test]
    fn plain_text_and_truncation_are_errors() {
        assert_eq!(parse_sni(b"GET / HTTP/1.1\r\n"), Err(SniError::NotTls));
        let h = hello(Some("a.test"));
        assert_eq!(parse_sni(&h[..20]), Err(SniError::Truncated));
    }
}
