//! PID, PD1, NK1, MRG -> Patient, its contacts, related people and links; PV1, PV2 -> Encounter;
//! ROL, PRD -> PractitionerRoles of the patient, the visit or the referral; ARV -> security labels;
//! GT1, IN1, IN2 -> Account and Coverage with the payer Organization and the subscriber; DB1 -> the
//! patient's identifiers; PDA and ACC are handed to the order module (the death's record, the injury
//! incident).
//!
//! After the IG tables `PID[Patient]`, `PID[Account]`, `PD1[Patient]`, `NK1[Patient]`, `PV1[Encounter]`,
//! `PV2[Encounter]`, `IN1[Coverage]`, `ROL[...]`, and FHIR-Converter's values where the IG leaves a
//! choice. Ids are deterministic: the Patient from its first identifier (a medical record number when
//! there is one), the Encounter from the patient and the visit number (PV1-19), so an A01 and the A03
//! for the same visit name one Encounter.
//!
//! Not mapped (recorded nowhere): PID-27 (veteran status, the IG's extension is undefined),
//! PID-32-34, PID-37-38; DB1-4-8, IN3 (see docs/conformance-notes/patient.md).

use fhir::{
    Account, AccountGuarantor, Address, CodeableConcept, Coding, ContactPoint, Coverage,
    CoverageClass, Element, Encounter, EncounterHospitalization, EncounterLocation,
    EncounterParticipant, EpisodeOfCare, Extension, ExtensionValue, HumanName, Identifier,
    Location, Organization, OrganizationContact, Patient, PatientCommunication, PatientContact,
    PatientDeceased, PatientLink, PatientMultipleBirth, Reference, RelatedPerson,
};
use hl7v2::{Node, Segment};

use crate::context::Ctx;
use crate::entities;
use crate::read::{comp, field, field_comp, field_text, reps};

/// `http://terminology.hl7.org/CodeSystem/v3-ActCode`.
pub const V3_ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// `http://terminology.hl7.org/CodeSystem/v3-ParticipationType`.
pub const V3_PARTICIPATION_TYPE: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
/// `http://terminology.hl7.org/CodeSystem/v3-Confidentiality`.
pub const V3_CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
/// The CDC race and ethnicity code system (US Core race and ethnicity extensions).
pub const CDC_RACE_ETHNICITY: &str = "urn:oid:2.16.840.1.113883.6.238";
const US_CORE_RACE: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race";
const US_CORE_ETHNICITY: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity";
const SD: &str = "http://hl7.org/fhir/StructureDefinition/";

fn v2_table(n: &str) -> String {
    format!("http://terminology.hl7.org/CodeSystem/v2-{n}")
}

/// A coded field through the sender's maps; a code sent without a coding system gets `system` (the v2
/// table the field is defined with).
fn coded(
    ctx: &mut Ctx<'_>,
    node: Option<Node<'_>>,
    at: &str,
    system: &str,
) -> Option<CodeableConcept> {
    let mut c = ctx.code(node, at)?;
    if let Some(first) = c.coding.first_mut()
        && first.system.is_none()
    {
        first.system = Some(system.to_owned());
    }
    Some(c)
}

/// An extension with a url under `http://hl7.org/fhir/StructureDefinition/`.
fn ext(name: &str, value: ExtensionValue) -> Extension {
    Extension::new(format!("{SD}{name}"), value)
}

/// A complex extension with one sub-extension.
fn ext_nested(name: &str, inner: &str, value: ExtensionValue) -> Extension {
    Extension {
        url: Some(format!("{SD}{name}")),
        extension: vec![Extension::new(inner, value)],
        ..Default::default()
    }
}

/// v2 table 0136 (yes/no indicator) as a boolean.
fn yes_no(value: Option<String>) -> Option<bool> {
    match value.as_deref() {
        Some("Y") => Some(true),
        Some("N") => Some(false),
        _ => None,
    }
}

/// v2 table 0001 -> FHIR administrative-gender (IG concept map AdministrativeSex).
pub fn gender(code: &str) -> Option<&'static str> {
    Some(match code {
        "F" => "female",
        "M" => "male",
        "O" | "A" | "N" => "other",
        "U" => "unknown",
        _ => return None,
    })
}

/// The first code of coded field `n` after the sender's code maps.
fn code_of(ctx: &mut Ctx<'_>, seg: &Segment<'_>, n: usize) -> Option<String> {
    let at = ctx.at(n);
    ctx.code(field(seg, n), &at)?
        .coding
        .into_iter()
        .find_map(|c| c.code)
}

/// Sex field `n` (table 0001) -> administrative gender; a code outside the table is an issue.
fn sex(ctx: &mut Ctx<'_>, seg: &Segment<'_>, n: usize) -> Option<String> {
    let code = code_of(ctx, seg, n)?;
    let mapped = gender(&code).map(str::to_owned);
    if mapped.is_none() {
        let at = ctx.at(n);
        ctx.issue(
            crate::Severity::Warning,
            at,
            crate::IssueKind::Invalid,
            "sex code not in table 0001: no gender".into(),
        );
    }
    mapped
}

/// The identifier that names a person across messages: the first with type MR, else the first.
fn identity(identifiers: &[Identifier]) -> Option<&Identifier> {
    identifiers
        .iter()
        .find(|i| {
            i.r#type
                .as_ref()
                .is_some_and(|t| t.code_in(crate::V2_0203_SYSTEM) == Some("MR"))
        })
        .or_else(|| identifiers.first())
}

/// The deterministic Patient id for an identity identifier.
fn patient_id(ctx: &Ctx<'_>, id: &Identifier) -> String {
    ctx.id(
        "Patient",
        &[
            id.system.as_deref().unwrap_or(""),
            id.value.as_deref().unwrap_or(""),
        ],
    )
}

/// The CX repetitions of field `n` as identifiers.
fn identifiers(ctx: &mut Ctx<'_>, seg: &Segment<'_>, n: usize) -> Vec<Identifier> {
    let at = ctx.at(n);
    reps(seg, n)
        .filter_map(|r| entities::identifier(ctx, r, &at))
        .collect()
}

/// A Period from two DT/DTM nodes.
fn node_period(
    ctx: &mut Ctx<'_>,
    start: Option<Node<'_>>,
    end: Option<Node<'_>>,
    at: &str,
) -> Option<fhir::Period> {
    let start = ctx.dtm(start, at);
    let end = ctx.dtm(end, at);
    entities::period(start, end)
}

/// The validity period of an XPN (XPN.12-13, else the DR in XPN.10) or XAD (XAD.13-14, else the DR in
/// XAD.12): `effective` and `range` are the component numbers.
fn dr_period(
    ctx: &mut Ctx<'_>,
    node: Node<'_>,
    range: usize,
    effective: usize,
    at: &str,
) -> Option<fhir::Period> {
    node_period(
        ctx,
        node.component(effective),
        node.component(effective + 1),
        at,
    )
    .or_else(|| {
        let dr = node.component(range)?;
        node_period(ctx, dr.subcomponent(1), dr.subcomponent(2), at)
    })
}

/// XPN repetitions of field `n` as names, with their validity periods; a repetition's XPN.15 (called
/// by) follows it as a `nickname` name (IG `XPN[HumanName]`).
fn names(ctx: &mut Ctx<'_>, seg: &Segment<'_>, n: usize) -> Vec<HumanName> {
    let at = ctx.at(n);
    let mut out = Vec::new();
    for r in reps(seg, n) {
        if let Some(mut name) = crate::xpn(r) {
            name.period = dr_period(ctx, r, 10, 12, &at);
            out.push(name);
        }
        out.extend(crate::xpn_called_by(r));
    }
    out
}

/// XAD repetitions of field `n` as addresses, with their validity periods.
fn addresses(ctx: &mut Ctx<'_>, seg: &Segment<'_>, n: usize) -> Vec<Address> {
    let at = ctx.at(n);
    reps(seg, n)
        .filter_map(|r| {
            let mut address = crate::xad(r)?;
            address.period = dr_period(ctx, r, 12, 13, &at);
            Some(address)
        })
        .collect()
}

/// XTN repetitions of field `n` as contact points with their period (XTN.13-14); `default_use` when
/// XTN.2 is empty (the IG's rule for home and business phone fields).
fn telecoms(
    ctx: &mut Ctx<'_>,
    seg: &Segment<'_>,
    n: usize,
    default_use: Option<&str>,
) -> Vec<ContactPoint> {
    let at = ctx.at(n);
    reps(seg, n)
        .filter_map(|r| {
            let mut cp = crate::xtn(r)?;
            if let Some(u) = default_use.filter(|_| comp(r, 2).is_none()) {
                cp.r#use = Some(u.into());
            }
            cp.period = node_period(ctx, r.component(13), r.component(14), &at);
            Some(cp)
        })
        .collect()
}

/// A language code (table 0296: ISO 639 three-letter codes, or a BCP 47 tag) -> the BCP 47 tag and
/// display of the IG's PrimaryLanguage value set, for the languages it lists.
fn bcp47(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "ar" | "ara" => ("ar", "Arabic"),
        "bn" | "ben" => ("bn", "Bengali"),
        "cs" | "ces" | "cze" => ("cs", "Czech"),
        "da" | "dan" => ("da", "Danish"),
        "de" | "deu" | "ger" => ("de", "German"),
        "de-AT" => ("de-AT", "German (Austria)"),
        "de-CH" => ("de-CH", "German (Switzerland)"),
        "de-DE" => ("de-DE", "German (Germany)"),
        "el" | "ell" | "gre" => ("el", "Greek"),
        "en" | "eng" => ("en", "English"),
        "en-AU" => ("en-AU", "English (Australia)"),
        "en-CA" => ("en-CA", "English (Canada)"),
        "en-GB" => ("en-GB", "English (Great Britain)"),
        "en-IN" => ("en-IN", "English (India)"),
        "en-NZ" => ("en-NZ", "English (New Zeland)"),
        "en-SG" => ("en-SG", "English (Singapore)"),
        "en-US" => ("en-US", "English (United States)"),
        "es" | "spa" => ("es", "Spanish"),
        "es-AR" => ("es-AR", "Spanish (Argentina)"),
        "es-ES" => ("es-ES", "Spanish (Spain)"),
        "es-UY" => ("es-UY", "Spanish (Uruguay)"),
        "fi" | "fin" => ("fi", "Finnish"),
        "fr" | "fra" | "fre" => ("fr", "French"),
        "fr-BE" => ("fr-BE", "French (Belgium)"),
        "fr-CH" => ("fr-CH", "French (Switzerland)"),
        "fr-FR" => ("fr-FR", "French (France)"),
        "fy" | "fry" => ("fy", "Frysian"),
        "fy-NL" => ("fy-NL", "Frysian (Netherlands)"),
        "hi" | "hin" => ("hi", "Hindi"),
        "hr" | "hrv" => ("hr", "Croatian"),
        "it" | "ita" => ("it", "Italian"),
        "it-CH" => ("it-CH", "Italian (Switzerland)"),
        "it-IT" => ("it-IT", "Italian (Italy)"),
        "ja" | "jpn" => ("ja", "Japanese"),
        "ko" | "kor" => ("ko", "Korean"),
        "nl" | "nld" | "dut" => ("nl", "Dutch"),
        "nl-BE" => ("nl-BE", "Dutch (Belgium)"),
        "nl-NL" => ("nl-NL", "Dutch (Netherlands)"),
        "no" | "nor" => ("no", "Norwegian"),
        "no-NO" => ("no-NO", "Norwegian (Norway)"),
        "pa" | "pan" => ("pa", "Punjabi"),
        "pl" | "pol" => ("pl", "Polish"),
        "pt" | "por" => ("pt", "Portuguese"),
        "pt-BR" => ("pt-BR", "Portuguese (Brazil)"),
        "ru" | "rus" => ("ru", "Russian"),
        "ru-RU" => ("ru-RU", "Russian (Russia)"),
        "sr" | "srp" => ("sr", "Serbian"),
        "sr-RS" => ("sr-RS", "Serbian (Serbia)"),
        "sv" | "swe" => ("sv", "Swedish"),
        "sv-SE" => ("sv-SE", "Swedish (Sweden)"),
        "te" | "tel" => ("te", "Telegu"),
        "zh" | "zho" | "chi" => ("zh", "Chinese"),
        "zh-CN" => ("zh-CN", "Chinese (China)"),
        "zh-HK" => ("zh-HK", "Chinese (Hong Kong)"),
        "zh-SG" => ("zh-SG", "Chinese (Singapore)"),
        "zh-TW" => ("zh-TW", "Chinese (Taiwan)"),
        _ => return None,
    })
}

