//! Inline body layout (spec §2.1-2.4) parsed back after gunzip.

use std::io::Read;

use flate2::read::GzDecoder;
use serde_json::json;
use sha2::{Digest, Sha512};

use super::*;
use crate::plan::IndexEntry;
use crate::MemberWriter;

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

/// Parses a decompressed body back into (header, frames), checking the
/// layout strictly.
/// (digest, executable, content)
type Frame = ([u8; 64], bool, Vec<u8>);

fn parse_body(body: &[u8]) -> (Vec<u8>, Vec<Frame>) {
    let h = u32::from_be_bytes(body[..4].try_into().unwrap()) as usize;
    let header = body[4..4 + h].to_vec();
    let mut rest = &body[4 + h..];
    assert_eq!(&rest[..6], &[0, 0, 0, 2, b'{', b'}']);
    rest = &rest[6..];
    let mut frames = Vec::new();
    loop {
        let digest: [u8; 64] = rest[..64].try_into().unwrap();
        rest = &rest[64..];
        if digest == [0; 64] {
            assert!(rest.is_empty(), "bytes after the end marker");
            return (header, frames);
        }
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let flags = rest[4];
        assert!(flags <= 1);
        frames.push((digest, flags == 1, rest[5..5 + len].to_vec()));
        rest = &rest[5 + len..];
    }
}

#[test]
fn empty_section_is_exactly_70_bytes() {
    let s = empty_file_section();
    assert_eq!(s.len(), 70);
    assert_eq!(&s[..6], &[0x00, 0x00, 0x00, 0x02, 0x7b, 0x7d]);
    assert!(s[6..].iter().all(|b| *b == 0));

    let header = br#"{"violations":[]}"#;
    let body = gunzip(&InlineBody::new(header, 6).unwrap().finish().unwrap());
    assert_eq!(body.len(), 4 + header.len() + 70);
    assert_eq!(&body[..4], &(header.len() as u32).to_be_bytes());
    assert_eq!(&body[4..4 + header.len()], header);
    assert_eq!(&body[4 + header.len()..], &s[..]);
}

#[test]
fn round_trip_with_frames_and_streaming() {
    let files: Vec<(Vec<u8>, bool)> = vec![
        (b"hello world\n".to_vec(), false),
        (vec![], false),
        ((0..200_000u32).map(|i| (i % 251) as u8).collect(), true),
        (b"#!/bin/sh\n".to_vec(), true),
    ];
    let header = br#"{"lockfile":{},"stats":{},"indexEntries":[]}"#;
    let mut body = InlineBody::new(header, 1).unwrap();
    let mut wire = body.take_output();
    for (content, exec) in &files {
        let digest: [u8; 64] = Sha512::digest(content).into();
        body.frame(&digest, *exec, content).unwrap();
        wire.extend(body.take_output());
    }
    assert!(!wire.is_empty(), "streaming produced nothing before finish");
    wire.extend(body.finish().unwrap());
    assert_eq!(&wire[..2], &[0x1f, 0x8b]);

    let plain = gunzip(&wire);
    let (h, frames) = parse_body(&plain);
    assert_eq!(h, header);
    assert_eq!(frames.len(), files.len());
    for ((digest, exec, content), (want, want_exec)) in frames.iter().zip(&files) {
        assert_eq!(content, want);
        assert_eq!(exec, want_exec);
        let expect: [u8; 64] = Sha512::digest(want).into();
        assert_eq!(digest, &expect);
    }
}

#[test]
fn worked_example_frame_is_81_bytes() {
    let content = b"hello world\n";
    let digest: [u8; 64] = Sha512::digest(content).into();
    let mut body = InlineBody::new(b"{}", 6).unwrap();
    body.frame(&digest, false, content).unwrap();
    let plain = gunzip(&body.finish().unwrap());
    assert_eq!(plain.len(), 4 + 2 + 6 + 81 + 64);
    assert_eq!(&plain[12 + 64..12 + 69], &[0, 0, 0, 0x0c, 0]);
}

#[test]
fn zero_digest_is_refused() {
    let mut body = InlineBody::new(b"{}", 6).unwrap();
    assert!(matches!(
        body.frame(&[0; 64], false, b"x"),
        Err(InstallError::ReservedDigest)
    ));
}

#[test]
fn level_is_clamped() {
    let body = InlineBody::new(b"{}", 42).unwrap().finish().unwrap();
    assert_eq!(gunzip(&body).len(), 4 + 2 + 70);
}

#[test]
fn header_shapes() {
    let plan = Plan {
        stats: Stats {
            total_packages: 1,
            packages_to_fetch: 1,
            ..Stats::default()
        },
        index_entries: vec![IndexEntry {
            key: "sha512-x\ta@1.0.0".into(),
            value: vec![0xd4, 0x72, 0x40, 0x90],
        }],
        frames: vec![],
        groups: vec![],
    };
    let lockfile = json!({"lockfileVersion": "9.0", "importers": {}});
    let text = String::from_utf8(header_json(&lockfile, &plan).unwrap()).unwrap();
    assert_eq!(
        text,
        r#"{"lockfile":{"lockfileVersion":"9.0","importers":{}},"stats":{"totalPackages":1,"alreadyInStore":0,"packagesToFetch":1,"filesInNewPackages":0,"filesAlreadyInCafs":0,"filesToDownload":0,"downloadBytes":0},"indexEntries":[{"key":"sha512-x\ta@1.0.0","b64":"1HJAkA=="}]}"#
    );

    let v = violations_json(&[Violation {
        name: "beta".into(),
        version: "2.1.0".into(),
        code: "MINIMUM_RELEASE_AGE_VIOLATION".into(),
        reason: "too new".into(),
    }])
    .unwrap();
    assert_eq!(
        String::from_utf8(v).unwrap(),
        r#"{"violations":[{"name":"beta","version":"2.1.0","code":"MINIMUM_RELEASE_AGE_VIOLATION","reason":"too new"}]}"#
    );
}

#[test]
fn member_writer_frames_equal_inline_body_frames() {
    let d1 = [0x11u8; 64];
    let d2 = [0x22u8; 64];
    let mut w = MemberWriter::new(Vec::new(), 6);
    w.frame(&d1, false, b"one").unwrap();
    let drained = std::mem::take(w.sink());
    w.frame(&d2, true, b"two").unwrap();
    let mut member = drained;
    member.extend(w.finish().unwrap());
    let mut expected = frame_bytes(&d1, false, b"one").unwrap();
    expected.extend(frame_bytes(&d2, true, b"two").unwrap());
    assert_eq!(gunzip(&member), expected);
    let mut w = MemberWriter::new(Vec::new(), 6);
    assert!(matches!(
        w.frame(&[0u8; 64], false, b"x"),
        Err(InstallError::ReservedDigest)
    ));
}
