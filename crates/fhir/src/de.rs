//! Strict reading of FHIR JSON, shared by the generated types.
//!
//! Map: every generated struct implements [`FhirObject`], whose `visit` reads one JSON object key by key and
//! calls one helper per key: [`opt`] (0..1), [`req`] (1..1), [`vec`] (0..*), [`code`] / [`codes`] (codes of
//! a required binding), [`choice`] (one typed variant of `name[x]`), [`resource_type`]. The `Resource` enum
//! reads `resourceType` first and hands the rest of the object to the right `visit`.
//!
//! Invariants:
//! - Nothing is dropped silently: an unknown key, a key given twice, two variants of one choice element,
//!   `null` outside a `_name` array, an empty array and an empty object are errors. What is accepted is
//!   written back the same (modulo key order and whitespace).
//! - The input is streamed once; no value is buffered, except when `resourceType` is not the first key of a
//!   resource (see `crate::resource`).
//! - Every error of a nested value is prefixed with its JSON path (`contact[0].name[1].given[0]: ...`);
//!   serde_json keeps the line and column through the prefixing (it re-reads the ` at line L column C`
//!   suffix of a custom message), so an error names both where and what.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};

/// A generated struct: its FHIR path, its JSON keys and its strict reader.
pub(crate) trait FhirObject: Sized {
    /// FHIR path of the type, e.g. `Observation.referenceRange`; used in error messages.
    const PATH: &'static str;
    /// Every JSON key the type accepts, for "did you mean" hints.
    const FIELDS: &'static [&'static str];

    /// Reads the keys of one JSON object. `typed` is true when a `Resource` has consumed `resourceType`
    /// already.
    fn visit<'de, A: MapAccess<'de>>(map: A, typed: bool) -> Result<Self, A::Error>;
}

/// A generated choice enum (`ObservationValue`, ...).
pub(crate) trait Choice {
    /// The JSON key of the variant held, e.g. `valueQuantity`.
    fn json_key(&self) -> &'static str;
}

/// `Deserialize::deserialize` of every generated struct.
pub(crate) fn deserialize<'de, D: Deserializer<'de>, T: FhirObject>(
    deserializer: D,
) -> Result<T, D::Error> {
    deserializer.deserialize_map(ObjectVisitor::<T>(PhantomData))
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: FhirObject> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} object", T::PATH)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::visit(map, false)
    }
}

/// A JSON key, borrowed from the input when it has no escapes (the common case: no allocation per key).
pub(crate) enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }

            fn visit_str<E: Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }

            fn visit_string<E: Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Reads a 0..1 element.
pub(crate) fn opt<'de, A, T>(
    map: &mut A,
    slot: &mut Option<T>,
    key: &'static str,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    if slot.is_some() {
        return Err(A::Error::duplicate_field(key));
    }
    *slot = Some(map.next_value().map_err(|e| at(e, key))?);
    Ok(())
}

/// Reads a 1..1 element; the caller checks `seen` once the object ends.
pub(crate) fn req<'de, A, T>(
    map: &mut A,
    slot: &mut T,
    seen: &mut bool,
    key: &'static str,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    if *seen {
        return Err(A::Error::duplicate_field(key));
    }
    *slot = map.next_value().map_err(|e| at(e, key))?;
    *seen = true;
    Ok(())
}

/// Reads a 0..* element: a non-empty array (FHIR JSON forbids empty arrays; a kept one would vanish on output).
pub(crate) fn vec<'de, A, T>(
    map: &mut A,
    slot: &mut Vec<T>,
    key: &'static str,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    // An accepted array is never empty, so a non-empty slot means the key came before.
    if !slot.is_empty() {
        return Err(A::Error::duplicate_field(key));
    }
    *slot = map
        .next_value_seed(SeqSeed(PhantomData))
        .map_err(|e| at(e, key))?;
    Ok(())
}

