//! Escape sequences: decoding raw values to text and encoding text to raw values.
//!
//! Written with the message's escape character (`\` below):
//!
//! | sequence | decoded text |
//! |---|---|
//! | `\F\ \S\ \T\ \R\ \E\` | the message's field, component, subcomponent, repetition, escape character |
//! | `\P\` | the truncation character (v2.7+; `#` when MSH-2 has none) |
//! | `\Xhh..\` | the bytes `hh..`, read in the message's character set |
//! | `\.br\` | a line break (`\n`) |
//! | `\.sp..\ \.in..\ \.ti..\ \.sk..\ \.ce\ \.fi\ \.nf\ \H\ \N\` | kept verbatim, written with `\` |
//! | `\Cxxyy\ \Mxxyyzz\ \Zxx..\` | kept verbatim, written with `\` |
//!
//! The choice for formatting commands: `\.br\` is the only one with a plain-text meaning that
//! every consumer agrees on, so it becomes a line break; the others (indentation, centring,
//! highlighting) have no plain-text equivalent and are kept so nothing is lost. Encoding text
//! turns `\n` back into `\.br\` and `\r` into `\X0D\`, so `decode(encode(text)) == text` for
//! every string.

use std::borrow::Cow;

use crate::charset::Charset;
use crate::error::{Error, ErrorKind, Position};
use crate::separators::Separators;

/// How decoding treats sequences it cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Leniency {
    /// Unknown or broken escapes are kept verbatim; invalid bytes are replaced (U+FFFD, or
    /// windows-1252 for undeclared text) and reported as warnings.
    #[default]
    Lenient,
    /// Unknown or broken escapes and invalid bytes are errors.
    Strict,
}

/// Decodes a raw value (escapes, then charset) to text.
///
/// `position` is the value's own position; errors point into it by byte.
pub fn decode<'a>(
    raw: &'a [u8],
    seps: &Separators,
    charset: Charset,
    leniency: Leniency,
    position: Position,
) -> Result<Cow<'a, str>, Error> {
    let Some(first) = crate::message::find_byte(seps.escape, raw) else {
        return Ok(charset.decode(raw));
    };
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..first]);
    let mut i = first;
    while i < raw.len() {
        let b = raw[i];
        if b != seps.escape {
            // Copy the run up to the next escape character in one go.
            let next = memchr::memchr(seps.escape, &raw[i..]).map_or(raw.len(), |n| i + n);
            out.extend_from_slice(&raw[i..next]);
            i = next;
            continue;
        }
        let start = i;
        let Some(len) = memchr::memchr(seps.escape, &raw[i + 1..]) else {
            if leniency == Leniency::Strict {
                return Err(err_at(ErrorKind::UnterminatedEscape, position, start));
            }
            out.extend_from_slice(&raw[i..]);
            break;
        };
        let body = &raw[i + 1..i + 1 + len];
        i += len + 2;
        match body {
            b"F" => out.push(seps.field),
            b"S" => out.push(seps.component),
            b"T" => out.push(seps.subcomponent.unwrap_or(b'&')),
            b"R" => out.push(seps.repetition),
            b"E" => out.push(seps.escape),
            b"P" => out.push(seps.truncation.unwrap_or(b'#')),
            b".br" => out.push(b'\n'),
            [b'X', hex @ ..] => match decode_hex(hex) {
                Some(bytes) => out.extend_from_slice(&bytes),
                None => {
                    if leniency == Leniency::Strict {
                        let sequence = sequence_text(seps, body);
                        return Err(err_at(
                            ErrorKind::InvalidHexEscape { sequence },
                            position,
                            start,
                        ));
                    }
                    keep_verbatim(&mut out, body);
                }
            },
            _ if is_preserved(body) => keep_verbatim(&mut out, body),
            _ => {
                if leniency == Leniency::Strict {
                    let sequence = sequence_text(seps, body);
                    return Err(err_at(
                        ErrorKind::UnknownEscape { sequence },
                        position,
                        start,
                    ));
                }
                // Keep exactly what was written so nothing is lost.
                out.push(seps.escape);
                out.extend_from_slice(body);
                out.push(seps.escape);
            }
        }
    }
    // UTF-8 text reuses the buffer; other charsets (and invalid bytes) are converted.
    match (charset, String::from_utf8(out)) {
        (Charset::Utf8, Ok(text)) => Ok(Cow::Owned(text)),
        (_, Ok(text)) if text.is_ascii() => Ok(Cow::Owned(text)),
        (_, Ok(text)) => Ok(Cow::Owned(charset.decode(text.as_bytes()).into_owned())),
        (_, Err(e)) => Ok(Cow::Owned(charset.decode(e.as_bytes()).into_owned())),
    }
}

fn err_at(kind: ErrorKind, mut position: Position, offset: usize) -> Error {
    position.byte += offset;
    Error::new(kind, position)
}

fn sequence_text(seps: &Separators, body: &[u8]) -> String {
    let e = char::from(seps.escape);
    format!("{e}{}{e}", String::from_utf8_lossy(body))
}

fn keep_verbatim(out: &mut Vec<u8>, body: &[u8]) {
    out.push(b'\\');
    out.extend_from_slice(body);
    out.push(b'\\');
}

