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
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
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
        assert_eq!(&a[14..15], "8");
    }
}
