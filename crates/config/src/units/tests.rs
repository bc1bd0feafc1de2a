use std::time::Duration;

use serde_yaml_ng::Value;

use super::{duration_value, parse_duration, parse_size, size_value};

#[test]
fn durations_verdaccio_style() {
    assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
    assert_eq!(
        parse_duration("1w").unwrap(),
        Duration::from_secs(7 * 86_400)
    );
    assert_eq!(
        parse_duration("1M").unwrap(),
        Duration::from_secs(30 * 86_400)
    );
    assert_eq!(
        parse_duration("1y").unwrap(),
        Duration::from_secs(365 * 86_400)
    );
    assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(parse_duration(" 45 ").unwrap(), Duration::from_secs(45));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
}

#[test]
fn durations_rejected() {
    for bad in [
        "",
        "  ",
        "abc",
        "10 minutes",
        "-5s",
        "s",
        ".5s",
        "5x",
        "1h,2m",
        "1e3",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
    }
    assert!(parse_duration("101y").unwrap_err().contains("too large"));
    assert!(parse_duration("99999999999999999999999999999999999d").is_err());
}

#[test]
fn duration_from_yaml_numbers() {
    let v: Value = serde_yaml_ng::from_str("90").unwrap();
    assert_eq!(duration_value(&v).unwrap(), Duration::from_secs(90));
    let v: Value = serde_yaml_ng::from_str("0.25").unwrap();
    assert_eq!(duration_value(&v).unwrap(), Duration::from_millis(250));
    let v: Value = serde_yaml_ng::from_str("-1").unwrap();
    assert!(duration_value(&v).is_err());
    let v: Value = serde_yaml_ng::from_str("true").unwrap();
    assert!(duration_value(&v).is_err());
    let v: Value = serde_yaml_ng::from_str(".inf").unwrap();
    assert!(duration_value(&v).is_err());
}

#[test]
fn sizes() {
    assert_eq!(parse_size("1048576").unwrap(), 1_048_576);
    assert_eq!(parse_size("50mb").unwrap(), 50 << 20);
    assert_eq!(parse_size("10MB").unwrap(), 10 << 20);
    assert_eq!(parse_size("512kb").unwrap(), 512 << 10);
    assert_eq!(parse_size("1gb").unwrap(), 1 << 30);
    assert_eq!(parse_size("10 MB").unwrap(), 10 << 20);
    assert_eq!(parse_size("1.5kb").unwrap(), 1536);
    assert_eq!(parse_size("7b").unwrap(), 7);
    assert_eq!(parse_size("2t").unwrap(), 2 << 40);
    for bad in [
        "",
        "mb",
        "ten mb",
        "5 pb",
        "-1mb",
        "1.2.3mb",
        "99999999999999999999tb",
    ] {
        assert!(parse_size(bad).is_err(), "{bad:?} should fail");
    }
    assert!(parse_size("99999999999tb").is_err());
}

#[test]
fn size_from_yaml() {
    let v: Value = serde_yaml_ng::from_str("4096").unwrap();
    assert_eq!(size_value(&v).unwrap(), 4096);
    let v: Value = serde_yaml_ng::from_str("-4096").unwrap();
    assert!(size_value(&v).is_err());
    let v: Value = serde_yaml_ng::from_str("1.5").unwrap();
    assert!(size_value(&v).is_err());
    let v: Value = serde_yaml_ng::from_str("'20mb'").unwrap();
    assert_eq!(size_value(&v).unwrap(), 20 << 20);
}
