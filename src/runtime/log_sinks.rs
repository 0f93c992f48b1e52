//! Where MeshAccessLog lines go (spec §11.1): a file (appended to, reopened on request for
//! logrotate) or a TCP collector (one line per entry, reconnecting, lines dropped while it is
//! down). Each sink is a thread fed through a bounded queue: the request path only
//! `try_send`s, and a full queue drops the line (`meshgate_access_log_dropped_total`). The
//! thread starts with the first line (a `--check` run opens nothing) and ends when no
//! snapshot holds the sink any more.
//!
//! The writer is never woken per line: it sleeps [`FLUSH_EVERY`], then writes everything
//! queued with one `write`. Woken per line (the first design), every request paid a futex
//! wake and the writer a `write(2)` per line, on the same two cores as the proxy: the Json
//! file log cost 21 % of mg10000's requests/s. Envoy batches the same way (its file flush
//! interval); a line here reaches the file within 50 ms, and [`flush_all`] writes what is
//! queued before the process exits.

use crate::admin::metrics::METRICS;
use crate::snapshot::access_log::LogSink;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Lines queued per sink before new ones are dropped: 16,384 lines every 50 ms is ~320,000
/// lines per second per sink.
const QUEUE: usize = 16 * 1024;

/// How long a line may wait before it is written.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// A batch buffer that grew past this (a burst) is given back after it is written.
const KEEP_BATCH: usize = 1 << 20;

/// Bumped to make every file sink reopen its file (SIGUSR1, `POST /reopen_logs`).
static REOPEN: AtomicU64 = AtomicU64::new(0);

/// Every writer thread, for [`flush_all`] to wake (touched when a sink starts and at exit).
static WRITERS: Mutex<Vec<std::thread::Thread>> = Mutex::new(Vec::new());
/// Set by [`flush_all`]; each writer counts itself in `FLUSHED` after its next batch.
static STOPPING: AtomicBool = AtomicBool::new(false);
static FLUSHED: AtomicUsize = AtomicUsize::new(0);

/// Asks every file sink to reopen its file before its next write.
pub fn reopen_all() {
    REOPEN.fetch_add(1, Ordering::Relaxed);
}

/// Writes what every sink has queued (the process is about to exit), waiting at most
/// `limit`.
pub fn flush_all(limit: Duration) {
    STOPPING.store(true, Ordering::SeqCst);
    let writers = match WRITERS.lock() {
        Ok(w) => w.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    for w in &writers {
        w.unpark();
    }
    let deadline = Instant::now() + limit;
    while FLUSHED.load(Ordering::SeqCst) < writers.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    File(String),
    Tcp(String),
}

#[derive(Debug)]
pub struct Sink {
    target: Target,
    tx: OnceLock<SyncSender<String>>,
}

impl Sink {
    pub fn new(target: Target) -> Sink {
        Sink {
            target,
            tx: OnceLock::new(),
        }
    }

    fn sender(&self) -> &SyncSender<String> {
        self.tx.get_or_init(|| {
            let (tx, rx) = sync_channel(QUEUE);
            let target = self.target.clone();
            let spawned = std::thread::Builder::new()
                .name("access-log-sink".into())
                .spawn(move || {
                    let output: Box<dyn Output> = match target {
                        Target::File(path) => Box::new(FileOutput::new(path)),
                        Target::Tcp(address) => Box::new(TcpOutput::new(&address)),
                    };
                    run(rx, output)
                });
            match spawned {
                Ok(handle) => match WRITERS.lock() {
                    Ok(mut w) => w.push(handle.thread().clone()),
                    Err(poisoned) => poisoned.into_inner().push(handle.thread().clone()),
                },
                Err(e) => log::error!("cannot start an access log writer: {e}"),
            }
            tx
        })
    }
}

impl LogSink for Sink {
    fn send(&self, line: String) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.sender().try_send(line)
        {
            METRICS.access_log_dropped.inc();
        }
    }
}

/// Where a writer puts a batch of whole lines; `false` when the lines were lost.
trait Output: Send {
    fn write_batch(&mut self, batch: &[u8]) -> bool;
}

