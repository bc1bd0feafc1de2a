//! Round trip through the real msgpackr 1.12.1 on Node 22 (the library and
//! configuration pnpm 11.5.2 uses) for a larger synthetic package: what we
//! encode must decode to the same value, and msgpackr packing that value must
//! give our exact bytes. Fails (never skips) when `tests/.deps` is missing.

mod common;

use std::path::Path;
use std::process::Command;

use pnpr_protocol::{encode_index, FileMeta, IndexValue};
use serde_json::{json, Value};

use common::{index_value_from_json, index_value_to_json, node_and_msgpackr};

fn synthetic_package() -> IndexValue {
    let mut deps = serde_json::Map::new();
    for i in 0..20 {
        deps.insert(format!("@scope/dep-{i:02}"), json!(format!("^{i}.0.0")));
    }
    let manifest = json!({
        "name": "@scope/synthetic-package-with-a-long-name",
        "version": "1.2.3-beta.4",
        "description": "ünïcødé ✓ 😀 ".repeat(12),
        "bin": { "syn": "bin/syn.js", "syn-helper": "bin/helper.sh" },
        "scripts": { "postinstall": "node ./scripts/post.js", "test": "node test.js" },
        "dependencies": deps,
        "optionalDependencies": { "fsevents": "^2.3.0" },
        "peerDependenciesMeta": { "react": { "optional": true } },
        "engines": { "node": ">=18" },
        "directories": { "lib": "lib", "10": "ten", "2": "two" },
        "keywords": ["a", "b", "c"],
        "files": ["lib", "bin"],
        "publishConfig": {},
        "numbers": [0, 63, 64, 255, 256, 65536, -1, -33, -200, -70000, 1.5, -2.25, 4294967296u64],
        "flags": [true, false, null],
        "repository": { "type": "git", "url": "git+ssh://127.0.0.1/repo.git" }
    });
    let files = (0..30)
        .map(|i| {
            let path = match i {
                0 => "package.json".to_owned(),
                1..=4 => format!("bin/tool-{i}.sh"),
                5 => format!("lib/{}/deep.js", "nested-directory-name".repeat(3)),
                6 => "lib/ünïcødé.js".to_owned(),
                _ => format!("lib/module-{i:02}.js"),
            };
            let meta = FileMeta {
                digest_hex: format!("{:0128x}", 0xabcdef_u64 * (i as u64 + 1)),
                mode: if (1..=4).contains(&i) { 0o755 } else { 0o644 },
                size: match i {
                    7 => 0,
                    8 => 63,
                    9 => 64,
                    10 => 70_000,
                    11 => 5_000_000_000,
                    _ => 100 * i as u64,
                },
                checked_at: match i {
                    12 => None,
                    13 => Some(1_795_344_797_118.5),
                    _ => Some(1_795_344_797_000.0 + i as f64),
                },
            };
            (path, meta)
        })
        .collect::<Vec<_>>();
    let mut files = files;
    files.sort_by(|a, b| a.0.cmp(&b.0));
    IndexValue {
        requires_build: Some(true),
        manifest: Some(manifest),
        algo: "sha512".into(),
        files,
    }
}

fn run_oracle(value: &IndexValue) -> Value {
    let (node, msgpackr) = node_and_msgpackr();
    let bytes = encode_index(value);
    let dir = tempfile::tempdir().unwrap();
    let case_path = dir.path().join("case.json");
    let case = json!({ "hex": hex::encode(&bytes), "input": index_value_to_json(value) });
    std::fs::write(&case_path, serde_json::to_vec(&case).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/msgpackr-oracle.js");
    let out = Command::new(&node)
        .arg(&script)
        .arg(&msgpackr)
        .arg(&case_path)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", node.display()));
    assert!(
        out.status.success(),
        "node oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut result: Value = serde_json::from_slice(&out.stdout).unwrap();
    result["ours"] = json!(hex::encode(&bytes));
    result
}

#[test]
fn real_msgpackr_decodes_and_repacks_identically() {
    let value = synthetic_package();
    assert_eq!(value.files.len(), 30);
    let result = run_oracle(&value);
    assert_eq!(result["filesIsMap"], true, "files must decode as a Map");
    let decoded = index_value_from_json(&result["decoded"]);
    assert_eq!(decoded, value, "msgpackr decoded something else");
    assert_eq!(
        result["repackedHex"], result["ours"],
        "msgpackr packs the same value to different bytes"
    );
}

#[test]
fn minimal_value_without_optional_fields() {
    let value = IndexValue {
        requires_build: None,
        manifest: None,
        algo: "sha512".into(),
        files: vec![],
    };
    let result = run_oracle(&value);
    assert_eq!(index_value_from_json(&result["decoded"]), value);
    assert_eq!(result["repackedHex"], result["ours"]);
}
