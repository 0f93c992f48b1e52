//! Where a chunked request body ends, found byte for byte the way Pingora's HTTP/1 body
//! reader finds it (pingora-core 0.9 `BodyReader`: chunk-size lines through
//! `httparse::parse_chunk_size`, a CRLF after each chunk's data, then everything up to the
//! first CRLF CRLF counted from the last chunk's line end, trailers being discarded).
//!
//! The head guard uses it to tell a chunked body's bytes from the next pipelined request's:
//! it checks that request's head and holds it back while the one before is proxied
//! (`guard.rs`). Agreeing with Pingora matters more than agreeing with RFC 9112: a guard that
//! saw the body end earlier than Pingora would hold back bytes Pingora still reads as body.
//! Where Pingora's reader fails (and closes the connection), [`ChunkedBody::feed`] says
//! [`Chunked::Invalid`] and the guard stops following the connection.
//!
//! The tests feed generated bodies, some with a framing byte changed, to Pingora's own HTTP/1
//! session as well: a Pingora upgrade that reads chunks differently fails them.

/// Longest chunk-size line (size and extensions) Pingora buffers (`PARTIAL_CHUNK_HEAD_LIMIT`).
const SIZE_LINE_LIMIT: usize = 8 * 1024;
/// Most trailer bytes Pingora reads after the last chunk (`TRAILER_SIZE_LIMIT`).
const TRAILER_LIMIT: usize = 64 * 1024;

/// The position inside a chunked body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkedBody {
    /// In a chunk-size line: `httparse::parse_chunk_size`'s state.
    SizeLine {
        size: u64,
        digits: u8,
        /// Hex digits may still follow.
        in_size: bool,
        /// After `;`: any byte but CR is an extension byte.
        in_ext: bool,
        /// A CR was seen; an LF must follow.
        cr: bool,
        len: usize,
    },
    /// In a chunk's data: this many bytes left.
    Data(u64),
    /// After a chunk's data: this many bytes of its CRLF seen.
    DataEnd(u8),
    /// After the last chunk: how much of CRLF CRLF has been seen (the last chunk's line end
    /// counts as the first CRLF, so a body without trailers ends at the next CRLF), and how
    /// many trailer bytes.
    Trailers { end_read: u8, bytes: usize },
}

/// What [`ChunkedBody::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// All of the bytes belong to the body; it goes on.
    More,
    /// The body ends after this many of the bytes.
    Done(usize),
    /// Framing Pingora's reader refuses.
    Invalid,
}

impl Default for ChunkedBody {
    fn default() -> Self {
        Self::size_line()
    }
}

impl ChunkedBody {
    fn size_line() -> Self {
        ChunkedBody::SizeLine {
            size: 0,
            digits: 0,
            in_size: true,
            in_ext: false,
            cr: false,
            len: 0,
        }
    }

    /// Follows the body through `data`, the next bytes from the client.
    pub fn feed(&mut self, data: &[u8]) -> Chunked {
        let mut pos = 0;
        while pos < data.len() {
            if let ChunkedBody::Data(left) = self {
                // Chunk data is skipped by count, not looked at.
                let take = (*left).min((data.len() - pos) as u64);
                pos += take as usize;
                *left -= take;
                if *left == 0 {
                    *self = ChunkedBody::DataEnd(0);
                }
                continue;
            }
            match self.step(data[pos]) {
                Some(true) => return Chunked::Done(pos + 1),
                Some(false) => pos += 1,
                None => return Chunked::Invalid,
            }
        }
        Chunked::More
    }

