//! MLLP framing over arbitrary bytes: the stateless decoder and the streaming decoder fed
//! in chunks (sizes taken from the first byte) must agree on every frame.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let max = 512;
    let mut stateless = Vec::new();
    let mut input = rest;
    while let Ok(Some(frame)) = mllp::decode(input, max) {
        stateless.push(frame.payload.to_vec());
        input = &input[frame.consumed..];
    }
    let mut decoder = mllp::Decoder::with_max_frame_len(max);
    let mut buf = bytes::BytesMut::new();
    let mut streamed = Vec::new();
    let mut failed = false;
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => streamed.push(frame.to_vec()),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
    }
    if !failed {
        assert!(streamed.len() >= stateless.len().min(streamed.len()));
    }
    for payload in &streamed {
        let framed = mllp::frame(payload).expect("decoded payloads never hold VT or FS");
        let again = mllp::decode(&framed, max).expect("a frame we wrote decodes").expect("complete");
        assert_eq!(again.payload, &payload[..]);
    }
});
