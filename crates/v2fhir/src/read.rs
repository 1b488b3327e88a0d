//! Reading v2 values the way every mapping needs: absent, empty and `""` are all "no value", text is
//! decoded, and a component is read as its first subcomponent.

use hl7v2::{Node, Segment};

/// Field `n` of `seg` when it holds a value (not empty, not `""`).
pub fn field<'a>(seg: &Segment<'a>, n: usize) -> Option<Node<'a>> {
    seg.field(n).filter(|f| present(*f))
}

/// The repetitions of field `n` that hold a value, read as they are iterated (most fields are
/// walked once, and a list per field read was an allocation each).
pub fn reps<'a>(seg: &Segment<'a>, n: usize) -> Reps<'a> {
    Reps(seg.field(n).map(|f| f.repetitions()))
}

/// The repetitions [`reps`] yields.
#[derive(Clone)]
pub struct Reps<'a>(Option<hl7v2::message::Children<'a>>);

impl<'a> Iterator for Reps<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        let repetitions = self.0.as_mut()?;
        repetitions.find(|r| present(*r))
    }
}

/// True when `node` holds a value (not empty, not `""`).
pub fn present(node: Node<'_>) -> bool {
    !node.is_empty() && !node.is_null()
}

/// The decoded text of `node`, `None` when empty or `""`, with Unicode whitespace other than space, CR,
/// LF and TAB (a no-break space, an em space...) made a space: FHIR `string` allows only those four
/// whitespace characters (its regex is `^[ \r\n\t\S]+$`).
pub fn text(node: Option<Node<'_>>) -> Option<String> {
    let node = node.filter(|n| present(*n))?;
    // Most values are printable ASCII without escapes: their text is their bytes, and FHIR allows
    // all of it.
    if let Some(plain) = node.plain_text() {
        return Some(plain.to_owned());
    }
    Some(normalise_space(node.decoded().into_owned()))
}

/// `value` with every whitespace character FHIR strings forbid made a space; the common case (none)
/// returns `value` untouched.
pub fn normalise_space(value: String) -> String {
    let odd = |c: char| c.is_whitespace() && !matches!(c, ' ' | '\r' | '\n' | '\t');
    // Only non-ASCII text or ASCII controls (VT, FF) can hold such whitespace; printable ASCII,
    // the common case, is one range check per byte.
    if value
        .bytes()
        .all(|b| matches!(b, b' '..=b'~' | b'\t' | b'\n' | b'\r'))
        || !value.contains(odd)
    {
        return value;
    }
    value
        .chars()
        .map(|c| if odd(c) { ' ' } else { c })
        .collect()
}

/// `value` as a FHIR `code` (regex `^[^\s]+(\s[^\s]+)*$`): trimmed, runs of whitespace made one space;
/// `None` when nothing is left. Borrows nothing new in the common case (already a clean code).
pub fn code_text(value: String) -> Option<String> {
    let clean = !value.is_empty()
        && !value.starts_with(char::is_whitespace)
        && !value.ends_with(char::is_whitespace)
        && !value
            .chars()
            .zip(value.chars().skip(1))
            .any(|(a, b)| a.is_whitespace() && (b.is_whitespace() || a != ' '));
    if clean {
        return Some(value);
    }
    let joined = value.split_whitespace().collect::<Vec<_>>().join(" ");
    (!joined.is_empty()).then_some(joined)
}

/// Component `c` of `node` as a FHIR `code` ([`code_text`]).
pub fn comp_code(node: Node<'_>, c: usize) -> Option<String> {
    comp(node, c).and_then(code_text)
}

/// The decoded text of field `n` (its first repetition, whole: components and all).
pub fn field_text(seg: &Segment<'_>, n: usize) -> Option<String> {
    text(field(seg, n).and_then(|f| f.repetition(1)))
}

/// The components of one value, split once. A mapping that reads several components of one value
/// (a name, an address, a coded value) reads them here instead of scanning the value from its start
/// for each one; that rescanning was more than half of what reading a component cost.
pub struct Parts<'a> {
    node: Node<'a>,
    /// Components 1..=[`Parts::KEPT`] as split; later ones are found on the node when asked for.
    first: [Option<Node<'a>>; Parts::KEPT],
}

impl<'a> Parts<'a> {
    /// Enough for the composites read most (CWE, XTN, XPN, XAD to XAD.19, XCN to XCN.21).
    const KEPT: usize = 24;

    // Inlined so the array is filled where the caller keeps it, not built and then copied (it is
    // over a kilobyte).
    #[inline]
    pub fn of(node: Node<'a>) -> Parts<'a> {
        let mut first = [None; Parts::KEPT];
        for (slot, part) in first.iter_mut().zip(node.components()) {
            *slot = Some(part);
        }
        Parts { node, first }
    }

    /// Component `c` (1-based) as a node, as [`Node::component`] gives it.
    pub fn get(&self, c: usize) -> Option<Node<'a>> {
        match c.checked_sub(1)? {
            i if i < Parts::KEPT => self.first[i],
            _ => self.node.component(c),
        }
    }

    /// Component `c` read as its first subcomponent, as [`comp`] reads it.
    pub fn text(&self, c: usize) -> Option<String> {
        text(self.get(c).and_then(|n| n.subcomponent(1)))
    }

    /// Subcomponent `s` of component `c`, as [`sub`] reads it.
    pub fn sub(&self, c: usize, s: usize) -> Option<String> {
        text(self.get(c).and_then(|n| n.subcomponent(s)))
    }
}

/// Component `c` of `node`, read as its first subcomponent.
pub fn comp(node: Node<'_>, c: usize) -> Option<String> {
    text(node.component(c).and_then(|n| n.subcomponent(1)))
}

/// Subcomponent `s` of component `c` of `node`.
pub fn sub(node: Node<'_>, c: usize, s: usize) -> Option<String> {
    text(node.component(c).and_then(|n| n.subcomponent(s)))
}

/// Component `c` of the first repetition of field `n`.
pub fn field_comp(seg: &Segment<'_>, n: usize, c: usize) -> Option<String> {
    field(seg, n)
        .and_then(|f| f.repetition(1))
        .and_then(|r| comp(r, c))
}

#[cfg(test)]
mod tests {
    use super::normalise_space;

    #[test]
    fn only_whitespace_fhir_strings_forbid_is_replaced() {
        for kept in [
            "plain text",
            "tab\there",
            "two\r\nlines",
            "Zoë",
            "ctrl\u{1}",
            "del\u{7f}",
        ] {
            assert_eq!(normalise_space(kept.to_owned()), kept);
        }
        for (odd, fixed) in [
            ("a\u{b}b", "a b"),
            ("a\u{c}b", "a b"),
            ("no\u{a0}break", "no break"),
            ("em\u{2003}space", "em space"),
            ("next\u{85}line", "next line"),
        ] {
            assert_eq!(normalise_space(odd.to_owned()), fixed);
        }
    }
}
