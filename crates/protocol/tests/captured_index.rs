//! Byte identity with rows a real pnpm 11.5.2 wrote to its store index, and
//! an end-to-end rebuild of the captured response fixture that pnpm accepted.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use base64::Engine as _;
use pnpr_protocol::{
    encode_index, header_json, plan, IndexLookup, IndexValue, InlineBody, PackageRef, Stats,
};
use serde_json::Value;
use sha2::{Digest, Sha512};

use common::{fixture, index_value_from_json};

/// key → (captured bytes, decoded value)
fn captured_rows() -> Vec<(String, Vec<u8>, IndexValue)> {
    let samples: Value =
        serde_json::from_str(&fixture("store-index-samples.pnpm-11.5.2.json")).unwrap();
    let decoded: Value =
        serde_json::from_str(&fixture("store-index-samples.decoded.json")).unwrap();
    let decoded: HashMap<&str, &Value> = decoded
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["key"].as_str().unwrap(), &r["decoded"]))
        .collect();
    let rows = samples["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    rows.iter()
        .map(|row| {
            let key = row["key"].as_str().unwrap().to_owned();
            let bytes = hex::decode(row["hex"].as_str().unwrap()).unwrap();
            let b64 = base64::engine::general_purpose::STANDARD
                .decode(row["b64"].as_str().unwrap())
                .unwrap();
            assert_eq!(bytes, b64, "captured hex and b64 disagree for {key}");
            let value = index_value_from_json(decoded[key.as_str()]);
            (key, bytes, value)
        })
        .collect()
}

#[test]
fn encode_index_is_byte_identical_to_captured_rows() {
    for (key, captured, value) in captured_rows() {
        let ours = encode_index(&value);
        assert_eq!(
            hex::encode(&ours),
            hex::encode(&captured),
            "encode_index differs from the captured pnpm row {key}"
        );
    }
}

struct Rows(HashMap<String, Arc<IndexValue>>);

impl IndexLookup for Rows {
    fn lookup(&self, integrity: &str) -> Option<Arc<IndexValue>> {
        self.0.get(integrity).cloned()
    }
}

/// Rebuilds the response pnpm 11.5.2 accepted (captured fixture) from the
/// captured rows and file contents, and checks header and frames match it.
#[test]
fn rebuilds_the_accepted_response_fixture() {
    let fixture: Value =
        serde_json::from_str(&fixture("v1-install-response.fixture.pkg-with-1-dep.json")).unwrap();
    let header = &fixture["header"];
    let mut store = HashMap::new();
    let mut packages = Vec::new();
    for (key, _, value) in captured_rows() {
        let (integrity, pkg_id) = key.split_once('\t').unwrap();
        store.insert(integrity.to_owned(), Arc::new(value));
        packages.push(PackageRef {
            integrity: integrity.to_owned(),
            pkg_id: pkg_id.to_owned(),
        });
    }
    // Resolution order = lockfile `packages` order.
    let order: Vec<&String> = header["lockfile"]["packages"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    packages.sort_by_key(|p| order.iter().position(|k| **k == p.pkg_id).unwrap());

    let plan = plan(&packages, &[], &Rows(store)).unwrap();
    let want_stats: Stats = serde_json::from_value(header["stats"].clone()).unwrap();
    assert_eq!(plan.stats, want_stats);

    let ours: Value =
        serde_json::from_slice(&header_json(&header["lockfile"], &plan).unwrap()).unwrap();
    assert_eq!(&ours, header, "header differs from the accepted fixture");
    // Key order of the header object as pnpm's fixture has it.
    let keys: Vec<&String> = ours.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["lockfile", "stats", "indexEntries"]);

    let contents: HashMap<&str, Vec<u8>> = fixture["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(f["b64"].as_str().unwrap())
                .unwrap();
            (f["digest"].as_str().unwrap(), bytes)
        })
        .collect();
    let header_bytes = header_json(&header["lockfile"], &plan).unwrap();
    let mut body = InlineBody::new(&header_bytes, 6).unwrap();
    for f in &plan.frames {
        let content = &contents[f.digest_hex.as_str()];
        assert_eq!(content.len() as u64, f.size);
        let real: [u8; 64] = Sha512::digest(content).into();
        assert_eq!(
            real, f.digest,
            "fixture content does not hash to its digest"
        );
        body.frame(&f.digest, f.executable, content).unwrap();
    }
    let gz = body.finish().unwrap();
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .unwrap();
    let frames_len: usize = plan.frames.iter().map(|f| 69 + f.size as usize).sum();
    assert_eq!(plain.len(), 4 + header_bytes.len() + 6 + frames_len + 64);
    assert_eq!(plan.frames.len(), contents.len());
}
