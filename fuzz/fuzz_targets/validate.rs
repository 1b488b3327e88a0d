//! Validation of arbitrary messages against the standard definitions.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = hl7v2::parse(data) {
        let _ = hl7v2::validate::validate(&msg);
    }
});
