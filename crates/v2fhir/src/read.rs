//! Reading v2 values the way every mapping needs: absent, empty and `""` are all "no value", text is
//! decoded, and a component is read as its first subcomponent.

use hl7v2::{Node, Segment};

/// Field `n` of `seg` when it holds a value (not empty, not `""`).
pub fn field<'a>(seg: &Segment<'a>, n: usize) -> Option<Node<'a>> {
    seg.field(n).filter(|f| present(*f))
}

/// The repetitions of field `n` that hold a value.
pub fn reps<'a>(seg: &Segment<'a>, n: usize) -> Vec<Node<'a>> {
    match seg.field(n) {
        Some(f) => f.repetitions().filter(|r| present(*r)).collect(),
        None => Vec::new(),
    }
}

/// True when `node` holds a value (not empty, not `""`).
pub fn present(node: Node<'_>) -> bool {
    !node.is_empty() && !node.is_null()
}

/// The decoded text of `node`, `None` when empty or `""`.
pub fn text(node: Option<Node<'_>>) -> Option<String> {
    node.filter(|n| present(*n))
        .map(|n| n.decoded().into_owned())
}

/// The decoded text of field `n` (its first repetition, whole: components and all).
pub fn field_text(seg: &Segment<'_>, n: usize) -> Option<String> {
    text(field(seg, n).and_then(|f| f.repetition(1)))
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