/// Codings of a language concept sent in table 0296 (or with no system) -> `urn:ietf:bcp:47`.
fn language_concept(mut c: CodeableConcept) -> CodeableConcept {
    for coding in &mut c.coding {
        let from_0296 = coding
            .system
            .as_deref()
            .is_none_or(|s| s.ends_with("v2-0296") || s == "ISO639");
        if let Some((tag, display)) = coding.code.as_deref().filter(|_| from_0296).and_then(bcp47) {
            coding.system = Some("urn:ietf:bcp:47".into());
            coding.code = Some(tag.into());
            coding.display = Some(display.into());
        }
    }
    c
}

/// v2 table 0006 religion -> v3 ReligiousAffiliation (the IG's Religion map); codes it leaves unmapped
/// are kept in v2-0006.
fn religion_code(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "A" => ("1007", "Atheism"),
        "B" => ("1009", "Baptist"),
        "E" => ("1069", "Episcopalian"),
        "J" => ("1026", "Judaism"),
        "L" => ("1028", "Lutheran"),
        "M" => ("1027", "Latter Day Saints"),
        "N" => ("1020", "Hinduism"),
        "P" => ("1077", "Protestant"),
        "AGN" => ("1004", "Agnosticism"),
        "ATH" => ("1007", "Atheism"),
        "BAH" => ("1008", "Babi & Baha'I faiths"),
        "BRE" => ("1062", "Brethren"),
        "BMA" => ("1029", "Mahayana"),
        "BTH" => ("1051", "Theravada"),
        "CHR" => ("1013", "Christian (non-Catholic, non-specific)"),
        "ANG" => ("1005", "Anglican"),
        "AOG" => ("1061", "Assembly of God"),
        "BAP" => ("1009", "Baptist"),
        "CRR" => ("1079", "Reformed"),
        "CHS" => ("1063", "Christian Scientist"),
        "COC" => ("1064", "Church of Christ"),
        "COG" => ("1065", "Church of God"),
        "COL" => ("1066", "Congregational"),
        "EOT" => ("1068", "Eastern Orthodox"),
        "EPI" => ("1069", "Episcopalian"),
        "FRQ" => ("1071", "Friends"),
        "FUL" => ("1072", "Full Gospel"),
        "JWN" => ("1025", "Jehovah's Witnesses"),
        "MOM" => ("1027", "Latter Day Saints"),
        "LUT" => ("1028", "Lutheran"),
        "MET" => ("1073", "Methodist"),
        "NAZ" => ("1075", "Nazarene"),
        "ORT" => ("1036", "Orthodox"),
        "PEN" => ("1038", "Pentecostal"),
        "PRE" => ("1076", "Presbyterian"),
        "PRO" => ("1077", "Protestant"),
        "PRC" => ("1078", "Protestant, No Denomination"),
        "QUA" => ("1071", "Friends"),
        "REC" => ("1079", "Reformed"),
        "CAT" => ("1041", "Roman Catholic Church"),
        "SAA" => ("1080", "Salvation Army"),
        "SEV" => ("1001", "Adventist"),
        "UCC" => ("1082", "United Church of Christ"),
        "UNI" => ("1052", "Unitarian-Universalism"),
        "UNU" => ("1081", "Unitarian Universalist"),
        "CNF" => ("1014", "Confucianism"),
        "DOC" => ("1067", "Disciples of Christ"),
        "HSH" => ("1020", "Hinduism"),
        "HVA" => ("1020", "Hinduism"),
        "HOT" => ("1020", "Hinduism"),
        "JAI" => ("1024", "Jainism"),
        "MOS" => ("1023", "Islam"),
        "MSH" => ("1045", "Shiite (Islam)"),
        "MSU" => ("1049", "Sunni (Islam)"),
        "NAM" => ("1074", "Native American"),
        "SHN" => ("1046", "Shinto"),
        "SIK" => ("1047", "Sikism"),
        "SPI" => ("1048", "Spiritualism"),
        _ => return None,
    })
}

fn religion_concept(mut c: CodeableConcept) -> CodeableConcept {
    for coding in &mut c.coding {
        let from_0006 = coding
            .system
            .as_deref()
            .is_none_or(|s| s.ends_with("v2-0006"));
        if !from_0006 {
            continue;
        }
        match coding.code.as_deref().and_then(religion_code) {
            Some((code, display)) => {
                coding.system =
                    Some("http://terminology.hl7.org/CodeSystem/v3-ReligiousAffiliation".into());
                coding.code = Some(code.into());
                coding.display = Some(display.into());
            }
            None => coding.system = Some(v2_table("0006")),
        }
    }
    c
}

/// PID -> Patient; sets `ctx.patient`. PID-18 -> Account (`PID[Account]`).
pub fn pid(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let mut patient = Patient::default();
    // Identifiers in the IG's order (PID-2, PID-3, PID-4, PID-19, PID-20); the identity is PID-3's
    // medical record number (else its first identifier), else PID-2's, else PID-4's.
    let pid3 = identifiers(ctx, seg, 3);
    let pid2 = identifiers(ctx, seg, 2);
    let pid4 = identifiers(ctx, seg, 4);
    let key = identity(&pid3)
        .or_else(|| identity(&pid2))
        .or_else(|| identity(&pid4))
        .cloned();
    patient.identifier.extend(pid2);
    patient.identifier.extend(pid3);
    patient.identifier.extend(pid4);
    if let Some(ssn) = field_comp(seg, 19, 1) {
        patient.identifier.push(Identifier {
            value: Some(ssn),
            system: Some("http://hl7.org/fhir/sid/us-ssn".into()),
            r#type: Some(entities::identifier_type("SS".into())),
            ..Default::default()
        });
    }
    if let Some(dln) = field(seg, 20) {
        let at = ctx.at(20);
        let end = ctx.date(dln.component(3), &at);
        if let Some(value) = comp(dln, 1) {
            patient.identifier.push(Identifier {
                value: Some(value),
                system: comp(dln, 2).map(|s| crate::vocab::local_system(&s).into_owned()),
                r#type: Some(entities::identifier_type("DL".into())),
                period: entities::period(None, end),
                ..Default::default()
            });
        }
    }
    // Names: PID-5, then aliases PID-9.
    for n in [5, 9] {
        let found = names(ctx, seg, n);
        patient.name.extend(found);
    }
    if let Some(maiden) = field_comp(seg, 6, 1) {
        patient.extension.push(ext(
            "patient-mothersMaidenName",
            ExtensionValue::String(maiden),
        ));
    }
    birth(ctx, seg, &mut patient);
    patient.gender = sex(ctx, seg, 8);
    race(seg, &mut patient);
    // Addresses PID-11; county PID-12 fills the district of a lone address without one, else it is an
    // address of its own unless the lone address already names that county (IG PID-12).
    patient.address = addresses(ctx, seg, 11);
    if let Some(county) = field_comp(seg, 12, 1) {
        match patient.address.as_mut_slice() {
            [one] if one.district.is_none() => one.district = Some(county),
            [one] if one.district.as_deref() == Some(county.as_str()) => {}
            _ => patient.address.push(Address {
                district: Some(county),
                ..Default::default()
            }),
        }
    }
    // Telecoms: PID-13 (home unless XTN.2 says otherwise), PID-14 (work), PID-40.
    for (n, default_use) in [(13, Some("home")), (14, Some("work")), (40, None)] {
        let found = telecoms(ctx, seg, n, default_use);
        patient.telecom.extend(found);
    }
    let at = ctx.at(15);
    if let Some(language) = ctx.code(field(seg, 15), &at).map(language_concept) {
        patient.communication.push(PatientCommunication {
            language,
            preferred: Some(true),
            ..Default::default()
        });
    }
    let at = ctx.at(16);
    patient.marital_status = ctx.code(field(seg, 16), &at).map(marital_status);
    let at = ctx.at(17);
    if let Some(religion) = ctx.code(field(seg, 17), &at).map(religion_concept) {
        patient.extension.push(ext(
            "patient-religion",
            ExtensionValue::CodeableConcept(Box::new(religion)),
        ));
    }
    if let Some(place) = field_text(seg, 23) {
        patient.extension.push(ext(
            "patient-birthPlace",
            ExtensionValue::Address(Box::new(Address {
                text: Some(place),
                ..Default::default()
            })),
        ));
    }
    patient.multiple_birth = match field_comp(seg, 25, 1).and_then(|n| n.parse::<i32>().ok()) {
        Some(order) => Some(PatientMultipleBirth::Integer(order)),
        None => yes_no(field_comp(seg, 24, 1)).map(PatientMultipleBirth::Boolean),
    };
    for (n, name) in [
        (26, "patient-citizenship"),
        (28, "patient-nationality"),
        (39, "patient-citizenship"),
    ] {
        let at = ctx.at(n);
        for r in reps(seg, n) {
            if let Some(c) = ctx.code(Some(r), &at).map(iso3166) {
                patient.extension.push(ext_nested(
                    name,
                    "code",
                    ExtensionValue::CodeableConcept(Box::new(c)),
                ));
            }
        }
    }
    let at = ctx.at(29);
    patient.deceased = match ctx.dtm(field(seg, 29), at) {
        Some(when) => Some(PatientDeceased::DateTime(when)),
        None => yes_no(field_comp(seg, 30, 1)).map(PatientDeceased::Boolean),
    };
    animal(ctx, seg, &mut patient);

    let id = match &key {
        Some(k) => patient_id(ctx, k),
        None => ctx.message_scoped_id("Patient", ""),
    };
    patient.id = Some(id);
    let conditional = key.filter(|k| k.system.is_some());
    let i = ctx.add(patient, conditional.as_ref());
    ctx.patient = Some(i);
    ctx.last = Some(i);
    // A new patient group: the previous patient's visit is not this one's.
    ctx.encounter = None;
    account(ctx, seg);
    mother(ctx, seg);
}

