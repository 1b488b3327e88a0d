//! Black-box decoding tables: every case is fed whole, split at every point, and one byte at a
//! time, and must give the same frames, errors and skipped count each way.

use bytes::BytesMut;
use mllp::{DEFAULT_MAX_FRAME_LEN, Decoder, decode};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Frame(Vec<u8>),
    Err(String),
}

fn f(payload: &[u8]) -> Out {
    Out::Frame(payload.to_vec())
}

fn e(text: &str) -> Out {
    Out::Err(text.to_owned())
}

/// What a run over some chunks produced, and the most the buffer held after `Ok(None)`.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    outs: Vec<Out>,
    skipped: u64,
    consumed: u64,
}

fn run(max: usize, chunks: &[&[u8]]) -> Run {
    let mut decoder = Decoder::with_max_frame_len(max);
    let mut buf = BytesMut::new();
    let mut outs = Vec::new();
    let mut step = |decoder: &mut Decoder, buf: &mut BytesMut, eof: bool| {
        loop {
            let got = if eof {
                decoder.decode_eof(buf)
            } else {
                decoder.decode(buf)
            };
            match got {
                Ok(Some(payload)) => outs.push(Out::Frame(payload.to_vec())),
                Ok(None) => {
                    assert!(buf.len() <= max + 1, "holding {} bytes", buf.len());
                    break;
                }
                Err(err) => outs.push(Out::Err(err.to_string())),
            }
        }
    };
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        step(&mut decoder, &mut buf, false);
    }
    step(&mut decoder, &mut buf, true);
    assert!(buf.is_empty(), "left {buf:?} after end of stream");
    Run {
        outs,
        skipped: decoder.skipped_bytes(),
        consumed: decoder.consumed_bytes(),
    }
}

struct Case {
    name: &'static str,
    input: &'static [u8],
    max: usize,
    outs: Vec<Out>,
    skipped: u64,
}

