//! TOML text to [`RawConfig`], reporting every syntax and shape error.
//!
//! Syntax errors come all at once from the TOML parser's recovery mode. Shape errors (an
//! unknown key, a value of the wrong type) come one at a time from serde, so after each one
//! the offending `key = value` entry is blanked out (replaced by spaces, keeping every byte
//! offset) and the text read again, until it reads cleanly or nothing more can be removed.
//! The key paths set aside are returned so that validation does not report them again as
//! missing.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::error::{ConfigErrorKind, Errors};
use super::raw::RawConfig;

/// Most shape errors gathered from one file: past this the file is probably not a Causeway
/// configuration at all, and more lines would bury the first, most useful ones.
pub const MAX_SHAPE_ERRORS: usize = 50;

/// Parses `text`; `None` when nothing can be validated (syntax errors, or a shape error that
/// cannot be set aside). Errors go to `errors`.
pub(crate) fn parse_raw(errors: &mut Errors<'_>) -> Option<(RawConfig, Vec<String>)> {
    let (_, syntax) = DeTable::parse_recoverable(errors.text);
    if !syntax.is_empty() {
        let mut syntax = syntax;
        syntax.sort_by_key(|e| e.span().map_or(usize::MAX, |s| s.start));
        for e in syntax {
            errors.push(
                ConfigErrorKind::Syntax,
                "",
                e.span(),
                format!("invalid toml: {}", e.message().trim_end_matches('\n')),
            );
        }
        return None;
    }
    let mut current = errors.text.to_string();
    let mut removed = Vec::new();
    let mut last: Option<(Option<Range<usize>>, String)> = None;
    loop {
        let err = match toml::from_str::<RawConfig>(&current) {
            Ok(raw) => return Some((raw, removed)),
            Err(e) => e,
        };
        let span = err.span();
        let message = plain(err.message().trim_end_matches('\n'));
        if last.as_ref() == Some(&(span.clone(), message.clone())) {
            return None;
        }
        last = Some((span.clone(), message.clone()));
        let found = span.as_ref().and_then(|s| {
            let doc = DeTable::parse(&current).ok()?;
            find_entry(doc.get_ref(), s)
        });
        let key = found.as_ref().map(|f| f.0.clone()).unwrap_or_default();
        errors.push(ConfigErrorKind::Shape, &key, span, message);
        let (key, blank) = found?;
        if removed.len() + 1 >= MAX_SHAPE_ERRORS {
            return None;
        }
        removed.push(key);
        blank_out(&mut current, blank);
    }
}

/// Serde's words for our types in the words of the file: `struct RawSource` is a table,
/// `i64` an integer.
fn plain(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("struct Raw") {
        out.push_str(&rest[..i]);
        out.push_str("a table");
        let tail = &rest[i + "struct Raw".len()..];
        let name_len = tail
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(tail.len());
        rest = &tail[name_len..];
    }
    out.push_str(rest);
    out.replace("expected i64", "expected an integer")
}

/// The innermost `key = value` entry whose key or value holds `span`: its key path (list
/// items as `[i]`) and the byte range to blank to remove it. Tables written with a
/// `[header]` span only their header, so the whole tree is searched, and a table's entry
/// extends over everything in it.
fn find_entry(table: &DeTable<'_>, span: &Range<usize>) -> Option<(String, Range<usize>)> {
    let mut best = None;
    visit(table, "", span, &mut best);
    best.map(|(_, key, range)| (key, range))
}

type Best = Option<(usize, String, Range<usize>)>;

fn visit(table: &DeTable<'_>, prefix: &str, span: &Range<usize>, best: &mut Best) {
    let holds = |r: &Range<usize>| r.start <= span.start && span.end <= r.end.max(r.start + 1);
    for (k, v) in table.iter() {
        let key = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        let mut entry = k.span();
        extend(&mut entry, v);
        for r in [k.span(), v.span()] {
            if holds(&r) {
                consider(best, r.len(), &key, &entry);
            }
        }
        match v.get_ref() {
            DeValue::Table(t) => visit(t, &key, span, best),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_key = format!("{key}[{i}]");
                    if holds(&item.span()) {
                        // A value inside a list cannot be blanked alone: the whole entry goes.
                        let blank = if matches!(item.get_ref(), DeValue::Table(_)) {
                            let mut r = item.span();
                            extend(&mut r, item);
                            r
                        } else {
                            entry.clone()
                        };
                        consider(best, item.span().len(), &item_key, &blank);
                    }
                    if let DeValue::Table(t) = item.get_ref() {
                        visit(t, &item_key, span, best);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Keeps the candidate whose holding span is smallest; on equal sizes the later, deeper one.
fn consider(best: &mut Best, size: usize, key: &str, entry: &Range<usize>) {
    if best.as_ref().is_none_or(|(s, _, _)| size <= *s) {
        *best = Some((size, key.to_string(), entry.clone()));
    }
}

/// Widens `range` over `value` and everything inside it.
fn extend(range: &mut Range<usize>, value: &toml::Spanned<DeValue<'_>>) {
    let s = value.span();
    range.start = range.start.min(s.start);
    range.end = range.end.max(s.end);
    match value.get_ref() {
        DeValue::Table(t) => {
            for (k, v) in t.iter() {
                range.start = range.start.min(k.span().start);
                range.end = range.end.max(k.span().end);
                extend(range, v);
            }
        }
        DeValue::Array(items) => {
            for item in items.iter() {
                extend(range, item);
            }
        }
        _ => {}
    }
}

/// Replaces `range` (widened to a neighbouring comma inside inline tables) with spaces, byte
/// for byte, so that every other span stays where it was.
fn blank_out(text: &mut String, range: Range<usize>) {
    let bytes = text.as_bytes();
    let mut start = range.start.min(bytes.len());
    let mut end = range.end.min(bytes.len());
    let mut after = end;
    while after < bytes.len() && matches!(bytes[after], b' ' | b'\t') {
        after += 1;
    }
    if after < bytes.len() && bytes[after] == b',' {
        end = after + 1;
    } else {
        let mut before = start;
        while before > 0 && matches!(bytes[before - 1], b' ' | b'\t') {
            before -= 1;
        }
        if before > 0 && bytes[before - 1] == b',' {
            start = before - 1;
        }
    }
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    while !text.is_char_boundary(end) {
        end += 1;
    }
    let blank: String = text[start..end]
        .chars()
        .flat_map(|c| {
            let n = if c == '\n' { 0 } else { c.len_utf8() };
            std::iter::repeat_n(' ', n).chain((c == '\n').then_some('\n'))
        })
        .collect();
    text.replace_range(start..end, &blank);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_words_become_toml_words() {
        assert_eq!(
            plain("invalid type: string \"x\", expected struct RawSource"),
            "invalid type: string \"x\", expected a table"
        );
        assert_eq!(
            plain("invalid type: string \"x\", expected i64"),
            "invalid type: string \"x\", expected an integer"
        );
    }

    #[test]
    fn blanking_keeps_offsets_and_commas() {
        let mut t = "a = { x = 1, é = 2, y = 3 }".to_string();
        let start = t.find('é').unwrap();
        blank_out(&mut t, start..start + "é = 2".len());
        assert_eq!(t, "a = { x = 1,         y = 3 }");
        let mut t = "a = { x = 1, y = 3 }".to_string();
        blank_out(&mut t, 13..18);
        assert_eq!(t, "a = { x = 1        }");
    }
}