/// PID-21 (mother's identifier) -> the mother as a RelatedPerson of the patient (`CX[RelatedPerson-Mother]`),
/// relationship MTH (v3 RoleCode).
fn mother(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let identifier = identifiers(ctx, seg, 21);
    let (Some(first), Some(patient)) = (identifier.first(), ctx.patient_ref()) else {
        return;
    };
    let id = ctx.id(
        "RelatedPerson",
        &[
            patient.reference.as_deref().unwrap_or(""),
            first.system.as_deref().unwrap_or(""),
            first.value.as_deref().unwrap_or(""),
        ],
    );
    let person = RelatedPerson {
        id: Some(id),
        identifier,
        patient,
        relationship: vec![CodeableConcept::coding(
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "MTH",
            Some("mother"),
        )],
        ..Default::default()
    };
    ctx.add(person, None);
}

/// Country codings sent in `ISO3166_1` / `ISO3166` (v2 table 0399's coding system names) get the ISO
/// 3166 URI.
fn iso3166(mut c: CodeableConcept) -> CodeableConcept {
    for coding in &mut c.coding {
        if matches!(
            coding.system.as_deref(),
            Some("ISO3166_1" | "ISO3166" | "ISO3166-1")
        ) {
            coding.system = Some("urn:iso:std:iso:3166".into());
        }
    }
    c
}

/// PID-7 -> birthDate, and the full time as the patient-birthTime extension when more than a date was
/// sent.
fn birth(ctx: &mut Ctx<'_>, seg: &Segment<'_>, patient: &mut Patient) {
    let at = ctx.at(7);
    let Some(when) = ctx.dtm(field(seg, 7), at) else {
        return;
    };
    let date: String = when.chars().take(10).collect();
    if when.len() > 10 {
        patient.birth_date_ext = Some(Box::new(Element {
            extension: vec![ext("patient-birthTime", ExtensionValue::DateTime(when))],
            ..Default::default()
        }));
    }
    patient.birth_date = Some(date);
}

/// The OMB race categories of the US Core race extension.
const OMB_RACE: [&str; 7] = [
    "1002-5", "2028-9", "2054-5", "2076-8", "2106-3", "2131-1", "UNK",
];

/// The CDC displays of the OMB race categories.
fn omb_display(code: &str) -> Option<&'static str> {
    Some(match code {
        "1002-5" => "American Indian or Alaska Native",
        "2028-9" => "Asian",
        "2054-5" => "Black or African American",
        "2076-8" => "Native Hawaiian or Other Pacific Islander",
        "2106-3" => "White",
        "2131-1" => "Other Race",
        _ => return None,
    })
}

/// PID-10 -> US Core race, PID-22 -> US Core ethnicity (the IG leaves both to the realm's extension).
fn race(seg: &Segment<'_>, patient: &mut Patient) {
    for (n, url) in [(10, US_CORE_RACE), (22, US_CORE_ETHNICITY)] {
        patient.extension.extend(race_extension(seg, n, url));
    }
}

/// A race (`url` US Core race) or ethnicity (US Core ethnicity) field `n` as its US Core extension.
/// Codes are the CDC race and ethnicity codes v2 tables 0005 and 0189 use; the ethnicity table's letters
/// (H, N, U) are mapped to them. An OMB category gets the CDC display (the code system's), other codes
/// the display sent.
fn race_extension(seg: &Segment<'_>, n: usize, url: &str) -> Option<Extension> {
    let race = url == US_CORE_RACE;
    let omb: &[&str] = if race {
        &OMB_RACE
    } else {
        &["2135-2", "2186-5", "UNK"]
    };
    let mut parts = Vec::new();
    let mut texts = Vec::new();
    for r in reps(seg, n) {
        let Some(code) = comp(r, 1) else { continue };
        let display = omb_display(&code)
            .filter(|_| race)
            .map(str::to_owned)
            .or_else(|| comp(r, 2));
        // CWE.7 (coding system version) stays with a code kept as sent; table 0189's letters are
        // rewritten into another code system, whose version the sender did not give.
        let (code, display, version) = match (race, code.as_str()) {
            (false, "H") => (
                "2135-2".to_owned(),
                Some("Hispanic or Latino".to_owned()),
                None,
            ),
            (false, "N") => (
                "2186-5".to_owned(),
                Some("Not Hispanic or Latino".to_owned()),
                None,
            ),
            (false, "U") => ("UNK".to_owned(), Some("Unknown".to_owned()), None),
            _ => (code, display, comp(r, 7)),
        };
        let system = if code == "UNK" || code == "ASKU" {
            "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
        } else {
            CDC_RACE_ETHNICITY
        };
        let slice = if omb.contains(&code.as_str()) || code == "ASKU" {
            "ombCategory"
        } else {
            "detailed"
        };
        texts.push(display.clone().unwrap_or_else(|| code.clone()));
        let mut coding = Coding::new(system, code, display.as_deref());
        coding.version = version;
        parts.push(Extension::new(
            slice,
            ExtensionValue::Coding(Box::new(coding)),
        ));
    }
    if parts.is_empty() {
        return None;
    }
    parts.push(Extension::new(
        "text",
        ExtensionValue::String(texts.join(", ")),
    ));
    Some(Extension {
        url: Some(url.into()),
        extension: parts,
        ..Default::default()
    })
}

/// PID-35 (species) and PID-36 (breed) -> the patient-animal extension.
fn animal(ctx: &mut Ctx<'_>, seg: &Segment<'_>, patient: &mut Patient) {
    let mut parts = Vec::new();
    for (n, name) in [(35, "species"), (36, "breed")] {
        let at = ctx.at(n);
        if let Some(c) = ctx.code(field(seg, n), &at) {
            parts.push(Extension::new(
                name,
                ExtensionValue::CodeableConcept(Box::new(c)),
            ));
        }
    }
    if !parts.is_empty() {
        patient.extension.push(Extension {
            url: Some(format!("{SD}patient-animal")),
            extension: parts,
            ..Default::default()
        });
    }
}

/// v2 table 0002 marital status: codes FHIR's v3-MaritalStatus shares get that system (the IG's
/// MaritalStatus map); others are kept as sent.
fn marital_status(mut c: CodeableConcept) -> CodeableConcept {
    for coding in &mut c.coding {
        let v3 = match coding.code.as_deref() {
            Some("A") => "Annulled",
            Some("D") => "Divorced",
            Some("I") => "Interlocutory",
            Some("L") => "Legally Separated",
            Some("M") => "Married",
            Some("P") => "Polygamous",
            Some("S") => "Never Married",
            Some("T") => "Domestic partner",
            Some("U") => "unmarried",
            Some("W") => "Widowed",
            _ => continue,
        };
        let from_0002 = coding
            .system
            .as_deref()
            .is_none_or(|s| s.ends_with("v2-0002"));
        if from_0002 {
            coding.system = Some("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus".into());
            if coding.display.is_none() {
                coding.display = Some(v3.into());
            }
        }
    }
    c
}

/// PID-18 (patient account number) -> Account with the patient as subject (`PID[Account]`).
fn account(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(node) = field(seg, 18) else { return };
    let at = ctx.at(18);
    let Some(identifier) = entities::identifier(ctx, node, &at) else {
        return;
    };
    let id = ctx.id(
        "Account",
        &[
            identifier.system.as_deref().unwrap_or(""),
            identifier.value.as_deref().unwrap_or(""),
        ],
    );
    let account = Account {
        id: Some(id),
        identifier: vec![identifier.clone()],
        status: Some("active".into()),
        subject: ctx.patient_ref().into_iter().collect(),
        ..Default::default()
    };
    let conditional = identifier.system.is_some().then_some(&identifier);
    ctx.add(account, conditional);
}

/// The Account of this message (PID-18), if any.
fn current_account(ctx: &Ctx<'_>) -> Option<usize> {
    ctx.resources()
        .enumerate()
        .filter(|(_, r)| r.resource_type() == "Account")
        .map(|(i, _)| i)
        .last()
}

/// PD1 -> Patient: PD1-3 (XON) and PD1-4 (XCN) as general practitioners, PD1-6 handicap as the
/// patient-disability extension, PD1-14 place of worship as patient-congregation.
pub fn pd1(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(p) = ctx.patient else { return };
    let mut gps = Vec::new();
    for r in reps(seg, 3) {
        if let Some(i) = entities::organization(ctx, r) {
            gps.push(ctx.reference(i));
        }
    }
    for r in reps(seg, 4) {
        if let Some(i) = entities::practitioner(ctx, r) {
            gps.push(ctx.reference(i));
        }
    }
    let at = ctx.at(6);
    let disability = ctx.code(field(seg, 6), &at);
    let congregation = field(seg, 14).and_then(|x| comp(x, 1).or_else(|| comp(x, 10)));
    // PD1-16 immunization registry status (table 0441): `A` active is an active patient record, the
    // inactive statuses (I, L lost to follow-up, M moved, P permanently inactive) an inactive one;
    // O (other) and U (unknown) say nothing. The IG leaves PD1-16 unmapped.
    let active = match field_comp(seg, 16, 1).as_deref() {
        Some("A") => Some(true),
        Some("I" | "L" | "M" | "P") => Some(false),
        _ => None,
    };
    if let Some(patient) = ctx.get_mut::<Patient>(p) {
        patient.general_practitioner.extend(gps);
        if patient.active.is_none() {
            patient.active = active;
        }
        if let Some(d) = disability {
            patient.extension.push(ext(
                "patient-disability",
                ExtensionValue::CodeableConcept(Box::new(d)),
            ));
        }
        if let Some(c) = congregation {
            patient
                .extension
                .push(ext("patient-congregation", ExtensionValue::String(c)));
        }
    }
}

/// NK1 -> Patient.contact per `NK1[Patient]`: name NK1-2, relationship NK1-3 and contact role NK1-7
/// (table 0131), address NK1-4, telecoms NK1-5, NK1-6 (work), NK1-40, NK1-41, period NK1-8/9,
/// organization NK1-13, gender NK1-15.
pub fn nk1(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(p) = ctx.patient else { return };
    let mut contact = PatientContact {
        name: names(ctx, seg, 2).into_iter().next(),
        address: addresses(ctx, seg, 4).into_iter().next(),
        ..Default::default()
    };
    let at = ctx.at(3);
    contact
        .relationship
        .extend(ctx.code(field(seg, 3), &at).map(relationship_concept));
    let at = ctx.at(7);
    contact
        .relationship
        .extend(coded(ctx, field(seg, 7), &at, &v2_table("0131")).map(contact_role));
    for (n, default_use) in [(5, None), (6, Some("work")), (40, None), (41, None)] {
        let found = telecoms(ctx, seg, n, default_use);
        contact.telecom.extend(found);
    }
    let at = ctx.at(8);
    let start = ctx.date(field(seg, 8), &at);
    let at = ctx.at(9);
    let end = ctx.date(field(seg, 9), &at);
    contact.period = entities::period(start, end);
    let org = field(seg, 13).and_then(|x| entities::organization(ctx, x));
    if let Some(o) = org {
        // NK1-30/31/32: the organization's contact person (`NK1[Patient]`).
        let person = OrganizationContact {
            name: names(ctx, seg, 30).into_iter().next(),
            telecom: telecoms(ctx, seg, 31, None),
            address: addresses(ctx, seg, 32).into_iter().next(),
            ..Default::default()
        };
        add_org_contact(ctx, o, person);
    }
    contact.organization = org.map(|i| ctx.reference(i));
    contact.gender = sex(ctx, seg, 15);
    let empty = contact.name.is_none()
        && contact.address.is_none()
        && contact.telecom.is_empty()
        && contact.organization.is_none()
        && contact.relationship.is_empty();
    if empty {
        return;
    }
    let person = nk1_related_person(ctx, seg, &contact);
    if let Some(patient) = ctx.get_mut::<Patient>(p) {
        patient.contact.push(contact);
    }
    if let Some(person) = person {
        ctx.add(person, None);
    }
}

