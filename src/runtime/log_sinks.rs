//! Where MeshAccessLog lines go (spec §11.1): a file (appended to, reopened on request for
//! logrotate) or a TCP collector (one line per entry, reconnecting, lines dropped while it is
//! down). Each sink is a thread fed through a bounded queue: the request path only
//! `try_send`s, and a full queue drops the line (`meshgate_access_log_dropped_total`). The
//! thread starts with the first line (a `--check` run opens nothing) and ends when no
//! snapshot holds the sink any more.

use crate::admin::metrics::METRICS;
use crate::snapshot::access_log::LogSink;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lines queued per sink before new ones are dropped.
const QUEUE: usize = 16 * 1024;

/// Bumped to make every file sink reopen its file (SIGUSR1, `POST /reopen_logs`).
static REOPEN: AtomicU64 = AtomicU64::new(0);

/// Asks every file sink to reopen its file before its next write.
pub fn reopen_all() {
    REOPEN.fetch_add(1, Ordering::Relaxed);
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
                .spawn(move || match target {
                    Target::File(path) => write_file(&path, rx),
                    Target::Tcp(address) => write_tcp(&address, rx),
                });
            if let Err(e) = spawned {
                log::error!("cannot start an access log writer: {e}");
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

fn write_file(path: &str, rx: Receiver<String>) {
    let mut seen = REOPEN.load(Ordering::Relaxed);
    let mut file = open(path);
    while let Ok(line) = rx.recv() {
        let now = REOPEN.load(Ordering::Relaxed);
        if now != seen || file.is_none() {
            seen = now;
            file = open(path);
        }
        let Some(f) = file.as_mut() else {
            METRICS.access_log_dropped.inc();
            continue;
        };
        let _ = f.write_all(line.as_bytes());
        while let Ok(more) = rx.try_recv() {
            let _ = f.write_all(more.as_bytes());
        }
        let _ = f.flush();
    }
}

fn write_tcp(address: &str, rx: Receiver<String>) {
    let address = address
        .strip_prefix("tcp://")
        .unwrap_or(address)
        .to_string();
    let mut conn: Option<std::net::TcpStream> = None;
    let mut retry_at = Instant::now();
    while let Ok(line) = rx.recv() {
        if conn.is_none() && Instant::now() >= retry_at {
            conn = connect(&address);
            if conn.is_none() {
                // Lines are dropped for a second before the next try.
                retry_at = Instant::now() + Duration::from_secs(1);
            }
        }
        let sent = conn
            .as_mut()
            .is_some_and(|c| c.write_all(line.as_bytes()).is_ok());
        if !sent {
            conn = None;
            METRICS.access_log_dropped.inc();
        }
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
