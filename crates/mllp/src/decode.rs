//! Finding frames in bytes: the stateless [`decode`] and the stateful [`Decoder`], both driven by
//! one `Cursor` so the two cannot disagree.
//!
//! The cursor is handed input that always starts where it left off: outside a frame at the next
//! unexamined byte, inside a frame at that frame's VT. It drops garbage from the front as it goes
//! and remembers how far into the current frame it has searched, which is what makes a
//! byte-at-a-time trickle O(n).

use bytes::{Buf, Bytes, BytesMut};
use memchr::{memchr, memchr2};

use crate::{CR, DEFAULT_MAX_FRAME_LEN, Error, ErrorKind, FS, VT};

const LF: u8 = 0x0A;

/// The first frame found by [`decode`], borrowed from its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The bytes between VT and FS.
    pub payload: &'a [u8],
    /// Bytes of the input used up: skipped bytes, VT, payload, FS, and the CR when present.
    /// Decoding the next frame starts at `&input[consumed..]`.
    pub consumed: usize,
    /// Garbage bytes skipped before this frame (CR and LF between frames not counted).
    pub skipped: usize,
}

/// Finds the first frame in `input`, without copying and without keeping state.
///
/// `Ok(None)` means no whole frame yet: call again with more bytes. A payload longer than
/// `max_frame_len` fails as soon as `input` shows it, whether or not its FS has arrived. Offsets
/// in errors count from the start of `input`.
///
/// Each call scans from the start; a reader of a stream should use [`Decoder`], which drops
/// garbage as it goes and never scans a byte twice.
pub fn decode(input: &[u8], max_frame_len: usize) -> Result<Option<Frame<'_>>, Error> {
    let mut cursor = Cursor::default();
    let mut rest = input;
    let Some(found) = cursor.next_frame(&mut rest, max_frame_len)? else {
        return Ok(None);
    };
    let start = input.len() - rest.len();
    Ok(Some(Frame {
        payload: &input[start + 1..start + 1 + found.payload_len],
        consumed: start + found.len,
        skipped: cursor.skipped as usize,
    }))
}

