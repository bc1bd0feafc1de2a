//! Verdaccio-style durations (`30s`, `2m`, `1h 30m`, `500ms`, bare numbers = seconds)
//! and sizes (`50mb`, `512kb`, `1048576`).
//!
//! Invariant: every accepted duration is at most 100 years, so callers may add it to an
//! `Instant` or `SystemTime` without overflow panics; every size fits in `u64`.

use std::time::Duration;

use serde_yaml_ng::Value;

/// Upper bound for any configured duration (100 years of 365 days).
pub(crate) const MAX_DURATION_SECS: f64 = 100.0 * 365.0 * 86_400.0;

/// A duration from a YAML scalar: a number means seconds, a string is parsed by
/// [`parse_duration`].
pub(crate) fn duration_value(v: &Value) -> Result<Duration, String> {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(secs) => secs_to_duration(secs),
            None => Err("not a number".to_owned()),
        },
        Value::String(s) => parse_duration(s),
        _ => Err("expected a duration such as 30s, 2m, 1h 30m, or a number of seconds".to_owned()),
    }
}

/// Parses `<number><unit>` groups separated by optional whitespace and sums them.
/// Units (case-sensitive, as Verdaccio): `ms`, `s` or none (seconds), `m`, `h`, `d`,
/// `w`, `M` (30 days), `y` (365 days).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (expected e.g. 30s, 2m, 1h 30m, 500ms)");
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    let mut total_secs = 0.0_f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() || !num.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let factor = match unit {
            "ms" => 0.001,
            "" | "s" => 1.0,
            "m" => 60.0,
            "h" => 3_600.0,
            "d" => 86_400.0,
            "w" => 7.0 * 86_400.0,
            "M" => 30.0 * 86_400.0,
            "y" => 365.0 * 86_400.0,
            _ => return Err(bad()),
        };
        total_secs += value * factor;
    }
    secs_to_duration(total_secs)
}

fn secs_to_duration(secs: f64) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err("must be a non-negative duration".to_owned());
    }
    if secs > MAX_DURATION_SECS {
        return Err("duration too large (at most 100 years)".to_owned());
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// A byte size from a YAML scalar: a non-negative integer means bytes, a string is
/// parsed by [`parse_size`].
pub(crate) fn size_value(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| "must be a non-negative whole number of bytes".to_owned()),
        Value::String(s) => parse_size(s),
        _ => Err("expected a size such as 50mb, 512kb or a number of bytes".to_owned()),
    }
}

/// Parses `<number>[ ]<unit>` with 1024-based, case-insensitive units `b`, `kb`, `mb`,
/// `gb`, `tb` (also `k`, `m`, `g`, `t`, `kib`, `mib`, `gib`, `tib`).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {s:?} (expected e.g. 50mb, 512kb, 1gb or bytes)");
    let text = s.trim().to_ascii_lowercase();
    let num_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let num = &text[..num_len];
    if num.is_empty() || !num.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad());
    }
    let unit = text[num_len..].trim();
    let factor: u64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    if let Ok(whole) = num.parse::<u64>() {
        return whole
            .checked_mul(factor)
            .ok_or_else(|| "size too large".to_owned());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    #[allow(clippy::cast_precision_loss)] // factor <= 2^40 is exact in f64
    let bytes = (value * factor as f64).floor();
    // u64::MAX as f64 rounds up to 2^64, so `<` keeps the cast below in range.
    #[allow(clippy::cast_precision_loss)]
    let limit = u64::MAX as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= limit {
        return Err("size too large".to_owned());
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // range checked above
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests;
