//! MLLP framing (0x0B ... 0x1C 0x0D) with limits; pure, tokio codec behind a feature.
//!
//! # Wire format
//!
//! ```text
//! frame   = VT payload FS [CR]
//! VT      = 0x0B   start block
//! FS      = 0x1C   end block
//! CR      = 0x0D   end of frame (tolerated when missing)
//! payload = any bytes except VT and FS, at most `max_frame_len` of them
//! ```
//!
//! # Map
//!
//! - [`decode`]: stateless, zero-copy: the first frame of a `&[u8]`, as a borrowed slice and the
//!   number of bytes it used up (like httparse).
//! - [`Decoder`]: stateful, over a growing [`bytes::BytesMut`]; hands out payloads as
//!   [`bytes::Bytes`] without copying.
//! - [`encode`], [`frame`]: payload to frame.
//! - `Codec` (feature `tokio`): the `tokio_util::codec` traits over [`Decoder`] and [`encode`].
//! - [`Error`]: one error type, a kind and a byte offset.
//!
//! # Invariants
//!
//! - The limit is enforced before buffering more: once the bytes after a VT exceed
//!   `max_frame_len` without an FS among them, decoding fails at once; it never waits for the end
//!   byte. Whenever [`Decoder::decode`] returns `Ok(None)`, the buffer holds at most
//!   `max_frame_len + 1` bytes (the VT and the payload so far).
//! - Incomplete input is `Ok(None)`, never an error; the decoder never waits for a byte the frame
//!   does not need.
//! - [`Decoder`] scans each byte a bounded number of times across calls, so input that trickles in
//!   one byte at a time costs O(n) in total, not O(n^2).
//! - Every byte is accounted for: it belongs to a returned frame, is a CR or LF between frames, or
//!   is counted in [`Decoder::skipped_bytes`]. Nothing is dropped silently.
//! - The outcome does not depend on how the input is split into reads.
//!
//! # Deliberate choices on malformed input
//!
//! - **Garbage before VT** is skipped and counted in `skipped_bytes`, except CR and LF: a CR or
//!   LF between frames is line-ending noise (a frame's trailing CR that arrived in a later read,
//!   or senders that write `FS CR LF`), so it is dropped without being counted.
//! - **Missing CR.** A frame ends at FS. If the byte after FS is already buffered and is a CR, it
//!   is consumed with the frame; if the buffer ends right after FS, the frame is returned at once
//!   rather than waiting for a CR that may never come (a sender waiting for its ACK would
//!   deadlock with us). A CR that arrives later falls under the CR/LF rule above.
//! - **FS without VT** is garbage like any other byte outside a frame.
//! - **VT inside a frame** abandons the frame so far and starts a new one; the abandoned bytes
//!   (its VT included) are counted as skipped. HL7 forbids VT in a payload, so a second VT almost
//!   always means the sender gave up on a frame and resent: an error would lose the resend.
//! - **Oversized frame**: [`ErrorKind::FrameTooLarge`] at the offset of its VT. [`Decoder`] then
//!   drops what it held of that frame (counted as skipped) and looks for the next VT, so the rest
//!   of the oversized frame is skipped as garbage; a server may answer and go on or close.
//! - **End of stream inside a frame** ([`Decoder::decode_eof`]): [`ErrorKind::UnexpectedEof`].
//! - **Encoding** a payload that contains VT or FS fails with
//!   [`ErrorKind::DelimiterInPayload`]: the frame would not decode to the same payload.

#![forbid(unsafe_code)]

mod decode;
mod encode;
mod error;

#[cfg(feature = "tokio")]
mod codec;

#[cfg(feature = "tokio")]
pub use codec::Codec;
pub use decode::{Decoder, Frame, decode};
pub use encode::{encode, frame};
pub use error::{Error, ErrorKind};

/// Start block, the first byte of a frame.
pub const VT: u8 = 0x0B;
/// End block, the byte after the payload.
pub const FS: u8 = 0x1C;
/// The byte after the end block.
pub const CR: u8 = 0x0D;

/// Default limit on a frame's payload length in bytes (the VT, FS and CR are not counted).
///
/// 16 MiB: ORU messages with embedded PDFs (OBX-5 as base64 ED data) reach several MiB, and the
/// limit must let those through while still stopping a peer that never sends FS from growing
/// memory without bound.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;
