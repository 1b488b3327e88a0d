//! Character sets named by MSH-18 (HL7 table 0211), decoded to UTF-8 with `encoding_rs`.
//!
//! Parsing never transcodes the buffer: delimiters are ASCII in every charset ER7 supports, so
//! the message is split on raw bytes and only a value's text is decoded when asked for. For
//! UTF-8 and ASCII (and any value that is pure ASCII) the decoded text borrows the input.
//!
//! With no MSH-18, the standard says ASCII; real feeds send UTF-8 or Latin-1 regardless. The
//! parser therefore reads undeclared text as UTF-8, and when a message is not valid UTF-8 it
//! falls back to windows-1252 (a superset of Latin-1's printable range) with a warning. The
//! strict setting refuses such a message with the position of the first invalid byte instead.

use std::borrow::Cow;

use encoding_rs::Encoding;

/// The character set a message's text is decoded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// UTF-8 (also used for ASCII, its subset).
    Utf8,
    /// A single- or multi-byte legacy encoding.
    Legacy(&'static Encoding),
}

impl Charset {
    /// The charset for an MSH-18 value; `None` when the value is not one we can decode.
    ///
    /// Only the first repetition of MSH-18 matters for the message's default text; later
    /// repetitions name alternates switched to with `\C..\`/`\M..\` escapes, which are kept.
    pub fn from_msh18(value: &str) -> Option<Charset> {
        let v = value.trim();
        let label = match v.to_ascii_uppercase().as_str() {
            "" | "ASCII" | "UNICODE" | "UNICODE UTF-8" | "UTF-8" | "UTF8" => {
                return Some(Charset::Utf8);
            }
            "8859/1" => "iso-8859-1",
            "8859/2" => "iso-8859-2",
            "8859/3" => "iso-8859-3",
            "8859/4" => "iso-8859-4",
            "8859/5" => "iso-8859-5",
            "8859/6" => "iso-8859-6",
            "8859/7" => "iso-8859-7",
            "8859/8" => "iso-8859-8",
            "8859/9" => "iso-8859-9",
            "8859/15" => "iso-8859-15",
            "ISO IR6" => return Some(Charset::Utf8),
            "ISO IR14" | "ISO IR87" | "ISO IR159" => "shift_jis",
            "GB 18030-2000" => "gb18030",
            "KS X 1001" => "euc-kr",
            "BIG-5" => "big5",
            "CNS 11643-1992" => "big5",
            "WINDOWS-1252" | "CP1252" => "windows-1252",
            _ => return None,
        };
        Encoding::for_label(label.as_bytes()).map(Charset::Legacy)
    }

    /// Name for messages and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Charset::Utf8 => "UTF-8",
            Charset::Legacy(e) => e.name(),
        }
    }

    /// Decodes bytes, borrowing when they are already valid UTF-8 text in this charset.
    /// Invalid sequences become U+FFFD; callers that must refuse them check [`Charset::first_invalid`]
    /// at parse time.
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Cow<'a, str> {
        match self {
            // `from_utf8` checks ASCII a word at a time; the lossy path only for invalid text.
            Charset::Utf8 => match std::str::from_utf8(bytes) {
                Ok(text) => Cow::Borrowed(text),
                Err(_) => String::from_utf8_lossy(bytes),
            },
            Charset::Legacy(enc) => {
                if bytes.is_ascii() {
                    // ASCII is a subset of every legacy charset we map (Shift_JIS aside for
                    // `\` and `~`, which are delimiters anyway). Borrow instead of copying.
                    Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default())
                } else {
                    enc.decode_without_bom_handling(bytes).0
                }
            }
        }
    }

    /// Offset of the first byte that is not valid in this charset, if any.
    pub fn first_invalid(&self, bytes: &[u8]) -> Option<usize> {
        // Most messages are plain ASCII, valid in every charset here: the quick check first.
        if bytes.is_ascii() {
            return None;
        }
        match self {
            Charset::Utf8 => std::str::from_utf8(bytes).err().map(|e| e.valid_up_to()),
            Charset::Legacy(enc) => {
                let (_, had_errors) = enc.decode_without_bom_handling(bytes);
                if !had_errors {
                    return None;
                }
                // Rare path: locate the first malformed byte by decoding prefixes.
                let mut decoder = enc.new_decoder_without_bom_handling();
                let mut out = String::with_capacity(bytes.len() * 3);
                for (i, b) in bytes.iter().enumerate() {
                    let (result, _, replaced) =
                        decoder.decode_to_string(std::slice::from_ref(b), &mut out, false);
                    let _ = result;
                    if replaced {
                        return Some(i);
                    }
                }
                Some(bytes.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_encodings() {
        assert_eq!(Charset::from_msh18("UNICODE UTF-8"), Some(Charset::Utf8));
        assert_eq!(
            Charset::from_msh18("8859/1").unwrap().name(),
            "windows-1252"
        );
        assert_eq!(Charset::from_msh18("8859/2").unwrap().name(), "ISO-8859-2");
        assert_eq!(Charset::from_msh18("KLINGON"), None);
    }

    #[test]
    fn decode_borrows_when_it_can() {
        let latin = Charset::from_msh18("8859/1").unwrap();
        assert!(matches!(latin.decode(b"Muller"), Cow::Borrowed("Muller")));
        assert_eq!(latin.decode(b"M\xfcller"), "Müller");
        assert!(matches!(
            Charset::Utf8.decode("Müller".as_bytes()),
            Cow::Borrowed(_)
        ));
        assert_eq!(Charset::Utf8.first_invalid(b"ab\xffc"), Some(2));
    }
}
