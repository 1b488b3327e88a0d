//! Whole-file entry point: split, parse, walk every value, decode, re-encode.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for raw in hl7v2::split_file(data).flatten() {
        for leniency in [hl7v2::Leniency::Lenient, hl7v2::Leniency::Strict] {
            let options = hl7v2::ParseOptions { leniency, charset: None };
            let Ok(msg) = hl7v2::parse_with(raw.bytes, options) else { continue };
            for seg in msg.segments() {
                for field in seg.fields() {
                    for rep in field.repetitions() {
                        for comp in rep.components() {
                            for sub in comp.subcomponents() {
                                let _ = sub.decoded_strict();
                            }
                        }
                    }
                }
            }
            let _ = hl7v2::json::to_json(&msg);
            assert_eq!(msg.to_owned_message().encode(), raw.bytes, "round trip must be exact");
        }
    }
});
