//! Property tests for the msgpackr "records" encoder (`encode_index`): any
//! index value — hostile paths, huge or odd numbers, deep or wide manifests,
//! more record shapes than the 64-slot ring holds — encodes without panic to
//! bytes whose length is linear in the value, and that decode back to the
//! same value with the independent decoder below (written from the msgpack
//! spec and the record rules in `src/index.rs`'s module docs).

use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use pnpr_protocol::{encode_index, FileMeta, IndexValue};

/// A decoded msgpack value; records decode to objects in key order.
#[derive(Debug, Clone, PartialEq)]
enum Decoded {
    Nil,
    Bool(bool),
    Num(f64),
    Str(String),
    Array(Vec<Decoded>),
    /// A plain msgpack map (only `files` uses one).
    Map(Vec<(Decoded, Decoded)>),
    /// A record: keys from its shape, in shape order.
    Record(Vec<(String, Decoded)>),
}

struct Decoder<'a> {
    bytes: &'a [u8],
    at: usize,
    slots: HashMap<u8, Vec<String>>,
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        s
    }

    fn be(&mut self, n: usize) -> u64 {
        self.take(n)
            .iter()
            .fold(0, |acc, b| acc << 8 | u64::from(*b))
    }

    fn str_of(&mut self, len: usize) -> String {
        String::from_utf8(self.take(len).to_vec()).expect("utf-8 string")
    }

    fn value(&mut self) -> Decoded {
        let b = self.take(1)[0];
        match b {
            0x00..=0x3f => Decoded::Num(f64::from(b)),
            0x40..=0x7f => {
                let keys = self.slots.get(&b).cloned().expect("record slot defined");
                self.record(keys)
            }
            0x80..=0x8f => self.map(usize::from(b & 0x0f)),
            0x90..=0x9f => self.array(usize::from(b & 0x0f)),
            0xa0..=0xbf => Decoded::Str(self.str_of(usize::from(b & 0x1f))),
            0xc0 => Decoded::Nil,
            0xc2 => Decoded::Bool(false),
            0xc3 => Decoded::Bool(true),
            0xcb => Decoded::Num(f64::from_bits(self.be(8))),
            0xcc => Decoded::Num(self.be(1) as f64),
            0xcd => Decoded::Num(self.be(2) as f64),
            0xce => Decoded::Num(self.be(4) as f64),
            0xd0 => Decoded::Num(f64::from(self.take(1)[0] as i8)),
            0xd1 => Decoded::Num(f64::from(self.be(2) as u16 as i16)),
            0xd2 => Decoded::Num(f64::from(self.be(4) as u32 as i32)),
            0xd4 => {
                assert_eq!(self.take(1)[0], 0x72, "record extension type");
                let slot = self.take(1)[0];
                assert!((0x40..0x80).contains(&slot), "slot {slot:#x}");
                let Decoded::Array(keys) = self.value() else {
                    panic!("record keys are an array")
                };
                let keys: Vec<String> = keys
                    .into_iter()
                    .map(|k| match k {
                        Decoded::Str(s) => s,
                        other => panic!("record key {other:?}"),
                    })
                    .collect();
                self.slots.insert(slot, keys.clone());
                self.record(keys)
            }
            0xd9 => {
                let n = self.be(1) as usize;
                Decoded::Str(self.str_of(n))
            }
            0xda => {
                let n = self.be(2) as usize;
                Decoded::Str(self.str_of(n))
            }
            0xdb => {
                let n = self.be(4) as usize;
                Decoded::Str(self.str_of(n))
            }
            0xdc => {
                let n = self.be(2) as usize;
                self.array(n)
            }
            0xdd => {
                let n = self.be(4) as usize;
                self.array(n)
            }
            0xde => {
                let n = self.be(2) as usize;
                self.map(n)
            }
            0xdf => {
                let n = self.be(4) as usize;
                self.map(n)
            }
            0xe0..=0xff => Decoded::Num(f64::from(b as i8)),
            other => panic!("unexpected byte {other:#x} at {}", self.at - 1),
        }
    }

    fn record(&mut self, keys: Vec<String>) -> Decoded {
        Decoded::Record(keys.into_iter().map(|k| (k, self.value())).collect())
    }

    fn array(&mut self, n: usize) -> Decoded {
        Decoded::Array((0..n).map(|_| self.value()).collect())
    }

    fn map(&mut self, n: usize) -> Decoded {
        Decoded::Map((0..n).map(|_| (self.value(), self.value())).collect())
    }
}

fn decode(bytes: &[u8]) -> Decoded {
    let mut d = Decoder {
        bytes,
        at: 0,
        slots: HashMap::new(),
    };
    let v = d.value();
    assert_eq!(d.at, bytes.len(), "trailing bytes");
    v
}

/// What `Decoded` a manifest JSON value must come back as: numbers as JS
/// doubles, nesting past the encoder's depth bound as nil, and object keys in
/// JavaScript property order (array-index keys first, ascending).
fn expected(v: &Value, depth: usize) -> Decoded {
    if depth > 256 {
        return Decoded::Nil;
    }
    match v {
        Value::Null => Decoded::Nil,
        Value::Bool(b) => Decoded::Bool(*b),
        Value::Number(n) => n.as_f64().map_or(Decoded::Nil, Decoded::Num),
        Value::String(s) => Decoded::Str(s.clone()),
        Value::Array(a) => Decoded::Array(a.iter().map(|x| expected(x, depth + 1)).collect()),
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_by_key(|(k, _)| match array_index(k) {
                Some(i) => (0u8, i),
                None => (1u8, 0),
            });
            Decoded::Record(
                entries
                    .into_iter()
                    .map(|(k, x)| (k.clone(), expected(x, depth + 1)))
                    .collect(),
            )
        }
    }
}