/// NK1 -> RelatedPerson per `NK1[RelatedPerson]`: what the contact has (names with XPN.15 nicknames,
/// relationships, address, telecoms, period, gender), plus identifiers NK1-12, NK1-33 and NK1-37 (SSN),
/// birth date NK1-16, language NK1-20, contact person name NK1-30, telecom NK1-31, address NK1-32, race
/// NK1-35 (US Core race). Its id comes from the
/// patient and the first identifier, else the patient, NK1-1 and the name.
fn nk1_related_person(
    ctx: &mut Ctx<'_>,
    seg: &Segment<'_>,
    contact: &PatientContact,
) -> Option<RelatedPerson> {
    let patient = ctx.patient_ref()?;
    let mut identifier = identifiers(ctx, seg, 12);
    identifier.extend(identifiers(ctx, seg, 33));
    if let Some(ssn) = field_comp(seg, 37, 1) {
        identifier.push(Identifier {
            value: Some(ssn),
            system: Some("http://hl7.org/fhir/sid/us-ssn".into()),
            r#type: Some(entities::identifier_type("SS".into())),
            ..Default::default()
        });
    }
    let mut name: Vec<HumanName> = names(ctx, seg, 2);
    name.extend(names(ctx, seg, 30));
    let mut address: Vec<Address> = addresses(ctx, seg, 4);
    address.extend(addresses(ctx, seg, 32));
    let mut telecom = contact.telecom.clone();
    telecom.extend(telecoms(ctx, seg, 31, None));
    let at = ctx.at(16);
    let birth_date = ctx
        .dtm(field(seg, 16), at)
        .map(|d| d.chars().take(10).collect());
    let at = ctx.at(20);
    let communication: Vec<fhir::RelatedPersonCommunication> = ctx
        .code(field(seg, 20), &at)
        .map(language_concept)
        .map(|language| fhir::RelatedPersonCommunication {
            language,
            ..Default::default()
        })
        .into_iter()
        .collect();
    let patient_key = patient.reference.clone().unwrap_or_default();
    let id = match identifier.first() {
        Some(i) => ctx.id(
            "RelatedPerson",
            &[
                &patient_key,
                i.system.as_deref().unwrap_or(""),
                i.value.as_deref().unwrap_or(""),
            ],
        ),
        None => ctx.id(
            "RelatedPerson",
            &[
                &patient_key,
                "NK1",
                &field_text(seg, 1).unwrap_or_default(),
                &field_text(seg, 2).unwrap_or_default(),
            ],
        ),
    };
    Some(RelatedPerson {
        id: Some(id),
        // NK1-35 race: the realm's race extension (IG), US Core's as for PID-10.
        extension: race_extension(seg, 35, US_CORE_RACE).into_iter().collect(),
        identifier,
        patient,
        relationship: contact.relationship.clone(),
        name,
        telecom,
        gender: contact.gender.clone(),
        birth_date,
        address,
        period: contact.period.clone(),
        communication,
        ..Default::default()
    })
}

/// Displays of v2 table 0131 (contact role) for codings in that table that carry none.
fn contact_role(mut c: CodeableConcept) -> CodeableConcept {
    for coding in &mut c.coding {
        if coding
            .system
            .as_deref()
            .is_some_and(|s| s.ends_with("v2-0131"))
            && coding.display.is_none()
        {
            coding.display = match coding.code.as_deref() {
                Some("C") => Some("Emergency Contact".into()),
                Some("E") => Some("Employer".into()),
                Some("F") => Some("Federal Agency".into()),
                Some("I") => Some("Insurance Company".into()),
                Some("N") => Some("Next-of-Kin".into()),
                Some("S") => Some("State Agency".into()),
                Some("O") => Some("Other".into()),
                Some("U") => Some("Unknown".into()),
                _ => None,
            };
        }
    }
    c
}

/// Adds `person` to the contacts of the Organization at `org` unless it is empty or already there.
fn add_org_contact(ctx: &mut Ctx<'_>, org: usize, person: OrganizationContact) {
    if person == OrganizationContact::default() {
        return;
    }
    if let Some(o) = ctx.get_mut::<Organization>(org)
        && !o.contact.contains(&person)
    {
        o.contact.push(person);
    }
}

/// MRG (A40 merge, A34-A36, A47...) -> the prior Patient named by MRG-1 (and MRG-4), `active: false`
/// with link `replaced-by` the surviving patient (the PID before it), which gets link `replaces`. Both
/// ids come from their identifiers, so the link names the Patient earlier messages created.
///
/// Only the events that merge or replace patient identifiers (A18, A30, A34, A36, A39, A40, A46, A47)
/// link patients: in A06/A07 (change of class), A41/A42 (merge account/visit), A45 (move visit) and
/// A49-A51 the MRG names prior account or visit numbers of the same patient.
pub fn mrg(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let merges_patients = matches!(
        ctx.event.as_str(),
        "A18" | "A30" | "A34" | "A36" | "A39" | "A40" | "A46" | "A47"
    );
    if !merges_patients {
        return;
    }
    let Some(survivor) = ctx.patient else { return };
    let mut prior = identifiers(ctx, seg, 1);
    prior.extend(identifiers(ctx, seg, 4));
    let Some(key) = identity(&prior).cloned() else {
        return;
    };
    let id = patient_id(ctx, &key);
    if ctx.get::<Patient>(survivor).and_then(|p| p.id.as_deref()) == Some(id.as_str()) {
        return;
    }
    let replaced_by = PatientLink {
        other: ctx.reference(survivor),
        r#type: Some("replaced-by".into()),
        ..Default::default()
    };
    let old = Patient {
        id: Some(id),
        identifier: prior,
        name: field(seg, 7).and_then(crate::xpn).into_iter().collect(),
        ..Default::default()
    };
    let conditional = key.system.is_some().then_some(&key);
    let i = ctx.add(old, conditional);
    // Also when the merged patient is already in the bundle (an earlier PID of the message).
    if let Some(p) = ctx.get_mut::<Patient>(i) {
        p.active = Some(false);
        if !p.link.contains(&replaced_by) {
            p.link.push(replaced_by);
        }
    }
    let old_ref = ctx.reference(i);
    if let Some(p) = ctx.get_mut::<Patient>(survivor) {
        p.link.push(PatientLink {
            other: old_ref,
            r#type: Some("replaces".into()),
            ..Default::default()
        });
    }
}

/// The Encounter status an ADT event implies, else `None` (read it from PV1).
fn event_status(code: &str, event: &str) -> Option<&'static str> {
    if code != "ADT" {
        return None;
    }
    Some(match event {
        "A03" => "finished",
        // Cancel admit / pending admit / pre-admit: the visit did not take place.
        "A11" | "A27" | "A38" => "cancelled",
        "A05" | "A14" => "planned",
        "A21" => "onleave",
        "A01" | "A02" | "A04" | "A06" | "A07" | "A09" | "A10" | "A12" | "A13" | "A15" | "A16"
        | "A22" | "A25" | "A26" | "A32" | "A33" => "in-progress",
        _ => return None,
    })
}

/// PV1-2 (table 0004) -> Encounter.class per the IG's PatientClass[EncounterClass] map.
fn encounter_class(code: &str) -> Coding {
    let (system, code, display) = match code {
        "E" => (V3_ACT_CODE.to_owned(), "EMER", Some("emergency")),
        "I" => (V3_ACT_CODE.to_owned(), "IMP", Some("inpatient encounter")),
        "O" => (V3_ACT_CODE.to_owned(), "AMB", Some("ambulatory")),
        "P" => (V3_ACT_CODE.to_owned(), "PRENC", Some("pre-admission")),
        "R" => (v2_table("0004"), "R", Some("Recurring patient")),
        "B" => (v2_table("0004"), "B", Some("Obstetrics")),
        "C" => (v2_table("0004"), "C", Some("Commercial Account")),
        "N" => (v2_table("0004"), "N", Some("Not Applicable")),
        "U" => (v2_table("0004"), "U", Some("Unknown")),
        other => (v2_table("0004"), other, None),
    };
    Coding::new(system, code, display)
}

/// A participant of `type_code` (v3 ParticipationType) for the practitioner in XCN `node`. The IG
/// gives the attender's name as the coding's display and the others' as the concept's text.
fn participant(
    ctx: &mut Ctx<'_>,
    node: Node<'_>,
    type_code: &str,
    name: &str,
) -> Option<EncounterParticipant> {
    let i = entities::practitioner(ctx, node)?;
    let mut kind = CodeableConcept::coding(V3_PARTICIPATION_TYPE, type_code, None);
    if type_code == "ATND" {
        kind.coding[0].display = Some(name.into());
    } else {
        kind.text = Some(name.into());
    }
    Some(EncounterParticipant {
        r#type: vec![kind],
        individual: Some(ctx.reference(i)),
        ..Default::default()
    })
}

/// The display of `code` in the v2 tables whose codes FHIR-Converter and the IG give displays for:
/// 0007 (admission type), 0092 (re-admission), 0430 (mode of arrival).
fn table_display(table: &str, code: &str) -> Option<&'static str> {
    Some(match (table, code) {
        ("0007", "A") => "Accident",
        ("0007", "C") => "Elective",
        ("0007", "E") => "Emergency",
        ("0007", "L") => "Labor and Delivery",
        ("0007", "N") => "Newborn (Birth in healthcare facility)",
        ("0007", "R") => "Routine",
        ("0007", "U") => "Urgent",
        ("0092", "R") => "Re-admission",
        ("0430", "A") => "Ambulance",
        ("0430", "C") => "Car",
        ("0430", "F") => "On foot",
        ("0430", "H") => "Helicopter",
        ("0430", "O") => "Other",
        ("0430", "P") => "Public Transport",
        ("0430", "U") => "Unknown",
        _ => return None,
    })
}

/// [`coded`] with the table's display filled in where the sender gave none.
fn coded_with_display(
    ctx: &mut Ctx<'_>,
    node: Option<Node<'_>>,
    at: &str,
    table: &str,
) -> Option<CodeableConcept> {
    let mut c = coded(ctx, node, at, &v2_table(table))?;
    let system = v2_table(table);
    for coding in &mut c.coding {
        if coding.system.as_deref() == Some(system.as_str()) && coding.display.is_none() {
            coding.display = coding
                .code
                .as_deref()
                .and_then(|code| table_display(table, code))
                .map(str::to_owned);
        }
    }
    Some(c)
}

