//! The one wall clock of pnpr: milliseconds since the Unix epoch, the unit of
//! every stored timestamp (metadata rows, tokens, package indexes).
//!
//! A leaf crate with no dependencies so every crate — including `pnpr-auth`,
//! which must stay free of the storage and async stacks — reads time the same
//! way. Invariant: never panics; a clock before the epoch reads as 0 and one
//! beyond `i64` saturates.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_plausible_present() {
        let a = super::now_ms();
        let b = super::now_ms();
        // 2020-01-01 in ms: anything earlier means a broken conversion.
        assert!(a > 1_577_836_800_000);
        assert!(b >= a);
    }
}
