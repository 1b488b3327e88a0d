//! TXA -> DocumentReference (IG `TXA[DocumentReference]`, `OBX[DocumentReference]`); the OBX that follow
//! the TXA carry the document's content.

use fhir::{
    Attachment, CodeableConcept, DocumentReference, DocumentReferenceContent,
    DocumentReferenceContext, DocumentReferenceRelatesTo, Period, Reference,
};
use hl7v2::Segment;

use crate::context::{Ctx, IssueKind, Severity};
use crate::entities;
use crate::read::{comp, field, field_comp, field_text, reps, text};
use crate::segments::pharmacy::{ei, following, key};

/// `http://terminology.hl7.org/CodeSystem/v2-0270`, document types (TXA-2).
pub const V2_0270: &str = "http://terminology.hl7.org/CodeSystem/v2-0270";
/// `http://terminology.hl7.org/CodeSystem/v2-0272`, document confidentiality status (TXA-18).
pub const V2_0272: &str = "http://terminology.hl7.org/CodeSystem/v2-0272";

/// TXA -> DocumentReference.
///
/// - masterIdentifier TXA-12 (unique document number), which also gives the id, so every MDM event about
///   one document (T02 original, T04 status change, T06 addendum...) updates the same resource;
///   identifier TXA-16 (file name);
/// - type TXA-2 (table 0270 when sent without a system); category TXA-24 (folder assignment);
///   description TXA-25; securityLabel TXA-18 (table 0272);
/// - status: TXA-19 availability `AV` (or empty) `current`, `OB` obsolete `superseded`, `CA` cancelled
///   `entered-in-error`, and `entered-in-error` for T11 (document cancelled); docStatus from TXA-17
///   (table 0271): `LA` legally authenticated is `final`, the earlier states are `preliminary`;
/// - date (an instant) and content.attachment.creation TXA-6 (origination), context.period.start TXA-4
///   (the activity's time), context.related TXA-5 (the provider of the activity) and the current order (the IG's MDM message maps),
///   author TXA-9,
///   authenticator TXA-10, else TXA-22 (who authenticated);
/// - relatesTo TXA-13 (the parent document) as a logical reference: `appends` for an addendum (T05/T06),
///   `replaces` for a replacement (T09/T10);
/// - content from the OBX after it: TX, ST, FT and CE text as one `text/plain` attachment (lines joined
///   with line breaks, base64), each ED as its own attachment (type/subtype as contentType; Base64 kept,
///   `A` text and `Hex` re-encoded as base64), each RP as an attachment url.
pub fn txa(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let master = field(seg, 12).and_then(ei);
    let id = match &master {
        Some(m) => ctx.id("DocumentReference", &key(m)),
        None => ctx.message_scoped_id("DocumentReference", ""),
    };

    let status = match (ctx.event.as_str(), field_comp(seg, 19, 1).as_deref()) {
        ("T11", _) | (_, Some("CA")) => "entered-in-error",
        (_, Some("OB")) => "superseded",
        _ => "current",
    };
    let doc_status = field_comp(seg, 17, 1).and_then(|c| match c.as_str() {
        "LA" => Some("final"),
        "DI" | "DO" | "IP" | "IN" | "PA" | "AU" => Some("preliminary"),
        _ => None,
    });
    let r#type = ctx.code(field(seg, 2), &ctx.at(2)).map(|mut c| {
        for k in &mut c.coding {
            if k.system.is_none() {
                k.system = Some(V2_0270.into());
            }
        }
        c
    });
    let security_label: Vec<CodeableConcept> = reps(seg, 18)
        .filter_map(|n| comp(n, 1))
        .filter_map(|c| {
            let display = match c.as_str() {
                "V" => "Very restricted",
                "R" => "Restricted",
                "U" => "Usual control",
                _ => return None,
            };
            Some(CodeableConcept::coding(V2_0272, c, Some(display)))
        })
        .collect();

    let origination = ctx.dtm(field(seg, 6), ctx.at(6));
    let date = ctx.instant(field(seg, 6), ctx.at(6));
    let activity = ctx.dtm(field(seg, 4), ctx.at(4));
    let mut related: Vec<Reference> = reps(seg, 5)
        .filter_map(|x| entities::practitioner(ctx, x))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|i| ctx.reference(i))
        .collect();
    // The order the document belongs to (IG MDM message maps: context.related = the ServiceRequest).
    if let Some(order) = ctx.order.map(|o| ctx.reference(o))
        && !related.contains(&order)
    {
        related.push(order);
    }
    let author: Vec<Reference> = reps(seg, 9)
        .filter_map(|x| entities::practitioner(ctx, x))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|i| ctx.reference(i))
        .collect();
    let authenticator = field(seg, 10)
        .or_else(|| field(seg, 22))
        .and_then(|x| x.repetition(1))
        .and_then(|x| entities::practitioner(ctx, x))
        .map(|i| ctx.reference(i));

    let relation = match ctx.event.as_str() {
        "T05" | "T06" => Some("appends"),
        "T09" | "T10" => Some("replaces"),
        _ => None,
    };
    let relates_to: Vec<DocumentReferenceRelatesTo> = relation
        .and_then(|code| {
            let parent = field(seg, 13).and_then(ei)?;
            Some(DocumentReferenceRelatesTo {
                code: Some(code.into()),
                target: Reference {
                    r#type: Some("DocumentReference".into()),
                    identifier: Some(Box::new(parent)),
                    ..Default::default()
                },
                ..Default::default()
            })
        })
        .into_iter()
        .collect();

    let mut content = content(ctx, seg);
    if content.is_empty() {
        content.push(DocumentReferenceContent::default());
    }
    if let Some(first) = content.first_mut() {
        first.attachment.creation = origination.clone();
    }
    // An attachment with nothing in it is not valid FHIR: drop it when TXA-6 is empty too.
    content.retain(|c| c.attachment != Attachment::default());

    let context = DocumentReferenceContext {
        encounter: ctx.encounter_ref().into_iter().collect(),
        period: activity.map(|start| Period {
            start: Some(start),
            ..Default::default()
        }),
        related,
        ..Default::default()
    };
    let document = DocumentReference {
        id: Some(id),
        master_identifier: master.clone(),
        identifier: field_text(seg, 16)
            .map(|v| fhir::Identifier {
                value: Some(v),
                r#type: Some(CodeableConcept::text("Document unique file name")),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        status: Some(status.into()),
        doc_status: doc_status.map(str::to_owned),
        r#type,
        category: reps(seg, 24)
            .filter_map(|n| ctx.code(Some(n), &ctx.at(24)))
            .collect(),
        subject: ctx.patient_ref(),
        date,
        author,
        authenticator,
        relates_to,
        description: field_text(seg, 25),
        security_label,
        content,
        context: (context != DocumentReferenceContext::default()).then_some(context),
        ..Default::default()
    };
    let conditional = master.filter(|m| m.system.is_some());
    let i = ctx.add(document, conditional.as_ref());
    ctx.last = Some(i);
}

/// The OBX after the TXA (with their NTE) as DocumentReference content.
fn content(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Vec<DocumentReferenceContent> {
    let mut lines: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut n = 0;
    for obx in following(ctx, seg, &["OBX", "NTE", "CON", "PRT"]) {
        if obx.id() != "OBX" {
            continue;
        }
        n += 1;
        let at = if n == 1 {
            "OBX-5".to_owned()
        } else {
            format!("OBX[{n}]-5")
        };
        let kind = field_comp(&obx, 2, 1).unwrap_or_default();
        let values = reps(&obx, 5);
        match kind.as_str() {
            "TX" | "ST" | "FT" | "CE" | "CWE" => {
                for v in values {
                    let t = match kind.as_str() {
                        "CE" | "CWE" => comp(v, 2).or_else(|| comp(v, 1)),
                        _ => text(Some(v)),
                    };
                    lines.extend(t);
                }
            }
            "ED" => {
                for v in values {
                    let kind = comp(v, 2).map(|t| t.to_ascii_lowercase());
                    let subtype = comp(v, 3).map(|t| t.to_ascii_lowercase());
                    let content_type = match (kind, subtype) {
                        (Some(t), Some(s)) => Some(format!("{t}/{s}")),
                        (Some(t), None) if t.contains('/') => Some(t),
                        _ => None,
                    };
                    let data = comp(v, 5).and_then(|d| match comp(v, 4).as_deref() {
                        Some("Base64") | Some("base64") | Some("B64") => Some(d),
                        Some("Hex") => match hex_decode(&d) {
                            Some(bytes) => Some(base64(&bytes)),
                            None => {
                                ctx.issue(
                                    Severity::Error,
                                    at.clone(),
                                    IssueKind::Invalid,
                                    "ED data declared Hex is not hexadecimal: left out".into(),
                                );
                                None
                            }
                        },
                        _ => Some(base64(d.as_bytes())),
                    });
                    if content_type.is_some() || data.is_some() {
                        out.push(DocumentReferenceContent {
                            attachment: Attachment {
                                content_type,
                                data,
                                ..Default::default()
                            },
                            ..Default::default()
                        });
                    }
                }
            }
            "RP" => {
                for v in values {
                    if let Some(url) = comp(v, 1) {
                        out.push(DocumentReferenceContent {
                            attachment: Attachment {
                                url: Some(url),
                                ..Default::default()
                            },
                            ..Default::default()
                        });
                    }
                }
            }
            _ => {}
        }
    }
    if !lines.is_empty() {
        out.insert(
            0,
            DocumentReferenceContent {
                attachment: Attachment {
                    content_type: Some("text/plain".into()),
                    data: Some(base64(lines.join("\n").as_bytes())),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
    }
    out
}

/// Standard base64 (RFC 4648, with padding), as FHIR `base64Binary` wants.
pub fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Hex text (whitespace ignored) as bytes; `None` when it is not an even run of hex digits.
fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| (b as char).to_digit(16).map(|d| d as u8))
        .collect::<Option<_>>()?;
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    Some(digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(hex_decode("66 6F"), Some(b"fo".to_vec()));
        assert_eq!(hex_decode("6"), None);
        assert_eq!(hex_decode("zz"), None);
    }
}
