//! Encoder unit tests; expected bytes come from real msgpackr (msgpackr-values.json).

use serde_json::Value;

use super::*;

fn encode_value(v: &Value) -> Vec<u8> {
    let mut enc = Encoder::new(Vec::new());
    enc.value(v, 0);
    enc.out
}

/// Expected bytes produced once by real msgpackr 1.12.1
/// (`new Packr({useRecords: true, moreTypes: true}).pack(JSON.parse(json))`).
#[test]
fn generic_values_match_msgpackr() {
    let cases: Vec<Value> =
        serde_json::from_str(include_str!("msgpackr-values.json")).expect("fixture parses");
    assert_eq!(cases.len(), 5);
    for case in cases {
        let json = case["json"].as_str().expect("json");
        let expected = case["hex"].as_str().expect("hex");
        let v: Value = serde_json::from_str(json).expect("case json");
        let got = hex::encode(encode_value(&v));
        assert_eq!(
            got,
            expected,
            "msgpackr mismatch for {}",
            &json[..json.len().min(80)]
        );
    }
}

#[test]
fn js_number_rules() {
    let enc = |f: f64| {
        let mut e = Encoder::new(Vec::new());
        e.number(f);
        e.out
    };
    assert_eq!(enc(-0.0), vec![0x00]);
    assert_eq!(enc(0x3f as f64), vec![0x3f]);
    assert_eq!(enc(0x40 as f64), vec![0xcc, 0x40]);
    assert_eq!(enc(420.0), vec![0xcd, 0x01, 0xa4]);
    assert_eq!(enc(-32.0), vec![0xe0]);
    assert_eq!(enc(f64::from(u32::MAX)), vec![0xce, 0xff, 0xff, 0xff, 0xff]);
    let big = enc(1_795_344_797_118.0);
    assert_eq!(big[0], 0xcb);
    assert_eq!(
        f64::from_be_bytes(big[1..9].try_into().unwrap()),
        1_795_344_797_118.0
    );
    let mut e = Encoder::new(Vec::new());
    e.u64_number(u64::from(u32::MAX) + 1);
    assert_eq!(
        e.out,
        [&[0xcb][..], &4_294_967_296f64.to_be_bytes()].concat()
    );
}

#[test]
fn str32_and_map16_headers() {
    let mut e = Encoder::new(Vec::new());
    e.str(&"x".repeat(70_000));
    assert_eq!(&e.out[..5], &[0xdb, 0x00, 0x01, 0x11, 0x70]);
    assert_eq!(e.out.len(), 5 + 70_000);
    let mut e = Encoder::new(Vec::new());
    e.map_header(16);
    e.map_header(15);
    e.map_header(70_000);
    assert_eq!(
        e.out,
        vec![0xde, 0x00, 0x10, 0x8f, 0xdf, 0x00, 0x01, 0x11, 0x70]
    );
}

#[test]
fn array_index_keys() {
    assert_eq!(array_index("0"), Some(0));
    assert_eq!(array_index("4294967294"), Some(4_294_967_294));
    assert_eq!(array_index("4294967295"), None);
    assert_eq!(array_index("01"), None);
    assert_eq!(array_index(""), None);
    assert_eq!(array_index("-1"), None);
    assert_eq!(array_index("1e3"), None);
}

fn file(d: char, mode: u32, size: u64, checked_at: Option<f64>) -> FileMeta {
    FileMeta {
        digest_hex: d.to_string().repeat(128),
        mode,
        size,
        checked_at,
    }
}

#[test]
fn file_records_share_slots_and_omit_absent_fields() {
    let v = IndexValue {
        requires_build: None,
        manifest: None,
        algo: "sha512".into(),
        files: vec![
            ("a".into(), file('a', 420, 1, None)),
            ("b".into(), file('b', 493, 2, None)),
            ("c".into(), file('c', 420, 3, Some(5.0))),
        ],
    };
    let out = encode_index(&v);
    // Top level: only algo + files.
    let mut expect = hex::decode("d4724092a4616c676fa566696c6573a6736861353132").unwrap();
    expect.push(0x83);
    expect.extend_from_slice(&[0xa1, b'a']);
    expect.extend_from_slice(&hex::decode("d4724193a6646967657374a46d6f6465a473697a65").unwrap());
    expect.extend_from_slice(&[0xd9, 0x80]);
    expect.extend_from_slice("a".repeat(128).as_bytes());
    expect.extend_from_slice(&[0xcd, 0x01, 0xa4, 0x01]);
    expect.extend_from_slice(&[0xa1, b'b', 0x41, 0xd9, 0x80]);
    expect.extend_from_slice("b".repeat(128).as_bytes());
    expect.extend_from_slice(&[0xcd, 0x01, 0xed, 0x02]);
    expect.extend_from_slice(&[0xa1, b'c']);
    expect.extend_from_slice(
        &hex::decode("d4724294a9636865636b65644174a6646967657374a46d6f6465a473697a65").unwrap(),
    );
    expect.push(0x05);
    expect.extend_from_slice(&[0xd9, 0x80]);
    expect.extend_from_slice("c".repeat(128).as_bytes());
    expect.extend_from_slice(&[0xcd, 0x01, 0xa4, 0x03]);
    assert_eq!(hex::encode(&out), hex::encode(&expect));
}

#[test]
fn executable_bits() {
    assert!(!file('a', 0o644, 0, None).is_executable());
    assert!(file('a', 0o755, 0, None).is_executable());
    assert!(file('a', 0o100, 0, None).is_executable());
    assert!(file('a', 0o001, 0, None).is_executable());
}

#[test]
fn deep_nesting_is_cut_not_overflowed() {
    let mut v = Value::Null;
    for _ in 0..(MAX_DEPTH + 10) {
        v = Value::Array(vec![v]);
    }
    let out = encode_value(&v);
    // MAX_DEPTH+1 array headers, then nil instead of the rest.
    assert_eq!(out.len(), MAX_DEPTH + 2);
    assert_eq!(out.last(), Some(&0xc0));
}
