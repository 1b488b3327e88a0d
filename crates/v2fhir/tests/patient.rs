//! Patient, visit and insurance mappings (PID, PD1, NK1, MRG, PV1, PV2, ROL, GT1, IN1) on FHIR-Converter's
//! sample messages and small built messages: specific v2 values -> specific FHIR values, and the ids that
//! tie messages about the same patient and visit together.

use fhir::{
    Account, Coverage, Encounter, Location, Organization, Patient, PatientDeceased,
    PatientMultipleBirth, Practitioner, Resource, TypedResource,
};

const SAMPLES: &str = "/work/shared/corpus/fhir-converter/SampleData/Hl7v2";

fn convert_bytes(bytes: &[u8]) -> v2fhir::Conversion {
    let msg = hl7v2::parse(bytes).expect("parses");
    v2fhir::convert(&msg, &Default::default()).expect("converts")
}

fn sample(name: &str) -> v2fhir::Conversion {
    let bytes =
        std::fs::read(format!("{SAMPLES}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"));
    convert_bytes(&bytes)
}

/// A message from segment lines (joined with CR).
fn built(lines: &[&str]) -> v2fhir::Conversion {
    convert_bytes(lines.join("\r").as_bytes())
}

fn all<T: TypedResource>(c: &v2fhir::Conversion) -> Vec<&T> {
    c.bundle
        .entry
        .iter()
        .filter_map(|e| e.resource.as_ref())
        .filter_map(Resource::downcast_ref::<T>)
        .collect()
}

fn one<T: TypedResource>(c: &v2fhir::Conversion) -> &T {
    let found = all::<T>(c);
    assert_eq!(
        found.len(),
        1,
        "expected one {}",
        std::any::type_name::<T>()
    );
    found[0]
}

/// The resource a `urn:uuid:` reference points to.
fn resolve<'c, T: TypedResource>(c: &'c v2fhir::Conversion, reference: &fhir::Reference) -> &'c T {
    let target = reference.reference.as_deref().expect("a literal reference");
    c.bundle
        .entry
        .iter()
        .find(|e| e.full_url.as_deref() == Some(target))
        .and_then(|e| e.resource.as_ref()?.downcast_ref::<T>())
        .unwrap_or_else(|| panic!("{target} not in bundle"))
}