fn array_index(k: &str) -> Option<u32> {
    if k.is_empty() || k.len() > 10 || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if k.len() > 1 && k.starts_with('0') {
        return None;
    }
    k.parse::<u64>()
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n != u32::MAX)
}

fn expected_index(v: &IndexValue) -> Decoded {
    let mut top = Vec::new();
    if let Some(b) = v.requires_build {
        top.push(("requiresBuild".to_owned(), Decoded::Bool(b)));
    }
    if let Some(m) = &v.manifest {
        top.push(("manifest".to_owned(), expected(m, 0)));
    }
    top.push(("algo".to_owned(), Decoded::Str(v.algo.clone())));
    let files = v
        .files
        .iter()
        .map(|(path, f)| {
            let mut rec = Vec::new();
            if let Some(t) = f.checked_at {
                rec.push(("checkedAt".to_owned(), Decoded::Num(t)));
            }
            rec.push(("digest".to_owned(), Decoded::Str(f.digest_hex.clone())));
            rec.push(("mode".to_owned(), Decoded::Num(f64::from(f.mode))));
            rec.push(("size".to_owned(), Decoded::Num(f.size as f64)));
            (Decoded::Str(path.clone()), Decoded::Record(rec))
        })
        .collect();
    top.push(("files".to_owned(), Decoded::Map(files)));
    Decoded::Record(top)
}

fn manifest() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        // Long strings cross the str8/str16 header boundaries.
        (0usize..70_000).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(4, 64, 20, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..20).prop_map(Value::Array),
            // Keys mix array indexes and names, so shapes vary a lot and the
            // 64-slot ring wraps.
            prop::collection::vec(
                (
                    prop_oneof!["[0-9]{1,3}", "[a-z]{1,3}", Just("4294967295".to_owned())],
                    inner
                ),
                0..20
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn index_value() -> impl Strategy<Value = IndexValue> {
    let file = (
        ".{0,30}",
        "[0-9a-f]{128}",
        any::<u32>(),
        any::<u64>(),
        prop::option::of(prop_oneof![
            any::<f64>(),
            Just(-0.0),
            Just(f64::NAN),
            Just(1.7e12)
        ]),
    )
        .prop_map(|(path, digest_hex, mode, size, checked_at)| {
            (
                path,
                FileMeta {
                    digest_hex,
                    mode,
                    size,
                    checked_at,
                },
            )
        });
    (
        prop::option::of(any::<bool>()),
        prop::option::of(manifest()),
        prop_oneof![Just("sha512".to_owned()), ".{0,8}"],
        prop::collection::vec(file, 0..40),
    )
        .prop_map(|(requires_build, manifest, algo, files)| IndexValue {
            requires_build,
            manifest,
            algo,
            files,
        })
}

/// NaN never equals itself; compare it by bits instead.
fn same(a: &Decoded, b: &Decoded) -> bool {
    match (a, b) {
        (Decoded::Num(x), Decoded::Num(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Decoded::Array(x), Decoded::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Decoded::Map(x), Decoded::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| same(ka, kb) && same(va, vb))
        }
        (Decoded::Record(x), Decoded::Record(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encoding_round_trips_and_is_linear(v in index_value()) {
        let bytes = encode_index(&v);
        let got = decode(&bytes);
        prop_assert!(same(&got, &expected_index(&v)), "decoded {got:?}");
        // Linear size: each JSON byte costs at most 9 msgpack bytes (a
        // one-digit number becomes a float64), each file a bounded record.
        let manifest_len = v.manifest.as_ref().map_or(0, |m| m.to_string().len());
        let files_len: usize = v.files.iter().map(|(p, f)| p.len() + f.digest_hex.len() + 80).sum();
        prop_assert!(
            bytes.len() <= 64 + v.algo.len() + 9 * manifest_len + files_len,
            "{} bytes", bytes.len()
        );
    }

    #[test]
    fn deep_manifests_are_cut_not_overflowed(depth in 200usize..3000) {
        let mut m = json!("leaf");
        for _ in 0..depth {
            // Not `json!([m])`: that re-serialises `m` (deeply recursive).
            m = Value::Array(vec![m]);
        }
        let v = IndexValue {
            requires_build: None,
            manifest: Some(m),
            algo: "sha512".to_owned(),
            files: Vec::new(),
        };
        let bytes = encode_index(&v);
        prop_assert!(bytes.len() <= 64 + 2 * depth);
        prop_assert!(same(&decode(&bytes), &expected_index(&v)));
        // Dropping the deep JSON value recursively is serde_json's business;
        // forget it so this test measures the encoder only.
        std::mem::forget(v);
    }
}

/// More shapes than the 64-slot ring: old slots are reused, and a shape seen
/// again after its eviction is defined afresh; the decoder must agree.
#[test]
fn shape_ring_wraps_and_redefines() {
    let objects: Vec<Value> = (0..150)
        .chain(0..150)
        .map(|i| json!({ format!("k{i}"): i }))
        .collect();
    let v = IndexValue {
        requires_build: Some(true),
        manifest: Some(Value::Array(objects)),
        algo: "sha512".to_owned(),
        files: vec![(
            "a".to_owned(),
            FileMeta {
                digest_hex: "0".repeat(128),
                mode: 0o644,
                size: 1,
                checked_at: None,
            },
        )],
    };
    let bytes = encode_index(&v);
    assert!(same(&decode(&bytes), &expected_index(&v)));
    // Every object was (re)defined: 300 definitions.
    let definitions = bytes.windows(2).filter(|w| w == &[0xd4, 0x72]).count();
    assert!(definitions >= 300, "{definitions}");
}