/// Decodes frames from a stream, one buffer that the caller keeps appending reads to.
///
/// Pass the same buffer to every call and only ever append to it: the decoder removes what it
/// consumes from the front and remembers how far it has searched. It never holds more than
/// `max_frame_len + 1` bytes of an unfinished frame (see the crate docs).
#[derive(Debug, Clone)]
pub struct Decoder {
    cursor: Cursor,
    max_frame_len: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder with the limit [`DEFAULT_MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Decoder::with_max_frame_len(DEFAULT_MAX_FRAME_LEN)
    }

    /// A decoder that rejects payloads longer than `max_frame_len` bytes.
    pub fn with_max_frame_len(max_frame_len: usize) -> Self {
        Decoder {
            cursor: Cursor::default(),
            max_frame_len,
        }
    }

    /// The payload length limit in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Bytes dropped so far without being returned in a frame: garbage before a VT, frames
    /// abandoned by a new VT, cut short by end of stream or rejected as too large. CR and LF
    /// between frames are not counted. For logs and metrics.
    pub fn skipped_bytes(&self) -> u64 {
        self.cursor.skipped
    }

    /// Bytes of the stream consumed so far; the stream offset of the buffer's first byte.
    pub fn consumed_bytes(&self) -> u64 {
        self.cursor.pos
    }

    /// Removes the next frame from the front of `buf` and returns its payload.
    ///
    /// `Ok(None)` means more bytes are needed; garbage has then been removed from `buf`. On an
    /// error the decoder has dropped what it held of the bad frame and can go on with the next
    /// call: the rest of that frame will be skipped as garbage.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        let Some(found) = self.cursor.next_frame(buf, self.max_frame_len)? else {
            return Ok(None);
        };
        let mut frame = buf.split_to(found.len);
        frame.advance(1);
        frame.truncate(found.payload_len);
        Ok(Some(frame.freeze()))
    }

    /// Like [`decode`](Self::decode), for when the stream has ended: a frame cut short is
    /// [`ErrorKind::UnexpectedEof`] rather than `Ok(None)`.
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        if let Some(payload) = self.decode(buf)? {
            return Ok(Some(payload));
        }
        if !self.cursor.in_frame {
            return Ok(None);
        }
        let kind = ErrorKind::UnexpectedEof {
            payload_len: buf.len().saturating_sub(1),
        };
        let err = Error::frame(kind, self.cursor.pos);
        let len = buf.len();
        self.cursor.drop_frame(buf, len);
        Err(err)
    }
}

/// Input the cursor can read and drop bytes from the front of.
trait Input {
    fn bytes(&self) -> &[u8];
    fn drop_front(&mut self, n: usize);
}

impl<'a> Input for &'a [u8] {
    fn bytes(&self) -> &[u8] {
        self
    }

    fn drop_front(&mut self, n: usize) {
        let all: &'a [u8] = self;
        *self = &all[n..];
    }
}

impl Input for BytesMut {
    fn bytes(&self) -> &[u8] {
        self
    }

    fn drop_front(&mut self, n: usize) {
        self.advance(n);
    }
}

/// Where decoding stands between calls.
#[derive(Debug, Clone, Default)]
struct Cursor {
    /// Stream offset of the input's first byte.
    pos: u64,
    /// Inside a frame: the input starts with its VT.
    in_frame: bool,
    /// Inside a frame: `input[1..searched]` holds no VT or FS, so the next search starts at
    /// `searched`.
    searched: usize,
    skipped: u64,
    /// Bytes looked at by searches, to test the O(n) promise without timing anything.
    #[cfg(test)]
    examined: u64,
}

/// A whole frame at the front of the input, not yet removed from it.
struct Found {
    payload_len: usize,
    /// VT + payload + FS, plus 1 when a CR follows.
    len: usize,
}

impl Cursor {
    /// Drops garbage and abandoned frames from the front of `input` until a whole frame is at its
    /// front, more bytes are needed, or the frame at its front is too large (then dropped).
    fn next_frame(&mut self, input: &mut impl Input, max: usize) -> Result<Option<Found>, Error> {
        loop {
            let buf = input.bytes();
            if !self.in_frame {
                let vt = memchr(VT, buf);
                self.count_examined(vt.map_or(buf.len(), |at| at + 1));
                match vt {
                    Some(0) => {
                        self.in_frame = true;
                        self.searched = 1;
                    }
                    Some(at) => self.drop_garbage(input, at),
                    None if buf.is_empty() => return Ok(None),
                    None => {
                        self.drop_garbage(input, buf.len());
                        return Ok(None);
                    }
                }
                continue;
            }

            // Input index max + 1 is the last one where an FS still leaves a payload of max bytes.
            let window = buf.len().min(max.saturating_add(2));
            let from = self.searched.max(1);
            if from < window {
                let hit = memchr2(VT, FS, &buf[from..window]);
                self.count_examined(hit.map_or(window - from, |i| i + 1));
                match hit.map(|i| from + i) {
                    Some(at) if buf[at] == FS => {
                        let len = if buf.get(at + 1) == Some(&CR) {
                            at + 2
                        } else {
                            at + 1
                        };
                        self.in_frame = false;
                        self.pos += len as u64;
                        return Ok(Some(Found {
                            payload_len: at - 1,
                            len,
                        }));
                    }
                    Some(at) => {
                        // A new VT: the frame so far is abandoned, the new one starts at `at`.
                        self.drop_frame(input, at);
                        continue;
                    }
                    None => self.searched = window,
                }
            }
            if buf.len() > max.saturating_add(1) {
                let err = Error::frame(ErrorKind::FrameTooLarge { max }, self.pos);
                self.drop_frame(input, window);
                return Err(err);
            }
            return Ok(None);
        }
    }

    /// Drops `n` bytes outside any frame; all but CR and LF count as skipped.
    fn drop_garbage(&mut self, input: &mut impl Input, n: usize) {
        let noise = input.bytes()[..n]
            .iter()
            .filter(|&&b| b == CR || b == LF)
            .count();
        self.skipped += (n - noise) as u64;
        self.pos += n as u64;
        input.drop_front(n);
    }

    /// Drops the first `n` bytes of the current frame, all counted as skipped, and leaves it.
    fn drop_frame(&mut self, input: &mut impl Input, n: usize) {
        self.skipped += n as u64;
        self.pos += n as u64;
        self.in_frame = false;
        input.drop_front(n);
    }

    #[cfg(test)]
    fn count_examined(&mut self, n: usize) {
        self.examined += n as u64;
    }

    #[cfg(not(test))]
    fn count_examined(&mut self, _n: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trickle_examines_each_byte_a_bounded_number_of_times() {
        let mut stream = b"garbage\r\n".to_vec();
        for i in 0..20 {
            crate::encode(&vec![b'x'; 1000 * i], &mut stream).unwrap();
        }
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::new();
        let mut frames = 0;
        for &b in &stream {
            buf.extend_from_slice(&[b]);
            while decoder.decode(&mut buf).unwrap().is_some() {
                frames += 1;
            }
        }
        assert_eq!(frames, 20);
        // Each byte is looked at about once; rescanning the frame on every call would examine
        // about 10^8 bytes here.
        assert!(
            decoder.cursor.examined <= 2 * stream.len() as u64,
            "examined {} of {}",
            decoder.cursor.examined,
            stream.len()
        );
    }

    #[test]
    fn a_buffer_swapped_mid_frame_does_not_panic() {
        let mut decoder = Decoder::with_max_frame_len(8);
        let mut buf = BytesMut::from(&b"\x0babcdef"[..]);
        assert!(decoder.decode(&mut buf).unwrap().is_none());
        // Misuse: a shorter buffer that does not start with the frame's VT.
        let mut other = BytesMut::from(&b"\x1c"[..]);
        let _ = decoder.decode(&mut other);
        let mut empty = BytesMut::new();
        let _ = decoder.decode_eof(&mut empty);
    }

    #[test]
    fn frame_at_exact_limit_and_one_over() {
        let mut decoder = Decoder::with_max_frame_len(3);
        let mut buf = BytesMut::from(&b"\x0babc\x1c\x0d\x0babcd"[..]);
        assert_eq!(decoder.decode(&mut buf).unwrap().unwrap(), &b"abc"[..]);
        let err = decoder.decode(&mut buf).unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame too large: more than 3 bytes at byte 6"
        );
    }
}