/// A location of the encounter: PL `node` -> Location, with `status`.
fn encounter_location(
    ctx: &mut Ctx<'_>,
    node: Option<Node<'_>>,
    status: &str,
) -> Option<EncounterLocation> {
    let i = entities::location(ctx, node?)?;
    Some(EncounterLocation {
        location: ctx.reference(i),
        status: Some(status.into()),
        ..Default::default()
    })
}

/// PV1 -> Encounter per `PV1[Encounter]`; sets `ctx.encounter`.
///
/// Status: the ADT event when it says (A03 finished, A11/A27/A38 cancelled, A05/A14 planned, A01 and
/// the other in-visit events in-progress), else PV1-45 valued -> finished, else from the class
/// (P planned, U unknown, otherwise in-progress).
pub fn pv1(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let class_code = code_of(ctx, seg, 2);
    let at = ctx.at(44);
    let start = ctx.dtm(field(seg, 44), at);
    let at = ctx.at(45);
    let end = ctx.dtm(field(seg, 45), at);
    let status = event_status(&ctx.code, &ctx.event)
        .or_else(|| end.as_ref().map(|_| "finished"))
        .unwrap_or(match class_code.as_deref() {
            Some("P") => "planned",
            Some("U") | None => "unknown",
            _ => "in-progress",
        });
    let mut enc = Encounter {
        status: Some(status.into()),
        class: class_code
            .as_deref()
            .map(encounter_class)
            .unwrap_or_else(|| {
                Coding::new(
                    "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
                    "UNK",
                    Some("unknown"),
                )
            }),
        subject: ctx.patient_ref(),
        period: entities::period(start, end),
        ..Default::default()
    };
    // Identifiers: PV1-19 visit number (typed VN), PV1-50 alternate visit id.
    let at = ctx.at(19);
    let visit = field(seg, 19).and_then(|n| entities::identifier(ctx, n, &at));
    let visit = visit.map(|mut v| {
        let mut t = CodeableConcept::coding(crate::V2_0203_SYSTEM, "VN", None);
        t.text = Some("visit number".into());
        v.r#type = Some(t);
        v
    });
    enc.identifier.extend(visit.clone());
    enc.identifier.extend(identifiers(ctx, seg, 50));
    let at = ctx.at(4);
    enc.r#type
        .extend(coded_with_display(ctx, field(seg, 4), &at, "0007"));
    let at = ctx.at(10);
    enc.service_type = coded(ctx, field(seg, 10), &at, &v2_table("0069"));

    // Locations: assigned PV1-3, prior PV1-6, temporary PV1-11, pending PV1-42, prior temporary PV1-43.
    let current = match (status, class_code.as_deref()) {
        ("finished" | "cancelled", _) => "completed",
        ("planned", _) | (_, Some("P")) => "planned",
        _ => "active",
    };
    for (n, s) in [
        (3, current),
        (6, "completed"),
        (11, current),
        (42, "planned"),
        (43, "completed"),
    ] {
        for r in reps(seg, n) {
            enc.location.extend(encounter_location(ctx, Some(r), s));
        }
    }
    // Participants: attending, referring, consulting, admitting, other healthcare provider.
    for (n, code, display) in [
        (7, "ATND", "attender"),
        (8, "REF", "referrer"),
        (9, "CON", "consultant"),
        (17, "ADM", "admitter"),
        (52, "PART", "Participation"),
    ] {
        for r in reps(seg, n) {
            enc.participant.extend(participant(ctx, r, code, display));
        }
    }
    enc.hospitalization = hospitalization(ctx, seg);
    // PV1-16 VIP indicator also marks the patient (`PV1[Patient]`: patient-importance).
    let at = ctx.at(16);
    if let Some(vip) = ctx.code(field(seg, 16), &at)
        && let Some(p) = ctx.patient
        && let Some(patient) = ctx.get_mut::<Patient>(p)
    {
        patient.extension.push(ext(
            "patient-importance",
            ExtensionValue::CodeableConcept(Box::new(vip)),
        ));
    }
    enc.account = current_account(ctx)
        .map(|i| ctx.reference(i))
        .into_iter()
        .collect();
    if let Some(eoc) = episode_of_care(ctx, seg) {
        enc.episode_of_care.push(ctx.reference(eoc));
    }

    let patient_key = ctx
        .patient
        .and_then(|p| ctx.get::<Patient>(p))
        .and_then(|p| p.id.clone())
        .unwrap_or_default();
    let id = match &visit {
        Some(v) => ctx.id(
            "Encounter",
            &[
                &patient_key,
                v.system.as_deref().unwrap_or(""),
                v.value.as_deref().unwrap_or(""),
            ],
        ),
        None => ctx.message_scoped_id("Encounter", ""),
    };
    enc.id = Some(id);
    let conditional = visit.filter(|v| v.system.is_some());
    let i = ctx.add(enc, conditional.as_ref());
    ctx.encounter = Some(i);
    ctx.last = Some(i);
}

