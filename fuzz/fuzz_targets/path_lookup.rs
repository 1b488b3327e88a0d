//! Path parsing and lookup: the first line is a path, the rest a message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let Ok(path_text) = std::str::from_utf8(&data[..split]) else { return };
    let Ok(path) = hl7v2::Path::parse(path_text) else { return };
    // A path prints back to a path that parses to the same value.
    assert_eq!(hl7v2::Path::parse(&path.to_string()).ok(), Some(path));
    let body = data.get(split + 1..).unwrap_or_default();
    if let Ok(msg) = hl7v2::parse(body) {
        let _ = msg.get_path(&path).map(|n| n.decoded());
        let mut owned = msg.to_owned_message();
        let _ = owned.set(path_text, "X^Y|Z");
        let _ = owned.get_path(&path).map(|n| n.decoded());
        let _ = hl7v2::parse(&owned.encode());
    }
});
