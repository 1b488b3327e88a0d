//! Writing compact FHIR JSON straight into a byte buffer: what [`crate::to_vec`] and
//! [`crate::to_string`] use for the crate's types.
//!
//! The output is byte for byte what serde_json writes through the types' `Serialize` impls (the
//! corpus tests compare both), without going through serde: a converted bundle is tens of KiB of
//! short strings under static keys, and serde_json wrote each key as a string to escape (scanning
//! it, then four separate writes for the comma, quotes and colon). Here the generated code holds each
//! key as prebuilt `"key":` bytes, written with the comma in one step, and values are escaped by one
//! scan that copies runs between the few bytes JSON escapes.

use crate::Decimal;

/// A FHIR type that writes itself as compact JSON.
///
/// Implemented by every generated resource, data type and backbone element, by [`crate::Resource`],
/// and by the primitives they hold. Absent (`None`) and empty (`[]`) elements are left out, as FHIR
/// JSON requires; `None` inside a `_name` array is written `null`.
pub trait WriteJson {
    /// Appends this value's JSON to `out`.
    fn write_json(&self, out: &mut Vec<u8>);
}

/// An object being written: tracks whether a comma goes before the next key.
pub(crate) struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    /// Opens `{`.
    #[inline]
    pub(crate) fn begin(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, empty: true }
    }

    /// Opens `{` and writes a resource's `"resourceType":"Name"` (given prebuilt) first.
    #[inline]
    pub(crate) fn resource(out: &'a mut Vec<u8>, resource_type: &[u8]) -> Self {
        out.push(b'{');
        out.extend_from_slice(resource_type);
        Self { out, empty: false }
    }

    /// Writes a key given as its prebuilt `"key":` bytes, then the value.
    #[inline]
    pub(crate) fn entry<T: WriteJson + ?Sized>(&mut self, key: &[u8], value: &T) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.extend_from_slice(key);
        value.write_json(self.out);
    }

    /// A 0..1 element: written when present.
    #[inline]
    pub(crate) fn opt<T: WriteJson>(&mut self, key: &[u8], value: &Option<T>) {
        if let Some(value) = value {
            self.entry(key, value);
        }
    }

    /// A 0..* element: written when it has items.
    #[inline]
    pub(crate) fn vec<T: WriteJson>(&mut self, key: &[u8], value: &[T]) {
        if !value.is_empty() {
            self.entry(key, value);
        }
    }

    /// Closes `}`.
    #[inline]
    pub(crate) fn end(self) {
        self.out.push(b'}');
    }
}

/// Which bytes JSON escapes inside a string: control characters, `"` and `\`.
const ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Where the first byte JSON escapes is in `bytes`, or `bytes.len()`: eight bytes a step, since
/// most values have none.
fn first_escaped(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    // `(x - ONES * n) & !x & HIGH` is nonzero if and only if some byte of `x` is below `n`
    // (n <= 128): the lowest such byte borrows into its own high bit, clear in `x`; bytes above
    // it may then show false marks, so the exact place is found by the byte loop below.
    // Matching `"` and `\` is the same test for zero after an XOR.
    let matches = |x: u64| {
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        (x.wrapping_sub(ONES * 0x20) & !x
            | quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash)
            & HIGH
            != 0
    };
    let (words, _) = bytes.as_chunks::<8>();
    let clean = words
        .iter()
        .position(|w| matches(u64::from_le_bytes(*w)))
        .unwrap_or(words.len());
    let from = clean * 8;
    bytes[from..]
        .iter()
        .position(|&b| ESCAPED[usize::from(b)])
        .map_or(bytes.len(), |i| from + i)
}

/// Writes `text` as a JSON string, escaped as serde_json does (`\"`, `\\`, `\b`, `\t`, `\n`,
/// `\f`, `\r`, other control characters as `\u00xx`; everything else, non-ASCII included, as is).
pub(crate) fn string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let start = first_escaped(bytes);
    if start == bytes.len() {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        if !ESCAPED[usize::from(b)] {
            continue;
        }
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

impl WriteJson for str {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        string(out, self);
    }
}

