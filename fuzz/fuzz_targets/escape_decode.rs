//! Escape decoding with arbitrary delimiters; encode(decode(x)) decodes back to decode(x).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let seps = hl7v2::Separators::default();
    for leniency in [hl7v2::Leniency::Lenient, hl7v2::Leniency::Strict] {
        if let Ok(text) = hl7v2::escape::decode(data, &seps, hl7v2::Charset::Utf8, leniency, hl7v2::Position::default()) {
            let encoded = hl7v2::escape::encode(&text, &seps, hl7v2::Charset::Utf8);
            let back = hl7v2::escape::decode(&encoded, &seps, hl7v2::Charset::Utf8, hl7v2::Leniency::Strict, hl7v2::Position::default())
                .expect("encoded text always decodes");
            assert_eq!(back, text);
        }
    }
    let latin = hl7v2::Charset::from_msh18("8859/1").expect("latin-1 is supported");
    let _ = hl7v2::escape::decode(data, &seps, latin, hl7v2::Leniency::Lenient, hl7v2::Position::default());
});