/// The most array items reserved before they are read. serde_json gives no size hint, but other deserializers
/// may pass one taken from the input; a cap keeps a hostile hint from reserving memory up front, and 64 covers
/// most FHIR arrays (identifiers, names, codings) in one allocation.
const MAX_PREALLOCATED_ITEMS: usize = 64;

struct SeqSeed<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for SeqSeed<T> {
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<T>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for SeqSeed<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-empty array")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Vec<T>, S::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_PREALLOCATED_ITEMS));
        while let Some(item) = seq.next_element().map_err(|e| at_index(e, out.len()))? {
            out.push(item);
        }
        if out.is_empty() {
            return Err(S::Error::custom(
                "empty array: FHIR JSON leaves an element out instead",
            ));
        }
        Ok(out)
    }
}

/// Reads a 0..1 code of a required binding and checks it against the allowed codes.
pub(crate) fn code<'de, A>(
    map: &mut A,
    slot: &mut Option<String>,
    key: &'static str,
    allowed: &[&str],
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
{
    opt(map, slot, key)?;
    match slot {
        Some(value) if !allowed.contains(&value.as_str()) => {
            Err(at(invalid_code(value, allowed), key))
        }
        _ => Ok(()),
    }
}

/// Reads a 0..* list of codes of a required binding and checks each.
pub(crate) fn codes<'de, A>(
    map: &mut A,
    slot: &mut Vec<String>,
    key: &'static str,
    allowed: &[&str],
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
{
    vec(map, slot, key)?;
    for (i, value) in slot.iter().enumerate() {
        if !allowed.contains(&value.as_str()) {
            return Err(at(at_index(invalid_code(value, allowed), i), key));
        }
    }
    Ok(())
}

fn invalid_code<E: Error>(value: &str, allowed: &[&str]) -> E {
    let mut list = String::new();
    for (i, code) in allowed.iter().enumerate() {
        if i > 0 {
            list.push_str(", ");
        }
        list.push('`');
        list.push_str(code);
        list.push('`');
    }
    E::custom(format_args!(
        "invalid code `{value}`, expected one of {list}"
    ))
}

/// Reads one typed variant of a choice element (`valueQuantity` of `value[x]`).
pub(crate) fn choice<'de, A, T, C>(
    map: &mut A,
    slot: &mut Option<C>,
    key: &'static str,
    wrap: fn(T) -> C,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
    C: Choice,
{
    if let Some(previous) = slot {
        let previous = previous.json_key();
        if previous == key {
            return Err(A::Error::duplicate_field(key));
        }
        return Err(A::Error::custom(format_args!(
            "`{key}` after `{previous}`: a choice element holds one value"
        )));
    }
    *slot = Some(wrap(map.next_value().map_err(|e| at(e, key))?));
    Ok(())
}

/// Reads `resourceType` inside a resource read directly (not through `Resource`) and checks it.
pub(crate) fn resource_type<'de, A>(
    map: &mut A,
    seen: &mut bool,
    expected: &'static str,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
{
    if *seen {
        return Err(A::Error::duplicate_field("resourceType"));
    }
    let value: Key<'de> = map.next_value().map_err(|e| at(e, "resourceType"))?;
    if value.as_str() != expected {
        return Err(at(
            A::Error::custom(format_args!(
                "`{}` where a {expected} was expected",
                value.as_str()
            )),
            "resourceType",
        ));
    }
    *seen = true;
    Ok(())
}

/// The error for a key that is not an element of `path`.
pub(crate) fn unknown_field<E: Error>(key: &str, path: &str, fields: &[&str]) -> E {
    if let Some(base) = key.strip_prefix('_')
        && fields.contains(&base)
    {
        return E::custom(format_args!(
            "unknown field `{key}` in {path}: extensions on a typed choice value are not supported"
        ));
    }
    match fields.iter().find(|f| f.eq_ignore_ascii_case(key)) {
        Some(hint) => E::custom(format_args!(
            "unknown field `{key}` in {path}, did you mean `{hint}`?"
        )),
        None => E::custom(format_args!("unknown field `{key}` in {path}")),
    }
}

