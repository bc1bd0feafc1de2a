//! One gzip member out, whichever encoder made it; bounded while held.

use std::io::Read;

use flate2::read::GzDecoder;

use super::*;
use crate::response::frame_bytes;
use crate::FrameReader;

/// Inflates exactly one gzip member and checks nothing follows it.
fn inflate_one_member(gz: &[u8]) -> Vec<u8> {
    let mut d = GzDecoder::new(gz);
    let mut out = Vec::new();
    d.read_to_end(&mut out).expect("valid gzip");
    let mut rest = Vec::new();
    d.into_inner().read_to_end(&mut rest).expect("rest");
    assert!(rest.is_empty(), "{} bytes after the member", rest.len());
    out
}

/// Text-like, mildly compressible content of `len` bytes.
fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| b"abcdefghij klmnopqrstuvwxyz\n"[(i * 7 + i / 13 + usize::from(seed)) % 28])
        .collect()
}

#[test]
fn a_small_member_is_held_whole_and_reads_back() {
    let frames = [
        ([1u8; 64], false, content(1, 1000)),
        ([2u8; 64], true, Vec::new()),
    ];
    let mut w = MemberWriter::new(Vec::new(), 6);
    let mut expected = Vec::new();
    for (d, x, c) in &frames {
        w.frame(d, *x, c).expect("frame");
        assert!(w.whole.as_ref().is_some_and(|raw| raw.capacity() <= w.cap));
        expected.extend(frame_bytes(d, *x, c).expect("bytes"));
        assert!(w.sink().is_empty(), "nothing leaves a held member early");
    }
    let gz = w.finish().expect("finish");
    assert_eq!(inflate_one_member(&gz), expected);
    assert_eq!(gz, whole_member(&expected, 6).expect("whole"));
    let mut r = FrameReader::new(GzDecoder::new(gz.as_slice()));
    let h = r.next_header().expect("read").expect("first");
    assert_eq!((h.digest, h.executable, h.len), ([1; 64], false, 1000));
}

#[test]
fn a_member_past_the_cap_streams_and_stays_one_member() {
    let cap = 300_000;
    let big = cap / 3;
    let mut w = MemberWriter::with_cap(Vec::new(), 6, cap);
    let mut expected = Vec::new();
    let mut drained = Vec::new();
    for i in 1..=4u8 {
        let c = content(i, big);
        w.frame(&[i; 64], i % 2 == 0, &c).expect("frame");
        expected.extend(frame_bytes(&[i; 64], i % 2 == 0, &c).expect("bytes"));
        drained.extend(std::mem::take(w.sink()));
    }
    assert!(
        !drained.is_empty(),
        "a streaming member reaches the sink early"
    );
    drained.extend(w.finish().expect("finish"));
    assert_eq!(inflate_one_member(&drained), expected);
}

#[test]
fn levels_past_each_encoder_are_clamped_and_zero_digest_refused() {
    for level in [0, 9, 12, 99] {
        let mut w = MemberWriter::new(Vec::new(), level);
        w.frame(&[3; 64], false, b"x").expect("frame");
        let gz = w.finish().expect("finish");
        assert_eq!(
            inflate_one_member(&gz),
            frame_bytes(&[3; 64], false, b"x").unwrap()
        );
    }
    let mut w = MemberWriter::new(Vec::new(), 6);
    assert!(matches!(
        w.frame(&[0u8; 64], false, b"x"),
        Err(InstallError::ReservedDigest)
    ));
    assert!(
        w.finish().expect("finish").len() > 10,
        "an empty member is still a member"
    );
}
