//! Streaming passes over a packument too large to hold as one `Value`: a
//! validation pass, and a rendering pass (tarball rewriting, optionally the
//! abbreviated form) from a reader to a writer.
//!
//! Invariant: memory is bounded by the largest single top-level value other
//! than `versions` and by the largest single version, never by the whole
//! document. Both passes accept exactly the same documents (a top-level
//! object whose `versions`, when present, is an object), so a document that
//! validated can always be rendered.

use std::fmt;
use std::io::{BufReader, BufWriter, Read, Write};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::{abbreviate_version, rewrite_version, PackumentError};

/// Which document a streaming render produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamForm {
    /// The whole document with tarballs rewritten ([`crate::rewrite_tarballs`]).
    Full,
    /// npm's abbreviated form ([`crate::abbreviate`]), tarballs rewritten.
    Abbreviated,
}

/// Read and write buffer of the streaming passes.
const BUFFER: usize = 1 << 20;

/// Top-level keys the abbreviated form keeps (besides `versions`).
const ABBREVIATED_TOP: &[&str] = &["name", "dist-tags", "time"];

/// Checks, without building the document, that `r` holds one JSON object
/// whose `versions` (when present) is an object.
///
/// Not generic, and buffered here: the parser is instantiated (and
/// optimised) in this crate, whatever the caller's build profile.
pub fn validate_streaming(r: &mut dyn Read) -> Result<(), PackumentError> {
    let r = BufReader::with_capacity(BUFFER, r);
    let mut de = serde_json::Deserializer::from_reader(r);
    de.deserialize_map(ValidateTop).map_err(bad_json)?;
    de.end().map_err(bad_json)
}

/// Renders the document in `r` into `w` as [`crate::rewrite_tarballs`] (and,
/// for [`StreamForm::Abbreviated`], [`crate::abbreviate`]) would, version by
/// version. `name` stands in for the document's `name` when versions come
/// before it. Keys keep their input order. Buffered and not generic, as
/// [`validate_streaming`].
pub fn render_streaming(
    r: &mut dyn Read,
    w: &mut dyn Write,
    base: &str,
    name: &str,
    form: StreamForm,
) -> Result<(), PackumentError> {
    let r = BufReader::with_capacity(BUFFER, r);
    let w = BufWriter::with_capacity(BUFFER, w);
    let mut out = Out { w, failed: None };
    let mut de = serde_json::Deserializer::from_reader(r);
    let result = de
        .deserialize_map(RenderTop {
            out: &mut out,
            base,
            name,
            form,
        })
        .and_then(|()| de.end());
    if let Some(e) = out.failed.take() {
        return Err(PackumentError::Io(e.to_string()));
    }
    result.map_err(bad_json)?;
    out.w.flush().map_err(|e| PackumentError::Io(e.to_string()))
}

fn bad_json(e: serde_json::Error) -> PackumentError {
    PackumentError::BadJson(e.to_string())
}

struct ValidateTop;

impl<'de> Visitor<'de> for ValidateTop {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a packument object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "versions" {
                map.next_value_seed(VersionsShape)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct VersionsShape;

impl<'de> DeserializeSeed<'de> for VersionsShape {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(IgnoreMap)
    }
}

struct IgnoreMap;

impl<'de> Visitor<'de> for IgnoreMap {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of versions")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// The output, remembering its first write error (serde's error type cannot
/// carry it, so it is kept here and reported as I/O, not as bad JSON).
struct Out<W> {
    w: W,
    failed: Option<std::io::Error>,
}

impl<W: Write> Out<W> {
    fn raw<E: serde::de::Error>(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.w.write_all(bytes).map_err(|e| self.fail(e))
    }

    fn json<E: serde::de::Error, T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<(), E> {
        serde_json::to_writer(&mut self.w, v)
            .map_err(|e| self.fail(std::io::Error::other(e.to_string())))
    }

    /// `,"key":` (or without the comma for the first member).
    fn key<E: serde::de::Error>(&mut self, first: &mut bool, key: &str) -> Result<(), E> {
        if !std::mem::take(first) {
            self.raw(b",")?;
        }
        self.json(key)?;
        self.raw(b":")
    }

