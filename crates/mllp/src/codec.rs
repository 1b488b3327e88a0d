//! The `tokio_util::codec` traits over [`Decoder`] and the encoder, for `Framed` sockets.

use bytes::{Bytes, BytesMut};

use crate::{CR, DEFAULT_MAX_FRAME_LEN, Decoder, Error, FS, VT};

/// MLLP as a `tokio_util` codec: decodes payloads as [`Bytes`], encodes anything that is bytes.
///
/// Decoding follows [`Decoder`]; at end of stream a frame cut short is an error, never dropped.
/// Encoding follows [`encode`](crate::encode): a payload holding VT or FS is refused.
#[derive(Debug, Clone, Default)]
pub struct Codec {
    decoder: Decoder,
}

impl Codec {
    /// A codec with the limit [`DEFAULT_MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Codec::with_max_frame_len(DEFAULT_MAX_FRAME_LEN)
    }

    /// A codec that rejects incoming payloads longer than `max_frame_len` bytes.
    pub fn with_max_frame_len(max_frame_len: usize) -> Self {
        Codec {
            decoder: Decoder::with_max_frame_len(max_frame_len),
        }
    }

    /// The decoder inside, for its counters ([`Decoder::skipped_bytes`]).
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }
}

impl tokio_util::codec::Decoder for Codec {
    type Item = Bytes;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        self.decoder.decode(src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        self.decoder.decode_eof(src)
    }
}

impl<T: AsRef<[u8]>> tokio_util::codec::Encoder<T> for Codec {
    type Error = Error;

    fn encode(&mut self, payload: T, dst: &mut BytesMut) -> Result<(), Error> {
        let payload = payload.as_ref();
        crate::encode::check(payload)?;
        dst.reserve(payload.len() + 3);
        dst.extend_from_slice(&[VT]);
        dst.extend_from_slice(payload);
        dst.extend_from_slice(&[FS, CR]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::codec::{Decoder as _, Encoder as _};

    #[test]
    fn round_trip_through_the_traits() {
        let mut codec = Codec::with_max_frame_len(64);
        let mut buf = BytesMut::new();
        codec.encode(&b"MSH|a"[..], &mut buf).unwrap();
        codec.encode(Bytes::from_static(b""), &mut buf).unwrap();
        codec.encode("MSH|b", &mut buf).unwrap();
        assert_eq!(&buf[..], b"\x0bMSH|a\x1c\x0d\x0b\x1c\x0d\x0bMSH|b\x1c\x0d");
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"MSH|a"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b""[..]);
        assert_eq!(codec.decode_eof(&mut buf).unwrap().unwrap(), &b"MSH|b"[..]);
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    }

    #[test]
    fn encoder_refuses_delimiters_and_writes_nothing() {
        let mut codec = Codec::new();
        let mut buf = BytesMut::new();
        let err = codec.encode(&b"ab\x0b"[..], &mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "payload contains the start-block byte 0x0b at byte 2"
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn io_errors_convert_and_have_no_offset() {
        let err = Error::from(std::io::Error::other("connection reset"));
        assert_eq!(err.to_string(), "i/o error: connection reset");
        assert_eq!(err.offset(), None);
        assert!(err.kind().is_none());
    }
}
