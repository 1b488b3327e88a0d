//! MSH -> MessageHeader (with the sending and receiving Organizations and Device), SFT -> the software
//! that produced the message, EVN -> the event, and one Provenance per bundle naming the source message,
//! its sender and its time.

use fhir::{
    CodeableConcept, Coding, Identifier, MessageHeader, MessageHeaderDestination,
    MessageHeaderSource, Meta, Provenance, ProvenanceAgent, ProvenanceEntity, Reference,
};
use hl7v2::Segment;

use crate::context::Ctx;
use crate::entities;
use crate::read::{comp, field, field_comp, field_text};

/// `http://terminology.hl7.org/CodeSystem/v2-0003`, the event types.
pub const V2_0003: &str = "http://terminology.hl7.org/CodeSystem/v2-0003";
/// `http://terminology.hl7.org/CodeSystem/v2-0103`, the processing ids.
pub const V2_0103: &str = "http://terminology.hl7.org/CodeSystem/v2-0103";

/// MSH -> MessageHeader; returns its index.
pub fn message_header(ctx: &mut Ctx<'_>, msh: &Segment<'_>) -> usize {
    let sender_org = field(msh, 4).and_then(|hd| entities::organization_hd(ctx, hd));
    // IG: the receiving responsible organization (MSH-23, XON) when sent, else the facility (MSH-6).
    let receiver_org = match field(msh, 23) {
        Some(xon) => entities::organization(ctx, xon),
        None => field(msh, 6).and_then(|hd| entities::organization_hd(ctx, hd)),
    };
    let responsible_org = field(msh, 22).and_then(|xon| entities::organization(ctx, xon));
    let endpoint = |n: usize, app: usize| {
        field(msh, n)
            .and_then(entities::hd_system)
            .or_else(|| field(msh, app).and_then(entities::hd_system))
    };
    let source = MessageHeaderSource {
        name: field_comp(msh, 3, 1),
        endpoint: endpoint(24, 3),
        ..Default::default()
    };
    let destination: Vec<MessageHeaderDestination> =
        (field(msh, 5).is_some() || field(msh, 6).is_some() || field(msh, 25).is_some())
            .then(|| MessageHeaderDestination {
                name: field_comp(msh, 5, 1),
                endpoint: endpoint(25, 5),
                receiver: receiver_org.map(|i| ctx.reference(i)),
                ..Default::default()
            })
            .into_iter()
            .collect();
    let mut meta = Meta::default();
    if let Some(p) = field_comp(msh, 11, 1) {
        meta.tag.push(Coding::new(V2_0103, p, None));
    }
    if let Some(s) = field_text(msh, 8) {
        meta.security.push(Coding {
            display: Some(s),
            ..Default::default()
        });
    }
    let event = (!ctx.event.is_empty()).then(|| ctx.event.clone());
    let header = MessageHeader {
        id: Some(ctx.message_scoped_id("MessageHeader", "")),
        meta: (!meta.tag.is_empty() || !meta.security.is_empty()).then_some(meta),
        event: Some(fhir::MessageHeaderEvent::Coding(Box::new(Coding {
            system: Some(V2_0003.into()),
            code: event,
            display: field_text(msh, 9),
            ..Default::default()
        }))),
        source,
        destination,
        sender: sender_org.map(|i| ctx.reference(i)),
        responsible: responsible_org.map(|i| ctx.reference(i)),
        language: field_comp(msh, 19, 1),
        ..Default::default()
    };
    ctx.add(header, None)
}

/// SFT -> the MessageHeader's source software and version (the last SFT is the system that sent it).
pub fn sft(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let software = field_text(seg, 3);
    let version = field_text(seg, 2);
    let Some(header) = ctx
        .resources()
        .position(|r| r.resource_type() == "MessageHeader")
    else {
        return;
    };
    if let Some(h) = ctx.get_mut::<MessageHeader>(header) {
        if software.is_some() {
            h.source.software = software;
        }
        if version.is_some() {
            h.source.version = version;
        }
    }
}

/// EVN per `EVN[Provenance]`: the operator EVN-5 -> Practitioner (`XCN[Practitioner]`) and the event
/// facility EVN-7 -> Location (`HD[Location]`: `Provenance.location` is a Location, as in the IG and
/// FHIR-Converter). They are added here, in message order; [`provenance`] finds them again (same ids)
/// and names them as the `enterer` agent and the location. The times (EVN-2, EVN-6) are read there.
pub fn evn(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    evn_entities(ctx, seg);
}

