//! One message -> one FHIR R4 transaction bundle: the message types, their structures, and the walk that
//! hands each segment to its mapping in order (so a segment can refer back to the patient, visit, order or
//! report it belongs to).

use fhir::{Bundle, Extension, ExtensionValue};
use hl7v2::Message;

use crate::context::{Ctx, Issue, Severity};
use crate::error::{Error, ErrorKind};
use crate::profile::{Profile, Relocation, ZTarget, ZValue};
use crate::{ids, segments};

/// The message codes (MSH-9.1) converted; anything else is refused with [`ErrorKind::Unsupported`].
pub const MESSAGE_CODES: [&str; 15] = [
    "ADT", "BAR", "DFT", "MDM", "OMG", "OML", "ORM", "ORU", "OUL", "PPR", "RDE", "RDS", "REF",
    "SIU", "VXU",
];

/// The result of converting one message.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// A `transaction` bundle; entries are conditional updates where the resource has a business
    /// identifier with a system, else `PUT Type/id` with the deterministic id.
    pub bundle: Bundle,
    /// What was noticed: values left out, codes not in the sender's maps, segments without a mapping.
    pub issues: Vec<Issue>,
    /// A code under a `hold` policy was not in its map: the message waits for review.
    pub held: bool,
}

impl Conversion {
    /// True when some value was left out of the bundle.
    pub fn has_errors(&self) -> bool {
        self.issues.iter().any(|i| i.severity == Severity::Error)
    }
}

/// Converts one parsed message with a sender's profile.
///
/// # Errors
/// [`ErrorKind::Unsupported`] for a message code outside [`MESSAGE_CODES`] or without MSH;
/// [`ErrorKind::Rejected`] when a code map with the `reject` policy meets a code it does not know.
pub fn convert(message: &Message<'_>, profile: &Profile) -> Result<Conversion, Error> {
    if profile.relocations.is_empty() {
        // Hundreds of values are read as text: the input is checked as UTF-8 once, up front.
        return convert_parsed(&message.clone().with_text_checked(), profile);
    }
    let mut owned = message.to_owned_message();
    for r in &profile.relocations {
        relocate(&mut owned, r);
    }
    let bytes = owned.encode();
    let relocated = hl7v2::parse(&bytes)
        .map(Message::with_text_checked)
        .map_err(|e| {
            Error::new(
                ErrorKind::Unsupported,
                0,
                format!("the profile's relocations made the message unreadable: {e}"),
            )
        })?;
    convert_parsed(&relocated, profile)
}

/// Applies one relocation; a path that names nothing in this message is skipped.
fn relocate(owned: &mut hl7v2::OwnedMessage, r: &Relocation) {
    let Ok(Some(from)) = owned.get(&r.from) else {
        return;
    };
    if from.is_empty() {
        return;
    }
    let raw = from.raw().to_vec();
    let target_empty = owned.get(&r.to).ok().flatten().is_none_or(|n| n.is_empty());
    if !(target_empty || r.overwrite) {
        return;
    }
    if owned.set_raw(&r.to, &raw).is_ok() && !r.keep_source {
        let _ = owned.delete(&r.from);
    }
}

/// The extensions the profile's Z-segment mappings make from `seg`.
fn z_extensions(seg: &hl7v2::Segment<'_>, profile: &Profile) -> Vec<(ZTarget, Extension)> {
    let mut out = Vec::new();
    for z in profile
        .z_segments
        .iter()
        .filter(|z| z.field.starts_with(seg.id()))
    {
        let Ok(path) = hl7v2::Path::parse(&z.field) else {
            continue;
        };
        let Some(field) = seg.field(path.field).and_then(|f| f.repetition(1)) else {
            continue;
        };
        let node = match path.component {
            Some(c) => field.component(c),
            None => Some(field),
        };
        let Some(node) = node.filter(|n| crate::read::present(*n)) else {
            continue;
        };
        let value = match z.value {
            ZValue::String => ExtensionValue::String(node.decoded().into_owned()),
            ZValue::Code => match crate::read::comp(node, 1) {
                Some(code) => ExtensionValue::Code(code),
                None => continue,
            },
            ZValue::CodeableConcept => match crate::cwe(node) {
                Some(cc) => ExtensionValue::CodeableConcept(Box::new(cc)),
                None => continue,
            },
        };
        out.push((z.resource, Extension::new(z.url.clone(), value)));
    }
    out
}

