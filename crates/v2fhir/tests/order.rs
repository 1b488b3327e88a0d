//! Orders, results and clinical segments (ORC, OBR, TQ1, OBX, NTE, SPM, SAC, AL1, IAM, DG1, PR1, PRT, ACC, PDA, BLG) on
//! FHIR-Converter's sample messages: the FHIR values asserted here are the IG's mapping of the v2 values
//! in the sample (which agree with FHIR-Converter's expected bundles unless a comment says otherwise).

use fhir::{
    AllergyIntolerance, AllergyIntoleranceOnset, Bundle, Condition, ConditionOnset,
    DiagnosticReport, DiagnosticReportEffective, Observation, ObservationValue, Procedure,
    Reference, ServiceRequest, Specimen, SpecimenCollectionCollected, TypedResource,
};

const SAMPLES: &str = "/work/shared/corpus/fhir-converter/SampleData/Hl7v2";

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{SAMPLES}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn convert_bytes(bytes: &[u8]) -> v2fhir::Conversion {
    let msg = hl7v2::parse(bytes).unwrap();
    v2fhir::convert(&msg, &Default::default()).unwrap()
}

fn convert(name: &str) -> v2fhir::Conversion {
    convert_bytes(&read(name))
}

fn all<T: TypedResource>(b: &Bundle) -> Vec<&T> {
    b.resources_of::<T>().collect()
}

fn uuid_ref<T: TypedResource>(r: &T) -> Reference {
    Reference {
        reference: Some(format!("urn:uuid:{}", r.id().unwrap())),
        ..Default::default()
    }
}

fn observation_code(o: &Observation) -> &str {
    o.code.coding[0].code.as_deref().unwrap()
}

/// Prints one sample's bundle:
/// `SAMPLE=ORU-R01-01.hl7 cargo test -p v2fhir --test order dump -- --ignored --nocapture`.

#[test]
fn numeric_obx_is_a_quantity_with_its_ucum_unit() {
    let c = convert("LRI_2.0-NG_CBC_Typ_Message.hl7");
    let obs = all::<Observation>(&c.bundle);
    // OBX|1|NM|26453-1^Erythrocytes [#/volume] in Blood^LN...||4.41|
    //   10*6/uL^million per microliter^UCUM|4.3 to 6.2|N|||F
    let rbc = obs
        .iter()
        .find(|o| observation_code(o) == "26453-1")
        .expect("OBX-1");
    assert_eq!(
        rbc.code.coding[0].system.as_deref(),
        Some("http://loinc.org")
    );
    let Some(ObservationValue::Quantity(q)) = &rbc.value else {
        panic!("{:?}", rbc.value)
    };
    assert_eq!(q.value.as_ref().unwrap().as_str(), "4.41");
    assert_eq!(q.code.as_deref(), Some("10*6/uL"));
    assert_eq!(q.unit.as_deref(), Some("million per microliter"));
    assert_eq!(q.system.as_deref(), Some("http://unitsofmeasure.org"));
    assert_eq!(rbc.status.as_deref(), Some("final"));
    assert_eq!(rbc.reference_range[0].text.as_deref(), Some("4.3 to 6.2"));
    assert_eq!(
        rbc.interpretation[0].coding[0].system.as_deref(),
        Some("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation")
    );
    assert_eq!(rbc.interpretation[0].coding[0].code.as_deref(), Some("N"));
    let Some(fhir::ObservationEffective::DateTime(t)) = &rbc.effective else {
        panic!()
    };
    assert_eq!(t, "2011-01-03T14:34:28-08:00");
    // OBX-25 (medical director) with OBX-23 (the performing organization) -> one PractitionerRole.
    assert!(!rbc.performer.is_empty());
}

#[test]
fn coded_obx_is_a_codeable_concept() {
    let c = convert("ORU-R01-01.hl7");
    // OBX|1|CWE|625-4^...^XYZ^^^^2.33^^result1|1|27268008^Salmonella^SCT^^^^^^Salmonella species|...|P
    let o = all::<Observation>(&c.bundle)
        .into_iter()
        .find(|o| observation_code(o) == "625-4")
        .expect("coded OBX");
    let Some(ObservationValue::CodeableConcept(v)) = &o.value else {
        panic!("{:?}", o.value)
    };
    assert_eq!(v.coding[0].code.as_deref(), Some("27268008"));
    assert_eq!(
        v.coding[0].system.as_deref(),
        Some("http://snomed.info/sct")
    );
    assert_eq!(v.text.as_deref(), Some("Salmonella species"));
    assert_eq!(o.status.as_deref(), Some("preliminary"));
    assert_eq!(
        o.method.as_ref().and_then(|m| m.text.as_deref()),
        Some("Bacterial Culture")
    );
    assert_eq!(o.reference_range[0].text.as_deref(), Some("70-80"));
    // The two NTEs after the OBX are its notes, in order, with author and time.
    let notes: Vec<_> = o.note.iter().map(|n| n.text.as_deref().unwrap()).collect();
    assert_eq!(notes, ["Submission of serum", "No Antibodies Detected"]);
    assert_eq!(o.note[0].time.as_deref(), Some("2020-10-10T16:00:00+02:15"));
}

