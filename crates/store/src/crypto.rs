//! Encryption at rest: the key file, sealed records, and the patient-identifier index.
//!
//! # Map
//!
//! ```text
//! <data dir>/store.key ──> MasterKey ──HKDF-SHA256──┬─> "payload" key   XChaCha20-Poly1305 seal/open
//!                                                   ├─> "patient-index" HMAC-SHA256 of identifiers
//!                                                   └─> "key-check"     16 bytes kept in the database
//! ```
//!
//! # On-disk formats and invariants
//!
//! - **Key file**: the text `causeway-store-key v1\n` then 64 lowercase hex digits and `\n`,
//!   mode 0600. It is written to a temporary file (0600, fsynced) and hard-linked into place;
//!   the link fails if a key already exists, so two processes opening a fresh directory at once
//!   end up with one key. A crash leaves either no key file or a complete one, plus perhaps a
//!   stale `store.key.tmp-*` that the next open removes. A key file readable by group or others
//!   is refused.
//! - **Sealed record**: format byte ‖ 24-byte random nonce ‖ ciphertext ‖ 16-byte tag.
//!   Random nonces need no counter to survive crashes; 192 bits make collisions negligible.
//!   Format `0x01`: the ciphertext is of the record's bytes. Format `0x02`: of a zstd frame of
//!   them (with the original length in its header), used for message payloads when that is
//!   smaller: HL7 text shrinks by a third or more, which keeps a message's row out of overflow
//!   pages and cuts what each group commit writes and fsyncs. Compression comes before
//!   encryption (ciphertext does not compress) and runs on the caller's thread, not the writer's.
//!   Format `0x03`, for a message's transformed (outbound) copy only: of a delta against the
//!   message's payload, `payload length ‖ shared prefix length ‖ shared suffix length` (each
//!   4 bytes big-endian) then the bytes between, used when that is at most half the copy. A
//!   transform usually changes a few fields, so the copy costs a few dozen bytes and no second
//!   compression; it opens only together with the payload it was made against.
//! - **Associated data**: `causeway-store/v1/<kind>/` ‖ row id as 8 bytes big-endian (and a
//!   resource version's number after it), where kind is `message-payload`, `message-outbound`,
//!   `inbound-ack`, `delivery-ack`, `resource-version`, `pending-resource` or `audit-query`, and
//!   for format `0x02` the suffix `/zstd`, for `0x03` the suffix `/delta`. A ciphertext copied
//!   to another row, a row whose id was changed, or a format byte changed, fails to decrypt.
//! - **Patient identifiers** are stored only as HMAC-SHA256 under the index key: a stolen
//!   database file does not reveal MRNs, yet exact-match search works.
//! - **Key check**: the database keeps a value derived from the key; opening with another key
//!   fails loudly instead of producing a store whose old payloads cannot be read.
//!
//! Key material never reaches `Debug` output or logs, and is zeroed on drop.

use std::cell::RefCell;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind as IoErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hkdf::hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::MessageId;
use crate::error::{Error, Record};

/// Name of the key file inside the data directory.
pub const KEY_FILE_NAME: &str = "store.key";

const KEY_FILE_HEADER: &str = "causeway-store-key v1\n";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Sealed-record format byte: the plaintext is the record's bytes.
const SEALED_PLAIN: u8 = 1;
/// Sealed-record format byte: the plaintext is a zstd frame of the record's bytes.
const SEALED_ZSTD: u8 = 2;
/// Sealed-record format byte: the plaintext is a delta of the record's bytes against its
/// message's payload ([`delta`]).
const SEALED_DELTA: u8 = 3;
/// A delta's header: the base's length, then the shared prefix's and suffix's.
const DELTA_HEADER_LEN: usize = 12;
/// Shorter records are sealed as they are: a zstd frame's header and the entropy tables eat
/// the gain (an ACK of 150 bytes does not shrink).
const COMPRESS_MIN_LEN: usize = 512;
/// zstd's fastest standard level; a 2.5 KB ADT comes out 1.7 times smaller.
const ZSTD_LEVEL: i32 = 1;
/// Largest record a zstd frame may claim to expand to (the largest payload the store takes).
const MAX_UNPACKED_LEN: u64 = crate::MAX_PAYLOAD_LEN as u64;
const AAD_PREFIX: &[u8] = b"causeway-store/v1/";