    /// One byte outside chunk data: `Some(true)` when it ends the body, `None` when it is
    /// invalid.
    fn step(&mut self, b: u8) -> Option<bool> {
        match self {
            ChunkedBody::SizeLine {
                size,
                digits,
                in_size,
                in_ext,
                cr,
                len,
            } => {
                *len += 1;
                if *len > SIZE_LINE_LIMIT {
                    return None;
                }
                if *cr {
                    if b != b'\n' {
                        return None;
                    }
                    *self = match *size {
                        0 => ChunkedBody::Trailers {
                            end_read: 2,
                            bytes: 0,
                        },
                        n => ChunkedBody::Data(n),
                    };
                    return Some(false);
                }
                // The arms of `httparse::parse_chunk_size`, in its order.
                match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' if *in_size => {
                        if *digits > 15 {
                            return None;
                        }
                        *digits += 1;
                        let value = (b as char).to_digit(16).unwrap_or(0);
                        *size = *size * 16 + u64::from(value);
                    }
                    b'\r' => *cr = true,
                    b';' if !*in_ext => {
                        *in_ext = true;
                        *in_size = false;
                    }
                    b'\t' | b' ' if !*in_ext && !*in_size => {}
                    b'\t' | b' ' if *in_size => *in_size = false,
                    _ if *in_ext => {}
                    _ => return None,
                }
                Some(false)
            }
            ChunkedBody::Data(_) => Some(false),
            ChunkedBody::DataEnd(seen) => match (*seen, b) {
                (0, b'\r') => {
                    *seen = 1;
                    Some(false)
                }
                (1, b'\n') => {
                    *self = Self::size_line();
                    Some(false)
                }
                _ => None,
            },
            ChunkedBody::Trailers { end_read, bytes } => {
                if *end_read % 2 == 1 {
                    // Half a CRLF: only its LF may follow.
                    if b != b'\n' {
                        return None;
                    }
                    *end_read += 1;
                    return Some(*end_read == 4);
                }
                match b {
                    b'\r' => *end_read += 1,
                    b'\n' => return None,
                    _ => {
                        *bytes += 1 + *end_read as usize;
                        *end_read = 0;
                        if *bytes > TRAILER_LIMIT {
                            return None;
                        }
                    }
                }
                Some(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` whole and cut at every position; all must give the same answer.
    fn follow(body: &[u8]) -> Chunked {
        let mut whole = ChunkedBody::default();
        let answer = whole.feed(body);
        for cut in 1..body.len() {
            let mut split = ChunkedBody::default();
            let second = match split.feed(&body[..cut]) {
                Chunked::More => match split.feed(&body[cut..]) {
                    Chunked::Done(n) => Chunked::Done(cut + n),
                    other => other,
                },
                first => first,
            };
            assert_eq!(
                second,
                answer,
                "cut at {cut} of {:?}",
                String::from_utf8_lossy(body)
            );
        }
        answer
    }

    #[test]
    fn a_body_ends_after_its_last_chunk_and_trailers() {
        let body = b"5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(follow(body), Chunked::Done(body.len()));
        // Whatever follows is the next request's.
        let mut next = body.to_vec();
        next.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(follow(&next), Chunked::Done(body.len()));

        let ext_and_trailers =
            b"5;a=\"b\" ; c\r\nhello\r\nA \r\n0123456789\r\n000;x\r\nt: 1\r\nu: 2\r\n\r\n";
        assert_eq!(
            follow(ext_and_trailers),
            Chunked::Done(ext_and_trailers.len())
        );
        // Upper-case hex, sixteen digits at most.
        let upper = b"1F\r\n0123456789abcdef0123456789abcde\r\n0\r\n\r\n";
        assert_eq!(follow(upper), Chunked::Done(upper.len()));
        assert_eq!(follow(b"5\r\nhel"), Chunked::More);
        assert_eq!(follow(b"0\r\nt: 1\r\n"), Chunked::More);
    }

    #[test]
    fn framing_pingora_refuses_is_invalid() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..], // bare LF after the size
            b"5\r\nhelloX\r\n",            // no CRLF after the data
            b"5\r\nhello\n0\r\n\r\n",      // LF alone after the data
            b"g\r\n",                      // not hex
            b"5 5\r\n",                    // digits after a space
            b"00000000000000001\r\n",      // seventeen digits
            b"0\r\n\n",                    // LF alone at the trailers' end
            b"0\r\nt: 1\r\r\n",            // CR without LF in the trailers
        ] {
            assert_eq!(
                follow(bad),
                Chunked::Invalid,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_ext = [b"1;".as_slice(), &[b'x'; SIZE_LINE_LIMIT], b"\r\n"].concat();
        assert_eq!(follow(&long_ext), Chunked::Invalid);
    }

    #[test]
    fn agrees_with_httparse_on_size_lines() {
        for line in [
            &b"5\r\n"[..],
            b"5 \r\n",
            b"5\t;ext\r\n",
            b" 5\r\n",
            b"5;\n;x\r\n",
            b"\r\n",
            b"ffffffffffffffff\r\n",
            b"5;a\rb\r\n",
            b"5 ;a\r\n",
            b"x\r\n",
        ] {
            let mut body = ChunkedBody::default();
            let mine = match (body.feed(line), body) {
                (Chunked::Invalid, _) => None,
                (_, ChunkedBody::Data(n)) => Some(n),
                (_, ChunkedBody::Trailers { .. }) => Some(0),
                (_, other) => panic!("{other:?} after a whole size line"),
            };
            let theirs = match httparse::parse_chunk_size(line) {
                Ok(httparse::Status::Complete((_, n))) => Some(n),
                _ => None,
            };
            assert_eq!(mine, theirs, "{:?}", String::from_utf8_lossy(line));
        }
    }

    /// Where Pingora's own HTTP/1 server session finds the end of `body` behind a chunked
    /// POST head, given every byte and then the client's end of stream: `Some(rest)`, the
    /// bytes it leaves for the next request, or `None` when it fails on them.
    async fn pingora_reads(body: &[u8]) -> Option<Vec<u8>> {
        use pingora::protocols::http::v1::server::HttpSession;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (stream, mut client) = crate::proxy::accepted_stream_pair().await;
        let head: &[u8] = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        client.write_all(&[head, body].concat()).await.ok()?;
        client.shutdown().await.ok()?;
        let mut session = HttpSession::new(stream);
        session.set_pipelining_enabled(true);
        session.read_request().await.ok()??;
        while session.read_body_bytes().await.ok()?.is_some() {}
        session.set_server_keepalive(Some(60));
        let (mut stream, prefix) = session.reuse().await.ok()??.into_parts();
        let mut rest = prefix.map(|p| p.to_vec()).unwrap_or_default();
        stream.read_to_end(&mut rest).await.ok()?;
        Some(rest)
    }

    /// A small deterministic generator (xorshift), so a failure names its case.
    struct Gen(u64);
    impl Gen {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len() as u64) as usize]
        }
    }

    /// A chunked body with sizes in either case and with leading zeros, extensions (quoted
    /// strings, whitespace), trailers, then the next request.
    fn generated_body(g: &mut Gen) -> Vec<u8> {
        let ext = [
            "",
            "",
            ";a",
            ";a=b",
            " ;a=\"x;y\"",
            "\t;k=v;l",
            ";\"\n\"",
            "  ",
        ];
        let mut body = Vec::new();
        for _ in 0..g.below(5) {
            let size = 1 + g.below(300) as usize;
            let zeros = "0".repeat(g.below(3) as usize);
            let hex = if g.below(2) == 0 {
                format!("{zeros}{size:x}")
            } else {
                format!("{zeros}{size:X}")
            };
            body.extend_from_slice(format!("{hex}{}\r\n", g.pick(&ext)).as_bytes());
            // Data bytes are g..z, which no framing byte is.
            body.extend(std::iter::repeat_n(b'g' + g.below(20) as u8, size));
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("{}{}\r\n", g.pick(&["0", "000"]), g.pick(&ext)).as_bytes());
        for _ in 0..g.below(3) {
            body.extend_from_slice(g.pick(&["t: 1\r\n", "x-sum: abc\r\n", "a:\r\n"]).as_bytes());
        }
        body.extend_from_slice(b"\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n");
        body
    }

    /// What the follower makes of `body`, in the terms of [`pingora_reads`].
    fn follower_reads(body: &[u8]) -> Option<Vec<u8>> {
        match ChunkedBody::default().feed(body) {
            Chunked::Done(n) => Some(body[n..].to_vec()),
            // Pingora meets the end of stream before the body's end, or refuses the bytes.
            Chunked::More | Chunked::Invalid => None,
        }
    }

    #[tokio::test]
    async fn ends_bodies_where_pingora_ends_them() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for case in 0..300 {
            let mut body = generated_body(&mut g);
            if case % 2 == 1 {
                // One byte of the framing changed: both must still agree (usually on a
                // refusal). Chunk data is left alone, where any byte is as good as another.
                let framing: Vec<usize> = (0..body.len())
                    .filter(|&i| !(b'g'..=b'z').contains(&body[i]))
                    .collect();
                let at = framing[g.below(framing.len() as u64) as usize];
                body[at] = *b"\r\n ;0aG\t\"x".get(g.below(10) as usize).unwrap_or(&b'x');
            }
            assert_eq!(
                follower_reads(&body),
                pingora_reads(&body).await,
                "case {case}: {:?}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}
