//! `x-forwarded-for`: the client address appended as Envoy does with `use_remote_address`.
//! Built for every proxied request, so it is formatted by hand into one exactly sized buffer.

use bytes::Bytes;
use http::header::{HeaderValue, InvalidHeaderValue};
use std::net::IpAddr;

/// `x-forwarded-for` with `client` appended, built in one exactly sized buffer (the request
/// path formats it for every proxied request; a `Bytes` made from a full `Vec` needs no
/// second allocation).
pub fn forwarded_for(
    previous: Option<&[u8]>,
    client: IpAddr,
) -> Result<HeaderValue, InvalidHeaderValue> {
    let mut text = IpText::default();
    text.format(client);
    let client = text.as_bytes();
    let mut buf = Vec::with_capacity(previous.map_or(0, |p| p.len() + 2) + client.len());
    if let Some(p) = previous {
        buf.extend_from_slice(p);
        buf.extend_from_slice(b", ");
    }
    buf.extend_from_slice(client);
    HeaderValue::from_maybe_shared(Bytes::from(buf))
}

/// An IP address as text, on the stack. IPv4 is written by hand: `Display` goes through
/// `core::fmt` (padding, a formatter per octet), several times the work for 15 bytes.
struct IpText {
    buf: [u8; 45],
    len: usize,
}

impl Default for IpText {
    fn default() -> Self {
        IpText {
            buf: [0; 45],
            len: 0,
        }
    }
}

impl IpText {
    fn format(&mut self, ip: IpAddr) {
        use std::io::Write;
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.push(b'.');
                    }
                    if octet >= 100 {
                        self.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        self.push(b'0' + octet / 10 % 10);
                    }
                    self.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                // At most 45 bytes (`ffff:…:255.255.255.255`), so the write cannot fail.
                let mut rest = &mut self.buf[..];
                let _ = write!(rest, "{v6}");
                let left = rest.len();
                self.len = self.buf.len() - left;
            }
        }
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_formats_like_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.199.255",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.128",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            let value = forwarded_for(None, addr).unwrap();
            assert_eq!(value.to_str().unwrap(), addr.to_string());
        }
        let appended = forwarded_for(Some(b"203.0.113.7"), "10.0.0.1".parse().unwrap());
        assert_eq!(appended.unwrap(), "203.0.113.7, 10.0.0.1");
    }
}