/// The (operator Practitioner, facility Location) of an EVN; the same resources each time it is read.
fn evn_entities(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> (Option<usize>, Option<usize>) {
    let operator = crate::read::reps(seg, 5)
        .into_iter()
        .find_map(|xcn| entities::practitioner(ctx, xcn));
    let facility = field(seg, 7).and_then(|hd| entities::location_hd(ctx, hd));
    (operator, facility)
}

/// One Provenance for the bundle: what it was made from (the message, by control id), who sent it (the
/// sending facility, else application; the `author`), who entered the event (EVN-5, the `enterer`),
/// where it happened (EVN-7), when (MSH-7 recorded, as an instant; EVN-6 else EVN-2 occurred), and
/// which resources came from it.
pub fn provenance(ctx: &mut Ctx<'_>, header: usize) {
    let message = ctx.message;
    let Some(msh) = message.segment(1) else {
        return;
    };
    let recorded = ctx.instant(msh.field(7), "MSH-7");
    let occurred = message
        .find_segment("EVN", 1)
        .and_then(|evn| {
            let node = field(&evn, 6).or_else(|| field(&evn, 2));
            ctx.dtm(node, "EVN-6")
        })
        .or_else(|| recorded.clone());
    let who = field(&msh, 4)
        .and_then(|hd| entities::organization_hd(ctx, hd))
        .or_else(|| field(&msh, 3).and_then(|hd| entities::device_hd(ctx, hd)));
    // The EVN's operator and facility were added when the EVN was converted: found again by id, with
    // issue locations naming the EVN (an issue raised the first time is not raised twice).
    let (operator, facility) = match message.find_segment("EVN", 1) {
        Some(evn) => {
            let saved = std::mem::replace(&mut ctx.at_segment, "EVN".into());
            let issues = ctx.issues.len();
            let found = evn_entities(ctx, &evn);
            ctx.issues.truncate(issues);
            ctx.at_segment = saved;
            found
        }
        None => (None, None),
    };
    let targets: Vec<Reference> = ctx
        .resources()
        .enumerate()
        .filter(|(i, _)| *i != header)
        .map(|(i, _)| i)
        .collect::<Vec<_>>()
        .into_iter()
        .map(|i| ctx.reference(i))
        .collect();
    let control_id = message.control_id().map(|c| c.into_owned());
    let source_entity = ProvenanceEntity {
        role: Some("source".into()),
        what: Reference {
            identifier: control_id.map(|c| {
                Box::new(Identifier {
                    value: Some(c),
                    r#type: Some(CodeableConcept {
                        text: Some("HL7 v2 message control id (MSH-10)".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }),
            display: Some(format!(
                "HL7 v2 {}",
                field_text(&msh, 9).unwrap_or_default()
            )),
            ..Default::default()
        },
        ..Default::default()
    };
    let agent = ProvenanceAgent {
        r#type: Some(CodeableConcept::coding(
            "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
            "author",
            Some("Author"),
        )),
        who: who.map(|i| ctx.reference(i)).unwrap_or_else(|| Reference {
            display: comp(msh.field(3).unwrap_or(msh.field(1).expect("MSH-1")), 1),
            ..Default::default()
        }),
        ..Default::default()
    };
    let enterer = operator.map(|i| ProvenanceAgent {
        r#type: Some(CodeableConcept::coding(
            "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
            "enterer",
            Some("Enterer"),
        )),
        who: ctx.reference(i),
        ..Default::default()
    });
    let event = ctx.event.clone();
    let provenance = Provenance {
        id: Some(ctx.message_scoped_id("Provenance", "")),
        target: targets,
        occurred: occurred.map(fhir::ProvenanceOccurred::DateTime),
        recorded,
        activity: (!event.is_empty())
            .then(|| CodeableConcept::coding(V2_0003, event, field_text(&msh, 9).as_deref())),
        agent: std::iter::once(agent).chain(enterer).collect(),
        location: facility.map(|i| ctx.reference(i)),
        entity: vec![source_entity],
        ..Default::default()
    };
    ctx.add(provenance, None);
}