#[test]
fn pid_maps_demographics() {
    let c = sample("ADT-A01-01.hl7");
    let p = one::<Patient>(&c);
    assert_eq!(p.gender.as_deref(), Some("male"));
    assert_eq!(p.birth_date.as_deref(), Some("1988-08-18"));
    // PID-7 carries a time: kept whole in the birthTime extension.
    let birth_time = &p.birth_date_ext.as_ref().expect("birthTime").extension[0];
    assert_eq!(
        birth_time.url.as_deref(),
        Some("http://hl7.org/fhir/StructureDefinition/patient-birthTime")
    );
    // Identifiers: PID-2, PID-3 (two), PID-4, PID-19 (SSN), PID-20 (driver's licence), then DB1-3 (the
    // DB1 is the patient's: DB1-2 PT), IN2-61 (the patient's member number); nothing from the GT1 (a
    // guarantor's numbers, even when SEL) nor IN2-6/8/10 (the insured is the spouse).
    let values: Vec<&str> = p
        .identifier
        .iter()
        .filter_map(|i| i.value.as_deref())
        .collect();
    assert_eq!(
        values,
        [
            "1234567",
            "PATID1234",
            "123456789",
            "PATID567",
            "PSSN123121234",
            "DLN-123",
            "DB123",
            "PNM1234"
        ]
    );
    let mr = &p.identifier[1];
    let mr_type = &mr.r#type.as_ref().unwrap().coding[0];
    assert_eq!(mr_type.code.as_deref(), Some("MR"));
    assert_eq!(mr_type.display.as_deref(), Some("Medical record number"));
    // CX.4 `test1&2.16.1&HCD` has a universal id: the assigner is an Organization.
    assert!(mr.assigner.is_some());
    let ssn = &p.identifier[4];
    assert_eq!(
        ssn.system.as_deref(),
        Some("http://hl7.org/fhir/sid/us-ssn")
    );
    // PID-1 identifier period from CX.7/CX.8.
    let period = p.identifier[0].period.as_ref().unwrap();
    assert_eq!(period.start.as_deref(), Some("1924-10-11"));
    assert_eq!(period.end.as_deref(), Some("1924-10-12"));
    // Names PID-5 (two repetitions, the first with XPN.15 "called by" as a nickname name after it) and
    // the alias PID-9.
    assert_eq!(p.name.len(), 4);
    assert_eq!(p.name[0].family.as_deref(), Some("EVERYMAN"));
    assert_eq!(p.name[1].given, ["Addsm"]);
    assert_eq!(p.name[1].r#use.as_deref(), Some("nickname"));
    assert_eq!(p.name[3].family.as_deref(), Some("elbert"));
    // Marital status M through table 0002 -> v3.
    let marital = &p.marital_status.as_ref().unwrap().coding[0];
    assert_eq!(
        marital.system.as_deref(),
        Some("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus")
    );
    assert_eq!(marital.code.as_deref(), Some("M"));
    assert_eq!(p.multiple_birth, Some(PatientMultipleBirth::Integer(2)));
    assert!(matches!(p.deceased, Some(PatientDeceased::DateTime(_))));
    assert_eq!(p.communication[0].preferred, Some(true));
    // Race: two OMB categories in the US Core extension, ethnicity N -> 2186-5.
    let race = p
        .extension
        .iter()
        .find(|e| {
            e.url
                .as_deref()
                .is_some_and(|u| u.ends_with("us-core-race"))
        })
        .expect("race");
    assert_eq!(race.extension.len(), 3);
    let ethnicity = p
        .extension
        .iter()
        .find(|e| {
            e.url
                .as_deref()
                .is_some_and(|u| u.ends_with("us-core-ethnicity"))
        })
        .expect("ethnicity");
    match &ethnicity.extension[0].value {
        Some(fhir::ExtensionValue::Coding(c)) => assert_eq!(c.code.as_deref(), Some("2186-5")),
        other => panic!("{other:?}"),
    }
    // PID-13: home unless XTN.2 says otherwise; PID-14: work.
    assert_eq!(p.telecom[0].value.as_deref(), Some("2222"));
    assert_eq!(p.telecom[0].r#use.as_deref(), Some("home"));
    assert_eq!(p.telecom[2].value.as_deref(), Some("7777"));
    assert_eq!(p.telecom[2].r#use.as_deref(), Some("work"));
    // NK1 -> contact with contact role O (table 0131), period NK1-8/9, gender NK1-15.
    let contact = &p.contact[0];
    assert_eq!(contact.gender.as_deref(), Some("female"));
    assert!(
        contact
            .relationship
            .iter()
            .any(|r| r.has_coding("http://terminology.hl7.org/CodeSystem/v2-0131", "O"))
    );
    assert_eq!(
        contact.period.as_ref().unwrap().start.as_deref(),
        Some("2021-08-18")
    );
    // PD1-3 organization, PD1-4 practitioner, ROL before PV1 -> general practitioners.
    assert_eq!(p.general_practitioner.len(), 3);
    let org: &Organization = resolve(&c, &p.general_practitioner[0]);
    assert_eq!(org.name.as_deref(), Some("LINDAS TEST ORGANIZATION"));
}

#[test]
fn pv1_maps_the_visit() {
    let c = sample("ADT-A01-01.hl7");
    let e = one::<Encounter>(&c);
    assert_eq!(e.status.as_deref(), Some("in-progress"));
    assert_eq!(e.class.code.as_deref(), Some("PRENC"));
    assert_eq!(
        e.class.system.as_deref(),
        Some("http://terminology.hl7.org/CodeSystem/v3-ActCode")
    );
    assert_eq!(e.identifier[0].value.as_deref(), Some("40007716"));
    assert_eq!(
        e.identifier[0].r#type.as_ref().unwrap().text.as_deref(),
        Some("visit number")
    );
    assert_eq!(
        e.period
            .as_ref()
            .unwrap()
            .start
            .as_deref()
            .map(|s| &s[..10]),
        Some("2015-02-08")
    );
    let codes: Vec<&str> = e
        .participant
        .iter()
        .filter_map(|p| p.r#type.first()?.coding.first()?.code.as_deref())
        .collect();
    assert_eq!(&codes[..5], ["ATND", "REF", "CON", "ADM", "PART"]);
    let attending: &Practitioner = resolve(&c, e.participant[0].individual.as_ref().unwrap());
    assert_eq!(attending.name[0].family.as_deref(), Some("Alaz"));
    assert_eq!(attending.name[0].suffix, ["JR", "MD", "Al"]);
    assert_eq!(
        attending.name[0].period.as_ref().unwrap().start.as_deref(),
        Some("1924-10-10")
    );
    let h = e.hospitalization.as_ref().unwrap();
    assert_eq!(
        h.re_admission.as_ref().unwrap().coding[0].system.as_deref(),
        Some("http://terminology.hl7.org/CodeSystem/v2-0092")
    );
    assert!(h.destination.is_some());
    // PV2-25 2 -> urgent, PV2-38 C -> modeOfArrival, PV2-11 -> length in days.
    assert_eq!(
        e.priority.as_ref().unwrap().coding[0].code.as_deref(),
        Some("UR")
    );
    assert_eq!(e.length.as_ref().unwrap().code.as_deref(), Some("d"));
    assert!(
        e.extension[0]
            .url
            .as_deref()
            .unwrap()
            .ends_with("encounter-modeOfArrival")
    );
    assert_eq!(e.episode_of_care.len(), 1);
    assert_eq!(e.account.len(), 1);
    // PV2-22 `N` -> confidentiality normal; ARV after PV2: `X|LOC|PHY` -> PERSISTLABEL, LOCIS, PHY on
    // the Encounter; the ARV after PD1 (`A|DEM|PAT`) labels the Patient.
    let codes = |m: &Option<fhir::Meta>| -> Vec<String> {
        m.iter()
            .flat_map(|m| m.security.iter().filter_map(|c| c.code.clone()))
            .collect()
    };
    assert_eq!(codes(&e.meta), ["N", "PERSISTLABEL", "LOCIS", "PHY"]);
    // PV2-12 visit description -> narrative.
    assert!(e.text.as_ref().unwrap().div.contains("Health Checkup"));
    assert_eq!(codes(&one::<Patient>(&c).meta), ["LABEL", "DEMO", "PRS"]);
}

#[test]
fn pl_makes_a_location_hierarchy() {
    let c = sample("ADT-A01-01.hl7");
    let e = one::<Encounter>(&c);
    // PV1-3 `HUH AE OMU&9.8&ISO^OMU B^Bed 03^HOMERTON UNIVER^^C^Homerton UH^Floor5`: the encounter names
    // the bed, part of the room, of the point of care, of the floor, the building, the facility.
    let mut loc: &Location = resolve(&c, &e.location[0].location);
    let mut chain = vec![];
    loop {
        let kind = loc.physical_type.as_ref().unwrap().coding[0]
            .code
            .clone()
            .unwrap();
        chain.push((loc.name.clone().unwrap(), kind));
        match &loc.part_of {
            Some(parent) => loc = resolve(&c, parent),
            None => break,
        }
    }
    let chain: Vec<(&str, &str)> = chain
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        chain,
        [
            ("Bed 03", "bd"),
            ("OMU B", "ro"),
            ("HUH AE OMU", "wa"),
            ("Floor5", "lvl"),
            ("Homerton UH", "bu"),
            ("HOMERTON UNIVER", "si"),
        ]
    );
    // The point of care's universal id is its identifier.
    let poc = all::<Location>(&c)
        .into_iter()
        .find(|l| l.name.as_deref() == Some("HUH AE OMU"))
        .unwrap();
    assert_eq!(poc.identifier[0].value.as_deref(), Some("urn:oid:9.8"));
    assert_eq!(e.location[0].status.as_deref(), Some("planned"));
}

#[test]
fn in1_maps_coverage_and_payor() {
    let c = sample("ADT-A01-01.hl7");
    let cov = one::<Coverage>(&c);
    assert_eq!(cov.status.as_deref(), Some("active"));
    assert_eq!(cov.subscriber_id.as_deref(), Some("HMO-12345"));
    assert_eq!(cov.identifier[0].value.as_deref(), Some("PN-145"));
    let period = cov.period.as_ref().unwrap();
    assert_eq!(
        (period.start.as_deref(), period.end.as_deref()),
        (Some("1989-10-01"), Some("2050-10-01"))
    );
    let classes: Vec<(&str, &str)> = cov
        .class
        .iter()
        .map(|k| {
            (
                k.r#type.coding[0].code.as_deref().unwrap(),
                k.value.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(classes, [("plan", "BAV"), ("group", "PUBSUMB")]);
    assert_eq!(
        cov.relationship.as_ref().unwrap().coding[0].code.as_deref(),
        Some("spouse")
    );
    let payor: &Organization = resolve(&c, &cov.payor[0]);
    assert_eq!(
        payor.name.as_deref(),
        Some("Blue Cross Blue Shield of Texas")
    );
    assert_eq!(payor.identifier[0].value.as_deref(), Some("IC-1.31"));
    assert_eq!(
        payor.identifier[0].system.as_deref(),
        Some("urn:oid:2.16.840.1.113883.1.1")
    );
    assert_eq!(payor.address[0].city.as_deref(), Some("VERONA"));
    let subscriber: &fhir::RelatedPerson = resolve(&c, cov.subscriber.as_ref().unwrap());
    assert_eq!(subscriber.name[0].family.as_deref(), Some("Doe"));
    assert_eq!(subscriber.gender.as_deref(), Some("female"));
    // GT1-11 `SEL`: the patient is the account's guarantor.
    let account = one::<Account>(&c);
    let patient = one::<Patient>(&c);
    let guarantor: &Patient = resolve(&c, &account.guarantor[0].party);
    assert_eq!(guarantor.id, patient.id);
}

#[test]
fn a01_and_a03_of_one_visit_name_one_encounter() {
    let admit = sample("ADT-A01-01.hl7");
    let discharge = sample("ADT-A03-01.hl7");
    let (a, d) = (one::<Encounter>(&admit), one::<Encounter>(&discharge));
    assert_eq!(a.id, d.id);
    assert_eq!(a.status.as_deref(), Some("in-progress"));
    assert_eq!(d.status.as_deref(), Some("finished"));
    assert_eq!(one::<Patient>(&admit).id, one::<Patient>(&discharge).id);

    // Small built messages: the same visit number and patient give the same Encounter, conditional on
    // the visit number; a different visit a different one; a cancel admit (A11) cancels it.
    let msg = |event: &str, visit: &str, end: &str| {
        let msh =
            format!("MSH|^~\\&|APP|FAC|||20240101120000+0000||ADT^{event}|{event}{visit}|P|2.5");
        let pv1 = format!(
            "PV1|1|I|W1^101^A^HOSP||||||||||||||||{visit}^^^HOSP&1.2.3&ISO^VN|||||||||||||||||||||||||20240101100000+0000|{end}"
        );
        built(&[
            &msh,
            "PID|1||MRN1^^^HOSP&1.2.3&ISO^MR||Doe^Jane||19800101|F",
            &pv1,
        ])
    };
    let a01 = msg("A01", "V1", "");
    let a03 = msg("A03", "V1", "20240103100000+0000");
    let other = msg("A01", "V2", "");
    let a11 = msg("A11", "V1", "");
    let id = |c: &v2fhir::Conversion| one::<Encounter>(c).id.clone();
    assert_eq!(id(&a01), id(&a03));
    assert_eq!(id(&a01), id(&a11));
    assert_ne!(id(&a01), id(&other));
    assert_eq!(one::<Encounter>(&a03).status.as_deref(), Some("finished"));
    assert_eq!(one::<Encounter>(&a11).status.as_deref(), Some("cancelled"));
    assert_eq!(
        one::<Encounter>(&a03)
            .period
            .as_ref()
            .unwrap()
            .end
            .as_deref(),
        Some("2024-01-03T10:00:00+00:00")
    );
    let request = a01
        .bundle
        .entry
        .iter()
        .find(|e| {
            e.resource
                .as_ref()
                .is_some_and(|r| r.resource_type() == "Encounter")
        })
        .and_then(|e| e.request.as_ref())
        .unwrap();
    assert_eq!(
        request.url.as_deref(),
        Some("Encounter?identifier=urn:oid:1.2.3|V1")
    );
}

#[test]
fn a08_for_the_same_mrn_names_the_same_patient() {
    let a01 = sample("ADT-A01-01.hl7");
    let a08 = sample("ADT-A08-01.hl7");
    assert_eq!(one::<Patient>(&a01).id, one::<Patient>(&a08).id);

    // Built: the id follows the MR identifier whatever else changes (name, other identifiers, order).
    let pid = |pid3: &str, name: &str| {
        built(&[
            "MSH|^~\\&|APP|FAC|||20240101120000||ADT^A08|1|P|2.5",
            &format!("PID|1||{pid3}||{name}"),
        ])
    };
    let first = pid("MRN1^^^HOSP^MR", "Doe^Jane");
    let renamed = pid("X9^^^OTHER^PI~MRN1^^^HOSP^MR", "Smith^Jane");
    let another = pid("MRN2^^^HOSP^MR", "Doe^Jane");
    let id = |c: &v2fhir::Conversion| one::<Patient>(c).id.clone();
    assert_eq!(id(&first), id(&renamed));
    assert_ne!(id(&first), id(&another));
    let request = first.bundle.entry.iter().find_map(|e| {
        (e.resource.as_ref()?.resource_type() == "Patient").then_some(e.request.as_ref()?)
    });
    assert_eq!(
        request.unwrap().url.as_deref(),
        Some("Patient?identifier=HOSP|MRN1")
    );
}

#[test]
fn a40_links_the_merged_patients() {
    let c = sample("ADT-A40-01.hl7");
    let patients = all::<Patient>(&c);
    assert_eq!(patients.len(), 2);
    let (survivor, merged) = (patients[0], patients[1]);
    assert_eq!(survivor.identifier[0].value.as_deref(), Some("12345"));
    assert_eq!(merged.identifier[0].value.as_deref(), Some("56789"));
    assert_eq!(merged.active, Some(false));
    assert_eq!(survivor.link[0].r#type.as_deref(), Some("replaces"));
    assert_eq!(merged.link[0].r#type.as_deref(), Some("replaced-by"));
    let replaced: &Patient = resolve(&c, &survivor.link[0].other);
    assert_eq!(replaced.id, merged.id);
    let by: &Patient = resolve(&c, &merged.link[0].other);
    assert_eq!(by.id, survivor.id);

    // The merged patient's id is the one an earlier message about MRN 56789 gave it.
    let earlier = built(&[
        "MSH|^~\\&|Ntierprise|Ntierprise Clinic|||20190101||ADT^A04|1|P|2.8",
        "PID|1||56789^^^BCBS^MR||Test^Old",
    ]);
    assert_eq!(one::<Patient>(&earlier).id, merged.id);

    // Two merges in one message (ADT-A40-02): each MRG links to the PID before it.
    let c = sample("ADT-A40-02.hl7");
    let patients = all::<Patient>(&c);
    assert_eq!(patients.len(), 4);
    assert!(patients.iter().all(|p| p.link.len() == 1));
}

#[test]
fn related_people_and_roles() {
    let c = sample("ADT-A01-01.hl7");
    let patient = one::<Patient>(&c);
    let people = all::<fhir::RelatedPerson>(&c);
    // PID-21 mother's identifier -> the mother, relationship MTH.
    let mother = people
        .iter()
        .find(|p| {
            p.relationship.iter().any(|r| {
                r.code_in("http://terminology.hl7.org/CodeSystem/v3-RoleCode") == Some("MTH")
            })
        })
        .expect("mother");
    assert_eq!(mother.identifier[0].value.as_deref(), Some("1212121"));
    // NK1 -> a RelatedPerson too: NK1-12 and NK1-33 identifiers, NK1-16 birth date, NK1-37 SSN.
    let kin = people
        .iter()
        .find(|p| p.name.first().and_then(|n| n.family.as_deref()) == Some("Evan"))
        .expect("next of kin");
    let ids: Vec<&str> = kin
        .identifier
        .iter()
        .filter_map(|i| i.value.as_deref())
        .collect();
    assert_eq!(ids, ["12345567", "I-123", "I-222", "Security no-23"]);
    assert_eq!(kin.birth_date.as_deref(), Some("1962-01-10"));
    let patient_ref = resolve::<Patient>(&c, &kin.patient);
    assert_eq!(patient_ref.id, patient.id);
    // IN1-49 and IN2-1/2 identify the subscriber; IN2-34 is their language (eng -> BCP 47 en).
    let subscriber = people
        .iter()
        .find(|p| p.name.first().and_then(|n| n.family.as_deref()) == Some("Doe"))
        .expect("subscriber");
    let ids: Vec<&str> = subscriber
        .identifier
        .iter()
        .filter_map(|i| i.value.as_deref())
        .collect();
    assert_eq!(ids, ["HMO-12345", "1117", "1118", "425-57-9745"]);
    let language = &subscriber.communication[0].language.coding[0];
    assert_eq!(
        (language.system.as_deref(), language.code.as_deref()),
        (Some("urn:ietf:bcp:47"), Some("en"))
    );
    // IN2-6 Medicare number and IN2-61 member number on the Coverage; the Account names the Coverage.
    let cov = one::<Coverage>(&c);
    assert!(
        cov.identifier
            .iter()
            .any(|i| i.system.as_deref() == Some("http://hl7.org/fhir/sid/us-medicare"))
    );
    assert!(
        cov.identifier
            .iter()
            .any(|i| i.value.as_deref() == Some("PNM1234"))
    );
    assert_eq!(one::<Account>(&c).coverage.len(), 1);
    // ROL before PV1 -> PractitionerRole among the general practitioners; ROL after PV1 -> participant.
    let role = p_role(&c, &patient.general_practitioner[2]);
    assert_eq!(role.code[0].coding[0].code.as_deref(), Some("PP"));
    assert!(role.location.len() == 1 && role.organization.is_some());
    let enc = one::<Encounter>(&c);
    assert!(enc.participant.iter().any(|p| {
        p.individual
            .as_ref()
            .and_then(|r| r.reference.as_deref())
            .is_some_and(|r| {
                c.bundle.entry.iter().any(|e| {
                    e.full_url.as_deref() == Some(r)
                        && e.resource
                            .as_ref()
                            .is_some_and(|x| x.resource_type() == "PractitionerRole")
                })
            })
    }));
}

fn p_role<'c>(c: &'c v2fhir::Conversion, r: &fhir::Reference) -> &'c fhir::PractitionerRole {
    resolve(c, r)
}

#[test]
fn prd_is_a_practitioner_in_a_role_of_the_referral() {
    let c = sample("REF-I12-01.hl7");
    let roles = all::<fhir::PractitionerRole>(&c);
    let role = |code: &str| {
        roles
            .iter()
            .find(|r| r.code.iter().any(|c| c.code_in(V2_0443) == Some(code)))
            .unwrap_or_else(|| panic!("a {code} role"))
    };
    let referring = role("RP");
    let p: &Practitioner = resolve(&c, referring.practitioner.as_ref().unwrap());
    assert_eq!(p.name[0].family.as_deref(), Some("POWELL"));
    // PRD-7 PLN `PLN1001^SL^^20240112`: a state licence number valid until PLN.4.
    let id = &p.identifier[0];
    assert_eq!(id.value.as_deref(), Some("PLN1001"));
    assert_eq!(
        id.r#type.as_ref().unwrap().code_in(v2fhir::V2_0203_SYSTEM),
        Some("SL")
    );
    assert_eq!(
        id.period.as_ref().unwrap().end.as_deref(),
        Some("2024-01-12")
    );
    assert_eq!(p.telecom[0].r#use.as_deref(), Some("work"));
    // PRD-8/9 period, PRD-4 location, PRD-10 organization with PRD-11 address and PRD-13 telecom.
    assert_eq!(
        referring.period.as_ref().unwrap().start.as_deref(),
        Some("2020-01-12")
    );
    assert_eq!(referring.location.len(), 1);
    let org: &Organization = resolve(&c, referring.organization.as_ref().unwrap());
    assert_eq!(org.name.as_deref(), Some("GOOD HEALTH HOSPITAL"));
    assert!(!org.address.is_empty() && !org.telecom.is_empty());
    // The referral's requester is the referring provider, a performer the referred-to one.
    let referred_to = role("RT");
    let sr = all::<fhir::ServiceRequest>(&c)
        .into_iter()
        .find(|s| {
            s.category
                .iter()
                .any(|c| c.code_in("http://snomed.info/sct") == Some("3457005"))
        })
        .expect("the referral");
    let target = |r: &fhir::PractitionerRole| {
        c.bundle
            .entry
            .iter()
            .find(|e| e.resource.as_ref().and_then(|x| x.id()) == r.id.as_deref())
            .and_then(|e| e.full_url.clone())
    };
    assert_eq!(
        sr.requester.as_ref().and_then(|r| r.reference.clone()),
        target(referring)
    );
    assert!(
        sr.performer
            .iter()
            .any(|p| p.reference.clone() == target(referred_to))
    );
}

const V2_0443: &str = "http://terminology.hl7.org/CodeSystem/v2-0443";

#[test]
fn pda_is_a_death_certification_and_an_autopsy() {
    let c = sample("ADT-A01-01.hl7");
    // PDA|...|Y|20211102123000+0115|005454^DeathCert^Robin^B|Y|...^...|002324^Autopsy^John^K|N
    let certification = all::<fhir::Procedure>(&c)
        .into_iter()
        .find(|p| {
            p.code
                .as_ref()
                .and_then(|c| c.code_in("http://snomed.info/sct"))
                == Some("308646001")
        })
        .expect("the death certification");
    assert_eq!(certification.status.as_deref(), Some("completed"));
    let certifier: &Practitioner = resolve(&c, &certification.performer[0].actor);
    // 005454 is also DG1-16's diagnosing clinician: one Practitioner per identifier.
    assert_eq!(certifier.identifier[0].value.as_deref(), Some("005454"));
    let autopsy = all::<fhir::Observation>(&c)
        .into_iter()
        .find(|o| o.code.code_in("http://loinc.org") == Some("85699-7"))
        .expect("the autopsy indicator");
    let Some(fhir::ObservationValue::CodeableConcept(done)) = &autopsy.value else {
        panic!("a coded value");
    };
    assert_eq!(done.coding[0].code.as_deref(), Some("Y"));
    let examination = all::<fhir::Procedure>(&c)
        .into_iter()
        .find(|p| {
            p.code
                .as_ref()
                .and_then(|c| c.code_in("http://snomed.info/sct"))
                == Some("29240004")
        })
        .expect("the autopsy examination");
    let pathologist: &Practitioner = resolve(&c, &examination.performer[0].actor);
    assert_eq!(pathologist.name[0].family.as_deref(), Some("Autopsy"));
    assert!(matches!(
        examination.performed,
        Some(fhir::ProcedurePerformed::Period(_))
    ));
}

#[test]
fn acc_is_an_injury_incident_observation() {
    let c = sample("ADT-A01-01.hl7");
    // ACC|20140317||Route 50 intersection||Y|N|10535^Goldbergn&van^Ludwig^...|vehicle acident||...|5348
    let incident = all::<fhir::Observation>(&c)
        .into_iter()
        .find(|o| o.code.code_in("http://loinc.org") == Some("11374-6"))
        .expect("the accident");
    assert_eq!(incident.identifier[0].value.as_deref(), Some("5348"));
    assert_eq!(
        incident.value,
        Some(fhir::ObservationValue::String("vehicle acident".into()))
    );
    assert_eq!(
        incident.effective,
        Some(fhir::ObservationEffective::DateTime("2014-03-17".into()))
    );
    let entered_by: &Practitioner = resolve(&c, &incident.performer[0]);
    assert_eq!(entered_by.name[0].family.as_deref(), Some("Goldbergn"));
}

#[test]
fn in2_member_number_and_sel_numbers_on_the_patient() {
    let msg = [
        "MSH|^~\\&|REG|HOSP|EHR|CLINIC|20240501101530+0200||ADT^A04^ADT_A01|C1|P|2.5.1",
        "PID|1||MRN1^^^HOSP^MR||DOE^JANE||19800101|F",
        "PD1||||||||||||||||A^Active^HL70441",
        "IN1|1|PLAN1|PAYER1^^^PAY&1.2.3&ISO|Payer||||||||||||DOE^JANE|SEL^Self",
        "IN2||||||MED-1||MCD-2||MIL-3|||||||||||||||||||||||||||||||||||||||||||||||||||MEM-9^^^PAY&1.2.3&ISO^MB",
    ];
    let c = built(&msg);
    let p = one::<Patient>(&c);
    let values: Vec<&str> = p
        .identifier
        .iter()
        .filter_map(|i| i.value.as_deref())
        .collect();
    assert_eq!(values, ["MRN1", "MED-1", "MCD-2", "MIL-3", "MEM-9"]);
    // PD1-16 `A`: an active registry record.
    assert_eq!(p.active, Some(true));
    // The coverage keeps its numbers.
    let cov = one::<Coverage>(&c);
    assert!(
        cov.identifier
            .iter()
            .any(|i| i.value.as_deref() == Some("MEM-9"))
    );
}

#[test]
fn nk1_relationship_alternate_from_table_0063_is_mapped() {
    let msg = [
        "MSH|^~\\&|REG|HOSP|EHR|CLINIC|20240501101530+0200||ADT^A04^ADT_A01|C1|P|2.5.1",
        "PID|1||MRN1^^^HOSP^MR||DOE^JANE||19800101|F",
        "NK1|1|DOE^JOHN|X1^Local^L^CHD",
    ];
    let c = built(&msg);
    let rp = all::<fhir::RelatedPerson>(&c);
    let codings: Vec<(Option<&str>, Option<&str>)> = rp
        .iter()
        .flat_map(|r| &r.relationship)
        .flat_map(|r| &r.coding)
        .map(|c| (c.system.as_deref(), c.code.as_deref()))
        .collect();
    assert!(codings.contains(&(Some("L"), Some("X1"))), "{codings:?}");
    assert!(
        codings.contains(&(
            Some("http://terminology.hl7.org/CodeSystem/v3-RoleCode"),
            Some("CHILD")
        )),
        "{codings:?}"
    );
}

#[test]
fn rxa_28_address_on_the_administered_at_locations() {
    let msg = [
        "MSH|^~\\&|IZ|CLINIC|IIS|STATE|20240501101530+0200||VXU^V04^VXU_V04|C1|P|2.5.1",
        "PID|1||MRN1^^^HOSP^MR||DOE^JANE||20200101|F",
        "ORC|RE||F-1^IZ",
        "RXA|0|1|20240501||08^HepB^CVX|0.5|mL^mL^UCUM||00^New^NIP001|||||||||||CP|A||||||^^^Clinic One^^^Main Building|1 Main St^^Springfield^IL^62701^USA^M^^^^^20200101&20301231",
    ];
    let c = built(&msg);
    let locations = all::<Location>(&c);
    assert_eq!(locations.len(), 2, "facility and building");
    for l in locations {
        let a = l.address.as_ref().expect("RXA-28 on every level");
        assert_eq!(a.line, ["1 Main St"]);
        assert_eq!(a.city.as_deref(), Some("Springfield"));
        let period = a.period.as_ref().expect("XAD.12 range");
        assert_eq!(period.start.as_deref(), Some("2020-01-01"));
        assert_eq!(period.end.as_deref(), Some("2030-12-31"));
    }
}
