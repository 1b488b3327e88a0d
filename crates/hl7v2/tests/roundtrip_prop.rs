//! Property: for generated messages with arbitrary delimiters and text full of delimiters,
//! escapes and line breaks, `parse(encode(m)) == m`, and the parsed message re-encodes to
//! the same bytes.

use proptest::prelude::*;

/// Characters usable as delimiters: printable, not letters, digits or space.
const DELIMS: &[u8] = b"|^~\\&#!@%*}{$+:;?/";

type Field = Vec<Vec<Vec<String>>>; // repetitions -> components -> subcomponents

#[derive(Debug, Clone)]
struct Model {
    seps: hl7v2::Separators,
    terminator: &'static str,
    msh_fields: Vec<String>, // MSH-3 onwards, plain text in single components
    segments: Vec<(String, Vec<Field>)>,
}

fn separators() -> impl Strategy<Value = hl7v2::Separators> {
    (
        Just(DELIMS.to_vec()).prop_shuffle(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(d, has_sub, has_trunc)| hl7v2::Separators {
            field: d[0],
            component: d[1],
            repetition: d[2],
            escape: d[3],
            subcomponent: (has_sub || has_trunc).then_some(d[4]),
            truncation: has_trunc.then_some(d[5]),
        })
}

fn text() -> impl Strategy<Value = String> {
    let chars = prop::sample::select(
        "abcXYZ019 |^~\\&#!@%*}{$\"\n\r\té€"
            .chars()
            .collect::<Vec<_>>(),
    );
    prop::collection::vec(chars, 0..8).prop_map(|v| v.into_iter().collect())
}

fn field(has_sub: bool) -> impl Strategy<Value = Field> {
    let subs = if has_sub { 1..3usize } else { 1..2usize };
    let comp = prop::collection::vec(text(), subs);
    let rep = prop::collection::vec(comp, 1..4);
    prop::collection::vec(rep, 1..3)
}

fn model() -> impl Strategy<Value = Model> {
    separators().prop_flat_map(|seps| {
        let has_sub = seps.subcomponent.is_some();
        let id = "[A-Z][A-Z0-9]{2}".prop_filter("not a header id", |id| {
            !matches!(id.as_str(), "MSH" | "FHS" | "BHS")
        });
        let segment = (id, prop::collection::vec(field(has_sub), 0..6));
        (
            Just(seps),
            prop::sample::select(vec!["\r", "\n", "\r\n"]),
            prop::collection::vec(text(), 0..5),
            prop::collection::vec(segment, 0..5),
        )
            .prop_map(|(seps, terminator, msh_fields, segments)| Model {
                seps,
                terminator,
                msh_fields,
                segments,
            })
    })
}

fn encode_text(t: &str, seps: &hl7v2::Separators) -> Vec<u8> {
    hl7v2::escape::encode(t, seps, hl7v2::Charset::Utf8).into_owned()
}

fn encode(m: &Model) -> Vec<u8> {
    let s = &m.seps;
    let mut out = b"MSH".to_vec();
    out.push(s.field);
    out.extend_from_slice(&s.encoding_characters());
    for f in &m.msh_fields {
        out.push(s.field);
        out.extend_from_slice(&encode_text(f, s));
    }
    for (id, fields) in &m.segments {
        out.extend_from_slice(m.terminator.as_bytes());
        out.extend_from_slice(id.as_bytes());
        for f in fields {
            out.push(s.field);
            let reps: Vec<Vec<u8>> = f
                .iter()
                .map(|rep| {
                    let comps: Vec<Vec<u8>> = rep
                        .iter()
                        .map(|comp| {
                            let subs: Vec<Vec<u8>> =
                                comp.iter().map(|t| encode_text(t, s)).collect();
                            subs.join(&s.subcomponent.unwrap_or(b'&'))
                        })
                        .collect();
                    comps.join(&s.component)
                })
                .collect();
            out.extend_from_slice(&reps.join(&s.repetition));
        }
    }
    out.extend_from_slice(m.terminator.as_bytes());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_of_encode_is_identity(m in model()) {
        let bytes = encode(&m);
        let msg = hl7v2::parse_with(&bytes, hl7v2::ParseOptions { leniency: hl7v2::Leniency::Strict, charset: None }).unwrap();
        prop_assert_eq!(msg.separators(), m.seps);
        prop_assert_eq!(msg.segment_count(), m.segments.len() + 1);
        let msh = msg.segment(1).unwrap();
        let msh_fields: Vec<String> = (3..msh.field_count() + 1)
            .map(|n| msh.field(n).unwrap().decoded_strict().unwrap().into_owned())
            .collect();
        prop_assert_eq!(&msh_fields, &m.msh_fields);
        for (seg, (id, fields)) in msg.segments().skip(1).zip(&m.segments) {
            prop_assert_eq!(seg.id(), id.as_str());
            let got: Vec<Field> = seg
                .fields()
                .map(|f| {
                    f.repetitions()
                        .map(|r| r.components().map(|c| c.subcomponents().map(|s| s.decoded_strict().unwrap().into_owned()).collect()).collect())
                        .collect()
                })
                .collect();
            prop_assert_eq!(&got, fields);
        }
        prop_assert_eq!(msg.to_owned_message().encode(), bytes);
    }

    /// Arbitrary bytes never panic the parser, the file splitter or the decoder.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
        for raw in hl7v2::split_file(&data).flatten() {
            let Ok(msg) = hl7v2::parse(raw.bytes) else { continue };
            for seg in msg.segments() {
                for f in seg.fields() {
                    let _ = f.decoded_strict();
                    let _ = f.components().count();
                }
            }
            prop_assert_eq!(msg.to_owned_message().encode(), raw.bytes);
        }
        let mut prefixed = b"MSH|^~\\&|".to_vec();
        prefixed.extend_from_slice(&data);
        if let Ok(msg) = hl7v2::parse(&prefixed) {
            prop_assert_eq!(msg.to_owned_message().encode(), prefixed.clone());
        }
    }
}
