//! Property tests: how the input is cut into reads never changes what comes out.

use bytes::BytesMut;
use mllp::{CR, Decoder, FS, VT, decode};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Frame(Vec<u8>),
    Err(String),
}

/// Feeds `input` cut at `cuts` (sorted, deduplicated here) and collects everything, end of
/// stream included. Returns the outputs and the skipped count.
fn run(input: &[u8], cuts: &[usize], max: usize) -> (Vec<Out>, u64) {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts.push(input.len());
    let mut decoder = Decoder::with_max_frame_len(max);
    let mut buf = BytesMut::new();
    let mut outs = Vec::new();
    let mut from = 0;
    for &to in &cuts {
        buf.extend_from_slice(&input[from..to]);
        from = to;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(p)) => outs.push(Out::Frame(p.to_vec())),
                Ok(None) => break,
                Err(err) => outs.push(Out::Err(err.to_string())),
            }
            assert!(buf.len() <= max + 1 + input.len());
        }
        assert!(
            buf.len() <= max + 1,
            "holding {} with limit {max}",
            buf.len()
        );
    }
    loop {
        match decoder.decode_eof(&mut buf) {
            Ok(Some(p)) => outs.push(Out::Frame(p.to_vec())),
            Ok(None) => break,
            Err(err) => outs.push(Out::Err(err.to_string())),
        }
    }
    assert!(buf.is_empty());
    assert_eq!(decoder.consumed_bytes(), input.len() as u64);
    (outs, decoder.skipped_bytes())
}

/// Bytes rich in delimiters, so that the odd cases come up often.
fn wire_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(VT),
        Just(FS),
        Just(CR),
        Just(b'\n'),
        b'A'..=b'Z',
        any::<u8>(),
    ]
}

/// A payload: anything but VT and FS.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        any::<u8>().prop_map(|b| if b == VT || b == FS { b'|' } else { b }),
        0..64,
    )
}

/// Garbage between frames: anything but VT.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(wire_byte().prop_filter("no vt", |&b| b != VT), 0..8)
}

proptest! {
    #[test]
    fn random_splits_of_frames_give_the_same_frames(
        parts in prop::collection::vec((garbage(), payload(), any::<bool>()), 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        let mut skipped = 0u64;
        for (junk, payload, with_cr) in &parts {
            skipped += junk.iter().filter(|&&b| b != CR && b != b'\n').count() as u64;
            input.extend_from_slice(junk);
            mllp::encode(payload, &mut input).unwrap();
            if !with_cr {
                input.pop();
            }
            expected.push(Out::Frame(payload.clone()));
        }
        let (outs, got_skipped) = run(&input, &cuts, 64);
        prop_assert_eq!(outs, expected);
        prop_assert_eq!(got_skipped, skipped);
    }

    #[test]
    fn any_bytes_decode_the_same_however_they_are_cut(
        input in prop::collection::vec(wire_byte(), 0..200),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
        max in 0usize..16,
    ) {
        let whole = run(&input, &[], max);
        prop_assert_eq!(run(&input, &cuts, max), whole.clone());
        let ones: Vec<usize> = (0..input.len()).collect();
        prop_assert_eq!(run(&input, &ones, max), whole);
    }

    #[test]
    fn stateless_decode_agrees_with_the_decoder(
        input in prop::collection::vec(wire_byte(), 0..200),
        max in 0usize..16,
    ) {
        // Walk the input with `decode` until it needs more bytes or fails.
        let mut outs = Vec::new();
        let mut base = 0;
        loop {
            match decode(&input[base..], max) {
                Ok(Some(fr)) => {
                    prop_assert!(fr.consumed > 0 && base + fr.consumed <= input.len());
                    outs.push(Out::Frame(fr.payload.to_vec()));
                    base += fr.consumed;
                }
                Ok(None) => break,
                Err(err) => {
                    let kind = err.kind().unwrap().clone();
                    let at = base as u64 + err.offset().unwrap();
                    outs.push(Out::Err(format!("{kind} at byte {at}")));
                    break;
                }
            }
        }
        let (decoded, _) = run(&input, &[], max);
        // The decoder goes on after an error and handles end of stream; compare the common part.
        prop_assert_eq!(&decoded[..outs.len()], &outs[..]);
        if !matches!(outs.last(), Some(Out::Err(_))) {
            prop_assert!(decoded[outs.len()..].iter().all(|o| matches!(o, Out::Err(_))));
        }
    }

    #[test]
    fn encode_then_decode_round_trips(payload in payload()) {
        let framed = mllp::frame(&payload).unwrap();
        let fr = decode(&framed, payload.len()).unwrap().unwrap();
        prop_assert_eq!(fr.payload, &payload[..]);
        prop_assert_eq!(fr.consumed, framed.len());
        prop_assert_eq!(fr.skipped, 0);
    }
}
