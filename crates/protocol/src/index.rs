//! Store-index values (`PackageFilesIndex`) and their msgpackr "records"
//! encoding (spec §2.7).
//!
//! Invariant: [`encode_index`] produces exactly the bytes pnpm 11.5.2 writes
//! with `new Packr({useRecords: true, moreTypes: true}).pack(value)`, so a
//! client can store an `indexEntries` row verbatim and read it back with its
//! own msgpackr. Every detail below mirrors msgpackr 1.12.1 behaviour, checked
//! against rows captured from a real pnpm store (see `tests/captured_index.rs`):
//!
//! * every plain object is a record; the first object of a key sequence emits
//!   a definition `d4 72 <slot>` + array of key names, later ones just `<slot>`;
//!   slots come from a FIFO ring `0x40..=0x7f` (the 65th shape evicts the
//!   oldest, which is then redefined if seen again);
//! * object keys follow JavaScript property order: array-index keys
//!   (`"0"`..`"4294967294"`) first, ascending, then the rest in insertion order;
//! * numbers follow JS semantics: integral values in u32 range are uints, in
//!   i32 range negative ints, everything else float64. Positive fixints stop
//!   at `0x3f` because `0x40..0x7f` are record slot bytes;
//! * `files` is a JS `Map`, hence a plain msgpack map, not a record;
//! * strings, arrays and maps use the smallest header that fits.

use std::collections::VecDeque;

use serde_json::Value;

#[cfg(test)]
mod tests;

/// One file of a package as recorded in the store index.
#[derive(Debug, Clone, PartialEq)]
pub struct FileMeta {
    /// SHA-512 of the file content, 128 lowercase hex characters.
    pub digest_hex: String,
    /// Unix mode bits as recorded by pnpm (typically 420 or 493).
    pub mode: u32,
    /// Content length in bytes.
    pub size: u64,
    /// Milliseconds since the epoch when pnpm last verified the file. pnpm
    /// stores a JS number; we keep it as f64 so large values stay float64 on
    /// the wire like they do in JS.
    pub checked_at: Option<f64>,
}

impl FileMeta {
    /// Whether any of the three execute bits is set (spec §2.6).
    pub fn is_executable(&self) -> bool {
        self.mode & 0o111 != 0
    }
}

/// A store-index value (pnpm's `PackageFilesIndex`), minus side effects: a
/// registry server never runs lifecycle scripts, so it has none to send.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexValue {
    /// Whether the package needs a build step; omitted from the record when `None`.
    pub requires_build: Option<bool>,
    /// The bundled manifest subset pnpm keeps; omitted when `None`. Object key
    /// order is preserved (serde_json `preserve_order`) because it shapes the bytes.
    pub manifest: Option<Value>,
    /// Digest algorithm of the files, `"sha512"`.
    pub algo: String,
    /// In-package path → file. Encoded in this order; keep it sorted by path
    /// for byte-stable output.
    pub files: Vec<(String, FileMeta)>,
}

/// Encodes `v` in pnpm's msgpackr records dialect (see the module docs).
///
/// Top-level field order follows what pnpm actually writes:
/// `requiresBuild`, `manifest`, `algo`, `files` (optional ones omitted).
pub fn encode_index(v: &IndexValue) -> Vec<u8> {
    let mut enc = Encoder::new(Vec::with_capacity(estimate_len(v)));
    let mut top: Vec<&str> = Vec::with_capacity(4);
    if v.requires_build.is_some() {
        top.push("requiresBuild");
    }
    if v.manifest.is_some() {
        top.push("manifest");
    }
    top.push("algo");
    top.push("files");
    enc.record_header(&top);
    if let Some(b) = v.requires_build {
        enc.bool(b);
    }
    if let Some(m) = &v.manifest {
        enc.value(m, 0);
    }
    enc.str(&v.algo);
    enc.map_header(v.files.len());
    for (path, f) in &v.files {
        enc.str(path);
        match f.checked_at {
            Some(t) => {
                enc.record_header(&["checkedAt", "digest", "mode", "size"]);
                enc.number(t);
            }
            None => enc.record_header(&["digest", "mode", "size"]),
        }
        enc.str(&f.digest_hex);
        enc.number(f64::from(f.mode));
        enc.u64_number(f.size);
    }
    enc.out
}

/// A generous guess so the output Vec rarely reallocates: one record
/// definition plus ~150 bytes per file, plus a rough manifest allowance.
fn estimate_len(v: &IndexValue) -> usize {
    64 + v.files.len() * 150 + if v.manifest.is_some() { 256 } else { 0 }
}

/// Deeper manifest nesting than this is written as nil instead of recursing
/// further, so a hostile store row cannot overflow the stack.
const MAX_DEPTH: usize = 256;

/// msgpackr's own-structure ring: slots `0x40..0x80`, 64 of them.
const FIRST_SLOT: u8 = 0x40;
const SLOT_END: u8 = 0x80;
const MAX_LIVE_SHAPES: usize = 64;

struct Encoder {
    out: Vec<u8>,
    /// Live record shapes in creation order (oldest first) with their slot.
    shapes: VecDeque<(Vec<String>, u8)>,
    next_slot: u8,
}

impl Encoder {
    fn new(out: Vec<u8>) -> Self {
        Encoder {
            out,
            shapes: VecDeque::new(),
            next_slot: FIRST_SLOT,
        }
    }

