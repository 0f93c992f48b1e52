//! Reading Kuma's value formats: shared by the checks (which word the error) and the
//! lowering (which keeps the value), so both read a value the same way.

use crate::model::gateway::DataSource;
use crate::resources::gateway::DataSource as RawDataSource;
use base64::Engine;
use std::time::Duration;

/// A Go duration (`300ms`, `1.5s`, `2m`, `1h30m`; `0` alone is zero; a leading `-` makes it
/// negative, returned as `Err(duration)` so callers can word "must not be negative").
pub fn go_duration(s: &str) -> Option<Result<Duration, Duration>> {
    let s = s.trim();
    let (negative, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let d = unsigned_go_duration(rest)?;
    Some(if negative && !d.is_zero() {
        Err(d)
    } else {
        Ok(d)
    })
}

fn unsigned_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// A Kuma percentage: an integer or a decimal string (`"50.5"`).
pub fn percentage(v: &serde_norway::Value) -> Option<f64> {
    match v {
        serde_norway::Value::Number(n) => n.as_f64(),
        serde_norway::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|p| p.is_finite())
}

/// A port number Kuma accepts (1–65535).
pub fn port(p: i64) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p > 0)
}

/// The bytes of an `inline` datasource.
pub fn base64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

/// A datasource with exactly one source set.
pub fn datasource(ds: &RawDataSource) -> Option<DataSource> {
    match (&ds.secret, &ds.file, &ds.inline, &ds.inline_string) {
        (Some(s), None, None, None) => Some(DataSource::Secret(s.clone())),
        (None, Some(f), None, None) => Some(DataSource::File(f.clone())),
        (None, None, Some(i), None) => base64(i).map(DataSource::Inline),
        (None, None, None, Some(s)) => Some(DataSource::Inline(s.clone().into_bytes())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("2s"), Some(Ok(Duration::from_secs(2))));
        assert_eq!(go_duration("500ms"), Some(Ok(Duration::from_millis(500))));
        assert_eq!(go_duration("1m30s"), Some(Ok(Duration::from_secs(90))));
        assert_eq!(go_duration("0"), Some(Ok(Duration::ZERO)));
        assert_eq!(go_duration("-1s"), Some(Err(Duration::from_secs(1))));
        assert_eq!(go_duration("2"), None);
        assert_eq!(go_duration("s"), None);
        assert_eq!(go_duration(""), None);
    }

    #[test]
    fn percentages() {
        let v = |s: &str| serde_norway::from_str::<serde_norway::Value>(s).expect("yaml");
        assert_eq!(percentage(&v("50")), Some(50.0));
        assert_eq!(percentage(&v("'50.5'")), Some(50.5));
        assert_eq!(percentage(&v("abc")), None);
        assert_eq!(percentage(&v("[1]")), None);
    }
}