/// Formatting commands and charset/locally-defined escapes that decoding keeps verbatim.
fn is_preserved(body: &[u8]) -> bool {
    match body {
        b"H" | b"N" | b".fi" | b".nf" | b".ce" => true,
        [b'.', b's', b'p', rest @ ..]
        | [b'.', b'i', b'n', rest @ ..]
        | [b'.', b't', b'i', rest @ ..]
        | [b'.', b's', b'k', rest @ ..] => rest
            .iter()
            .all(|c| c.is_ascii_digit() || *c == b'+' || *c == b'-' || *c == b' '),
        [b'C', rest @ ..] => rest.len() == 4 && rest.iter().all(u8::is_ascii_hexdigit),
        [b'M', rest @ ..] => {
            (rest.len() == 4 || rest.len() == 6) && rest.iter().all(u8::is_ascii_hexdigit)
        }
        [b'Z', rest @ ..] => !rest.is_empty(),
        _ => false,
    }
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks_exact(2)
        .map(|pair| Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?))
        .collect()
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Encodes text as a raw value: delimiters and line breaks become escape sequences and the
/// text is converted to the message's character set. Borrows when nothing needs escaping.
pub fn encode<'a>(text: &'a str, seps: &Separators, charset: Charset) -> Cow<'a, [u8]> {
    let needs =
        |b: u8| seps.is_delimiter(b) || b == b'\n' || b == b'\r' || Some(b) == seps.truncation;
    let bytes: Cow<'a, [u8]> = match charset {
        Charset::Utf8 => Cow::Borrowed(text.as_bytes()),
        Charset::Legacy(enc) => enc.encode(text).0,
    };
    if !bytes.iter().any(|&b| needs(b)) {
        return bytes;
    }
    let e = seps.escape;
    let mut out = Vec::with_capacity(bytes.len() + 16);
    for &b in bytes.iter() {
        let code: &[u8] = if b == seps.field {
            b"F"
        } else if b == seps.component {
            b"S"
        } else if b == seps.repetition {
            b"R"
        } else if b == e {
            b"E"
        } else if Some(b) == seps.subcomponent {
            b"T"
        } else if Some(b) == seps.truncation {
            b"P"
        } else if b == b'\n' {
            b".br"
        } else if b == b'\r' {
            b"X0D"
        } else {
            out.push(b);
            continue;
        };
        out.push(e);
        out.extend_from_slice(code);
        out.push(e);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(raw: &str, leniency: Leniency) -> Result<String, String> {
        decode(
            raw.as_bytes(),
            &Separators::default(),
            Charset::Utf8,
            leniency,
            Position::default(),
        )
        .map(Cow::into_owned)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn decodes_every_standard_sequence() {
        let cases = [
            ("plain", "plain"),
            ("a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f", "a|b^c&d~e\\f"),
            ("\\X0D\\\\X0A\\", "\r\n"),
            ("\\X41424344\\", "ABCD"),
            ("line\\.br\\next", "line\nnext"),
            ("\\H\\bold\\N\\", "\\H\\bold\\N\\"),
            (
                "a\\.sp2\\b\\.in+4\\c\\.ti-2\\d\\.sk1\\e\\.ce\\\\.fi\\\\.nf\\",
                "a\\.sp2\\b\\.in+4\\c\\.ti-2\\d\\.sk1\\e\\.ce\\\\.fi\\\\.nf\\",
            ),
            (
                "\\C2842\\\\M2442\\\\ZLOCAL\\",
                "\\C2842\\\\M2442\\\\ZLOCAL\\",
            ),
            ("\\P\\", "#"),
            ("\\XC3BC\\", "ü"),
        ];
        for (raw, want) in cases {
            assert_eq!(dec(raw, Leniency::Strict).unwrap(), want, "{raw}");
        }
    }

    #[test]
    fn decode_borrows_without_escapes() {
        let seps = Separators::default();
        let text = decode(
            b"SMITH",
            &seps,
            Charset::Utf8,
            Leniency::Strict,
            Position::default(),
        )
        .unwrap();
        assert!(matches!(text, Cow::Borrowed("SMITH")));
    }

    #[test]
    fn decode_errors_are_exact() {
        let cases = [
            ("ab\\Q\\", "unknown escape sequence \\Q\\ at byte 2"),
            ("ab\\F", "unterminated escape sequence at byte 2"),
            (
                "\\X4\\",
                "invalid hexadecimal escape sequence \\X4\\ at byte 0",
            ),
            (
                "\\XZZ\\",
                "invalid hexadecimal escape sequence \\XZZ\\ at byte 0",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(dec(raw, Leniency::Strict).unwrap_err(), want, "{raw}");
        }
        assert_eq!(dec("ab\\Q\\", Leniency::Lenient).unwrap(), "ab\\Q\\");
        assert_eq!(dec("ab\\F", Leniency::Lenient).unwrap(), "ab\\F");
    }

    #[test]
    fn custom_escape_character() {
        let seps = Separators {
            field: b'#',
            component: b'!',
            repetition: b'@',
            escape: b'%',
            subcomponent: Some(b'*'),
            truncation: None,
        };
        let text = decode(
            b"a%F%b%S%c%E%",
            &seps,
            Charset::Utf8,
            Leniency::Strict,
            Position::default(),
        )
        .unwrap();
        assert_eq!(text, "a#b!c%");
        assert_eq!(
            &*encode("a#b!c%d\n", &seps, Charset::Utf8),
            b"a%F%b%S%c%E%d%.br%"
        );
    }

    #[test]
    fn encode_round_trips() {
        let seps = Separators::default();
        for text in ["", "x", "a|b^c&d~e\\f", "l1\nl2\r\nl3", "Müller"] {
            let raw = encode(text, &seps, Charset::Utf8);
            let back = decode(
                &raw,
                &seps,
                Charset::Utf8,
                Leniency::Strict,
                Position::default(),
            )
            .unwrap();
            assert_eq!(back, text);
        }
    }
}
