//! Payload to frame: `VT payload FS CR`.

use crate::{CR, Error, ErrorKind, FS, VT};

/// Appends the frame for `payload` to `dst`.
///
/// Fails, leaving `dst` unchanged, when the payload contains VT or FS: its frame would not decode
/// to the same payload. No length limit is applied; the peer's limit is the peer's business.
pub fn encode(payload: &[u8], dst: &mut Vec<u8>) -> Result<(), Error> {
    check(payload)?;
    dst.reserve(payload.len() + 3);
    dst.push(VT);
    dst.extend_from_slice(payload);
    dst.extend_from_slice(&[FS, CR]);
    Ok(())
}

/// The frame for `payload`, as a new vector; see [`encode`].
pub fn frame(payload: &[u8]) -> Result<Vec<u8>, Error> {
    let mut dst = Vec::with_capacity(payload.len() + 3);
    encode(payload, &mut dst)?;
    Ok(dst)
}

/// Rejects a payload that holds a delimiter, naming the first one.
pub(crate) fn check(payload: &[u8]) -> Result<(), Error> {
    match memchr::memchr2(VT, FS, payload) {
        None => Ok(()),
        Some(at) => Err(Error::frame(
            ErrorKind::DelimiterInPayload { byte: payload[at] },
            at as u64,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_payload() {
        assert_eq!(frame(b"MSH|^~\\&").unwrap(), b"\x0bMSH|^~\\&\x1c\x0d");
        assert_eq!(frame(b"").unwrap(), b"\x0b\x1c\x0d");
    }

    #[test]
    fn appends_after_existing_bytes() {
        let mut dst = b"x".to_vec();
        encode(b"a", &mut dst).unwrap();
        encode(b"b", &mut dst).unwrap();
        assert_eq!(dst, b"x\x0ba\x1c\x0d\x0bb\x1c\x0d");
    }

    #[test]
    fn rejects_delimiters_and_leaves_dst_alone() {
        let mut dst = b"x".to_vec();
        let err = encode(b"MSH\x1cPID", &mut dst).unwrap_err();
        assert_eq!(
            err.to_string(),
            "payload contains the end-block byte 0x1c at byte 3"
        );
        assert_eq!(dst, b"x");
        let err = frame(b"\x0b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "payload contains the start-block byte 0x0b at byte 0"
        );
    }
}