fn convert_parsed(message: &Message<'_>, profile: &Profile) -> Result<Conversion, Error> {
    let Some(msh) = message.segment(1).filter(|s| s.id() == "MSH") else {
        return Err(Error::new(
            ErrorKind::Unsupported,
            0,
            "message has no MSH segment",
        ));
    };
    let mut ctx = Ctx::new(message, profile);
    if !MESSAGE_CODES.contains(&ctx.code.as_str()) {
        return Err(Error::new(
            ErrorKind::Unsupported,
            0,
            format!(
                "message type `{}^{}` is not converted to FHIR",
                ctx.code, ctx.event
            ),
        ));
    }
    ctx.at_segment = "MSH".into();
    let header = segments::msh::message_header(&mut ctx, &msh);
    // Occurrences per segment id; a message has a dozen kinds at most, so a scan beats hashing.
    let mut counts: Vec<(&str, usize)> = Vec::new();
    let mut z_pending = Vec::new();
    for seg in message.segments().skip(1) {
        let n = match counts.iter_mut().find(|(id, _)| *id == seg.id()) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                counts.push((seg.id(), 1));
                1
            }
        };
        ctx.set_segment(seg.id(), n);
        if seg.id().starts_with('Z')
            && profile
                .z_segments
                .iter()
                .any(|z| z.field.starts_with(seg.id()))
        {
            for (target, extension) in z_extensions(&seg, profile) {
                let index = match target {
                    ZTarget::Patient => ctx.patient,
                    ZTarget::Encounter => ctx.encounter,
                };
                z_pending.push((target, index, extension));
            }
            continue;
        }
        segments::convert(&mut ctx, &seg)?;
    }
    for (target, index, extension) in z_pending {
        // A Z segment before its PID/PV1 attaches to the patient or visit found later.
        let index = index.or(match target {
            ZTarget::Patient => ctx.patient,
            ZTarget::Encounter => ctx.encounter,
        });
        let attached = match (target, index) {
            (ZTarget::Patient, Some(i)) => ctx
                .get_mut::<fhir::Patient>(i)
                .map(|p| p.extension.push(extension)),
            (ZTarget::Encounter, Some(i)) => ctx
                .get_mut::<fhir::Encounter>(i)
                .map(|e| e.extension.push(extension)),
            _ => None,
        };
        if attached.is_none() {
            ctx.issue(
                Severity::Warning,
                "Z",
                crate::context::IssueKind::UnmappedSegment,
                "a Z-segment value had no Patient or Encounter to attach to".into(),
            );
        }
    }
    segments::financial::resolve_referrals(&mut ctx);
    ctx.at_segment = "MSH".into();
    segments::msh::provenance(&mut ctx, header);
    if let Some(rejected) = ctx.rejected.take() {
        return Err(rejected);
    }
    let timestamp = ctx.instant(msh.field(7), "MSH-7");
    let issues = std::mem::take(&mut ctx.issues);
    let held = ctx.held;
    let [app, facility, control] = ctx.message_key.clone();
    let mut bundle = ctx.into_bundle(ids::id("Bundle", &[&app, &facility, &control]));
    bundle.timestamp = timestamp;
    if !control.is_empty() {
        bundle.identifier = Some(fhir::Identifier {
            value: Some(control),
            ..Default::default()
        });
    }
    Ok(Conversion {
        bundle,
        issues,
        held,
    })
}

/// The message structure an event implies when MSH-9.3 is not sent (v2.5 structure table, the versions
/// in the corpus agree on these).
pub fn structure_of(code: &str, event: &str) -> String {
    let adt = |e: &str| -> &'static str {
        match e {
            "A01" | "A04" | "A08" | "A13" => "ADT_A01",
            "A02" => "ADT_A02",
            "A03" => "ADT_A03",
            "A05" | "A14" | "A28" | "A31" => "ADT_A05",
            "A06" | "A07" => "ADT_A06",
            "A09" | "A10" | "A11" | "A12" | "A15" | "A16" | "A21" | "A22" | "A23" | "A25"
            | "A26" | "A27" | "A29" | "A32" | "A33" => "ADT_A09",
            "A17" => "ADT_A17",
            "A18" | "A30" | "A34" | "A35" | "A36" | "A46" | "A47" | "A48" | "A49" => "ADT_A30",
            "A20" => "ADT_A20",
            "A24" | "A37" => "ADT_A24",
            "A38" => "ADT_A38",
            "A39" | "A40" | "A41" | "A42" => "ADT_A39",
            "A43" | "A44" => "ADT_A43",
            "A45" | "A50" | "A51" => "ADT_A45",
            "A52" | "A53" | "A55" => "ADT_A52",
            "A54" | "A56" => "ADT_A54",
            "A60" => "ADT_A60",
            _ => "",
        }
    };
    let s = match (code, event) {
        ("ADT", e) => adt(e),
        ("SIU", _) => "SIU_S12",
        ("MDM", "T01" | "T03" | "T05" | "T07" | "T09" | "T11") => "MDM_T01",
        ("MDM", _) => "MDM_T02",
        ("BAR", "P01" | "P05") => "BAR_P01",
        ("BAR", "P02") => "BAR_P02",
        ("BAR", "P12") => "BAR_P12",
        ("DFT", "P03") => "DFT_P03",
        ("DFT", "P11") => "DFT_P11",
        ("ORU", "R01") => "ORU_R01",
        ("ORM", _) => "ORM_O01",
        ("OML", _) => "OML_O21",
        ("OMG", _) => "OMG_O19",
        ("OUL", e) => match e {
            "R22" => "OUL_R22",
            "R23" => "OUL_R23",
            "R24" => "OUL_R24",
            _ => "",
        },
        ("RDE", "O25") => "RDE_O25",
        ("RDE", _) => "RDE_O11",
        ("RDS", _) => "RDS_O13",
        ("REF", _) => "REF_I12",
        ("VXU", _) => "VXU_V04",
        _ => "",
    };
    if s.is_empty() {
        format!("{code}_{event}")
    } else {
        s.to_owned()
    }
}