    /// Writes either the slot byte of a known shape or a fresh definition.
    fn record_header(&mut self, keys: &[&str]) {
        let known = self.shapes.iter().find(|(shape, _)| {
            shape.len() == keys.len() && shape.iter().zip(keys).all(|(a, b)| a == b)
        });
        if let Some((_, slot)) = known {
            self.out.push(*slot);
            return;
        }
        let mut slot = self.next_slot;
        if slot >= SLOT_END {
            slot = FIRST_SLOT;
        }
        self.next_slot = slot + 1;
        if self.shapes.len() >= MAX_LIVE_SHAPES {
            self.shapes.pop_front();
        }
        self.shapes
            .push_back((keys.iter().map(|k| (*k).to_owned()).collect(), slot));
        self.out.extend_from_slice(&[0xd4, 0x72, slot]);
        self.array_header(keys.len());
        for k in keys {
            self.str(k);
        }
    }

    fn value(&mut self, v: &Value, depth: usize) {
        if depth > MAX_DEPTH {
            self.out.push(0xc0);
            return;
        }
        match v {
            Value::Null => self.out.push(0xc0),
            Value::Bool(b) => self.bool(*b),
            Value::Number(n) => match n.as_f64() {
                Some(f) => self.number(f),
                None => self.out.push(0xc0),
            },
            Value::String(s) => self.str(s),
            Value::Array(items) => {
                self.array_header(items.len());
                for item in items {
                    self.value(item, depth + 1);
                }
            }
            Value::Object(map) => {
                let mut entries: Vec<(&str, &Value)> =
                    map.iter().map(|(k, v)| (k.as_str(), v)).collect();
                if entries.iter().any(|(k, _)| array_index(k).is_some()) {
                    // Stable sort: non-index keys keep their insertion order.
                    entries.sort_by_key(|(k, _)| match array_index(k) {
                        Some(i) => (0u8, i),
                        None => (1u8, 0),
                    });
                }
                let keys: Vec<&str> = entries.iter().map(|(k, _)| *k).collect();
                self.record_header(&keys);
                for (_, item) in entries {
                    self.value(item, depth + 1);
                }
            }
        }
    }

    fn bool(&mut self, b: bool) {
        self.out.push(if b { 0xc3 } else { 0xc2 });
    }

    /// A u64 as JS would see it after `Number(x)`.
    fn u64_number(&mut self, n: u64) {
        match u32::try_from(n) {
            Ok(small) => self.uint(small),
            // Precision loss above 2^53 is what JS does too.
            Err(_) => self.float64(n as f64),
        }
    }

    /// A JS number: the integer forms only when the value is exactly an
    /// integer in u32 / negative i32 range (`-0` counts as `0`).
    fn number(&mut self, f: f64) {
        if f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f) {
            self.uint(f as u32);
        } else if f.fract() == 0.0 && f < 0.0 && f >= f64::from(i32::MIN) {
            self.neg_int(f as i32);
        } else {
            self.float64(f);
        }
    }

    fn uint(&mut self, n: u32) {
        if n < 0x40 {
            self.out.push(n as u8);
        } else if n < 0x100 {
            self.out.extend_from_slice(&[0xcc, n as u8]);
        } else if n < 0x1_0000 {
            self.out.push(0xcd);
            self.out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.out.push(0xce);
            self.out.extend_from_slice(&n.to_be_bytes());
        }
    }

    fn neg_int(&mut self, n: i32) {
        if n >= -0x20 {
            self.out.push(n as u8);
        } else if n >= -0x80 {
            self.out.extend_from_slice(&[0xd0, n as u8]);
        } else if n >= -0x8000 {
            self.out.push(0xd1);
            self.out.extend_from_slice(&(n as i16).to_be_bytes());
        } else {
            self.out.push(0xd2);
            self.out.extend_from_slice(&n.to_be_bytes());
        }
    }

    fn float64(&mut self, f: f64) {
        self.out.push(0xcb);
        self.out.extend_from_slice(&f.to_be_bytes());
    }

    fn str(&mut self, s: &str) {
        let len = s.len();
        if len < 0x20 {
            self.out.push(0xa0 | len as u8);
        } else if len < 0x100 {
            self.out.extend_from_slice(&[0xd9, len as u8]);
        } else if len < 0x1_0000 {
            self.out.push(0xda);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.out.push(0xdb);
            self.out.extend_from_slice(&len_u32(len).to_be_bytes());
        }
        self.out.extend_from_slice(s.as_bytes());
    }

    fn array_header(&mut self, len: usize) {
        self.collection_header(len, 0x90, 0xdc, 0xdd);
    }

    fn map_header(&mut self, len: usize) {
        self.collection_header(len, 0x80, 0xde, 0xdf);
    }

    fn collection_header(&mut self, len: usize, fix: u8, c16: u8, c32: u8) {
        if len < 0x10 {
            self.out.push(fix | len as u8);
        } else if len < 0x1_0000 {
            self.out.push(c16);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.out.push(c32);
            self.out.extend_from_slice(&len_u32(len).to_be_bytes());
        }
    }
}

/// Lengths beyond u32 cannot occur for data that came out of JSON or a
/// tarball index; saturating keeps the encoder total instead of panicking.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The numeric value of a JS array-index property key: the canonical decimal
/// form of an integer in `0..=2^32-2`.
fn array_index(key: &str) -> Option<u32> {
    let bytes = key.as_bytes();
    if bytes.is_empty() || bytes.len() > 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes.len() > 1 && bytes[0] == b'0' {
        return None;
    }
    let n: u64 = key.parse().ok()?;
    u32::try_from(n).ok().filter(|n| *n != u32::MAX)
}