    fn fail<E: serde::de::Error>(&mut self, e: std::io::Error) -> E {
        let message = e.to_string();
        self.failed.get_or_insert(e);
        E::custom(format!("write failed: {message}"))
    }
}

struct RenderTop<'a, W> {
    out: &'a mut Out<W>,
    base: &'a str,
    name: &'a str,
    form: StreamForm,
}

impl<'de, W: Write> Visitor<'de> for RenderTop<'_, W> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a packument object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let abbreviated = self.form == StreamForm::Abbreviated;
        let (mut first, mut doc_name, mut saw_versions) = (true, None::<String>, false);
        self.out.raw(b"{")?;
        while let Some(key) = map.next_key::<String>()? {
            if key == "versions" {
                saw_versions = true;
                self.out.key(&mut first, &key)?;
                map.next_value_seed(RenderVersions {
                    out: &mut *self.out,
                    base: self.base,
                    doc_name: doc_name.as_deref().unwrap_or(self.name),
                    form: self.form,
                })?;
                continue;
            }
            if abbreviated && !ABBREVIATED_TOP.contains(&key.as_str()) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let v: Value = map.next_value()?;
            if key == "name" {
                doc_name = v.as_str().map(str::to_string);
            }
            self.out.key(&mut first, &key)?;
            self.out.json(&v)?;
            if let Some(modified) = v.get("modified").filter(|_| abbreviated && key == "time") {
                self.out.key(&mut first, "modified")?;
                self.out.json(modified)?;
            }
        }
        if abbreviated && !saw_versions {
            self.out.key(&mut first, "versions")?;
            self.out.raw(b"{}")?;
        }
        self.out.raw(b"}")
    }
}

struct RenderVersions<'a, W> {
    out: &'a mut Out<W>,
    base: &'a str,
    doc_name: &'a str,
    form: StreamForm,
}

impl<'de, W: Write> DeserializeSeed<'de> for RenderVersions<'_, W> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, W: Write> Visitor<'de> for RenderVersions<'_, W> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of versions")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut first = true;
        self.out.raw(b"{")?;
        while let Some(ver) = map.next_key::<String>()? {
            let v: Value = map.next_value()?;
            let v = match v {
                Value::Object(mut v) => {
                    rewrite_version(&ver, &mut v, self.base, Some(self.doc_name));
                    match self.form {
                        StreamForm::Full => Value::Object(v),
                        StreamForm::Abbreviated => Value::Object(abbreviate_version(&v)),
                    }
                }
                // The abbreviated form drops what is not a version object.
                _ if self.form == StreamForm::Abbreviated => continue,
                other => other,
            };
            self.out.key(&mut first, &ver)?;
            self.out.json(&v)?;
        }
        self.out.raw(b"}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "name": "pkg",
            "description": "dropped when abbreviated",
            "dist-tags": {"latest": "1.0.1"},
            "versions": {
                "1.0.0": {"name": "pkg", "version": "1.0.0", "readme": "r",
                    "scripts": {"install": "x"},
                    "dist": {"tarball": "http://up.invalid/pkg/-/pkg-1.0.0.tgz", "integrity": "sha512-a"}},
                "1.0.1": {"version": "1.0.1", "_pnprUplink": "u",
                    "dist": {"tarball": "http://up.invalid/x/-/odd.tgz?x=1"}},
                "junk": 3
            },
            "time": {"modified": "2020-01-02T00:00:00.000Z", "1.0.0": "2020-01-01T00:00:00.000Z"}
        })
    }

    fn render(form: StreamForm) -> Value {
        let bytes = serde_json::to_vec(&doc()).unwrap();
        let mut out = Vec::new();
        render_streaming(&mut bytes.as_slice(), &mut out, "http://me/", "pkg", form).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn streaming_renders_match_the_in_memory_ones() {
        let mut full = doc();
        crate::rewrite_tarballs(&mut full, "http://me/");
        assert_eq!(render(StreamForm::Full), full);
        assert_eq!(render(StreamForm::Abbreviated), crate::abbreviate(&full));
    }

    #[test]
    fn both_passes_refuse_the_same_shapes() {
        for bad in [
            &b"[1]"[..],
            b"{\"versions\": 3}",
            b"{\"a\": 1",
            b"{\"a\": 1} x",
            b"",
        ] {
            assert!(validate_streaming(&mut &bad[..]).is_err(), "{bad:?}");
            let r = render_streaming(
                &mut &bad[..],
                &mut Vec::new(),
                "http://me/",
                "p",
                StreamForm::Full,
            );
            assert!(r.is_err(), "{bad:?}");
        }
        assert!(validate_streaming(&mut &b" {\"versions\": {}} "[..]).is_ok());
    }

    #[test]
    fn a_failing_writer_is_an_io_error() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let r = render_streaming(
            &mut &b"{\"a\":1}"[..],
            &mut Broken,
            "http://me/",
            "p",
            StreamForm::Full,
        );
        assert!(matches!(r, Err(PackumentError::Io(_))), "{r:?}");
    }
}