impl WriteJson for String {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        string(out, self);
    }
}

impl WriteJson for bool {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

impl WriteJson for i32 {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_string().as_bytes());
    }
}

impl WriteJson for u32 {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_string().as_bytes());
    }
}

impl WriteJson for Decimal {
    /// The number's text as read or built (checked to be a JSON number either way).
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_str().as_bytes());
    }
}

impl<T: WriteJson + ?Sized> WriteJson for Box<T> {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        (**self).write_json(out);
    }
}

/// An item of a `_name` array: `null` where the item has no extension or id.
impl<T: WriteJson> WriteJson for Option<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Some(value) => value.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

impl<T: WriteJson> WriteJson for [T] {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        let mut items = self.iter();
        if let Some(first) = items.next() {
            first.write_json(out);
            for item in items {
                out.push(b',');
                item.write_json(out);
            }
        }
        out.push(b']');
    }
}

impl<T: WriteJson> WriteJson for Vec<T> {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        self.as_slice().write_json(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        string(&mut out, text);
        out
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every_ascii = String::new();
        for b in 0u8..0x80 {
            every_ascii.push(char::from(b));
        }
        for text in [
            "",
            "plain",
            "\"quoted\"",
            "back\\slash",
            "tab\tnew\nline\rfeed\u{c}bell\u{7}bs\u{8}",
            "ends with escape\n",
            "\u{1}",
            "Müller 東京 \u{7f} 😀",
            &every_ascii,
        ] {
            assert_eq!(written(text), serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn every_byte_that_needs_escaping_is_found_at_every_position() {
        // The word-at-a-time scan against the table, for each escaped and unescaped byte at each
        // position of strings up to three words long (the scan's carries cross byte boundaries).
        for len in 1..=24 {
            for at in 0..len {
                for b in 0u8..0x80 {
                    let mut text = vec![b'a'; len];
                    text[at] = b;
                    let text = String::from_utf8(text).unwrap();
                    let expected = if ESCAPED[usize::from(b)] { at } else { len };
                    assert_eq!(first_escaped(text.as_bytes()), expected, "{text:?}");
                    assert_eq!(
                        written(&text),
                        serde_json::to_vec(&text).unwrap(),
                        "{text:?}"
                    );
                }
            }
        }
        // Non-ASCII bytes (high bit set) beside one that matches.
        assert_eq!(first_escaped("éééé\"".as_bytes()), 8);
        assert_eq!(first_escaped("ÿÿÿÿÿÿÿÿ".as_bytes()), 16);
    }

    #[test]
    fn objects_leave_out_absent_and_empty_elements() {
        let mut out = Vec::new();
        let mut map = Object::begin(&mut out);
        map.opt(b"\"a\":", &None::<String>);
        map.vec::<String>(b"\"b\":", &[]);
        map.opt(b"\"c\":", &Some(true));
        map.vec(b"\"d\":", &[Some(1u32), None]);
        map.entry(b"\"e\":", "x");
        map.end();
        assert_eq!(out, br#"{"c":true,"d":[1,null],"e":"x"}"#);

        let mut out = Vec::new();
        Object::begin(&mut out).end();
        assert_eq!(out, b"{}");

        let mut out = Vec::new();
        let mut map = Object::resource(&mut out, br#""resourceType":"Patient""#);
        map.opt(b"\"id\":", &Some(String::from("p1")));
        map.end();
        assert_eq!(out, br#"{"resourceType":"Patient","id":"p1"}"#);
    }

    #[test]
    fn integers_are_written_in_full() {
        let mut out = Vec::new();
        [i32::MIN, -1, 0, i32::MAX].write_json(&mut out);
        u32::MAX.write_json(&mut out);
        assert_eq!(out, b"[-2147483648,-1,0,2147483647]4294967295");
    }
}
