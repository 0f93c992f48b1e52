//! Access log in Kuma's MeshAccessLog default formats (operations.md §4), one line per HTTP
//! request and per TCP connection.
//!
//! Lines are formatted on the request's task and handed to a dedicated writer thread through
//! a bounded channel with `try_send`: a slow disk or a blocked stdout drops lines (counted in
//! `meshgate_access_log_dropped_total`) instead of stalling requests.
//!
//! The target is opened by [`init`] before the server starts (so a bad path fails start-up),
//! but the writer thread is started by the [`AccessLogWriter`] background service: threads
//! started before Pingora daemonizes (`-d`) do not survive the fork.

use crate::admin::metrics::METRICS;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Mutex;
use std::sync::OnceLock;

const QUEUE: usize = 16 * 1024;

static SINK: OnceLock<SyncSender<String>> = OnceLock::new();

type Output = Box<dyn Write + Send>;

/// The receiving end and the opened target, waiting for the writer thread.
static PENDING: Mutex<Option<(Receiver<String>, Output)>> = Mutex::new(None);

/// Where lines go: `off`, `stdout`, or a file path (appended to).
pub fn init(target: &str) -> std::io::Result<()> {
    if target == "off" || target.is_empty() {
        return Ok(());
    }
    let out: Output = if target == "stdout" {
        Box::new(std::io::stdout())
    } else {
        Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(target)?,
        )
    };
    let (tx, rx) = sync_channel::<String>(QUEUE);
    if let Ok(mut pending) = PENDING.lock() {
        *pending = Some((rx, out));
    }
    let _ = SINK.set(tx);
    Ok(())
}

fn write_lines(rx: Receiver<String>, mut out: Output) {
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(line.as_bytes());
        // Flush once the queue is drained, so bursts are written together.
        while let Ok(more) = rx.try_recv() {
            let _ = out.write_all(more.as_bytes());
        }
        let _ = out.flush();
    }
}

/// Starts the writer thread inside the running (possibly daemonized) server.
pub struct AccessLogWriter;

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for AccessLogWriter {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let pending = PENDING.lock().ok().and_then(|mut p| p.take());
        if let Some((rx, out)) = pending {
            let spawned = std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || write_lines(rx, out));
            if let Err(e) = spawned {
                log::error!("cannot start the access log writer: {e}");
            }
        }
        // SIGUSR1: MeshAccessLog files are reopened (logrotate), as `POST /reopen_logs` does.
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            return;
        };
        loop {
            tokio::select! {
                got = usr1.recv() => match got {
                    Some(()) => crate::runtime::log_sinks::reopen_all(),
                    None => return,
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}

pub fn enabled() -> bool {
    SINK.get().is_some()
}

fn emit(line: String) {
    if let Some(tx) = SINK.get() {
        if let Err(TrySendError::Full(_)) = tx.try_send(line) {
            METRICS.access_log_dropped.inc();
        }
    }
}

fn start_time() -> String {
    timestamp(std::time::SystemTime::now())
}

/// RFC 3339 in UTC with milliseconds, like Envoy's `%START_TIME%`.
pub fn timestamp(at: std::time::SystemTime) -> String {
    let mut out = String::with_capacity(24);
    append_timestamp(at, &mut out);
    out
}

/// [`timestamp`], appended to `out`. Date and time of day are formatted once per second on
/// each thread; a log line in the same second copies them.
pub fn append_timestamp(at: std::time::SystemTime, out: &mut String) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 19])> =
            const { std::cell::Cell::new((u64::MAX, [0; 19])) };
    }
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let second = SECOND.with(|cached| {
        let (at_second, text) = cached.get();
        if at_second == secs {
            return text;
        }
        let text = date_and_time(secs);
        cached.set((secs, text));
        text
    });
    // ASCII digits and separators only.
    out.push_str(std::str::from_utf8(&second).unwrap_or_default());
    let ms = since.subsec_millis();
    out.push('.');
    for digit in [ms / 100, ms / 10 % 10, ms % 10] {
        out.push(char::from(b'0' + digit as u8));
    }
    out.push('Z');
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time.
fn date_and_time(secs: u64) -> [u8; 19] {
    let secs = secs as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let text = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
    );
    let mut out = [b'0'; 19];
    let n = text.len().min(19);
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    out
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

pub struct HttpRecord<'a> {
    pub mesh: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub protocol: &'a str,
    pub status: u16,
    pub flags: &'a str,
    pub bytes_received: usize,
    pub bytes_sent: usize,
    pub duration_ms: u128,
    pub forwarded_for: &'a str,
    pub user_agent: &'a str,
    pub trace_id: &'a str,
    pub request_id: &'a str,
    pub authority: &'a str,
    pub source_service: &'a str,
    pub destination_service: &'a str,
    pub source_address: &'a str,
    pub upstream_host: &'a str,
}

/// Kuma's default HTTP format.
pub fn http(r: &HttpRecord<'_>) {
    if !enabled() {
        return;
    }
    emit(format!(
        "[{}] {} \"{} {} {}\" {} {} {} {} {} - \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" \"{}\"\n",
        start_time(),
        r.mesh,
        r.method,
        r.path,
        r.protocol,
        r.status,
        dash(r.flags),
        r.bytes_received,
        r.bytes_sent,
        r.duration_ms,
        dash(r.forwarded_for),
        dash(r.user_agent),
        dash(r.trace_id),
        dash(r.request_id),
        dash(r.authority),
        r.source_service,
        dash(r.destination_service),
        r.source_address,
        dash(r.upstream_host),
    ));
}

pub struct TcpRecord<'a> {
    pub mesh: &'a str,
    pub flags: &'a str,
    pub source_address: &'a str,
    pub source_service: &'a str,
    pub upstream_host: &'a str,
    pub destination_service: &'a str,
    pub duration_ms: u128,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// Kuma's default TCP format.
pub fn tcp(r: &TcpRecord<'_>) {
    if !enabled() {
        return;
    }
    emit(format!(
        "[{}] {} {} {}({})->{}({}) took {}ms, sent {} bytes, received: {} bytes\n",
        start_time(),
        dash(r.flags),
        r.mesh,
        r.source_address,
        r.source_service,
        dash(r.upstream_host),
        dash(r.destination_service),
        r.duration_ms,
        r.bytes_sent,
        r.bytes_received,
    ));
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn timestamps_are_rfc3339_with_milliseconds_across_seconds() {
        use super::timestamp;
        use std::time::{Duration, UNIX_EPOCH};
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        // The same second twice (the cached date), another, then the first again.
        assert_eq!(timestamp(at(1_700_000_000_123)), "2023-11-14T22:13:20.123Z");
        assert_eq!(timestamp(at(1_700_000_000_007)), "2023-11-14T22:13:20.007Z");
        assert_eq!(timestamp(at(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(at(1_700_000_000_999)), "2023-11-14T22:13:20.999Z");
        assert_eq!(timestamp(at(951_782_400_050)), "2000-02-29T00:00:00.050Z");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
    }
}