/// The writer thread: every [`FLUSH_EVERY`] (or when woken to exit), everything queued in
/// one write.
fn run(rx: Receiver<String>, mut output: Box<dyn Output>) {
    let mut batch: Vec<u8> = Vec::new();
    let mut counted_flush = false;
    loop {
        std::thread::park_timeout(FLUSH_EVERY);
        let stopping = STOPPING.load(Ordering::SeqCst);
        let mut lines = 0u64;
        let gone = loop {
            match rx.try_recv() {
                Ok(line) => {
                    batch.extend_from_slice(line.as_bytes());
                    lines += 1;
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        if lines > 0 && !output.write_batch(&batch) {
            METRICS.access_log_dropped.inc_by(lines);
        }
        batch.clear();
        if batch.capacity() > KEEP_BATCH {
            batch = Vec::new();
        }
        if stopping && !counted_flush {
            counted_flush = true;
            FLUSHED.fetch_add(1, Ordering::SeqCst);
        }
        if gone {
            if !counted_flush {
                // Not waited for any more: counts as flushed for a `flush_all` to come.
                FLUSHED.fetch_add(1, Ordering::SeqCst);
            }
            return;
        }
    }
}

struct FileOutput {
    path: String,
    file: Option<std::fs::File>,
    seen: u64,
}

impl FileOutput {
    fn new(path: String) -> FileOutput {
        let file = open(&path);
        FileOutput {
            path,
            file,
            seen: REOPEN.load(Ordering::Relaxed),
        }
    }
}

impl Output for FileOutput {
    fn write_batch(&mut self, batch: &[u8]) -> bool {
        let now = REOPEN.load(Ordering::Relaxed);
        if now != self.seen || self.file.is_none() {
            self.seen = now;
            self.file = open(&self.path);
        }
        self.file
            .as_mut()
            .is_some_and(|f| f.write_all(batch).is_ok())
    }
}

fn open(path: &str) -> Option<std::fs::File> {
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(f) => Some(f),
        Err(e) => {
            log::warn!("access log {path}: {e}; lines are dropped until it can be opened");
            None
        }
    }
}

struct TcpOutput {
    address: String,
    conn: Option<std::net::TcpStream>,
    retry_at: Instant,
}

impl TcpOutput {
    fn new(address: &str) -> TcpOutput {
        TcpOutput {
            address: address
                .strip_prefix("tcp://")
                .unwrap_or(address)
                .to_string(),
            conn: None,
            retry_at: Instant::now(),
        }
    }
}

impl Output for TcpOutput {
    fn write_batch(&mut self, batch: &[u8]) -> bool {
        if self.conn.is_none() && Instant::now() >= self.retry_at {
            self.conn = connect(&self.address);
            if self.conn.is_none() {
                // Lines are dropped for a second before the next try.
                self.retry_at = Instant::now() + Duration::from_secs(1);
            }
        }
        let sent = self
            .conn
            .as_mut()
            .is_some_and(|c| c.write_all(batch).is_ok());
        if !sent {
            self.conn = None;
        }
        sent
    }
}

fn connect(address: &str) -> Option<std::net::TcpStream> {
    use std::net::ToSocketAddrs;
    let addr = address.to_socket_addrs().ok()?.next()?;
    let c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    let _ = c.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = c.set_nodelay(true);
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    #[test]
    fn a_file_sink_appends_and_reopens_after_rotation() {
        let dir = std::env::temp_dir().join(format!("mg-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("a.log");
        let sink = Sink::new(Target::File(path.to_string_lossy().into()));
        sink.send("one\n".into());
        let wait = |p: &std::path::Path, want: &str| {
            for _ in 0..100 {
                if std::fs::read_to_string(p).unwrap_or_default() == want {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            false
        };
        assert!(wait(&path, "one\n"));
        let rotated = dir.join("a.log.1");
        std::fs::rename(&path, &rotated).expect("rotate");
        reopen_all();
        sink.send("two\n".into());
        assert!(wait(&path, "two\n"), "the new file gets the next line");
        assert!(wait(&rotated, "one\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_tcp_sink_sends_lines_to_the_collector() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let sink = Sink::new(Target::Tcp(addr));
        sink.send("hello\n".into());
        let (c, _) = l.accept().expect("accept");
        let mut line = String::new();
        BufReader::new(c).read_line(&mut line).expect("line");
        assert_eq!(line, "hello\n");
    }
}
