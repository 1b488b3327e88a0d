//! The parsed view of a stored HL7 v2 message: its segments, and each populated field with its
//! position (`PID-5`), its standard name from the embedded HL7 definitions (`Patient Name`),
//! the value as written and its decoded repetitions, components and subcomponents.

use serde::Serialize;
use utoipa::ToSchema;

/// A message as segments and named fields.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParsedMessage {
    /// The HL7 version the field names come from (MSH-12; the newest known when it is not).
    pub version: String,
    pub segments: Vec<ParsedSegment>,
}

/// One segment.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParsedSegment {
    /// Segment id, e.g. `PID`.
    pub id: String,
    /// 1-based position in the message.
    pub index: usize,
    /// The fields that hold a value, in order.
    pub fields: Vec<ParsedField>,
}

/// One field with a value.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParsedField {
    /// `PID-5`.
    pub position: String,
    /// The standard name, e.g. `Patient Name`; absent for Z segments and fields past the
    /// definition.
    pub name: Option<String>,
    /// The value as written, separators and escape sequences included.
    pub value: String,
    /// Repetitions -> components -> subcomponents, each decoded (escapes resolved).
    pub repetitions: Vec<Vec<Vec<String>>>,
}

/// The parsed view of `msg`.
pub fn parsed(msg: &hl7v2::Message<'_>) -> ParsedMessage {
    let version = msg
        .version()
        .map(|v| v.into_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| hl7v2::validate::DEFAULT_VERSION.to_owned());
    let segments = msg
        .segments()
        .map(|seg| {
            let id = seg.id();
            let fields = (1..=seg.field_count())
                .filter_map(|n| seg.field(n).map(|f| (n, f)))
                .filter(|(_, f)| !f.is_empty())
                .map(|(n, f)| ParsedField {
                    position: format!("{id}-{n}"),
                    name: hl7v2::validate::field_name(&version, id, n),
                    value: String::from_utf8_lossy(f.raw()).into_owned(),
                    repetitions: f
                        .repetitions()
                        .map(|rep| {
                            rep.components()
                                .map(|c| {
                                    c.subcomponents()
                                        .map(|s| s.decoded().into_owned())
                                        .collect()
                                })
                                .collect()
                        })
                        .collect(),
                })
                .collect();
            ParsedSegment {
                id: id.to_owned(),
                index: seg.index(),
                fields,
            }
        })
        .collect();
    ParsedMessage { version, segments }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_named_and_decoded() {
        let raw = b"MSH|^~\\&|EHR|CLINIC|||20240101||ADT^A01|C1|P|2.5.1\r\
                    PID|1||12345^^^HOSP^MR||DOE\\S\\X^JANE~ALIAS\rZZZ|custom\r";
        let msg = hl7v2::parse(raw).expect("parses");
        let view = parsed(&msg);
        assert_eq!(view.version, "2.5.1");
        let ids: Vec<&str> = view.segments.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["MSH", "PID", "ZZZ"]);
        let pid = &view.segments[1];
        assert_eq!(pid.index, 2);
        let positions: Vec<&str> = pid.fields.iter().map(|f| f.position.as_str()).collect();
        assert_eq!(
            positions,
            ["PID-1", "PID-3", "PID-5"],
            "empty fields left out"
        );
        let name = &pid.fields[2];
        assert_eq!(name.name.as_deref(), Some("Patient Name"));
        assert_eq!(name.value, "DOE\\S\\X^JANE~ALIAS");
        assert_eq!(
            name.repetitions,
            vec![
                vec![vec!["DOE^X".to_string()], vec!["JANE".to_string()]],
                vec![vec!["ALIAS".to_string()]],
            ]
        );
        let msh9 = view.segments[0]
            .fields
            .iter()
            .find(|f| f.position == "MSH-9")
            .expect("MSH-9");
        assert_eq!(msh9.name.as_deref(), Some("Message Type"));
        assert_eq!(
            view.segments[2].fields[0].name, None,
            "Z segments have no names"
        );
    }
}
