//! MSH -> MessageHeader (with the sending and receiving Organizations and Device), SFT -> the software
//! that produced the message, EVN -> the event, and one Provenance per bundle naming the source message,
//! its sender and its time.

use fhir::{
    Address, Annotation, CodeableConcept, Coding, Device, DeviceDeviceName, DeviceVersion, Element,
    Extension, ExtensionValue, Identifier, MessageHeader, MessageHeaderDestination,
    MessageHeaderSource, Meta, Organization, Provenance, ProvenanceAgent, ProvenanceEntity,
    Reference,
};
use hl7v2::Segment;

use crate::context::Ctx;
use crate::entities;
use crate::read::{comp, field, field_comp, field_text};

/// `http://terminology.hl7.org/CodeSystem/v2-0003`, the event types.
pub const V2_0003: &str = "http://terminology.hl7.org/CodeSystem/v2-0003";
/// The data-absent-reason extension (a required element that was not sent).
const DATA_ABSENT_REASON: &str = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";
/// `http://terminology.hl7.org/CodeSystem/v2-0103`, the processing ids.
pub const V2_0103: &str = "http://terminology.hl7.org/CodeSystem/v2-0103";

/// MSH -> MessageHeader; returns its index.
///
/// The facilities are Organizations per `HD[Organization]`: the sending facility MSH-4 is the `sender`,
/// with the country of the message MSH-17 as its `address.country` (IG) and `partOf` the sending
/// responsible organization MSH-22 (the business accountable for the message); the receiving facility
/// MSH-6 is likewise `partOf` the receiving responsible organization MSH-23, which is the `receiver`
/// when sent (IG), else MSH-6 is. The applications are Devices per `HD[Device]`: the receiving one
/// MSH-5 is the destination's `target` (IG); the sending one MSH-3 is named in the Provenance.
pub fn message_header(ctx: &mut Ctx<'_>, msh: &Segment<'_>) -> usize {
    let sender_org = field(msh, 4).and_then(|hd| entities::organization_hd(ctx, hd));
    let responsible_org = field(msh, 22).and_then(|xon| entities::organization(ctx, xon));
    if let Some(s) = sender_org {
        let country = field_comp(msh, 17, 1);
        let part_of = responsible_org.map(|i| ctx.reference(i));
        if let Some(org) = ctx.get_mut::<Organization>(s) {
            if let Some(c) = country
                && !org.address.iter().any(|a| a.country.is_some())
            {
                org.address.push(Address {
                    country: Some(c),
                    ..Default::default()
                });
            }
            if org.part_of.is_none() {
                org.part_of = part_of;
            }
        }
    }
    let receiving_facility = field(msh, 6).and_then(|hd| entities::organization_hd(ctx, hd));
    let receiving_responsible = field(msh, 23).and_then(|xon| entities::organization(ctx, xon));
    if let (Some(f), Some(r)) = (receiving_facility, receiving_responsible) {
        let part_of = ctx.reference(r);
        if let Some(org) = ctx.get_mut::<Organization>(f)
            && org.part_of.is_none()
        {
            org.part_of = Some(part_of);
        }
    }
    // IG: the receiving responsible organization (MSH-23, XON) when sent, else the facility (MSH-6).
    let receiver_org = receiving_responsible.or(receiving_facility);
    let target = field(msh, 5).and_then(|hd| entities::device_hd(ctx, hd));
    // IG `HD[MessageHeader.source-endpoint]` / `destination-endpoint`: the endpoint is the universal
    // id HD.2 of the network address (MSH-24/25), else of the application (MSH-3/5), as a URI
    // (`urn:oid:` for ISO...); a namespace id alone names the application, not an address.
    let endpoint = |n: usize, app: usize| {
        let of = |n: usize| {
            field(msh, n).and_then(|hd| {
                let (_, universal, kind) = entities::hd_parts(hd);
                entities::universal_uri(universal.as_deref(), kind.as_deref())
                    .or_else(|| universal.map(|u| crate::vocab::local_system(&u).into_owned()))
            })
        };
        of(n).or_else(|| of(app))
    };
    // A source needs an endpoint (1..1 in R4): when neither the network address nor the application
    // is sent, it is marked absent (IG: data-absent-reason `unknown`).
    let absent = |endpoint: &Option<String>| {
        endpoint.is_none().then(|| {
            Box::new(Element {
                extension: vec![Extension::new(
                    DATA_ABSENT_REASON,
                    ExtensionValue::Code("unknown".into()),
                )],
                ..Default::default()
            })
        })
    };
    let source_endpoint = endpoint(24, 3);
    let source = MessageHeaderSource {
        name: field_comp(msh, 3, 1),
        endpoint_ext: absent(&source_endpoint),
        endpoint: source_endpoint,
        ..Default::default()
    };
    // IG: the destination's name is the receiving network address's namespace id (MSH-25.1,
    // `HD[MessageHeader.destination-endpoint]`) when MSH-25 is sent, else the application's (MSH-5.1).
    let destination_endpoint = endpoint(25, 5);
    let destination: Vec<MessageHeaderDestination> =
        (field(msh, 5).is_some() || field(msh, 6).is_some() || field(msh, 25).is_some())
            .then(|| MessageHeaderDestination {
                name: field_comp(msh, 25, 1).or_else(|| field_comp(msh, 5, 1)),
                target: target.map(|i| ctx.reference(i)),
                endpoint_ext: absent(&destination_endpoint),
                endpoint: destination_endpoint,
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

/// SFT -> the MessageHeader's source software and version (the last SFT is the system that sent it,
/// `SFT[MessageHeader]`), and a Device for the software per `SFT[Device]`: manufacturer the vendor's
/// name SFT-1.1 (when it has no organization identifier, XON.10), version SFT-2, device name SFT-3
/// (type `manufacturer-name`), model number the binary id SFT-4, note the product information SFT-5.
pub fn sft(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let software = field_text(seg, 3);
    let version = field_text(seg, 2);
    let vendor = field(seg, 1)
        .filter(|xon| comp(*xon, 10).is_none())
        .and_then(|xon| comp(xon, 1));
    let binary = field_text(seg, 4);
    let information = field_text(seg, 5);
    if software.is_some() || version.is_some() || vendor.is_some() || binary.is_some() {
        let id = ctx.id(
            "Device",
            &[
                "sft",
                field_text(seg, 1).as_deref().unwrap_or(""),
                software.as_deref().unwrap_or(""),
                version.as_deref().unwrap_or(""),
                binary.as_deref().unwrap_or(""),
            ],
        );
        let device = Device {
            id: Some(id),
            manufacturer: vendor,
            device_name: software
                .iter()
                .map(|name| DeviceDeviceName {
                    name: Some(name.clone()),
                    r#type: Some("manufacturer-name".into()),
                    ..Default::default()
                })
                .collect(),
            model_number: binary,
            version: version
                .iter()
                .map(|v| DeviceVersion {
                    value: Some(v.clone()),
                    ..Default::default()
                })
                .collect(),
            note: information
                .map(|text| Annotation {
                    text: Some(text),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        };
        ctx.add(device, None);
    }
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
    let operator = crate::read::reps(seg, 5).find_map(|xcn| entities::practitioner(ctx, xcn));
    let facility = field(seg, 7).and_then(|hd| entities::location_hd(ctx, hd));
    (operator, facility)
}

/// The Provenances of the bundle, both targeting every resource made from the message:
///
/// - the message (`MSH[Provenance-Source]`): what it was made from (the message, by control id, and
///   the sending application MSH-3 as a Device), who is accountable for it (the `author`: the sending
///   responsible organization MSH-22, else the sending facility MSH-4, else the application), when
///   (MSH-7, recorded and occurred) and which event (MSH-9);
/// - the event, when there is an EVN (`EVN[Provenance]`): when it was recorded (EVN-2) and when it
///   occurred (EVN-6), why (EVN-4), who entered it (EVN-5, the `enterer`) and where (EVN-7).
pub fn provenance(ctx: &mut Ctx<'_>, header: usize) {
    let message = ctx.message;
    let Some(msh) = message.segment(1) else {
        return;
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
    let event = ctx.event.clone();
    let activity = (!event.is_empty()).then(|| {
        let display = field_text(&msh, 9);
        CodeableConcept {
            coding: vec![Coding::new(V2_0003, event, display.as_deref())],
            text: display,
            ..Default::default()
        }
    });
    let participant = |code: &str, display: &str| {
        Some(CodeableConcept::coding(
            "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
            code,
            Some(display),
        ))
    };

    let recorded = ctx.instant(msh.field(7), "MSH-7");
    // The same time as a dateTime (kept when it has no zone); its issues were raised for `recorded`.
    let issues = ctx.issues.len();
    let occurred = ctx.dtm(field(&msh, 7), "MSH-7");
    ctx.issues.truncate(issues);
    let who = field(&msh, 22)
        .and_then(|xon| entities::organization(ctx, xon))
        .or_else(|| field(&msh, 4).and_then(|hd| entities::organization_hd(ctx, hd)))
        .or_else(|| field(&msh, 3).and_then(|hd| entities::device_hd(ctx, hd)));
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
    // The sending application MSH-3 is a source entity, as a Device.
    let application = field(&msh, 3)
        .and_then(|hd| entities::device_hd(ctx, hd))
        .map(|i| ProvenanceEntity {
            role: Some("source".into()),
            what: ctx.reference(i),
            ..Default::default()
        });
    let author = ProvenanceAgent {
        r#type: participant("author", "Author"),
        who: who.map(|i| ctx.reference(i)).unwrap_or_else(|| Reference {
            display: comp(msh.field(3).unwrap_or(msh.field(1).expect("MSH-1")), 1),
            ..Default::default()
        }),
        ..Default::default()
    };
    let source = Provenance {
        id: Some(ctx.message_scoped_id("Provenance", "")),
        target: targets.clone(),
        occurred: occurred.map(fhir::ProvenanceOccurred::DateTime),
        recorded,
        activity: activity.clone(),
        agent: vec![author.clone()],
        entity: std::iter::once(source_entity).chain(application).collect(),
        ..Default::default()
    };
    ctx.add(source, None);

    let Some(evn) = message.find_segment("EVN", 1) else {
        return;
    };
    // The EVN's operator and facility were added when the EVN was converted: found again by id, with
    // issue locations naming the EVN (an issue raised the first time is not raised twice).
    let saved = std::mem::replace(&mut ctx.at_segment, "EVN".into());
    let issues = ctx.issues.len();
    let (operator, facility) = evn_entities(ctx, &evn);
    ctx.issues.truncate(issues);
    let recorded = ctx.instant(evn.field(2), "EVN-2");
    let occurred = ctx.dtm(field(&evn, 6), "EVN-6");
    let reason: Vec<CodeableConcept> = event_reason(ctx, &evn).into_iter().collect();
    let id = ctx.message_scoped_id("Provenance", "");
    ctx.at_segment = saved;
    if recorded.is_none()
        && occurred.is_none()
        && reason.is_empty()
        && operator.is_none()
        && facility.is_none()
    {
        return;
    }
    // An agent is required: without an operator, the event was recorded by the message's author.
    let agent = match operator {
        Some(i) => ProvenanceAgent {
            r#type: participant("enterer", "Enterer"),
            who: ctx.reference(i),
            ..Default::default()
        },
        None => author,
    };
    let provenance = Provenance {
        id: Some(id),
        target: targets,
        occurred: occurred.map(fhir::ProvenanceOccurred::DateTime),
        recorded,
        activity,
        reason,
        agent: vec![agent],
        location: facility.map(|i| ctx.reference(i)),
        ..Default::default()
    };
    ctx.add(provenance, None);
}

/// The IG's EventReason concept map: table 0062 -> v3 ActReason (O and U stay in table 0062).
const EVENT_REASON: [(&str, &str, &str, &str); 5] = [
    ("01", V3_ACT_REASON, "PATRQT", "patient requested"),
    ("02", V3_ACT_REASON, "TREAT", "treatment"),
    ("03", V3_ACT_REASON, "HOPERAT", "healthcare operations"),
    ("O", V2_0062, "O", "Other"),
    ("U", V2_0062, "U", "Unknown"),
];
const V3_ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const V2_0062: &str = "http://terminology.hl7.org/CodeSystem/v2-0062";

/// EVN-4 (event reason, table 0062) -> Provenance.reason per `EVN[Provenance]`: the IG's EventReason
/// map first, then the code as sent.
fn event_reason(ctx: &mut Ctx<'_>, evn: &Segment<'_>) -> Option<CodeableConcept> {
    let mut concept = ctx.code(field(evn, 4), "EVN-4");
    let code = field_comp(evn, 4, 1);
    if let Some(&(_, system, code, display)) = EVENT_REASON
        .iter()
        .find(|(v2, ..)| code.as_deref() == Some(*v2))
    {
        let concept = concept.get_or_insert_with(CodeableConcept::default);
        if !concept
            .coding
            .iter()
            .any(|c| c.system.as_deref() == Some(system) && c.code.as_deref() == Some(code))
        {
            concept
                .coding
                .insert(0, Coding::new(system, code.to_owned(), Some(display)));
        }
    }
    concept
}
