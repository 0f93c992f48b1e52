//! A small write buffer for downstream connections meshgate accepts itself.
//!
//! Pingora's own listeners give every accepted stream a 1,460-byte write buffer (one MSS,
//! `DEFAULT_L4_WRITE_BUFFER_SIZE`), so a response head and a small body leave in one
//! `send`. The constructor that does it is crate-private, and the streams meshgate's
//! run-time listeners build with `Stream::from(TcpStream)` write through unbuffered: every
//! response cost a second `sendto` (and over TLS a second record). This buffer restores
//! Pingora's behaviour: writes that fit are collected, anything larger goes straight
//! through after what is pending, and `flush`/`shutdown` push the rest out. Pingora flushes
//! at the end of every response head without a body, every body and every 1xx, exactly as
//! it must for its own buffered streams.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// Pingora's `DEFAULT_L4_WRITE_BUFFER_SIZE`.
pub const CAPACITY: usize = 1460;

#[derive(Debug, Default)]
pub struct Coalescer {
    pending: Vec<u8>,
    /// How much of `pending` has been written out.
    written: usize,
}

impl Coalescer {
    pub fn has_pending(&self) -> bool {
        self.written < self.pending.len()
    }

    /// Writes out everything pending (not flushing `inner` itself).
    pub fn poll_drain<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            match Pin::new(&mut *inner).poll_write(cx, &self.pending[self.written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "downstream accepted no bytes",
                    )))
                }
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// `AsyncWrite::poll_write` through the buffer.
    pub fn poll_write<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.len() + data.len() > CAPACITY {
            match self.poll_drain(inner, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if data.len() >= CAPACITY {
            return Pin::new(inner).poll_write(cx, data);
        }
        self.pending.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    /// `AsyncWrite::poll_write_vectored` through the buffer: slices that fit together are
    /// copied in whole; otherwise the pending bytes go out first and the slices are passed on.
    pub fn poll_write_vectored<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.pending.len() + total > CAPACITY {
            match self.poll_drain(inner, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        if total >= CAPACITY {
            return Pin::new(inner).poll_write_vectored(cx, bufs);
        }
        for b in bufs {
            self.pending.extend_from_slice(b);
        }
        Poll::Ready(Ok(total))
    }

    pub fn poll_flush<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        match self.poll_drain(inner, cx) {
            Poll::Ready(Ok(())) => Pin::new(inner).poll_flush(cx),
            other => other,
        }
    }

    pub fn poll_shutdown<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        match self.poll_drain(inner, cx) {
            Poll::Ready(Ok(())) => Pin::new(inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records every write call it receives.
    #[derive(Default, Clone)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.lock().expect("recorder").push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn cx() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    #[test]
    fn small_writes_leave_in_one_write_at_flush() {
        let rec = Recorder::default();
        let mut inner = rec.clone();
        let mut c = Coalescer::default();
        let mut cx = cx();
        assert!(matches!(
            c.poll_write(&mut inner, &mut cx, b"HTTP/1.1 200 OK\r\n\r\n"),
            Poll::Ready(Ok(19))
        ));
        assert!(matches!(
            c.poll_write(&mut inner, &mut cx, b"ok\n"),
            Poll::Ready(Ok(3))
        ));
        assert!(
            rec.0.lock().expect("recorder").is_empty(),
            "nothing written before flush"
        );
        assert!(matches!(
            c.poll_flush(&mut inner, &mut cx),
            Poll::Ready(Ok(()))
        ));
        let writes = rec.0.lock().expect("recorder").clone();
        assert_eq!(writes, vec![b"HTTP/1.1 200 OK\r\n\r\nok\n".to_vec()]);
    }

    #[test]
    fn large_writes_go_through_in_order() {
        let rec = Recorder::default();
        let mut inner = rec.clone();
        let mut c = Coalescer::default();
        let mut cx = cx();
        let big = vec![b'x'; CAPACITY * 2];
        assert!(matches!(
            c.poll_write(&mut inner, &mut cx, b"head"),
            Poll::Ready(Ok(4))
        ));
        assert!(
            matches!(c.poll_write(&mut inner, &mut cx, &big), Poll::Ready(Ok(n)) if n == big.len())
        );
        let writes = rec.0.lock().expect("recorder").clone();
        assert_eq!(writes, vec![b"head".to_vec(), big]);
        assert!(!c.has_pending());
    }
}
