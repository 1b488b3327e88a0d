//! Deterministic resource ids: the same business identity always gives the same id, so an A01 and a
//! later A03 for one visit name one Encounter, and a redelivered message rewrites the same resources.
//!
//! An id is the SHA-256 of the resource type and the identity's parts, shown as a UUID (8-4-4-4-12 hex,
//! version nibble 8 "custom" per RFC 9562) so it is also valid as `urn:uuid:`.

use sha2::{Digest, Sha256};

/// The id of a `resource_type` whose identity is `parts` (e.g. `["MR", "urn:oid:1.2.3", "12345"]`).
///
/// Parts are length-prefixed before hashing, so `["ab", "c"]` and `["a", "bc"]` differ.
pub fn id(resource_type: &str, parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    hash.update(resource_type.as_bytes());
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    let mut b: [u8; 16] = hash.finalize()[..16].try_into().expect("16 of 32 bytes");
    b[6] = (b[6] & 0x0f) | 0x80; // version 8: custom
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    uuid_text(&b)
}

/// 16 bytes as a lowercase 8-4-4-4-12 UUID, written straight into one allocation (ids are made for
/// every resource of every message, so this avoids an intermediate hex string and a `format!`).
fn uuid_text(bytes: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_separated() {
        let a = id("Patient", &["urn:oid:1.2", "123"]);
        assert_eq!(a, id("Patient", &["urn:oid:1.2", "123"]));
        assert_ne!(a, id("Encounter", &["urn:oid:1.2", "123"]));
        assert_ne!(id("Patient", &["ab", "c"]), id("Patient", &["a", "bc"]));
        assert_eq!(a.len(), 36);
        // SHA-256 over "Patient", then each part's length (u64, little-endian) and bytes, as an
        // independent implementation (Python's hashlib) computes it; a part longer than the
        // stack buffer is hashed the same way.
        assert_eq!(a, "00f6fa6f-7592-8643-ace3-f2b58d6fda12");
        assert_eq!(
            id("Location", &["pl", &"x".repeat(300), "y"]),
            "9b6f86c5-f196-844f-8b8c-5d4d2919d046"
        );
        // Parts that fill the buffer between them.
        assert_eq!(
            id("Location", &[&"a".repeat(200), &"b".repeat(100)]),
            "161dff3c-9154-8d6a-812a-f0bc31059bcc"
        );
        assert_eq!(&a[14..15], "8");
        assert_eq!(
            uuid_text(&[0xab; 16]),
            "abababab-abab-abab-abab-abababababab"
        );
        assert_eq!(
            uuid_text(&core::array::from_fn(|i| i as u8)),
            "00010203-0405-0607-0809-0a0b0c0d0e0f"
        );
    }
}