/// PV1-5, 13-16, 36-38 -> Encounter.hospitalization.
fn hospitalization(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Option<EncounterHospitalization> {
    let at = ctx.at(5);
    let pre_admission_identifier = field(seg, 5).and_then(|n| entities::identifier(ctx, n, &at));
    let at = ctx.at(13);
    let re_admission = coded_with_display(ctx, field(seg, 13), &at, "0092");
    let mut code = |n: usize, table: &str| {
        let at = ctx.at(n);
        coded(ctx, field(seg, n), &at, &v2_table(table))
    };
    let admit_source = code(14, "0023");
    let discharge_disposition = code(36, "0112");
    let mut list = |n: usize, table: &str| -> Vec<CodeableConcept> {
        let at = ctx.at(n);
        reps(seg, n)
            .filter_map(|r| coded(ctx, Some(r), &at, &v2_table(table)))
            .collect()
    };
    let special_arrangement = list(15, "0009");
    let special_courtesy = list(16, "0099");
    let diet_preference = list(38, "0114");
    let destination = field(seg, 37)
        .and_then(|dld| discharge_location(ctx, dld))
        .map(|i| ctx.reference(i));
    let h = EncounterHospitalization {
        pre_admission_identifier,
        admit_source,
        re_admission,
        diet_preference,
        special_courtesy,
        special_arrangement,
        destination,
        discharge_disposition,
        ..Default::default()
    };
    let empty = h == EncounterHospitalization::default();
    (!empty).then_some(h)
}

/// DLD (PV1-37 discharged to location) -> Location: DLD.1 (a coded location) as its name and
/// identifier, a site.
fn discharge_location(ctx: &mut Ctx<'_>, dld: Node<'_>) -> Option<usize> {
    let loc = dld.component(1)?;
    let code = crate::read::text(loc.subcomponent(1));
    let name = crate::read::text(loc.subcomponent(2)).or_else(|| code.clone());
    let system = crate::read::text(loc.subcomponent(3));
    name.as_ref()?;
    let id = ctx.id(
        "Location",
        &[
            "dld",
            system.as_deref().unwrap_or(""),
            code.as_deref().unwrap_or(""),
            name.as_deref().unwrap_or(""),
        ],
    );
    let location = Location {
        id: Some(id),
        name,
        identifier: code
            .map(|c| Identifier {
                value: Some(c),
                system: system.map(|s| crate::vocab::coding_system_uri(&s).into_owned()),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        physical_type: Some(CodeableConcept::coding(
            entities::LOCATION_PHYSICAL_TYPE,
            "si",
            None,
        )),
        ..Default::default()
    };
    Some(ctx.add(location, None))
}

/// PV1-54 (episode of care id) -> EpisodeOfCare for the patient, status active.
fn episode_of_care(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Option<usize> {
    let at = ctx.at(54);
    let identifier = entities::identifier(ctx, field(seg, 54)?, &at)?;
    let patient = ctx.patient_ref()?;
    let id = ctx.id(
        "EpisodeOfCare",
        &[
            identifier.system.as_deref().unwrap_or(""),
            identifier.value.as_deref().unwrap_or(""),
        ],
    );
    let eoc = EpisodeOfCare {
        id: Some(id),
        identifier: vec![identifier.clone()],
        status: Some("active".into()),
        patient,
        ..Default::default()
    };
    let conditional = identifier.system.is_some().then_some(&identifier);
    Some(ctx.add(eoc, conditional))
}

/// PV2 -> the current Encounter per `PV2[Encounter]`: prior pending location PV2-1, admit reason PV2-3,
/// expected admit and discharge PV2-8/9, length of stay PV2-11 (days), visit description PV2-12 (the
/// narrative), referral source PV2-13, visit protection PV2-22 (confidentiality), priority PV2-25 (table
/// 0217 -> v3 ActPriority), mode of arrival PV2-38 (encounter-modeOfArrival).
pub fn pv2(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(e) = ctx.encounter else { return };
    let location = encounter_location(ctx, field(seg, 1), "planned");
    let at = ctx.at(3);
    let reason = ctx.code(field(seg, 3), &at);
    let length = field_comp(seg, 11, 1).and_then(|days| {
        crate::quantity(&days, None).ok().flatten().map(|mut q| {
            q.unit = Some("d".into());
            q.code = Some("d".into());
            q.system = Some("http://unitsofmeasure.org".into());
            q
        })
    });
    let referrer: Vec<EncounterParticipant> = reps(seg, 13)
        .filter_map(|r| participant(ctx, r, "REF", "referrer"))
        .collect();
    let priority = field(seg, 25).and_then(|p| {
        let coding: Vec<Coding> = [(1, 7), (4, 8)]
            .iter()
            .filter_map(|&(c, v)| {
                let (code, display) = match comp(p, c)?.as_str() {
                    "1" => ("EM", "emergency"),
                    "2" => ("UR", "urgent"),
                    "3" => ("EL", "elective"),
                    _ => return None,
                };
                Some(Coding {
                    version: comp(p, v),
                    ..Coding::new(
                        "http://terminology.hl7.org/CodeSystem/v3-ActPriority",
                        code,
                        Some(display),
                    )
                })
            })
            .collect();
        (!coding.is_empty()).then_some(CodeableConcept {
            coding,
            ..Default::default()
        })
    });
    // PV2-8/9 expected admit and discharge times: R5's planned start and end, as cross-version
    // extensions (the IG's choice).
    let mut planned = Vec::new();
    for (n, name) in [(8, "plannedStartDate"), (9, "plannedEndDate")] {
        let at = ctx.at(n);
        if let Some(when) = ctx.dtm(field(seg, n), at) {
            planned.push(Extension::new(
                format!("http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.{name}"),
                ExtensionValue::DateTime(when),
            ));
        }
    }
    // PV2-12 visit description -> the narrative (`text.div`).
    let text = field_text(seg, 12).map(|d| fhir::Narrative {
        status: Some("generated".into()),
        div: format!(
            "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p><span>Visit Description: {}</span></p></div>",
            xml_escape(&d)
        ),
        ..Default::default()
    });
    // PV2-22 visit protection indicator -> confidentiality: Y restricted, N normal.
    let confidentiality = match code_of(ctx, seg, 22).as_deref() {
        Some("Y") => Some(Coding::new(V3_CONFIDENTIALITY, "R", Some("restricted"))),
        Some("N") => Some(Coding::new(V3_CONFIDENTIALITY, "N", Some("normal"))),
        _ => None,
    };
    let at = ctx.at(38);
    let arrival = coded_with_display(ctx, field(seg, 38), &at, "0430")
        .and_then(|c| c.coding.into_iter().next());
    if let Some(enc) = ctx.get_mut::<Encounter>(e) {
        enc.location.extend(location);
        enc.reason_code.extend(reason);
        if length.is_some() {
            enc.length = length.map(|q| fhir::Duration {
                value: q.value,
                unit: q.unit,
                system: q.system,
                code: q.code,
                ..Default::default()
            });
        }
        enc.participant.extend(referrer);
        if priority.is_some() {
            enc.priority = priority;
        }
        if let Some(a) = arrival {
            enc.extension.push(ext(
                "encounter-modeOfArrival",
                ExtensionValue::Coding(Box::new(a)),
            ));
        }
        enc.extension.extend(planned);
        if text.is_some() {
            enc.text = text;
        }
        if let Some(c) = confidentiality {
            let meta = enc.meta.get_or_insert_with(Default::default);
            if !meta.security.contains(&c) {
                meta.security.insert(0, c);
            }
        }
    }
}

/// `text` with the XML special characters escaped, for a narrative.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// DB1 (disability) whose disabled person is the patient (DB1-2 `PT`, table 0334) -> DB1-3 (disabled
/// person identifier) as identifiers of the Patient (the IG has no DB1 map). DB1 for the guarantor or
/// insured (`GT`, `IN`, `AP`...) names another person: not the patient's identifiers. DB1-4 to DB1-8
/// (indicator and dates) have no element or published extension: not mapped.
pub fn db1(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(p) = ctx.patient else { return };
    if field_comp(seg, 2, 1).as_deref() != Some("PT") {
        return;
    }
    let found = identifiers(ctx, seg, 3);
    if let Some(patient) = ctx.get_mut::<Patient>(p) {
        for id in found {
            let known = patient
                .identifier
                .iter()
                .any(|i| i.value == id.value && i.system == id.system);
            if !known {
                patient.identifier.push(id);
            }
        }
    }
}

/// PDA: the death's Conditions, Observations and Procedures (see [`super::order::pda`]).
pub fn pda(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    super::order::pda(ctx, seg);
}

/// ACC: an injury incident Observation (see [`super::order::acc`]).
pub fn acc(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    super::order::acc(ctx, seg);
}

/// ARV (access restrictions) -> security labels (`meta.security`, v3 ActCode) on the Encounter when it
/// follows a PV1, else on the Patient: ARV-2 action (table 0206: A -> LABEL, X -> PERSISTLABEL), ARV-3
/// restricted information (table 0717 -> the v3 sensitivity codes), ARV-4 reason (table 0719: PAT ->
/// PRS, PHY -> PHY). The IG has no ARV map; codes without a v3 counterpart are left out. ARV-5
/// (free-text instructions) and ARV-6 (period) have no element in R4's Meta.
pub fn arv(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let mut labels = Vec::new();
    let v3 = |code: &str, display: &str| Coding::new(V3_ACT_CODE, code, Some(display));
    match code_of(ctx, seg, 2).as_deref() {
        Some("A") => labels.push(v3("LABEL", "assign security label")),
        Some("X") => labels.push(v3("PERSISTLABEL", "persist security label")),
        _ => {}
    }
    for r in reps(seg, 3) {
        let label = match comp(r, 1).as_deref() {
            Some("DEM") => v3("DEMO", "all demographic information sensitivity"),
            Some("LOC") => v3("LOCIS", "location information sensitivity"),
            Some("DRG") => v3("DRGIS", "drug information sensitivity"),
            Some("HIV") => v3("HIV", "HIV/AIDS information sensitivity"),
            Some("PSY") => v3("PSY", "psychiatry disorder information sensitivity"),
            Some("STD") => v3(
                "STD",
                "sexually transmitted disease information sensitivity",
            ),
            _ => continue,
        };
        labels.push(label);
    }
    match code_of(ctx, seg, 4).as_deref() {
        Some("PAT") => labels.push(v3("PRS", "patient requested information sensitivity")),
        Some("PHY") => labels.push(v3("PHY", "physician requested information sensitivity")),
        _ => {}
    }
    if labels.is_empty() {
        return;
    }
    let meta = match (ctx.encounter, ctx.patient) {
        (Some(e), _) => ctx.get_mut::<Encounter>(e).map(|r| &mut r.meta),
        (None, Some(p)) => ctx.get_mut::<Patient>(p).map(|r| &mut r.meta),
        (None, None) => None,
    };
    if let Some(meta) = meta {
        let meta = meta.get_or_insert_with(Default::default);
        for l in labels {
            if !meta.security.contains(&l) {
                meta.security.push(l);
            }
        }
    }
}

/// ROL -> PractitionerRole per `ROL[Encounter-PractitionerRole]` and `ROL[Patient-GeneralPractitioner]`:
/// practitioner ROL-4, code ROL-3 (table 0443), period ROL-5/6, specialty ROL-9 (provider type),
/// telecom ROL-12, location ROL-13, organization ROL-14. After a PV1 it is an Encounter participant
/// (type ROL-3), else one of the patient's general practitioners.
pub fn rol(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let at = ctx.at(3);
    let code = coded(ctx, field(seg, 3), &at, &v2_table("0443"));
    let at = ctx.at(9);
    let specialty = ctx.code(field(seg, 9), &at);
    let at = ctx.at(5);
    let period = node_period(ctx, field(seg, 5), field(seg, 6), &at);
    let telecom = telecoms(ctx, seg, 12, None);
    let location = field(seg, 13)
        .and_then(|pl| entities::location(ctx, pl))
        .map(|i| ctx.reference(i));
    let organization = field(seg, 14)
        .and_then(|x| entities::organization(ctx, x))
        .map(|i| ctx.reference(i));
    let mut roles = Vec::new();
    for xcn in reps(seg, 4) {
        let Some(p) = entities::practitioner(ctx, xcn) else {
            continue;
        };
        let practitioner = ctx.reference(p);
        let key = |r: &Option<Reference>| {
            r.as_ref()
                .and_then(|r| r.reference.clone())
                .unwrap_or_default()
        };
        let id = ctx.id(
            "PractitionerRole",
            &[
                practitioner.reference.as_deref().unwrap_or(""),
                &field_text(seg, 3).unwrap_or_default(),
                &key(&organization),
                &key(&location),
            ],
        );
        let role = fhir::PractitionerRole {
            id: Some(id),
            practitioner: Some(practitioner),
            code: code.clone().into_iter().collect(),
            specialty: specialty.clone().into_iter().collect(),
            period: period.clone(),
            telecom: telecom.clone(),
            location: location.clone().into_iter().collect(),
            organization: organization.clone(),
            ..Default::default()
        };
        let i = ctx.add(role, None);
        roles.push(ctx.reference(i));
    }
    if let Some(e) = ctx.encounter {
        if let Some(enc) = ctx.get_mut::<Encounter>(e) {
            for r in roles {
                enc.participant.push(EncounterParticipant {
                    r#type: code.clone().into_iter().collect(),
                    individual: Some(r),
                    period: period.clone(),
                    ..Default::default()
                });
            }
        }
    } else if let Some(p) = ctx.patient
        && let Some(patient) = ctx.get_mut::<Patient>(p)
    {
        patient.general_practitioner.extend(roles);
    }
}

/// PRD (provider data, referral messages) -> a Practitioner and its PractitionerRole (the IG has no PRD
/// map; FHIR-Converter's rendering):
///
/// - Practitioner: name PRD-2 (XPN), address PRD-3, telecom PRD-5 (use work when XTN.2 is empty),
///   identifiers PRD-7 (PLN: value PLN.1, type PLN.2 in table 0203, which holds table 0338's
///   practitioner id types, period end PLN.4); its id from the first identifier, else the name;
/// - PractitionerRole: code PRD-1 (table 0286 provider role, whose codes RP, RT, PP, CP are those of
///   table 0443), location PRD-4, period PRD-8/9, organization PRD-10 (XON) with its address PRD-11 and
///   telecom PRD-13 when it has none yet;
/// - the referral ServiceRequest (RF1) of the message: a referring provider (RP) is its requester, a
///   referred-to provider (RT) one of its performers.
pub fn prd(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let name = names(ctx, seg, 2);
    let at = ctx.at(7);
    let mut identifier = Vec::new();
    for pln in reps(seg, 7) {
        let Some(value) = comp(pln, 1) else { continue };
        let end = ctx.date(pln.component(4), &at);
        identifier.push(Identifier {
            value: Some(value),
            r#type: comp(pln, 2).map(entities::identifier_type),
            period: entities::period(None, end),
            ..Default::default()
        });
    }
    if name.is_empty() && identifier.is_empty() {
        return;
    }
    let id = match identifier.first() {
        Some(i) => ctx.id("Practitioner", &["", i.value.as_deref().unwrap_or("")]),
        None => ctx.id(
            "Practitioner",
            &["name", &field_text(seg, 2).unwrap_or_default()],
        ),
    };
    let practitioner = fhir::Practitioner {
        id: Some(id),
        identifier,
        name,
        telecom: telecoms(ctx, seg, 5, Some("work")),
        address: addresses(ctx, seg, 3),
        ..Default::default()
    };
    let p = ctx.add(practitioner, None);
    let practitioner = ctx.reference(p);

    let at = ctx.at(1);
    let code = coded(ctx, field(seg, 1), &at, &v2_table("0443")).map(|mut c| {
        for coding in &mut c.coding {
            let shared = matches!(coding.code.as_deref(), Some("CP" | "PP" | "RP" | "RT"));
            if shared
                && coding
                    .system
                    .as_deref()
                    .is_some_and(|s| s.ends_with("v2-0286"))
            {
                coding.system = Some(v2_table("0443"));
            }
        }
        c
    });
    let role_code = code
        .as_ref()
        .and_then(|c| c.code_in(&v2_table("0443")))
        .map(str::to_owned);
    let location = field(seg, 4)
        .and_then(|pl| entities::location(ctx, pl))
        .map(|i| ctx.reference(i));
    let at = ctx.at(8);
    let start = ctx.date(field(seg, 8), &at);
    let at = ctx.at(9);
    let end = ctx.date(field(seg, 9), &at);
    let org = field(seg, 10).and_then(|x| entities::organization(ctx, x));
    if let Some(o) = org {
        let address = addresses(ctx, seg, 11);
        let telecom = telecoms(ctx, seg, 13, Some("work"));
        if let Some(org) = ctx.get_mut::<Organization>(o) {
            if org.address.is_empty() {
                org.address = address;
            }
            if org.telecom.is_empty() {
                org.telecom = telecom;
            }
        }
    }
    let organization = org.map(|i| ctx.reference(i));
    let key = |r: &Option<Reference>| {
        r.as_ref()
            .and_then(|r| r.reference.clone())
            .unwrap_or_default()
    };
    let id = ctx.id(
        "PractitionerRole",
        &[
            practitioner.reference.as_deref().unwrap_or(""),
            &field_text(seg, 1).unwrap_or_default(),
            &key(&organization),
            &key(&location),
        ],
    );
    let role = fhir::PractitionerRole {
        id: Some(id),
        practitioner: Some(practitioner),
        code: code.into_iter().collect(),
        period: entities::period(start, end),
        location: location.into_iter().collect(),
        organization,
        ..Default::default()
    };
    let r = ctx.add(role, None);
    let role = ctx.reference(r);
    let referral = ctx
        .resources()
        .enumerate()
        .filter(|(_, res)| {
            res.downcast_ref::<fhir::ServiceRequest>()
                .is_some_and(|sr| {
                    sr.category.iter().any(|c| {
                        c.coding
                            .iter()
                            .any(|x| x.code.as_deref() == Some("3457005"))
                    })
                })
        })
        .map(|(i, _)| i)
        .last();
    if let Some(sr) = referral.and_then(|i| ctx.get_mut::<fhir::ServiceRequest>(i)) {
        match role_code.as_deref() {
            Some("RP") if sr.requester.is_none() => sr.requester = Some(role),
            Some("RT") if !sr.performer.contains(&role) => sr.performer.push(role),
            _ => {}
        }
    }
}

/// GT1 -> the Account's guarantor: the patient when GT1-11 says self (`SEL`), else a RelatedPerson from
/// GT1-3 (name), GT1-5 (address), GT1-6/7 (phones), GT1-8 (birth date), GT1-9 (sex), GT1-11
/// (relationship); period GT1-13/14. Without a PID-18 Account, one is made for the patient.
pub fn gt1(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(patient_ref) = ctx.patient_ref() else {
        return;
    };
    let relationship = code_of(ctx, seg, 11);
    let party = if relationship.as_deref() == Some("SEL") {
        Some(patient_ref.clone())
    } else {
        guarantor_person(ctx, seg).map(|i| ctx.reference(i))
    };
    let Some(party) = party else { return };
    let at = ctx.at(13);
    let start = ctx.date(field(seg, 13), &at);
    let at = ctx.at(14);
    let end = ctx.date(field(seg, 14), &at);
    let guarantor = AccountGuarantor {
        party,
        on_hold: Some(false),
        period: entities::period(start, end),
        ..Default::default()
    };
    let account = match current_account(ctx) {
        Some(a) => a,
        None => {
            let id = ctx.message_scoped_id("Account", "");
            ctx.add(
                Account {
                    id: Some(id),
                    status: Some("active".into()),
                    subject: vec![patient_ref],
                    ..Default::default()
                },
                None,
            )
        }
    };
    if let Some(a) = ctx.get_mut::<Account>(account) {
        a.guarantor.push(guarantor);
    }
}

/// A guarantor who is not the patient (GT1) -> RelatedPerson (the IG has no GT1 map): name GT1-3,
/// address GT1-5, home phone GT1-6 (use home unless XTN.2 says otherwise), business phone GT1-7 (work),
/// birth date GT1-8, sex GT1-9, relationship GT1-11; identifiers GT1-2 (guarantor number), GT1-12
/// (SSN) and GT1-19 (the guarantor's employee id); primary language GT1-36.
fn guarantor_person(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Option<usize> {
    let i = related_person(
        ctx,
        seg,
        3,
        5,
        &[(6, Some("home")), (7, Some("work"))],
        8,
        9,
        11,
    )?;
    let mut identifier = identifiers(ctx, seg, 2);
    if let Some(ssn) = field_comp(seg, 12, 1) {
        identifier.push(Identifier {
            value: Some(ssn),
            system: Some("http://hl7.org/fhir/sid/us-ssn".into()),
            r#type: Some(entities::identifier_type("SS".into())),
            ..Default::default()
        });
    }
    identifier.extend(identifiers(ctx, seg, 19));
    let at = ctx.at(36);
    let language = ctx.code(field(seg, 36), &at).map(language_concept);
    if let Some(person) = ctx.get_mut::<RelatedPerson>(i) {
        for id in identifier {
            if !person.identifier.contains(&id) {
                person.identifier.push(id);
            }
        }
        if let Some(language) = language
            && person.communication.is_empty()
        {
            person.communication.push(fhir::RelatedPersonCommunication {
                language,
                preferred: Some(true),
                ..Default::default()
            });
        }
    }
    Some(i)
}

/// A RelatedPerson of the current patient from the fields of a guarantor (GT1) or insured (IN1); phones
/// are (field, use when XTN.2 is empty).
#[allow(clippy::too_many_arguments)]
fn related_person(
    ctx: &mut Ctx<'_>,
    seg: &Segment<'_>,
    name: usize,
    address: usize,
    phones: &[(usize, Option<&str>)],
    birth: usize,
    sex: usize,
    relationship: usize,
) -> Option<usize> {
    let patient = ctx.patient_ref()?;
    let names: Vec<HumanName> = names(ctx, seg, name);
    if names.is_empty() {
        return None;
    }
    let at = ctx.at(birth);
    let birth_date = ctx.date(field(seg, birth), &at);
    let at = ctx.at(relationship);
    let relationship: Vec<CodeableConcept> = ctx
        .code(field(seg, relationship), &at)
        .map(relationship_concept)
        .into_iter()
        .collect();
    let mut telecom: Vec<ContactPoint> = Vec::new();
    for &(n, default_use) in phones {
        let found = telecoms(ctx, seg, n, default_use);
        telecom.extend(found);
    }
    let sex_code = self::sex(ctx, seg, sex);
    let id = ctx.id(
        "RelatedPerson",
        &[
            patient.reference.as_deref().unwrap_or(""),
            seg.id(),
            &field_text(seg, name).unwrap_or_default(),
        ],
    );
    let person = RelatedPerson {
        id: Some(id),
        patient,
        relationship,
        name: names,
        telecom,
        gender: sex_code,
        birth_date,
        address: addresses(ctx, seg, address),
        ..Default::default()
    };
    Some(ctx.add(person, None))
}

/// v2 table 0063 relationship -> the IG's Relationship map (v3 RoleCode where it has the concept).
/// Each coding of the CWE from table 0063 (or with no system: the field's table) is translated, the
/// identifier and its alternate (CWE.1-3 and CWE.4-6) alike; other codings are kept as sent.
fn relationship_concept(mut c: CodeableConcept) -> CodeableConcept {
    let mut first = true;
    for coding in &mut c.coding {
        let from_0063 = coding
            .system
            .as_deref()
            .is_none_or(|s| s.ends_with("v2-0063"));
        match coding
            .code
            .as_deref()
            .filter(|_| from_0063)
            .and_then(relationship_code)
        {
            Some((system, code, display)) => {
                *coding = Coding::new(system, code, Some(display));
            }
            None if first && coding.system.is_none() => {
                coding.system = Some(v2_table("0063"));
            }
            None => {}
        }
        first = false;
    }
    c
}

/// A table 0063 code -> the IG's Relationship map target: (system, code, display).
fn relationship_code(code: &str) -> Option<(&'static str, &'static str, &'static str)> {
    let role = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
    match code {
        "SEL" => Some((role, "ONESELF", "self")),
        "SPO" => Some((role, "SPS", "spouse")),
        "DOM" => Some((role, "SIGOTHR", "significant other")),
        "CHD" => Some((role, "CHILD", "child")),
        "GCH" => Some((role, "GRNDCHILD", "grandchild")),
        "NCH" => Some((role, "NCHILD", "natural child")),
        "SCH" => Some((role, "STPCHLD", "step child")),
        "FCH" => Some((role, "CHLDFOST", "foster child")),
        "PAR" => Some((role, "PRN", "parent")),
        "MTH" => Some((role, "MTH", "mother")),
        "FTH" => Some((role, "FTH", "father")),
        "GRP" => Some((role, "GRPRN", "grandparent")),
        "EXF" => Some((role, "EXT", "extended family member")),
        "SIB" => Some((role, "SIB", "sibling")),
        "BRO" => Some((role, "BRO", "brother")),
        "SIS" => Some((role, "SIS", "sister")),
        "FND" => Some((role, "FRND", "unrelated friend")),
        "EMR" => Some((
            "http://terminology.hl7.org/CodeSystem/v2-0131",
            "E",
            "Employer",
        )),
        "EMC" => Some((
            "http://terminology.hl7.org/CodeSystem/v2-0131",
            "C",
            "Emergency Contact",
        )),
        "UNK" => Some((
            "http://terminology.hl7.org/CodeSystem/v2-0131",
            "U",
            "Unknown",
        )),
        "OTH" => Some((
            "http://terminology.hl7.org/CodeSystem/v2-0131",
            "O",
            "Other",
        )),
        _ => None,
    }
}

/// IN1-17 (table 0063) -> Coverage.relationship (subscriber-relationship).
fn subscriber_relationship(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "SEL" => ("self", "Self"),
        "SPO" => ("spouse", "Spouse"),
        "DOM" => ("common", "Common Law Spouse"),
        "CHD" | "GCH" | "NCH" | "SCH" | "FCH" | "DEP" | "WRD" => ("child", "Child"),
        "PAR" | "MTH" | "FTH" | "CGV" | "GRD" | "GRP" | "EXF" | "SIB" | "BRO" | "SIS" | "FND"
        | "OAD" | "EME" | "EMR" | "ASC" | "EMC" | "OWN" | "TRA" | "MGR" | "OTH" => {
            ("other", "Other")
        }
        _ => return None,
    })
}

/// IN1 -> Coverage per `IN1[Coverage]`: the patient as beneficiary; payor Organization from IN1-3
/// (company id), IN1-4 (name), IN1-5 (address), IN1-6 (contact person), IN1-7 (phone); plan IN1-2 and
/// group IN1-8/9 as classes; policy holder IN1-11 (insured's group employer); period IN1-12/13; type
/// IN1-15; subscriber the patient (IN1-17 `SEL`) or a RelatedPerson from IN1-16-19, 43; relationship
/// IN1-17; subscriber id IN1-49; identifier IN1-36 (policy number); policy deductible IN1-37 as a cost
/// to the beneficiary. An IN1 that names no insurer (see [`payor`]) is left out with an issue.
pub fn in1(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(beneficiary) = ctx.patient_ref() else {
        return;
    };
    // Coverage.payor is required (1..*): an IN1 that names no insurer at all says nothing FHIR can
    // record as a Coverage (making the patient the payor would claim a self-pay the sender did not send).
    let Some(payor) = payor(ctx, seg) else {
        ctx.issue(
            crate::Severity::Error,
            ctx.at(3),
            crate::IssueKind::Invalid,
            "coverage left out: IN1-3 to IN1-7 name no insurer (Coverage.payor is required)".into(),
        );
        return;
    };
    let at = ctx.at(12);
    let start = ctx.date(field(seg, 12), &at);
    let at = ctx.at(13);
    let end = ctx.date(field(seg, 13), &at);
    let mut class = Vec::new();
    let class_type = |code: &str, display: &str| {
        CodeableConcept::coding(
            "http://terminology.hl7.org/CodeSystem/coverage-class",
            code,
            Some(display),
        )
    };
    if let Some(plan) = field(seg, 2).filter(|p| comp(*p, 1).is_some()) {
        class.push(CoverageClass {
            r#type: class_type("plan", "Plan"),
            value: comp(plan, 1),
            name: comp(plan, 2),
            ..Default::default()
        });
    }
    if let Some(group) = field_comp(seg, 8, 1) {
        class.push(CoverageClass {
            r#type: class_type("group", "Group"),
            value: Some(group),
            name: field_comp(seg, 9, 1),
            ..Default::default()
        });
    }
    let at = ctx.at(15);
    let kind = ctx.code(field(seg, 15), &at);
    let relationship_code = code_of(ctx, seg, 17);
    let relationship = relationship_code
        .as_deref()
        .and_then(subscriber_relationship)
        .map(|(code, display)| {
            CodeableConcept::coding(
                "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                code,
                Some(display),
            )
        });
    let subscriber = if relationship_code.as_deref() == Some("SEL") {
        Some(beneficiary.clone())
    } else {
        let person = related_person(ctx, seg, 16, 19, &[], 18, 43, 17);
        let at = ctx.at(49);
        let insured_id = field(seg, 49).and_then(|n| entities::identifier(ctx, n, &at));
        if let (Some(i), Some(id)) = (person, insured_id)
            && let Some(p) = ctx.get_mut::<RelatedPerson>(i)
        {
            p.identifier.push(id);
        }
        person.map(|i| ctx.reference(i))
    };
    // IN1-11 (insured's group employer) with its address IN1-44 (insured's employer's address).
    let holder = field(seg, 11).and_then(|x| entities::organization(ctx, x));
    if let Some(h) = holder {
        let address = addresses(ctx, seg, 44);
        if let Some(o) = ctx.get_mut::<Organization>(h)
            && o.address.is_empty()
        {
            o.address = address;
        }
    }
    let policy_holder = holder.map(|i| ctx.reference(i));
    let subscriber_id = field_comp(seg, 49, 1);
    let identifier: Vec<Identifier> = field_comp(seg, 36, 1)
        .map(|v| Identifier {
            value: Some(v),
            ..Default::default()
        })
        .into_iter()
        .collect();
    let payor_key = ctx
        .resources()
        .nth(payor)
        .and_then(|r| r.id().map(str::to_owned))
        .unwrap_or_default();
    let id = ctx.id(
        "Coverage",
        &[
            beneficiary.reference.as_deref().unwrap_or(""),
            &payor_key,
            &field_comp(seg, 2, 1).unwrap_or_default(),
            &field_comp(seg, 36, 1).unwrap_or_default(),
            &subscriber_id.clone().unwrap_or_default(),
        ],
    );
    let cost = policy_deductible(seg);
    let coverage = Coverage {
        id: Some(id),
        cost_to_beneficiary: cost.into_iter().collect(),
        identifier,
        status: Some("active".into()),
        r#type: kind,
        policy_holder,
        subscriber,
        subscriber_id,
        beneficiary,
        relationship,
        period: entities::period(start, end),
        payor: vec![ctx.reference(payor)],
        class,
        ..Default::default()
    };
    let i = ctx.add(coverage, None);
    ctx.last = Some(i);
    // The visit's account is paid by this coverage (IN1-22 coordination of benefits priority).
    let priority = field_comp(seg, 22, 1).and_then(|p| p.parse::<u32>().ok());
    let coverage_ref = ctx.reference(i);
    if let Some(a) = current_account(ctx)
        && let Some(account) = ctx.get_mut::<Account>(a)
    {
        account.coverage.push(fhir::AccountCoverage {
            coverage: coverage_ref,
            priority,
            ..Default::default()
        });
    }
}

/// IN1-37 policy deductible (CP: amount MO, price type table 0205) -> a cost to the beneficiary.
fn policy_deductible(seg: &Segment<'_>) -> Option<fhir::CoverageCostToBeneficiary> {
    let cp = field(seg, 37)?;
    let amount = crate::read::sub(cp, 1, 1)?;
    let number = crate::quantity(&amount, None).ok().flatten()?.value?;
    let kind = comp(cp, 2).map(|code| {
        let display = match code.as_str() {
            "AP" => Some("administrative price or handling fee"),
            "DC" => Some("direct unit cost"),
            "IC" => Some("indirect unit cost"),
            "PF" => Some("professional fee for performing provider"),
            "TF" => Some("technology fee for use of equipment"),
            "TP" => Some("total price"),
            "UP" => Some("unit price, may be based on length of procedure or service"),
            _ => None,
        };
        CodeableConcept::coding(v2_table("0205"), code, display)
    });
    Some(fhir::CoverageCostToBeneficiary {
        r#type: kind,
        value: Some(fhir::CoverageCostToBeneficiaryValue::Money(Box::new(
            fhir::Money {
                value: Some(number),
                currency: crate::read::sub(cp, 1, 2),
                ..Default::default()
            },
        ))),
        ..Default::default()
    })
}

/// The payer Organization of an IN1: identified by IN1-3 or named by IN1-4; an insurer the message knows
/// only by its address (IN1-5), contact person (IN1-6) or phone (IN1-7) is still that insurer, so it is
/// an Organization with just those (as FHIR-Converter does). `None` when IN1-3 to IN1-7 are all empty.
fn payor(ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Option<usize> {
    let at = ctx.at(3);
    let identifier: Vec<Identifier> = reps(seg, 3)
        .filter_map(|r| entities::identifier(ctx, r, &at))
        .collect();
    let name = field_comp(seg, 4, 1);
    let contact: Vec<OrganizationContact> = names(ctx, seg, 6)
        .into_iter()
        .map(|n| OrganizationContact {
            name: Some(n),
            ..Default::default()
        })
        .collect();
    let address: Vec<fhir::Address> = reps(seg, 5).filter_map(crate::xad).collect();
    let telecom: Vec<fhir::ContactPoint> = reps(seg, 7).filter_map(crate::xtn).collect();
    if identifier.is_empty()
        && name.is_none()
        && contact.is_empty()
        && address.is_empty()
        && telecom.is_empty()
    {
        return None;
    }
    let id = match identifier.first() {
        Some(i) => ctx.id(
            "Organization",
            &[
                i.system.as_deref().unwrap_or(""),
                i.value.as_deref().unwrap_or(""),
            ],
        ),
        None if name.is_some() => ctx.id("Organization", &["name", name.as_deref().unwrap_or("")]),
        // Known only by contact, address or phone: one insurer per IN1 of this message.
        None => ctx.message_scoped_id("Organization", "payor"),
    };
    let conditional = identifier.first().filter(|i| i.system.is_some()).cloned();
    let org = Organization {
        id: Some(id),
        identifier,
        name,
        address,
        telecom,
        contact,
        ..Default::default()
    };
    Some(ctx.add(org, conditional.as_ref()))
}

/// IN2 -> the IN1 before it: the insured's employee ids IN2-1 and SSN IN2-2 on the subscriber
/// RelatedPerson; Medicare IN2-6, Medicaid IN2-8 and military IN2-10 numbers as Coverage identifiers;
/// the patient's member number IN2-61 as a Coverage identifier and a Patient identifier (IN2-6/8/10
/// too when the insured is the patient, IN1-17 `SEL`); the insured's language IN2-34 and phone
/// IN2-63 on the subscriber; the employer's contact person IN2-49/50 and phone IN2-64 on the policy
/// holder Organization.
pub fn in2(ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
    let Some(c) = ctx.last else { return };
    let Some(coverage) = ctx.get::<Coverage>(c) else {
        return;
    };
    let subscriber = coverage
        .subscriber
        .as_ref()
        .and_then(|r| r.reference.as_deref())
        .and_then(|r| r.strip_prefix("urn:uuid:"))
        .map(str::to_owned);
    let mut ids = identifiers(ctx, seg, 1);
    if let Some(ssn) = field_comp(seg, 2, 1) {
        ids.push(Identifier {
            value: Some(ssn),
            system: Some("http://hl7.org/fhir/sid/us-ssn".into()),
            r#type: Some(entities::identifier_type("SS".into())),
            ..Default::default()
        });
    }
    let person = subscriber.and_then(|id| ctx.existing("RelatedPerson", &id));
    // IN2-34 language and IN2-63 phone of the insured.
    let at = ctx.at(34);
    let language = ctx.code(field(seg, 34), &at).map(language_concept);
    let phones = telecoms(ctx, seg, 63, None);
    if let Some(p) = person
        && let Some(rp) = ctx.get_mut::<RelatedPerson>(p)
    {
        rp.identifier.extend(ids);
        rp.telecom.extend(phones);
        if let Some(language) = language {
            rp.communication.push(fhir::RelatedPersonCommunication {
                language,
                preferred: Some(true),
                ..Default::default()
            });
        }
    }
    let mut numbers = Vec::new();
    for (n, code, system) in [
        (6, "MC", Some("http://hl7.org/fhir/sid/us-medicare")),
        (8, "MA", None),
        (10, "MI", None),
    ] {
        if let Some(value) = field_comp(seg, n, 1) {
            numbers.push(Identifier {
                value: Some(value),
                system: system.map(str::to_owned),
                r#type: Some(entities::identifier_type(code.into())),
                ..Default::default()
            });
        }
    }
    // IN2-6/8/10 number the insured; they are also the patient's own numbers when the insured is
    // the patient (IN1-17 `SEL`: the Coverage's subscriber is the Patient).
    let patient = ctx.patient;
    let insured_is_patient = patient.is_some_and(|p| {
        let patient_ref = ctx.reference(p).reference;
        ctx.get::<Coverage>(c)
            .and_then(|cov| cov.subscriber.as_ref())
            .is_some_and(|s| s.reference.is_some() && s.reference == patient_ref)
    });
    let mut patient_ids = if insured_is_patient {
        numbers.clone()
    } else {
        Vec::new()
    };
    // IN2-61: the patient's member number in this plan: one of the patient's identifiers (whoever
    // the insured is) and a number of the coverage.
    let member = identifiers(ctx, seg, 61);
    patient_ids.extend(member.iter().cloned());
    numbers.extend(member);
    if let Some(cov) = ctx.get_mut::<Coverage>(c) {
        cov.identifier.extend(numbers);
    }
    if let Some(p) = patient
        && let Some(pat) = ctx.get_mut::<Patient>(p)
    {
        for id in patient_ids {
            if !pat.identifier.contains(&id) {
                pat.identifier.push(id);
            }
        }
    }
    // IN2-49/50: the insured's employer's contact person, on the policy holder (IN1-11).
    let holder = ctx
        .get::<Coverage>(c)
        .and_then(|cov| cov.policy_holder.as_ref())
        .and_then(|r| r.reference.as_deref())
        .and_then(|r| r.strip_prefix("urn:uuid:"))
        .and_then(|id| ctx.existing("Organization", id));
    if let Some(h) = holder {
        let person = OrganizationContact {
            name: names(ctx, seg, 49).into_iter().next(),
            telecom: telecoms(ctx, seg, 50, None),
            ..Default::default()
        };
        add_org_contact(ctx, h, person);
        // IN2-64: the employer's phone.
        let phones = telecoms(ctx, seg, 64, None);
        if let Some(o) = ctx.get_mut::<Organization>(h) {
            for p in phones {
                if !o.telecom.contains(&p) {
                    o.telecom.push(p);
                }
            }
        }
    }
}

/// IN3: not mapped (certification; the IG maps it to a CareTeam).
pub fn in3(_ctx: &mut Ctx<'_>, _seg: &Segment<'_>) {}