fn cases() -> Vec<Case> {
    let d = DEFAULT_MAX_FRAME_LEN;
    vec![
        Case {
            name: "one frame",
            input: b"\x0bMSH|^~\\&|A\x1c\x0d",
            max: d,
            outs: vec![f(b"MSH|^~\\&|A")],
            skipped: 0,
        },
        Case {
            name: "pipelined",
            input: b"\x0bMSH|1\rPID|1\x1c\x0d\x0bMSH|2\x1c\x0d\x0bMSH|3\x1c\x0d",
            max: d,
            outs: vec![f(b"MSH|1\rPID|1"), f(b"MSH|2"), f(b"MSH|3")],
            skipped: 0,
        },
        Case {
            name: "empty payload",
            input: b"\x0b\x1c\x0d\x0b\x1c",
            max: d,
            outs: vec![f(b""), f(b"")],
            skipped: 0,
        },
        Case {
            name: "garbage before start is counted",
            input: b"junk\x0bA\x1c\x0d",
            max: d,
            outs: vec![f(b"A")],
            skipped: 4,
        },
        Case {
            name: "cr and lf between frames are not garbage",
            input: b"\r\n\x0bA\x1c\x0d\r\nxx\r\x0bB\x1c\x0d\n",
            max: d,
            outs: vec![f(b"A"), f(b"B")],
            skipped: 2,
        },
        Case {
            name: "missing cr between frames",
            input: b"\x0bA\x1c\x0bB\x1c\x0d",
            max: d,
            outs: vec![f(b"A"), f(b"B")],
            skipped: 0,
        },
        Case {
            name: "missing cr at end of stream",
            input: b"\x0bA\x1c",
            max: d,
            outs: vec![f(b"A")],
            skipped: 0,
        },
        Case {
            name: "vt inside a frame restarts it",
            input: b"\x0bABC\x0bDEF\x1c\x0d",
            max: d,
            outs: vec![f(b"DEF")],
            skipped: 4,
        },
        Case {
            name: "two vts in a row",
            input: b"\x0b\x0bA\x1c\x0d",
            max: d,
            outs: vec![f(b"A")],
            skipped: 1,
        },
        Case {
            name: "fs without vt is garbage",
            input: b"abc\x1c\x0d\x0bA\x1c\x0d\x1c",
            max: d,
            outs: vec![f(b"A")],
            skipped: 5,
        },
        Case {
            name: "only garbage",
            input: b"hello\x1c",
            max: d,
            outs: vec![],
            skipped: 6,
        },
        Case {
            name: "payload at the limit",
            input: b"\x0b1234\x1c\x0d",
            max: 4,
            outs: vec![f(b"1234")],
            skipped: 0,
        },
        Case {
            name: "oversized, then the next frame",
            input: b"\x0b12345\x1c\x0d\x0bok\x1c\x0d",
            max: 4,
            outs: vec![e("frame too large: more than 4 bytes at byte 0"), f(b"ok")],
            // VT + 5 payload bytes dropped with the frame, then the FS as garbage.
            skipped: 7,
        },
        Case {
            name: "oversized with no end byte at all",
            input: b"\x0bA\x1c\x0b123456789",
            max: 4,
            outs: vec![f(b"A"), e("frame too large: more than 4 bytes at byte 3")],
            skipped: 10,
        },
        Case {
            name: "oversized tail holding a vt",
            input: b"\x0b123456\x0bA\x1c",
            max: 4,
            outs: vec![e("frame too large: more than 4 bytes at byte 0"), f(b"A")],
            skipped: 7,
        },
        Case {
            name: "zero limit",
            input: b"\x0b\x1c\x0bA\x1c",
            max: 0,
            outs: vec![f(b""), e("frame too large: more than 0 bytes at byte 2")],
            skipped: 3,
        },
        Case {
            name: "stream ends inside a frame",
            input: b"\x0bMSH|partial",
            max: d,
            outs: vec![e(
                "stream ended inside a frame after 11 payload bytes at byte 0",
            )],
            skipped: 12,
        },
        Case {
            name: "stream ends inside the second frame",
            input: b"x\x0bA\x1c\x0d\x0bB",
            max: d,
            outs: vec![
                f(b"A"),
                e("stream ended inside a frame after 1 payload bytes at byte 5"),
            ],
            skipped: 3,
        },
        Case {
            name: "stream ends right after vt",
            input: b"\x0b",
            max: d,
            outs: vec![e(
                "stream ended inside a frame after 0 payload bytes at byte 0",
            )],
            skipped: 1,
        },
    ]
}

#[test]
fn whole_input() {
    for case in cases() {
        let got = run(case.max, &[case.input]);
        assert_eq!(got.outs, case.outs, "{}", case.name);
        assert_eq!(got.skipped, case.skipped, "{}: skipped", case.name);
        assert_eq!(
            got.consumed,
            case.input.len() as u64,
            "{}: consumed",
            case.name
        );
    }
}

#[test]
fn split_at_every_point() {
    for case in cases() {
        for at in 0..=case.input.len() {
            let (a, b) = case.input.split_at(at);
            let got = run(case.max, &[a, b]);
            assert_eq!(got.outs, case.outs, "{} split at {at}", case.name);
            assert_eq!(got.skipped, case.skipped, "{} split at {at}", case.name);
        }
    }
}

#[test]
fn one_byte_at_a_time() {
    for case in cases() {
        let chunks: Vec<&[u8]> = case.input.chunks(1).collect();
        let got = run(case.max, &chunks);
        assert_eq!(got.outs, case.outs, "{}", case.name);
        assert_eq!(got.skipped, case.skipped, "{}", case.name);
    }
}