/// The master key from the key file. Zeroed on drop; `Debug` prints no key material.
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// A fresh key from the OS random source.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Key`] if the OS cannot provide randomness.
    pub fn generate(path_for_errors: &Path) -> Result<Self, Error> {
        let bytes = <[u8; KEY_LEN]>::try_generate().map_err(|e| Error::Key {
            path: path_for_errors.to_owned(),
            reason: format!("cannot read OS randomness: {e}"),
        })?;
        Ok(Self(Zeroizing::new(bytes)))
    }

    /// Reads the key file at `path`, or creates it (mode 0600) when it does not exist and
    /// `may_create` is true. Returns the key and whether it was created.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Key`] for a missing (when creation is not allowed), malformed or
    /// group/world-accessible key file; [`crate::ErrorKind::Io`] for file system errors.
    pub fn load_or_create(path: &Path, may_create: bool) -> Result<(Self, bool), Error> {
        match Self::load(path) {
            Ok(key) => return Ok((key, false)),
            Err(Error::Io { error, .. }) if error.kind() == IoErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if !may_create {
            return Err(Error::Key {
                path: path.to_owned(),
                reason: "missing, but the database already holds data sealed with a key; \
                         restore the key file from backup"
                    .into(),
            });
        }
        let key = Self::generate(path)?;
        match key.write_new(path) {
            Ok(()) => Ok((key, true)),
            // Another process won the race: use its key.
            Err(Error::Io { error, .. }) if error.kind() == IoErrorKind::AlreadyExists => {
                Ok((Self::load(path)?, false))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads and checks the key file.
    ///
    /// # Errors
    /// As [`MasterKey::load_or_create`].
    pub fn load(path: &Path) -> Result<Self, Error> {
        let meta = fs::metadata(path).map_err(|e| Error::io("read key file", path, e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::Key {
                path: path.to_owned(),
                reason: format!("permissions {mode:04o} are too open; run chmod 600 on it"),
            });
        }
        let text = Zeroizing::new(
            fs::read_to_string(path).map_err(|e| Error::io("read key file", path, e))?,
        );
        let malformed = |reason: &str| Error::Key {
            path: path.to_owned(),
            reason: reason.into(),
        };
        let body = text
            .strip_prefix(KEY_FILE_HEADER)
            .ok_or_else(|| malformed("does not start with the line `causeway-store-key v1`"))?;
        let hex_digits = body.strip_suffix('\n').unwrap_or(body);
        if hex_digits.len() != KEY_LEN * 2 {
            return Err(malformed("key line must be 64 hex digits"));
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(hex_digits, &mut bytes[..])
            .map_err(|_| malformed("key line must be 64 hex digits"))?;
        Ok(Self(bytes))
    }

    fn write_new(&self, path: &Path) -> Result<(), Error> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = tmp_key_path(path)?;
        let mut text = Zeroizing::new(String::with_capacity(KEY_FILE_HEADER.len() + 65));
        text.push_str(KEY_FILE_HEADER);
        text.push_str(&hex::encode(&self.0[..]));
        text.push('\n');
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        };
        let written = write().map_err(|e| Error::io("write key file", &tmp, e));
        let linked = written.and_then(|()| {
            fs::hard_link(&tmp, path).map_err(|e| Error::io("create key file", path, e))
        });
        let _ = fs::remove_file(&tmp);
        linked?;
        sync_dir(dir)
    }
}

/// Removes temporary key files a crash may have left behind in `dir`.
pub(crate) fn remove_stale_tmp_keys(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{KEY_FILE_NAME}.tmp-");
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn tmp_key_path(path: &Path) -> Result<PathBuf, Error> {
    let suffix = <u64>::try_generate().map_err(|e| Error::Key {
        path: path.to_owned(),
        reason: format!("cannot read OS randomness: {e}"),
    })?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{suffix:016x}"));
    Ok(path.with_file_name(name))
}

/// Fsyncs a directory so a newly created entry in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

/// Seals and opens records, and computes the patient-identifier index.
pub struct Cipher {
    aead: XChaCha20Poly1305,
    index: Hmac<Sha256>,
    key_check: [u8; 16],
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher([redacted])")
    }
}

impl Cipher {
    /// Derives the working keys from the master key.
    pub fn new(master: &MasterKey) -> Self {
        let hk = Hkdf::<Sha256>::new(None, &master.0[..]);
        let mut payload_key = Zeroizing::new([0u8; KEY_LEN]);
        let mut index_key = Zeroizing::new([0u8; KEY_LEN]);
        let mut key_check = [0u8; 16];
        // Lengths are fixed and far below HKDF's 255 * 32 byte limit, so expand cannot fail.
        for (info, out) in [
            (&b"causeway-store v1 payload"[..], &mut payload_key[..]),
            (&b"causeway-store v1 patient-index"[..], &mut index_key[..]),
            (&b"causeway-store v1 key-check"[..], &mut key_check[..]),
        ] {
            if hk.expand(info, out).is_err() {
                unreachable!("hkdf output length is fixed and valid");
            }
        }
        let aead = match XChaCha20Poly1305::new_from_slice(&payload_key[..]) {
            Ok(a) => a,
            Err(_) => unreachable!("payload key has the cipher's key length"),
        };
        let index = match <Hmac<Sha256> as Mac>::new_from_slice(&index_key[..]) {
            Ok(m) => m,
            Err(_) => unreachable!("hmac accepts any key length"),
        };
        Self {
            aead,
            index,
            key_check,
        }
    }

    /// A value derived from the key, stored in the database to detect a wrong key file.
    pub fn key_check(&self) -> [u8; 16] {
        self.key_check
    }

    /// Encrypts `plaintext` for `record` with a fresh random nonce (format `0x01`).
    ///
    /// # Errors
    /// [`crate::ErrorKind::Key`] if the OS cannot provide randomness.
    pub fn seal(&self, record: Record, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        self.seal_format(SEALED_PLAIN, record, plaintext)
    }

    /// Seals `plaintext`, or its zstd frame from [`compress`] when there is one (format `0x02`).
    ///
    /// # Errors
    /// [`crate::ErrorKind::Key`] if the OS cannot provide randomness.
    pub fn seal_compressed(
        &self,
        record: Record,
        plaintext: &[u8],
        compressed: Option<&[u8]>,
    ) -> Result<Vec<u8>, Error> {
        match compressed {
            Some(frame) => self.seal_format(SEALED_ZSTD, record, frame),
            None => self.seal_format(SEALED_PLAIN, record, plaintext),
        }
    }

    /// Seals the outbound (transformed) copy of message `id`, whose payload is `payload`: as a
    /// delta against the payload when that is at most half the copy (format `0x03`), else as
    /// [`Cipher::seal_compressed`] would with [`compress`]. Open it with [`Cipher::open_with_base`].
    ///
    /// # Errors
    /// [`crate::ErrorKind::Key`] if the OS cannot provide randomness.
    pub fn seal_outbound(
        &self,
        id: MessageId,
        payload: &[u8],
        outbound: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let record = Record::MessageOutbound(id);
        match delta(payload, outbound) {
            Some(delta) => self.seal_format(SEALED_DELTA, record, &delta),
            None => self.seal_compressed(record, outbound, compress(outbound).as_deref()),
        }
    }

    fn seal_format(&self, format: u8, record: Record, body: &[u8]) -> Result<Vec<u8>, Error> {
        let nonce = XNonce::try_generate().map_err(|e| Error::Key {
            path: PathBuf::from(KEY_FILE_NAME),
            reason: format!("cannot read OS randomness for a nonce: {e}"),
        })?;
        let aad = associated_data(record, format);
        let ciphertext = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: body,
                    aad: &aad,
                },
            )
            // Encryption only fails for plaintexts beyond 256 GiB; payloads are capped far below.
            .map_err(|_| Error::invalid("payload", "too long to encrypt"))?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(format);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Decrypts a sealed `record` and returns the record's bytes.
    ///
    /// # Errors
    /// [`crate::ErrorKind::Decrypt`] when the bytes were altered, belong to another row, were
    /// sealed under another key, or are a delta ([`needs_base`]: use [`Cipher::open_with_base`]).
    pub fn open(&self, record: Record, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        self.open_with_base(record, sealed, None)
    }

    /// [`Cipher::open`] for a record that may be a delta against `base`, its message's payload
    /// (opened), which [`needs_base`] tells.
    ///
    /// # Errors
    /// As [`Cipher::open`]; a delta without its base, or against bytes of another length than
    /// it was made against, fails too.
    pub fn open_with_base(
        &self,
        record: Record,
        sealed: &[u8],
        base: Option<&[u8]>,
    ) -> Result<Vec<u8>, Error> {
        let fail = || Error::Decrypt { record };
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN {
            return Err(fail());
        }
        let format = sealed[0];
        if ![SEALED_PLAIN, SEALED_ZSTD, SEALED_DELTA].contains(&format) {
            return Err(fail());
        }
        let nonce = XNonce::try_from(&sealed[1..1 + NONCE_LEN]).map_err(|_| fail())?;
        let aad = associated_data(record, format);
        let body = self
            .aead
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map_err(|_| fail())?;
        match format {
            SEALED_PLAIN => return Ok(body),
            SEALED_DELTA => return base.and_then(|base| undelta(base, &body)).ok_or_else(fail),
            _ => {}
        }
        // Authenticated, so written by this store: a frame that does not decode is a bug or a
        // different key's tampering that the tag already refused; either way, refuse.
        let len = zstd::zstd_safe::get_frame_content_size(&body)
            .ok()
            .flatten()
            .filter(|&n| n <= MAX_UNPACKED_LEN)
            .ok_or_else(fail)?;
        let len = usize::try_from(len).map_err(|_| fail())?;
        let out = decompress(&body, len).ok_or_else(fail)?;
        if out.len() != len {
            return Err(fail());
        }
        Ok(out)
    }

    /// The keyed hash under which a patient identifier is indexed.
    pub fn patient_index(&self, identifier: &str) -> [u8; 32] {
        let mut mac = self.index.clone();
        mac.update(identifier.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl Drop for Cipher {
    fn drop(&mut self) {
        // The AEAD zeroes its own key (chacha20poly1305 `zeroize` feature); the HMAC state holds
        // only the padded key hashes, which this crate cannot reach; clear what we own.
        self.key_check.zeroize();
    }
}

/// Whether `sealed` is a delta, which opens only with its message's payload
/// ([`Cipher::open_with_base`]). The format byte is bound into the tag, so a changed one fails
/// to open rather than misleading this test.
pub fn needs_base(sealed: &[u8]) -> bool {
    sealed.first() == Some(&SEALED_DELTA)
}

/// `changed` as a delta against `base` (the header, then the bytes between their shared prefix
/// and suffix), when that is at most half of `changed`.
fn delta(base: &[u8], changed: &[u8]) -> Option<Vec<u8>> {
    let prefix = shared_prefix(base, changed);
    let suffix = shared_suffix(&base[prefix..], &changed[prefix..]);
    let middle = &changed[prefix..changed.len() - suffix];
    if DELTA_HEADER_LEN + middle.len() > changed.len() / 2 {
        return None;
    }
    let mut out = Vec::with_capacity(DELTA_HEADER_LEN + middle.len());
    for len in [base.len(), prefix, suffix] {
        out.extend_from_slice(&u32::try_from(len).ok()?.to_be_bytes());
    }
    out.extend_from_slice(middle);
    Some(out)
}

/// The bytes a [`delta`] was made of, given the same `base`; `None` when it does not fit.
fn undelta(base: &[u8], delta: &[u8]) -> Option<Vec<u8>> {
    let (header, middle) = delta.split_at_checked(DELTA_HEADER_LEN)?;
    let field = |i: usize| -> Option<usize> {
        let bytes: [u8; 4] = header.get(i * 4..i * 4 + 4)?.try_into().ok()?;
        usize::try_from(u32::from_be_bytes(bytes)).ok()
    };
    let (base_len, prefix, suffix) = (field(0)?, field(1)?, field(2)?);
    if base_len != base.len() || prefix.checked_add(suffix)? > base.len() {
        return None;
    }
    let mut out = Vec::with_capacity(prefix + middle.len() + suffix);
    out.extend_from_slice(&base[..prefix]);
    out.extend_from_slice(middle);
    out.extend_from_slice(&base[base.len() - suffix..]);
    Some(out)
}

/// Length of the longest common prefix; compares 16 bytes at a time while they agree.
fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    let whole = a
        .chunks_exact(16)
        .zip(b.chunks_exact(16))
        .take_while(|(x, y)| x == y)
        .count()
        * 16;
    whole
        + a[whole..]
            .iter()
            .zip(&b[whole..])
            .take_while(|(x, y)| x == y)
            .count()
}

/// Length of the longest common suffix, as [`shared_prefix`] from the end.
fn shared_suffix(a: &[u8], b: &[u8]) -> usize {
    let whole = a
        .rchunks_exact(16)
        .zip(b.rchunks_exact(16))
        .take_while(|(x, y)| x == y)
        .count()
        * 16;
    whole
        + a[..a.len() - whole]
            .iter()
            .rev()
            .zip(b[..b.len() - whole].iter().rev())
            .take_while(|(x, y)| x == y)
            .count()
}

/// The zstd frame of `plaintext` for [`Cipher::seal_compressed`], when compressing pays: the
/// record is long enough and the frame is smaller. Costs a few microseconds per kilobyte; call
/// it on the caller's thread, before the write reaches the store's single writer.
pub fn compress(plaintext: &[u8]) -> Option<Vec<u8>> {
    thread_local! {
        // One compression context per thread: building one costs more than compressing a
        // typical message.
        static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { RefCell::new(None) };
    }
    if plaintext.len() < COMPRESS_MIN_LEN {
        return None;
    }
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        let frame = slot.as_mut()?.compress(plaintext).ok()?;
        (frame.len() < plaintext.len()).then_some(frame)
    })
}

/// Decompresses a frame that claims `len` bytes, on a context kept per thread (building one
/// costs more than decompressing a typical message, the same as for [`compress`]).
fn decompress(frame: &[u8], len: usize) -> Option<Vec<u8>> {
    thread_local! {
        static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { RefCell::new(None) };
    }
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Decompressor::new().ok();
        }
        slot.as_mut()?.decompress(frame, len).ok()
    })
}