#[test]
fn repeated_numeric_obx_has_one_component_per_value() {
    let c = convert("ORU-R01-01.hl7");
    // OBX|2|NM|8867-4^Bacteria identified^LN^^^^2.33^^result1|1|27~25||||||I
    let o = all::<Observation>(&c.bundle)
        .into_iter()
        .find(|o| observation_code(o) == "8867-4" && !o.component.is_empty())
        .expect("OBX with two values");
    let values: Vec<String> = o
        .component
        .iter()
        .map(|c| match &c.value {
            Some(fhir::ObservationComponentValue::Quantity(q)) => {
                q.value.as_ref().unwrap().as_str().to_owned()
            }
            v => panic!("{v:?}"),
        })
        .collect();
    assert_eq!(values, ["27", "25"]);
    assert!(o.value.is_none());
    // OBX-11 `I` has no observation-status in the IG map: `unknown` (FHIR-Converter agrees).
    assert_eq!(o.status.as_deref(), Some("unknown"));
    // It follows the SPM: it is about that specimen.
    let spm = all::<Specimen>(&c.bundle)
        .into_iter()
        .find(|s| s.accession_identifier.is_some())
        .unwrap();
    assert_eq!(o.specimen, Some(uuid_ref(spm)));
}

#[test]
fn report_lists_its_results_in_order() {
    let c = convert("LAB-ORU-1.hl7");
    let reports = all::<DiagnosticReport>(&c.bundle);
    assert_eq!(reports.len(), 2);
    let first = reports[0];
    assert_eq!(first.code.coding[0].code.as_deref(), Some("24317-0"));
    assert_eq!(first.status.as_deref(), Some("final"));
    // OBR-23 (not OBR-22) carries the sample's time: no issued.
    assert_eq!(first.issued, None);
    let obs = all::<Observation>(&c.bundle);
    let by_ref = |r: &Reference| {
        obs.iter()
            .find(|o| uuid_ref(**o) == *r)
            .map(|o| observation_code(o))
            .unwrap()
    };
    let codes: Vec<&str> = first.result.iter().map(by_ref).collect();
    assert_eq!(
        codes,
        ["11156-7", "11273-0", "20509-6", "20570-8", "11125-2"]
    );
    let codes: Vec<&str> = reports[1].result.iter().map(by_ref).collect();
    assert_eq!(
        codes,
        ["23761-0", "26450-7", "26478-8", "26485-3", "30180-4"]
    );
    // Each report is based on its own order (OBR-2/3: 88502218 / 82503246).
    let orders = all::<ServiceRequest>(&c.bundle);
    assert_eq!(orders.len(), 2);
    assert_eq!(first.based_on, [uuid_ref(orders[0])]);
    let ids: Vec<_> = orders[0]
        .identifier
        .iter()
        .map(|i| {
            (
                i.value.as_deref().unwrap(),
                i.r#type.as_ref().unwrap().coding[0]
                    .code
                    .as_deref()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(ids, [("88502218", "PLAC"), ("82503246", "FILL")]);
    assert_eq!(first.identifier, orders[0].identifier);
    // The OBR's collector (OBR-10) gives a specimen for the order; the SPM after the results is
    // another: both are the report's and the order's.
    let specimens = all::<Specimen>(&c.bundle);
    let from_obr = specimens
        .iter()
        .find(|s| s.identifier.first().and_then(|i| i.value.as_deref()) == Some("88502218"))
        .unwrap();
    assert!(from_obr.collection.as_ref().unwrap().collector.is_some());
    let from_spm = specimens
        .iter()
        .find(|s| s.identifier.first().and_then(|i| i.value.as_deref()) == Some("SpecimenID"))
        .unwrap();
    assert_eq!(first.specimen, [uuid_ref(*from_obr), uuid_ref(*from_spm)]);
    assert_eq!(orders[0].specimen, first.specimen);
}

#[test]
fn ids_are_deterministic_and_a_correction_rewrites_the_same_observation() {
    let bytes = read("LAB-ORU-1.hl7");
    let a = convert_bytes(&bytes);
    let b = convert_bytes(&bytes);
    assert_eq!(fhir::to_string(&a.bundle), fhir::to_string(&b.bundle));
    // The same result sent again as a correction, in a new message (new control id, OBX-11 `C`).
    let text = String::from_utf8(bytes).unwrap();
    let corrected = text.replace("|ORU^R01|182|", "|ORU^R01|183|").replace(
        "OBX|2|NM|11273-0^ERYTHROCYTES^LN||4.06|tera.l-1||N|||P|",
        "OBX|2|NM|11273-0^ERYTHROCYTES^LN||4.07|tera.l-1||N|||C|",
    );
    assert_ne!(corrected, text);
    let c = convert_bytes(corrected.as_bytes());
    let find = |b: &Bundle| {
        b.resources_of::<Observation>()
            .find(|o| observation_code(o) == "11273-0")
            .cloned()
            .unwrap()
    };
    let (before, after) = (find(&a.bundle), find(&c.bundle));
    assert_eq!(before.id, after.id);
    assert_eq!(after.status.as_deref(), Some("corrected"));
    let ids = |b: &Bundle| {
        b.resources()
            .filter(|r| {
                matches!(
                    r.resource_type(),
                    "ServiceRequest" | "DiagnosticReport" | "Observation" | "Specimen"
                )
            })
            .map(|r| r.id().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&a.bundle), ids(&c.bundle));
}

#[test]
fn order_and_report_from_orc_and_obr() {
    let c = convert("ORU-R01-01.hl7");
    let orders = all::<ServiceRequest>(&c.bundle);
    // ORC|NW||986^IA PHIMS Stage^2.16.840.1.114222.4.3.3.5.1.2^ISO|PGN-04|CM|...; OBR|1|845439^GHH OE|986^...
    let sr = orders
        .iter()
        .find(|s| s.code.is_some())
        .expect("the ORC/OBR order");
    assert_eq!(sr.status.as_deref(), Some("completed"));
    assert_eq!(sr.intent.as_deref(), Some("filler-order"));
    assert_eq!(sr.authored_on.as_deref(), Some("2020-09-10T17:00:00+02:15"));
    let placer = &sr.identifier[0];
    assert_eq!(placer.value.as_deref(), Some("845439"));
    // The namespace as given, percent-encoded: a `uri` cannot carry a space.
    assert_eq!(placer.system.as_deref(), Some("GHH%20OE"));
    let filler = &sr.identifier[1];
    assert_eq!(filler.value.as_deref(), Some("986"));
    assert_eq!(
        filler.system.as_deref(),
        Some("urn:oid:2.16.840.1.114222.4.3.3.5.1.2")
    );
    assert_eq!(
        sr.requisition.as_ref().and_then(|r| r.value.as_deref()),
        Some("PGN-04")
    );
    assert_eq!(sr.reason_code[0].coding[0].code.as_deref(), Some("444"));
    let details: Vec<_> = sr
        .order_detail
        .iter()
        .map(|d| d.coding[0].code.as_deref().unwrap())
        .collect();
    assert_eq!(details, ["PSS-46", "FSS-47"]);
    // TQ1-9 `A` -> asap; TQ1-7/8 -> the timing's bounds; TQ1-11 -> a note.
    assert_eq!(sr.priority.as_deref(), Some("asap"));
    let Some(fhir::ServiceRequestOccurrence::Timing(t)) = &sr.occurrence else {
        panic!("{:?}", sr.occurrence)
    };
    let Some(fhir::TimingRepeatBounds::Period(p)) = &t.repeat.as_ref().unwrap().bounds else {
        panic!()
    };
    assert_eq!(p.start.as_deref(), Some("2021-10-09T16:00:00-08:00"));
    // NTEs after the OBR are the order's notes (FHIR-Converter agrees), `\T\` decoded.
    assert!(sr.note.iter().any(|n| {
        n.text
            .as_deref()
            .is_some_and(|t| t.contains("E.coli O157:H7 & other STECs"))
    }));
    let report = all::<DiagnosticReport>(&c.bundle)
        .into_iter()
        .find(|d| d.based_on == [uuid_ref(*sr)])
        .expect("the OBR's report");
    assert_eq!(report.status.as_deref(), Some("final"));
    assert_eq!(
        report.effective,
        Some(DiagnosticReportEffective::DateTime(
            "2002-02-15T07:30:00+02:15".into()
        ))
    );
    assert_eq!(report.issued.as_deref(), Some("2002-03-15T07:30:00+02:15"));
    assert_eq!(
        report.category[0].coding[0].system.as_deref(),
        Some("http://terminology.hl7.org/CodeSystem/v2-0074")
    );
    assert_eq!(report.performer.len(), 2);
    assert_eq!(report.results_interpreter.len(), 1);
}

#[test]
fn specimen_from_spm() {
    let c = convert("ORU-R01-01.hl7");
    let s = all::<Specimen>(&c.bundle)
        .into_iter()
        .find(|s| s.accession_identifier.is_some())
        .expect("SPM specimen");
    let t = s.r#type.as_ref().unwrap();
    assert_eq!(t.coding[0].code.as_deref(), Some("ASERU"));
    assert_eq!(t.text.as_deref(), Some("Blood"));
    assert_eq!(s.status.as_deref(), Some("available"));
    assert_eq!(s.received_time.as_deref(), Some("2012-03-01"));
    let collection = s.collection.as_ref().unwrap();
    let Some(SpecimenCollectionCollected::Period(p)) = &collection.collected else {
        panic!()
    };
    assert_eq!(p.start.as_deref(), Some("2011-01-03T14:34:28-08:00"));
    assert_eq!(p.end.as_deref(), Some("2011-11-03T14:34:28-08:00"));
    assert_eq!(s.condition.len(), 2);
    assert_eq!(
        s.note[0].text.as_deref(),
        Some("This is a specimen resource")
    );
    assert_eq!(
        s.accession_identifier.as_ref().unwrap().value.as_deref(),
        Some("AI-30")
    );
}

#[test]
fn adt_allergy_diagnosis_procedure_and_observation() {
    let c = convert("ADT-A01-01.hl7");
    // AL1|1|EA|P^PENICILLIN^ICDO|MI|CODE16|20210824
    let allergies = all::<AllergyIntolerance>(&c.bundle);
    assert_eq!(allergies.len(), 1);
    let a = allergies[0];
    assert_eq!(a.category, ["environment"]);
    assert_eq!(a.r#type.as_deref(), Some("allergy"));
    assert_eq!(a.criticality.as_deref(), Some("low"));
    let code = a.code.as_ref().unwrap();
    assert_eq!(code.coding[0].code.as_deref(), Some("P"));
    assert_eq!(code.coding[0].display.as_deref(), Some("PENICILLIN"));
    assert_eq!(
        a.reaction[0].manifestation[0].text.as_deref(),
        Some("CODE16")
    );
    assert_eq!(
        a.onset,
        Some(AllergyIntoleranceOnset::DateTime("2021-08-24".into()))
    );
    assert_eq!(
        a.clinical_status.as_ref().unwrap().coding[0]
            .code
            .as_deref(),
        Some("active")
    );

    // DG1|1|I9|422504002^Ischemic stroke(disorder)^SCT|Stroke|20040125114025+0420|...|
    //   20200501133015+0215|DI20^...|A|^^1.3.6.1.4.1.44750.1.2.2^CLIP
    let conditions = all::<Condition>(&c.bundle);
    let stroke = conditions
        .iter()
        .find(|c| c.code.is_some())
        .expect("DG1 condition");
    let code = stroke.code.as_ref().unwrap();
    assert_eq!(code.coding[0].code.as_deref(), Some("422504002"));
    assert_eq!(
        code.coding[0].system.as_deref(),
        Some("http://snomed.info/sct")
    );
    assert_eq!(code.text.as_deref(), Some("Stroke"));
    assert_eq!(
        stroke.onset,
        Some(ConditionOnset::DateTime("2004-01-25T11:40:25+04:20".into()))
    );
    assert_eq!(
        stroke.recorded_date.as_deref(),
        Some("2020-05-01T13:30:15+02:15")
    );
    assert_eq!(stroke.identifier[0].value.as_deref(), Some("DI20"));
    assert!(stroke.asserter.is_some());

    // PR1|1||76164006^Biopsy of colon (procedure)^SCT|Biopsy of colon, ...|200501251140+0100|D^...|2|
    //   1210^ANES^MARK^B|||121188^Patrick^...|12345689^Everyman2^...|||799008^Sigmoid colon ulcer^SCT||||
    //   PR1006||||OT^201||PR1001
    let procedures = all::<Procedure>(&c.bundle);
    let biopsy = procedures
        .iter()
        .find(|p| p.code.is_some())
        .expect("PR1 procedure");
    assert_eq!(
        biopsy.code.as_ref().unwrap().text.as_deref(),
        Some("Biopsy of colon, which was part of colonoscopy")
    );
    assert_eq!(biopsy.identifier[0].value.as_deref(), Some("PR1006"));
    let functions: Vec<Option<&str>> = biopsy
        .performer
        .iter()
        .map(|p| {
            p.function
                .as_ref()
                .and_then(|f| f.coding[0].code.as_deref())
        })
        .collect();
    assert_eq!(functions, [Some("88189002"), Some("304292004"), None]);
    assert_eq!(
        biopsy.reason_code[0].coding[0].code.as_deref(),
        Some("799008")
    );
    // PR1-25 names the parent procedure by its identifier.
    let parent = procedures
        .iter()
        .find(|p| p.identifier[0].value.as_deref() == Some("PR1001"))
        .unwrap();
    assert_eq!(biopsy.part_of, [uuid_ref(*parent)]);

    // OBX|27|NM|8867-4^heartrate^LN||60~120|beats/min^^ISO|70-80|... in an ADT: an Observation on the
    // patient with one component per value, in no report.
    let hr = all::<Observation>(&c.bundle)
        .into_iter()
        .find(|o| observation_code(o) == "8867-4")
        .expect("ADT OBX");
    assert_eq!(hr.component.len(), 2);
    assert!(hr.based_on.is_empty());
}

#[test]
fn order_message_without_report() {
    let c = convert("OML-O21-01.hl7");
    // No report from the OBR in an order message; the only reports are the OBX's embedded or referenced
    // documents (RP), as presentedForm.
    let reports = all::<DiagnosticReport>(&c.bundle);
    assert!(reports.iter().all(|d| !d.presented_form.is_empty()));
    let slide = reports
        .iter()
        .find(|d| d.code.coding[0].code.as_deref() == Some("3DHISTH_SLD"))
        .unwrap();
    assert_eq!(
        slide.presented_form[0].content_type.as_deref(),
        Some("image/mrxs")
    );
    let orders = all::<ServiceRequest>(&c.bundle);
    assert!(!orders.is_empty());
    assert!(orders.iter().all(|o| o.intent.as_deref() == Some("order")));
    // The OBX under the order are its supporting information; the DG1 its reason.
    let sr = orders[0];
    assert!(!sr.supporting_info.is_empty());
    assert!(!sr.reason_reference.is_empty());
}

#[test]
fn tq1_timing_survives_the_obr_after_it() {
    // TQ1|1||Once^^^^1^d&Day&ANS+^^AC^1^hr&Hour&ANS+|||1^d&Day&ANS+|||R|Pain|Fasting Sugar||
    //   15^min&minute&ANS+|1
    // then OBR with OBR-6: the TQ1 timing is the occurrence.
    let c = convert("OML-O21-01.hl7");
    let sr = all::<ServiceRequest>(&c.bundle)[0];
    let Some(fhir::ServiceRequestOccurrence::Timing(t)) = &sr.occurrence else {
        panic!("{:?}", sr.occurrence)
    };
    let r = t.repeat.as_ref().unwrap();
    assert_eq!(r.period.as_ref().unwrap().as_str(), "1");
    assert_eq!(r.period_unit.as_deref(), Some("d"));
    assert_eq!(r.when, ["AC"]);
    assert_eq!(r.offset, Some(60));
    assert_eq!(r.duration.as_ref().unwrap().as_str(), "15");
    assert_eq!(r.duration_unit.as_deref(), Some("min"));
    assert_eq!(r.count, Some(1));
    assert_eq!(sr.priority.as_deref(), Some("routine"));
    let Some(fhir::ServiceRequestAsNeeded::CodeableConcept(a)) = &sr.as_needed else {
        panic!()
    };
    assert_eq!(a.text.as_deref(), Some("Pain"));
    // ORC-29 `O` -> v3 RoleCode OF (IG OrderType).
    assert_eq!(sr.location_code[0].coding[0].code.as_deref(), Some("OF"));
}

#[test]
fn oul_specimen_comes_before_its_orders() {
    // OUL_R22: SPM ... OBR ORC OBX ... SPM ... OBR ORC OBX: each order is on the SPM before it.
    let c = convert("OUL-R22-02.hl7");
    let specimens = all::<Specimen>(&c.bundle);
    // The ORC-8 parent orders (status unknown, no code) are not orders of these specimens.
    let orders: Vec<&ServiceRequest> = all::<ServiceRequest>(&c.bundle)
        .into_iter()
        .filter(|o| o.code.is_some())
        .collect();
    assert_eq!(orders.len(), 2);
    for (order, accession) in orders
        .iter()
        .zip(["2017-PAT-123456-1", "2018-PAT-123456-1"])
    {
        let spm = specimens
            .iter()
            .find(|s| {
                s.identifier
                    .iter()
                    .any(|i| i.value.as_deref() == Some(accession))
            })
            .unwrap_or_else(|| panic!("{accession}"));
        assert_eq!(order.specimen, [uuid_ref(*spm)]);
        assert_eq!(spm.request, [uuid_ref(*order)]);
    }
}

#[test]
fn dg1_after_pv1_is_an_encounter_and_episode_diagnosis() {
    // PV1-54 EOC124 (an EpisodeOfCare); DG1|1|I9|422504002^...|Stroke|...|A|...|1 (DG1-6 A, DG1-15 1).
    let c = convert("ADT-A01-01.hl7");
    let stroke = all::<Condition>(&c.bundle)
        .into_iter()
        .find(|c| c.identifier.first().and_then(|i| i.value.as_deref()) == Some("DI20"))
        .expect("DG1 condition");
    let encounter = all::<fhir::Encounter>(&c.bundle)[0];
    assert_eq!(encounter.diagnosis.len(), 1);
    let d = &encounter.diagnosis[0];
    assert_eq!(d.condition, uuid_ref(stroke));
    assert_eq!(d.rank, Some(1), "DG1-15");
    let role = &d.r#use.as_ref().expect("DG1-6").coding[0];
    assert_eq!(
        role.system.as_deref(),
        Some("http://terminology.hl7.org/CodeSystem/diagnosis-role")
    );
    assert_eq!(
        role.code.as_deref(),
        Some("AD"),
        "DG1-6 A (IG DiagnosisType map)"
    );
    let episodes = all::<fhir::EpisodeOfCare>(&c.bundle);
    assert_eq!(episodes.len(), 1);
    assert_eq!(encounter.episode_of_care, [uuid_ref(episodes[0])]);
    let e = &episodes[0].diagnosis;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].condition, uuid_ref(stroke));
    assert_eq!(e[0].rank, Some(1));
    assert_eq!(e[0].role, d.r#use);
}

#[test]
fn dg1_final_type_stays_a_table_0052_code_and_bad_rank_is_a_warning() {
    let msg = b"MSH|^~\\&|A|B|C|D|20200101||ADT^A01^ADT_A01|1|P|2.5\rPID|1||P1^^^H^MR||DOE^J\rPV1|1|I|||||||||||||||||V1^^^H^VN\rDG1|1||K63.3^Ulcer^I10|||F|||||||||x\r";
    let c = convert_bytes(msg);
    let encounter = all::<fhir::Encounter>(&c.bundle)[0];
    let d = &encounter.diagnosis[0];
    assert_eq!(d.rank, None);
    let coding = &d.r#use.as_ref().unwrap().coding[0];
    assert_eq!(
        coding.system.as_deref(),
        Some("http://terminology.hl7.org/CodeSystem/v2-0052")
    );
    assert_eq!(coding.code.as_deref(), Some("F"));
    assert!(
        c.issues
            .iter()
            .any(|i| i.at.ends_with("-15") && i.severity == v2fhir::Severity::Warning)
    );
}

#[test]
fn obx_after_rxa_is_part_of_the_immunization() {
    // RXA, RXR, then OBX 30963-3 (funding source), 64994-7 (eligibility), 69764-9, 29769-7.
    let c = convert("VXU-V04-01.hl7");
    let immunization = all::<fhir::Immunization>(&c.bundle)[0];
    assert!(immunization.funding_source.is_some());
    assert_eq!(immunization.program_eligibility.len(), 1);
    let observations = all::<Observation>(&c.bundle);
    let codes: Vec<&str> = observations.iter().map(|o| observation_code(o)).collect();
    assert!(
        !codes.contains(&"30963-3"),
        "read into Immunization.fundingSource"
    );
    assert!(!codes.contains(&"64994-7"), "read into programEligibility");
    for code in ["69764-9", "29769-7"] {
        let o = observations
            .iter()
            .find(|o| observation_code(o) == code)
            .unwrap();
        assert_eq!(o.part_of, [uuid_ref(immunization)], "{code}");
    }
    // The OBX before the ORC/RXA belongs to no immunization.
    let hr = observations
        .iter()
        .find(|o| observation_code(o) == "8867-4")
        .unwrap();
    assert!(hr.part_of.is_empty());
}

#[test]
fn immunization_obx_with_another_primary_code_stays_an_observation() {
    // OBX|1|CE|29769-7^Vaccine Funding Source^LN^30963-3|...: the RXA reads the alternate 30963-3 into
    // fundingSource, but the primary code would be lost without the Observation.
    let c = convert("VXU-V04-02.hl7");
    let o = all::<Observation>(&c.bundle)
        .into_iter()
        .find(|o| {
            observation_code(o) == "29769-7"
                && matches!(o.value, Some(ObservationValue::CodeableConcept(_)))
        })
        .expect("kept");
    assert_eq!(o.part_of.len(), 1);
}

#[test]
fn report_issued_without_zone_is_left_out() {
    // OBR-22 without a zone and no profile zone: an instant needs one.
    let msg = b"MSH|^~\\&|A|B|C|D|20200101||ORU^R01^ORU_R01|1|P|2.5\rPID|1||P1^^^H^MR||DOE^J\rOBR|1|P1|F1|1234-5^Test^LN|||20200101|||||||||||||||202001011200|||F\rOBX|1|NM|1234-5^Test^LN||5|mg||||||F\r";
    let c = convert_bytes(msg);
    let report = all::<DiagnosticReport>(&c.bundle)[0];
    assert_eq!(report.issued, None);
    assert!(c.issues.iter().any(|i| i.at.starts_with("OBR")
        && i.at.ends_with("-22")
        && i.severity == v2fhir::Severity::Warning));
}

#[test]
fn acc_is_an_injury_incident_and_pda_the_death_record() {
    // ACC|20140317||Route 50 intersection||Y|N|10535^...|vehicle acident||Y|Route 50&Fairfax^VA^^^20324||5348
    // PDA|I21^Acute myocardial infarction^I10|ICCU^Room1^Bed25^GHH|Y|20211102123000+0115|005454^DeathCert
    //    ^Robin^B|Y|20211102103000+0115^20211102113000+0115|002324^Autopsy^John^K|N
    let c = convert("ADT-A01-01.hl7");
    let observations = all::<Observation>(&c.bundle);
    let injury = observations
        .iter()
        .find(|o| o.code.coding.first().and_then(|c| c.code.as_deref()) == Some("11374-6"))
        .expect("ACC observation");
    assert_eq!(injury.status.as_deref(), Some("final"));
    assert_eq!(
        injury.value,
        Some(ObservationValue::String("vehicle acident".into()))
    );
    assert_eq!(injury.identifier[0].value.as_deref(), Some("5348"));
    let components: Vec<(&str, &str)> = injury
        .component
        .iter()
        .map(|c| {
            let Some(fhir::ObservationComponentValue::CodeableConcept(v)) = &c.value else {
                panic!()
            };
            (
                c.code.text.as_deref().unwrap(),
                v.coding[0].code.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        components,
        [
            ("Accident Job Related Indicator", "Y"),
            ("Accident Death Indicator", "N"),
            ("Police Notified Indicator", "Y"),
        ]
    );
    assert_eq!(
        injury.extension[0].url.as_deref(),
        Some("http://hl7.org/fhir/us/vrdr/StructureDefinition/Observation-Location")
    );
    // PDA-3/6/9 indicators; PDA-1 cause; certification and autopsy procedures.
    let indicator = |name: &str| {
        let o = observations
            .iter()
            .find(|o| o.code.text.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name}"));
        let Some(ObservationValue::CodeableConcept(v)) = &o.value else {
            panic!()
        };
        v.coding[0].code.clone().unwrap()
    };
    assert_eq!(indicator("Death Certified Indicator"), "Y");
    assert_eq!(indicator("Autopsy Indicator"), "Y");
    assert_eq!(indicator("Coroner Indicator"), "N");
    assert!(all::<Condition>(&c.bundle).iter().any(|c| {
        c.code
            .as_ref()
            .is_some_and(|k| k.coding[0].code.as_deref() == Some("I21"))
    }));
    let autopsy = all::<Procedure>(&c.bundle)
        .into_iter()
        .find(|p| p.code.as_ref().and_then(|c| c.text.as_deref()) == Some("Autopsy"))
        .expect("autopsy");
    assert_eq!(autopsy.status.as_deref(), Some("completed"));
    let Some(fhir::ProcedurePerformed::Period(p)) = &autopsy.performed else {
        panic!()
    };
    assert_eq!(p.start.as_deref(), Some("2021-11-02T10:30:00+01:15"));
}

#[test]
fn parent_order_blg_account_and_sac_container() {
    // OML-O21-01: ORC-8 PAI-8.1^FAI-8.2, ORC-31 PS-31 -> the parent ServiceRequest the order is basedOn.
    let c = convert("OML-O21-01.hl7");
    let orders = all::<ServiceRequest>(&c.bundle);
    let parent = orders
        .iter()
        .find(|o| {
            o.identifier
                .iter()
                .any(|i| i.value.as_deref() == Some("PAI-8.1"))
        })
        .expect("parent order");
    assert_eq!(parent.status.as_deref(), Some("unknown"));
    assert!(
        orders
            .iter()
            .any(|o| o.based_on.contains(&uuid_ref(*parent)))
    );
    // SAC|1|EA54678|A59032|C487892|...|10|5|7|ML -> the SPM's container.
    let specimen = all::<Specimen>(&c.bundle)
        .into_iter()
        .find(|s| !s.container.is_empty())
        .expect("specimen with container");
    let container = &specimen.container[0];
    assert_eq!(container.identifier[0].value.as_deref(), Some("A59032"));
    assert_eq!(
        container.capacity.as_ref().and_then(|q| q.unit.as_deref()),
        Some("ML")
    );
    // ORM-O01-03: BLG|...|AI167^...^MR -> an Account the order's FT1 charges.
    let c = convert("ORM-O01-03.hl7");
    let accounts = all::<fhir::Account>(&c.bundle);
    let ai167 = accounts
        .iter()
        .find(|a| a.identifier[0].value.as_deref() == Some("AI167"))
        .expect("BLG account");
    assert_eq!(ai167.status.as_deref(), Some("active"));
}

#[test]
fn iam_17_is_the_verification_status() {
    // IAM-17 C^Confirmed or verified (table 0438).
    let c = convert("ADT-A60-01.hl7");
    let a = all::<AllergyIntolerance>(&c.bundle)[0];
    let code = |c: &Option<fhir::CodeableConcept>| {
        c.as_ref()
            .and_then(|c| c.coding[0].code.clone())
            .unwrap_or_default()
    };
    assert_eq!(code(&a.verification_status), "confirmed");
    assert_eq!(code(&a.clinical_status), "active");
}

#[test]
fn prt_device_after_obx_is_the_observations_device() {
    // OUL-R24-01: OBX|27|...; PRT||AD||AD||PPT||General Medical Center|Street-5^...|PD-10.1^PD-10.2
    // (no person: the device's participation, IG PRT[Device]); later PRTs carry the UDI fields
    // PRT-16..21 (00643169001763^^2.51.1.1^ISO|20140401|20220712|123ABC|21A11F4855|...).
    let c = convert("OUL-R24-01.hl7");
    let devices = all::<fhir::Device>(&c.bundle);
    let udi = devices
        .iter()
        .find(|d| !d.udi_carrier.is_empty())
        .expect("a Device with a UDI");
    assert_eq!(
        udi.udi_carrier[0].device_identifier.as_deref(),
        Some("00643169001763")
    );
    assert_eq!(
        udi.udi_carrier[0].issuer.as_deref(),
        Some("urn:oid:2.51.1.1")
    );
    assert_eq!(udi.manufacture_date.as_deref(), Some("2014-04-01"));
    assert_eq!(udi.expiration_date.as_deref(), Some("2022-07-12"));
    assert_eq!(udi.lot_number.as_deref(), Some("123ABC"));
    assert_eq!(udi.serial_number.as_deref(), Some("21A11F4855"));
    let pd = devices
        .iter()
        .find(|d| {
            d.identifier
                .iter()
                .any(|i| i.value.as_deref() == Some("PD-10.1"))
        })
        .expect("the PRT-10 Device");
    // Its organization (PRT-8) and place (PRT-9) are the Device's owner and location.
    assert!(pd.owner.is_some());
    assert!(pd.location.is_some());
    // After an OBX without OBX-18 the device is the Observation's device.
    let msg = "MSH|^~\\&|LAB|HOSP|EHR|HOSP|202101010000||ORU^R01^ORU_R01|M1|P|2.8\r\
        PID|1||P1^^^HOSP^MR||DOE^JOHN\r\
        OBR|1|PL1^HOSP|FL1^LAB|8867-4^Heart rate^LN\r\
        OBX|1|NM|8867-4^Heart rate^LN||60|/min^^UCUM|||||F\r\
        PRT||AD||EQUIP||||||MON-7^^1.2.3.4^ISO\r";
    let c = convert_bytes(msg.as_bytes());
    let device = all::<fhir::Device>(&c.bundle)
        .into_iter()
        .find(|d| {
            d.identifier
                .iter()
                .any(|i| i.value.as_deref() == Some("MON-7"))
        })
        .expect("the PRT-10 Device");
    assert_eq!(
        device.identifier[0].system.as_deref(),
        Some("urn:oid:1.2.3.4")
    );
    let o = &all::<Observation>(&c.bundle)[0];
    assert_eq!(o.device, Some(uuid_ref(device)));
    // No person (PRT-5): no PractitionerRole.
    assert!(all::<fhir::PractitionerRole>(&c.bundle).is_empty());
}

#[test]
fn ordering_facility_and_pharmacy_carry_address_and_phone() {
    // RDE-O11-02: ORC-21 LAKE FOREST HOSPITAL IP, ORC-22 1000 N WESTMORELAND RD^^LAKE FOREST^IL^...,
    // ORC-23 (847)234-5600^WPN^PH; RXE-40 LF_CPM^LFH CPM CAROUSEL PHARMACY^L, RXE-41 Filbert
    // Street^Oaks Drive, RXE-45 8256487985^^PH.
    let c = convert("RDE-O11-02.hl7");
    let orgs = all::<fhir::Organization>(&c.bundle);
    let facility = orgs
        .iter()
        .find(|o| o.name.as_deref() == Some("LAKE FOREST HOSPITAL IP"))
        .expect("the ordering facility");
    assert_eq!(facility.address[0].city.as_deref(), Some("LAKE FOREST"));
    assert_eq!(facility.telecom[0].value.as_deref(), Some("(847)234-5600"));
    let pharmacy = orgs
        .iter()
        .find(|o| o.name.as_deref() == Some("LFH CPM CAROUSEL PHARMACY"))
        .expect("the dispensing pharmacy");
    assert_eq!(pharmacy.address[0].line, ["Filbert Street", "Oaks Drive"]);
    assert_eq!(pharmacy.telecom[0].value.as_deref(), Some("8256487985"));
    // The requester is the ordering provider acting for the ordering facility.
    let roles = all::<fhir::PractitionerRole>(&c.bundle);
    let requests = all::<fhir::MedicationRequest>(&c.bundle);
    let requester = requests[0].requester.as_ref().expect("a requester");
    let role = roles
        .iter()
        .find(|r| uuid_ref(**r) == *requester)
        .expect("a PractitionerRole");
    assert_eq!(role.code[0].coding[0].code.as_deref(), Some("OP"));
    assert!(role.organization.is_some() && role.practitioner.is_some());
}

#[test]
fn ndl_roles_carry_period_and_place() {
    // ORU-R01-01: OBR-35 35&Samuel^20021111^20021112^Area23 (transcriptionist, NDL).
    let c = convert("ORU-R01-01.hl7");
    let roles = all::<fhir::PractitionerRole>(&c.bundle);
    let tr = roles
        .iter()
        .find(|r| r.code.first().and_then(|c| c.coding[0].code.as_deref()) == Some("TR"))
        .expect("the transcriptionist");
    let period = tr.period.as_ref().expect("NDL.2-3");
    assert_eq!(period.start.as_deref(), Some("2002-11-11"));
    assert_eq!(period.end.as_deref(), Some("2002-11-12"));
    let place = tr.location[0].reference.as_deref().unwrap();
    let area = all::<fhir::Location>(&c.bundle)
        .into_iter()
        .find(|l| format!("urn:uuid:{}", l.id.as_deref().unwrap()) == place)
        .expect("the NDL's Location");
    assert_eq!(area.name.as_deref(), Some("Area23"));
}