#[test]
fn oversized_frame_is_rejected_before_its_end_byte_arrives() {
    const MAX: usize = 64 * 1024;
    const CHUNK: usize = 1000;
    let mut decoder = Decoder::with_max_frame_len(MAX);
    let mut buf = BytesMut::from(&b"\x0b"[..]);
    let mut fed = 1;
    let err = loop {
        // No FS is ever sent: the error must come from the length alone.
        assert!(fed <= MAX + 1 + CHUNK, "no error after {fed} bytes");
        match decoder.decode(&mut buf) {
            Ok(None) => assert!(buf.len() <= MAX + 1, "holding {} bytes", buf.len()),
            Ok(Some(_)) => panic!("a frame without an end byte"),
            Err(err) => break err,
        }
        buf.extend_from_slice(&[b'x'; CHUNK]);
        fed += CHUNK;
    };
    assert_eq!(
        err.to_string(),
        "frame too large: more than 65536 bytes at byte 0"
    );
    assert!(
        buf.len() < CHUNK,
        "kept {} bytes of the rejected frame",
        buf.len()
    );
    assert_eq!(err.offset(), Some(0));
    assert_eq!(
        err.kind(),
        Some(&mllp::ErrorKind::FrameTooLarge { max: MAX })
    );
}

#[test]
fn default_limit_lets_a_large_message_through() {
    let payload = vec![b'A'; 5 * 1024 * 1024];
    let framed = mllp::frame(&payload).unwrap();
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::new();
    let mut got = None;
    for chunk in framed.chunks(64 * 1024) {
        buf.extend_from_slice(chunk);
        if let Some(p) = decoder.decode(&mut buf).unwrap() {
            got = Some(p);
        }
    }
    assert_eq!(got.unwrap().len(), payload.len());
    assert_eq!(decoder.max_frame_len(), 16 * 1024 * 1024);
}

/// The stateless slice API: (input, max, expected (payload, consumed, skipped) or error text).
#[test]
fn stateless_decode_table() {
    type Expect = Result<Option<(&'static [u8], usize, usize)>, &'static str>;
    let cases: &[(&[u8], usize, Expect)] = &[
        (b"", 8, Ok(None)),
        (b"\x0bMSH|1", 8, Ok(None)),
        (b"junk", 8, Ok(None)),
        (b"\x0bMSH\x1c\x0d\x0bnext", 8, Ok(Some((b"MSH", 6, 0)))),
        (b"\x0bMSH\x1c", 8, Ok(Some((b"MSH", 5, 0)))),
        (b"\x0bMSH\x1cX", 8, Ok(Some((b"MSH", 5, 0)))),
        (b"\r\nxy\x0b\x1c\x0d", 8, Ok(Some((b"", 7, 2)))),
        (b"\x0bab\x0bcd\x1c", 8, Ok(Some((b"cd", 7, 3)))),
        (b"\x1c\x0d\x0bA\x1c", 8, Ok(Some((b"A", 5, 1)))),
        (b"\x0b12345678\x1c", 8, Ok(Some((b"12345678", 10, 0)))),
        (
            b"\x0b123456789",
            8,
            Err("frame too large: more than 8 bytes at byte 0"),
        ),
        (
            b"zz\x0b123456789\x1c",
            8,
            Err("frame too large: more than 8 bytes at byte 2"),
        ),
    ];
    for (input, max, expect) in cases {
        let got = decode(input, *max)
            .map(|found| found.map(|fr| (fr.payload, fr.consumed, fr.skipped)))
            .map_err(|err| err.to_string());
        let expect = expect.map_err(str::to_owned);
        assert_eq!(got, expect, "input {input:?}");
    }
}

#[test]
fn stateless_decode_walks_a_pipeline_by_consumed() {
    let input = b"x\x0bA\x1c\x0d\x0bB\x1c\n\x0bC\x1c";
    let mut rest = &input[..];
    let mut payloads = Vec::new();
    let mut skipped = 0;
    while let Some(fr) = decode(rest, 8).unwrap() {
        payloads.push(fr.payload);
        skipped += fr.skipped;
        rest = &rest[fr.consumed..];
    }
    assert_eq!(payloads, [&b"A"[..], b"B", b"C"]);
    assert_eq!(skipped, 1);
    assert!(rest.is_empty());
}