fn associated_data(record: Record, format: u8) -> Vec<u8> {
    let (kind, id, version): (&[u8], i64, Option<u64>) = match record {
        Record::MessagePayload(id) => (b"message-payload/", id.0, None),
        Record::MessageOutbound(id) => (b"message-outbound/", id.0, None),
        Record::InboundAck(id) => (b"inbound-ack/", id.0, None),
        Record::DeliveryAck(seq) => (b"delivery-ack/", seq.0, None),
        Record::ResourceVersion { key, version } => (b"resource-version/", key, Some(version)),
        Record::PendingResource(id) => (b"pending-resource/", id.0, None),
        Record::AuditQuery(id) => (b"audit-query/", id, None),
    };
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + kind.len() + 16);
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(kind);
    aad.extend_from_slice(&id.to_be_bytes());
    if let Some(version) = version {
        aad.extend_from_slice(&version.to_be_bytes());
    }
    match format {
        SEALED_ZSTD => aad.extend_from_slice(b"/zstd"),
        SEALED_DELTA => aad.extend_from_slice(b"/delta"),
        _ => {}
    }
    aad
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    use super::*;
    use crate::{DeliverySeq, MessageId};

    fn cipher() -> Cipher {
        Cipher::new(&MasterKey::generate(Path::new("test")).expect("randomness"))
    }

    #[test]
    fn seal_then_open_round_trips() {
        let c = cipher();
        let rec = Record::MessagePayload(MessageId(7));
        let sealed = c.seal(rec, b"MSH|^~\\&|A").expect("seal");
        assert_eq!(sealed.len(), 1 + NONCE_LEN + 10 + TAG_LEN);
        assert_eq!(c.open(rec, &sealed).expect("open"), b"MSH|^~\\&|A");
    }

    #[test]
    fn nonces_differ_between_seals_of_the_same_bytes() {
        let c = cipher();
        let rec = Record::MessagePayload(MessageId(1));
        assert_ne!(
            c.seal(rec, b"x").expect("seal"),
            c.seal(rec, b"x").expect("seal")
        );
    }

    #[test]
    fn another_row_kind_or_key_fails_to_open() {
        let c = cipher();
        let sealed = c
            .seal(Record::MessagePayload(MessageId(7)), b"payload")
            .expect("seal");
        for other in [
            Record::MessagePayload(MessageId(8)),
            Record::InboundAck(MessageId(7)),
            Record::DeliveryAck(DeliverySeq(7)),
        ] {
            let err = c.open(other, &sealed).expect_err("must not open");
            assert_eq!(err.kind(), crate::ErrorKind::Decrypt);
        }
        let err = cipher()
            .open(Record::MessagePayload(MessageId(7)), &sealed)
            .expect_err("key");
        assert_eq!(err.kind(), crate::ErrorKind::Decrypt);
    }

    #[test]
    fn flipped_bits_and_truncation_fail_to_open() {
        let c = cipher();
        let rec = Record::InboundAck(MessageId(3));
        let sealed = c.seal(rec, b"MSA|AA|1").expect("seal");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                c.open(rec, &bad).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        assert!(c.open(rec, &sealed[..sealed.len() - 1]).is_err());
        assert!(c.open(rec, &[]).is_err());
    }

    fn hl7_text(segments: usize) -> Vec<u8> {
        let mut text = b"MSH|^~\\&|LAB|NORTH|HUB|HUB|20240101120000||ORU^R01|C1|P|2.5.1\r".to_vec();
        for i in 0..segments {
            text.extend_from_slice(
                format!(
                    "OBX|{i}|NM|2345-7^Glucose^LN||{}|mg/dL|70-99|N|||F\r",
                    90 + i % 7
                )
                .as_bytes(),
            );
        }
        text
    }

    #[test]
    fn compressed_records_round_trip_smaller_and_keep_their_format_bound() {
        let c = cipher();
        let rec = Record::MessagePayload(MessageId(11));
        let text = hl7_text(40);
        let frame = compress(&text).expect("HL7 text compresses");
        let sealed = c.seal_compressed(rec, &text, Some(&frame)).expect("seal");
        assert_eq!(sealed[0], SEALED_ZSTD);
        assert!(
            sealed.len() * 2 < text.len(),
            "{} sealed bytes for {} of text",
            sealed.len(),
            text.len()
        );
        assert_eq!(c.open(rec, &sealed).expect("open"), text);
        // Relabelled as plain, or opened as another row, it must not open.
        let mut relabelled = sealed.clone();
        relabelled[0] = SEALED_PLAIN;
        assert!(c.open(rec, &relabelled).is_err());
        assert!(
            c.open(Record::MessageOutbound(MessageId(11)), &sealed)
                .is_err()
        );
        // Without a frame the record is sealed as it is, and both formats open.
        let plain = c.seal_compressed(rec, &text, None).expect("seal");
        assert_eq!(plain[0], SEALED_PLAIN);
        assert_eq!(c.open(rec, &plain).expect("open"), text);
    }

    #[test]
    fn an_outbound_copy_changed_in_one_field_is_sealed_as_a_small_delta() {
        let c = cipher();
        let id = MessageId(21);
        let raw = hl7_text(40);
        let changed = String::from_utf8(raw.clone())
            .expect("ascii")
            .replacen("|HUB|HUB|", "|DOWNSTREAM|HUB|", 1)
            .into_bytes();
        let sealed = c.seal_outbound(id, &raw, &changed).expect("seal");
        assert_eq!(sealed[0], SEALED_DELTA);
        assert!(needs_base(&sealed));
        // Format byte, nonce, header, "DOWNSTREAM" (the shared "HUB|" suffix is not repeated)
        // and the tag.
        assert_eq!(
            sealed.len(),
            1 + NONCE_LEN + DELTA_HEADER_LEN + 10 + TAG_LEN
        );
        let rec = Record::MessageOutbound(id);
        assert_eq!(
            c.open_with_base(rec, &sealed, Some(&raw)).expect("open"),
            changed
        );
        // Without its base, against other bytes, relabelled, or as another row: refused.
        assert!(c.open(rec, &sealed).is_err());
        assert!(c.open_with_base(rec, &sealed, Some(&raw[1..])).is_err());
        let mut relabelled = sealed.clone();
        relabelled[0] = SEALED_PLAIN;
        assert!(c.open_with_base(rec, &relabelled, Some(&raw)).is_err());
        assert!(
            c.open_with_base(Record::MessageOutbound(MessageId(22)), &sealed, Some(&raw))
                .is_err()
        );
    }

    #[test]
    fn an_outbound_copy_changed_throughout_is_compressed_instead() {
        let c = cipher();
        let id = MessageId(23);
        let raw = hl7_text(40);
        let changed = String::from_utf8(raw.clone())
            .expect("ascii")
            .replace("mg/dL", "mmol/L")
            .into_bytes();
        let sealed = c.seal_outbound(id, &raw, &changed).expect("seal");
        assert_eq!(sealed[0], SEALED_ZSTD);
        assert!(!needs_base(&sealed));
        let rec = Record::MessageOutbound(id);
        assert_eq!(c.open(rec, &sealed).expect("open"), changed);
    }

    #[test]
    fn deltas_round_trip_at_the_edges() {
        let run = |c: u8, n: usize| vec![c; n];
        let digits = b"0123456789abcdef".repeat(3);
        let mut inserted = digits.clone();
        inserted.splice(16..16, *b"XY");
        // Shared prefix and suffix overlapping in a run (one byte more or less), an insertion,
        // a removal, identical copies: each long enough for a delta to pay.
        let long: [(Vec<u8>, Vec<u8>); 5] = [
            (run(b'a', 50), run(b'a', 49)),
            (run(b'a', 48), run(b'a', 52)),
            (digits.clone(), inserted.clone()),
            (inserted.clone(), digits.clone()),
            (digits.clone(), digits.clone()),
        ];
        for (base, changed) in &long {
            let d = delta(base, changed).expect("a delta pays");
            assert!(d.len() <= DELTA_HEADER_LEN + 4, "{} delta bytes", d.len());
            assert_eq!(undelta(base, &d).as_ref(), Some(changed));
        }
        // Too short for the header to pay, or nothing shared.
        assert_eq!(delta(b"", b""), None);
        assert_eq!(delta(b"abcdef", b"abcdef"), None);
        assert_eq!(delta(&run(b'a', 64), &run(b'b', 64)), None);
        // A delta against a base of another length, or cut short, does not open.
        let d = delta(&digits, &inserted).expect("a delta pays");
        assert_eq!(undelta(&digits[1..], &d), None);
        assert_eq!(undelta(&digits, &d[..DELTA_HEADER_LEN - 1]), None);
    }

    #[test]
    fn short_or_incompressible_records_are_not_compressed() {
        assert_eq!(compress(b"MSH|^~\\&|A|B\rMSA|AA|1\r"), None);
        // SHA-256 output: no pattern a compressor could use.
        let noise: Vec<u8> = (0u32..128)
            .flat_map(|i| <[u8; 32]>::from(Sha256::digest(i.to_be_bytes())))
            .collect();
        assert_eq!(compress(&noise), None);
    }

    #[test]
    fn patient_index_is_keyed_and_deterministic() {
        let a = cipher();
        let b = cipher();
        assert_eq!(a.patient_index("MRN1"), a.patient_index("MRN1"));
        assert_ne!(a.patient_index("MRN1"), a.patient_index("MRN2"));
        assert_ne!(a.patient_index("MRN1"), b.patient_index("MRN1"));
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let key = MasterKey::generate(Path::new("test")).expect("randomness");
        let hex_key = hex::encode(&key.0[..]);
        let text = format!("{key:?} {:?}", Cipher::new(&key));
        assert!(!text.contains(&hex_key));
        assert_eq!(text, "MasterKey([redacted]) Cipher([redacted])");
    }
}
