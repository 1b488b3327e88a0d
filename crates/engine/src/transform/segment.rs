//! Segments written in the configuration (`add_segment = { segment = "ZCW|1|CAUSEWAY" }`).
//!
//! A template is written with the standard delimiters `|^~\&` and HL7 escapes (`\F\`, `\S\`,
//! ...) for literal delimiters. It is decoded once, at config load, into its values; each
//! insertion encodes them again with the delimiters and character set of the message at hand,
//! so one template fits senders that use `#` as a component separator or latin-1 text.

use hl7v2::{OwnedMessage, OwnedSegment};

/// Longest segment template, in bytes: a config-written segment is a few fields.
pub const MAX_TEMPLATE_LEN: usize = 4096;

/// A decoded segment: fields, repetitions, components, subcomponents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentTemplate {
    id: String,
    fields: Vec<Vec<Vec<Vec<String>>>>,
}

impl SegmentTemplate {
    pub fn parse(text: &str) -> Result<SegmentTemplate, String> {
        let bad = |why: &str| format!("invalid segment {text:?}: {why}");
        if text.len() > MAX_TEMPLATE_LEN {
            return Err(format!(
                "invalid segment: longer than {MAX_TEMPLATE_LEN} bytes"
            ));
        }
        if text.contains(['\r', '\n']) {
            return Err(bad("one segment, without line breaks"));
        }
        let id = text.get(..3).unwrap_or(text);
        if id.len() != 3
            || !id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(bad("expected a 3-character segment id such as ZCW"));
        }
        if matches!(id, "MSH" | "FHS" | "BHS" | "BTS" | "FTS") {
            return Err(bad("header and batch segments cannot be added"));
        }
        let rest = &text[3..];
        if !rest.is_empty() && !rest.starts_with('|') {
            return Err(bad("expected '|' after the segment id"));
        }
        // Decode with the parser itself, under a standard header, so escapes mean exactly
        // what they mean in a message.
        let framed = format!("MSH|^~\\&\r{text}\r");
        let msg = hl7v2::parse(framed.as_bytes()).map_err(|e| bad(&e.kind.to_string()))?;
        let seg = msg.segment(2).ok_or_else(|| bad("expected a segment"))?;
        let mut fields = Vec::new();
        for field in seg.fields() {
            let mut reps = Vec::new();
            for rep in field.repetitions() {
                let mut comps = Vec::new();
                for comp in rep.components() {
                    let subs = comp
                        .subcomponents()
                        .map(|s| {
                            s.decoded_strict()
                                .map(|t| t.into_owned())
                                .map_err(|e| bad(&e.kind.to_string()))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    comps.push(subs);
                }
                reps.push(comps);
            }
            fields.push(reps);
        }
        Ok(SegmentTemplate {
            id: id.to_string(),
            fields,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The segment in the delimiters and character set of `msg`.
    /// Fails only if hl7v2 refused the id that [`SegmentTemplate::parse`] accepted.
    pub fn build_for(&self, msg: &OwnedMessage) -> Result<OwnedSegment, hl7v2::Error> {
        let seps = msg.separators();
        let charset = msg.charset();
        let enc = |s: &str| hl7v2::escape::encode(s, &seps, charset).into_owned();
        // Without a subcomponent separator (3-character MSH-2) subcomponents cannot exist;
        // they are kept as text joined by '&', which is then an ordinary character.
        let sub_sep = seps.subcomponent.unwrap_or(b'&');
        let fields = self
            .fields
            .iter()
            .map(|reps| {
                let reps: Vec<Vec<u8>> = reps
                    .iter()
                    .map(|comps| {
                        let comps: Vec<Vec<u8>> = comps
                            .iter()
                            .map(|subs| {
                                let subs: Vec<Vec<u8>> = subs.iter().map(|s| enc(s)).collect();
                                subs.join(&sub_sep)
                            })
                            .collect();
                        comps.join(&seps.component)
                    })
                    .collect();
                reps.join(&seps.repetition)
            })
            .collect();
        OwnedSegment::new(&self.id, fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn re_encodes_for_other_delimiters() {
        let t = SegmentTemplate::parse("ZCW|1|A^B~C&D|x\\F\\y").unwrap();
        let std = hl7v2::parse(b"MSH|^~\\&|A\r").unwrap().to_owned_message();
        let mut m = std.clone();
        m.push_segment(t.build_for(&std).unwrap());
        assert_eq!(m.encode(), b"MSH|^~\\&|A\rZCW|1|A^B~C&D|x\\F\\y\r");
        let odd = hl7v2::parse(b"MSH#$%!*#A\r").unwrap().to_owned_message();
        let mut m = odd.clone();
        m.push_segment(t.build_for(&odd).unwrap());
        assert_eq!(m.encode(), b"MSH#$%!*#A\rZCW#1#A$B%C*D#x|y\r");
    }

    #[test]
    fn errors_are_exact() {
        for (text, want) in [
            (
                "ZC",
                "invalid segment \"ZC\": expected a 3-character segment id such as ZCW",
            ),
            (
                "zcw|1",
                "invalid segment \"zcw|1\": expected a 3-character segment id such as ZCW",
            ),
            (
                "ZCWX|1",
                "invalid segment \"ZCWX|1\": expected '|' after the segment id",
            ),
            (
                "MSH|1",
                "invalid segment \"MSH|1\": header and batch segments cannot be added",
            ),
            (
                "ZCW|a\rZCX",
                "invalid segment \"ZCW|a\\rZCX\": one segment, without line breaks",
            ),
            (
                "ZCW|\\Q\\",
                "invalid segment \"ZCW|\\\\Q\\\\\": unknown escape sequence \\Q\\",
            ),
        ] {
            assert_eq!(SegmentTemplate::parse(text).unwrap_err(), want, "{text}");
        }
        assert!(SegmentTemplate::parse("ZCW").is_ok());
    }
}
