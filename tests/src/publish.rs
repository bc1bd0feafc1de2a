//! Publishing test packages to a running pnpr over its npm registry API,
//! the way `npm publish` shapes the request.

use base64::Engine;

use crate::Http;
use sha2::Digest;

/// A gzipped npm tarball with `package/package.json` plus `files`.
pub fn tarball(name: &str, version: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let pkg = serde_json::json!({"name": name, "version": version}).to_string();
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_path(format!("package/{path}")).expect("path");
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        builder.append(&h, data).expect("append");
    };
    add("package.json", pkg.as_bytes());
    for (path, data) in files {
        add(path, data);
    }
    let tar = builder.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar).expect("gzip");
    gz.finish().expect("gzip")
}

/// `sha512-<base64>` of `bytes`.
pub fn sri(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha512::digest(bytes))
    )
}

/// Publishes `name@version` with `files` as `token`'s owner; returns the
/// tarball's integrity. Panics unless the registry accepts it.
pub async fn publish(
    http: &Http,
    pnpr_url: &str,
    token: &str,
    name: &str,
    version: &str,
    files: &[(&str, &[u8])],
) -> String {
    let tgz = tarball(name, version, files);
    let integrity = sri(&tgz);
    let bare = name.rsplit('/').next().unwrap_or(name);
    let file = format!("{bare}-{version}.tgz");
    let doc = serde_json::json!({
        "_id": name, "name": name,
        "dist-tags": {"latest": version},
        "versions": {version: {"name": name, "version": version,
            "dist": {"integrity": integrity, "tarball": format!("{pnpr_url}{name}/-/{file}")}}},
        "_attachments": {file: {"content_type": "application/octet-stream",
            "data": base64::engine::general_purpose::STANDARD.encode(&tgz), "length": tgz.len()}}
    });
    let url = format!("{pnpr_url}{}", name.replace('/', "%2f"));
    let r = http.put_json(&url, &doc, Some(token)).await;
    assert!(
        r.status == 200 || r.status == 201,
        "publish {name}@{version}: {} {}",
        r.status,
        r.text()
    );
    integrity
}

/// Incompressible pseudo-random bytes (xorshift), deterministic per seed:
/// a package body whose size on the wire is its length.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Text that compresses about as well as source code: words drawn from a
/// SHA-512 chain (deterministic per `seed`), for file contents whose
/// compressed size behaves like a real package's.
pub fn compressible_text(len: usize, seed: &str) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "const", "return", "function", "value", "module", "exports", "if", "else", "for", "let",
        "this", "null", "length", "push", "index", "=>",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let mut block = sha2::Sha512::digest(seed.as_bytes());
    while out.len() < len {
        for b in block.iter() {
            out.extend_from_slice(WORDS[usize::from(b & 15)].as_bytes());
            out.push(if b & 0x30 == 0 { b'\n' } else { b' ' });
        }
        block = sha2::Sha512::digest(block);
    }
    out.truncate(len);
    out
}
