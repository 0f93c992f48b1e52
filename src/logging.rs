//! Diagnostic logs on stderr (level from `RUST_LOG`, `info` by default), in one of three
//! shapes:
//! - text, with a timestamp, for a terminal;
//! - under journald (`JOURNAL_STREAM` set, as systemd sets it), text with the sd-daemon
//!   priority prefix (`<3>` error … `<7>` trace) and no timestamp (the journal keeps its
//!   own), so `journalctl -p warning` filters by level;
//! - `--log-format json`: one JSON object per line (`time`, `level`, `target`, `message`) for
//!   log shippers.

use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init(format: LogFormat) {
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    match (format, journald) {
        (LogFormat::Json, _) => {
            b.format(|buf, record| {
                let line = serde_json::json!({
                    "time": crate::admin::access_log::timestamp(std::time::SystemTime::now()),
                    "level": record.level().as_str(),
                    "target": record.target(),
                    "message": record.args().to_string(),
                });
                writeln!(buf, "{line}")
            });
        }
        (LogFormat::Text, true) => {
            b.format(|buf, record| {
                let priority = match record.level() {
                    log::Level::Error => 3,
                    log::Level::Warn => 4,
                    log::Level::Info => 6,
                    log::Level::Debug | log::Level::Trace => 7,
                };
                writeln!(buf, "<{priority}>{}: {}", record.target(), record.args())
            });
        }
        (LogFormat::Text, false) => {}
    }
    b.init();
}