/// The error for `{}`: FHIR JSON forbids elements with neither a value nor children.
pub(crate) fn empty_object<E: Error>(path: &str) -> E {
    E::custom(format_args!(
        "empty {path} object: FHIR JSON leaves an element out instead"
    ))
}

/// The error for a `resourceType` this crate has no type for.
pub(crate) fn unsupported_resource_type<E: Error>(resource_type: &str) -> E {
    E::custom(format_args!("unsupported resource type `{resource_type}`"))
}

/// Checks that a primitive array and its `_name` array line up, as FHIR JSON requires.
pub(crate) fn aligned<E: Error>(key: &str, values: usize, extensions: usize) -> Result<(), E> {
    if values != 0 && extensions != 0 && values != extensions {
        return Err(E::custom(format_args!(
            "`{key}` has {values} values but `_{key}` has {extensions}: the arrays must line up"
        )));
    }
    Ok(())
}

/// Prefixes the error of the value under `key` with that key.
pub(crate) fn at<E: Error>(error: E, key: &str) -> E {
    E::custom(prefixed(&error.to_string(), key))
}

/// Prefixes the error of array item `index` with `[index]`.
pub(crate) fn at_index<E: Error>(error: E, index: usize) -> E {
    E::custom(prefixed(&error.to_string(), &format!("[{index}]")))
}

fn prefixed(message: &str, segment: &str) -> String {
    let (body, position) = split_position(message);
    match split_path(body) {
        Some((path, rest)) if path.starts_with('[') => format!("{segment}{path}: {rest}{position}"),
        Some((path, rest)) => format!("{segment}.{path}: {rest}{position}"),
        None => format!("{segment}: {body}{position}"),
    }
}

/// Splits serde_json's ` at line L column C` suffix off a message.
pub(crate) fn split_position(message: &str) -> (&str, &str) {
    if let Some(start) = message.rfind(" at line ") {
        let rest = &message[start + " at line ".len()..];
        if let Some((line, column)) = rest.split_once(" column ")
            && !line.is_empty()
            && line.bytes().all(|b| b.is_ascii_digit())
            && !column.is_empty()
            && column.bytes().all(|b| b.is_ascii_digit())
        {
            return (&message[..start], &message[start..]);
        }
    }
    (message, "")
}

/// Splits `path: rest` when the message starts with a JSON path this module wrote. A path has no spaces, so
/// serde's own messages (`invalid type: ...`) are never mistaken for one.
pub(crate) fn split_path(message: &str) -> Option<(&str, &str)> {
    let (path, rest) = message.split_once(": ")?;
    let first = path.chars().next()?;
    let is_path = (first.is_ascii_alphabetic() || first == '_' || first == '[')
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'));
    is_path.then_some((path, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_keys_and_indexes_and_keep_the_position() {
        let leaf = "invalid type: integer `5`, expected a string at line 3 column 9";
        let given = prefixed(leaf, "given");
        assert_eq!(
            given,
            "given: invalid type: integer `5`, expected a string at line 3 column 9"
        );
        let item = prefixed(&given, "[1]");
        assert_eq!(
            item,
            "[1].given: invalid type: integer `5`, expected a string at line 3 column 9"
        );
        let name = prefixed(&item, "name");
        assert_eq!(
            name,
            "name[1].given: invalid type: integer `5`, expected a string at line 3 column 9"
        );
    }

    #[test]
    fn messages_without_a_path_or_position_are_prefixed_whole() {
        assert_eq!(
            prefixed("missing field `code`", "component"),
            "component: missing field `code`"
        );
        assert_eq!(split_path("invalid value: integer"), None);
        assert_eq!(
            split_position("no position at line x column 2"),
            ("no position at line x column 2", "")
        );
    }
}
