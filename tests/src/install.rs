//! Raw `POST /v1/install` for tests that check the wire: sends a request
//! body and decodes the inline response (gzip members, `u32` header length,
//! header JSON, file section) without a pnpm client in between.

use std::io::Read;

use crate::Http;

/// A decoded `/v1/install` answer.
#[derive(Debug)]
pub struct InstallAnswer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The header JSON (`Null` unless the status is 200).
    pub header: serde_json::Value,
    /// Everything after the header JSON: the file section, or the
    /// decompressed error body when the status is not 200.
    pub rest: Vec<u8>,
    /// The whole decompressed body, lossily as text (for leak checks).
    pub text: String,
    /// How many gzip members the raw body holds (0 when it is not gzip).
    pub gzip_members: usize,
}

impl InstallAnswer {
    /// A response header, if present and valid UTF-8.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A single-project request body as pnpm 11.5.2 shapes it.
pub fn install_body(
    registry: &str,
    deps: &[(&str, &str)],
    store_integrities: &[String],
    auth_headers: serde_json::Value,
) -> serde_json::Value {
    let deps: serde_json::Map<String, serde_json::Value> = deps
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    serde_json::json!({
        "projects": [{"dir": ".", "dependencies": deps}],
        "registry": registry, "authHeaders": auth_headers, "nodeVersion": "22.23.3",
        "os": "linux", "arch": "x64", "minimumReleaseAge": 1440,
        "storeIntegrities": store_integrities, "inlineFiles": true
    })
}

/// POSTs `body` to `<pnpr_url>v1/install`, optionally as a bearer token's
/// owner, and decodes the answer.
pub async fn post_install(
    pnpr_url: &str,
    body: &serde_json::Value,
    token: Option<&str>,
) -> InstallAnswer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = auth.as_deref() {
        headers.push(("authorization", a));
    }
    let r = Http::raw()
        .send(
            "POST",
            &format!("{pnpr_url}v1/install"),
            &headers,
            Some(body.to_string().into_bytes()),
        )
        .await;
    // The body is concatenated gzip members; errors may be plain JSON.
    let mut raw = Vec::new();
    if flate2::read::MultiGzDecoder::new(&r.body[..])
        .read_to_end(&mut raw)
        .is_err()
    {
        raw = r.body.to_vec();
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let gzip_members = gzip_members(&r.body);
    if r.status != 200 {
        return InstallAnswer {
            status: r.status,
            headers: r.headers,
            header: serde_json::Value::Null,
            rest: raw,
            text,
            gzip_members,
        };
    }
    assert!(raw.len() >= 4, "truncated /v1/install body: {text}");
    let len = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
    let header = serde_json::from_slice(&raw[4..4 + len])
        .unwrap_or_else(|e| panic!("header is not JSON ({e}): {text}"));
    InstallAnswer {
        status: 200,
        headers: r.headers,
        header,
        rest: raw[4 + len..].to_vec(),
        text,
        gzip_members,
    }
}

/// The number of complete gzip members in `body`, read one at a time.
pub fn gzip_members(mut body: &[u8]) -> usize {
    let mut n = 0;
    while !body.is_empty() {
        let mut d = flate2::bufread::GzDecoder::new(body);
        if std::io::copy(&mut d, &mut std::io::sink()).is_err() {
            return n;
        }
        body = d.into_inner();
        n += 1;
    }
    n
}

/// One frame of a file section: (SHA-512 digest, executable).
pub type Frame = ([u8; 64], bool);

/// The frames of a file section (spec §2.3) as (digest, executable), after
/// checking each digest is its content's SHA-512 and the terminator ends it.
pub fn section_frames(section: &[u8]) -> Vec<Frame> {
    use sha2::{Digest, Sha512};
    assert_eq!(&section[..6], &[0, 0, 0, 2, b'{', b'}']);
    let (mut at, mut out) = (6, Vec::new());
    loop {
        let digest: [u8; 64] = section[at..at + 64].try_into().expect("digest");
        if digest == [0u8; 64] {
            assert_eq!(at + 64, section.len(), "bytes after the terminator");
            return out;
        }
        let len = u32::from_be_bytes(section[at + 64..at + 68].try_into().expect("len")) as usize;
        let content = &section[at + 69..at + 69 + len];
        assert_eq!(Sha512::digest(content).as_slice(), &digest[..]);
        out.push((digest, section[at + 68] == 1));
        at += 69 + len;
    }
}
