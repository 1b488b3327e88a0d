//! Reading is strict and its errors say where and what: tables of (input, exact error).

mod support;

use fhir::{
    Bundle, Decimal, ErrorKind, Extension, ExtensionValue, Observation, ObservationValue, Patient,
    Resource,
};

/// Reads `input` as a `Resource` and returns the error text.
fn resource_error(input: &str) -> String {
    match fhir::from_str::<Resource>(input) {
        Ok(r) => panic!("accepted {input}: {r:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn refusals_name_the_path_the_reason_and_the_position() {
    let table: &[(&str, &str)] = &[
        // unknown fields, with a hint when only the case differs
        (
            r#"{"resourceType":"Patient","birthdate":"1970"}"#,
            "unknown field `birthdate` in Patient, did you mean `birthDate`? at line 1 column 37",
        ),
        (
            r#"{"resourceType":"Patient","name":[{"family":"X","nick":"Y"}]}"#,
            "name[0]: unknown field `nick` in HumanName at line 1 column 54",
        ),
        // a wrong JSON type deep inside, with the full path
        (
            r#"{"resourceType":"Patient","name":[{"family":"X"},{"given":["A",5]}]}"#,
            "name[1].given[1]: invalid type: integer `5`, expected a string at line 1 column 64",
        ),
        // null is not a FHIR value
        (
            r#"{"resourceType":"Patient","gender":null}"#,
            "gender: invalid type: null, expected a string at line 1 column 39",
        ),
        // empty arrays and objects would vanish on output
        (
            r#"{"resourceType":"Patient","name":[]}"#,
            "name: empty array: FHIR JSON leaves an element out instead at line 1 column 35",
        ),
        (
            r#"{"resourceType":"Patient","maritalStatus":{}}"#,
            "maritalStatus: empty CodeableConcept object: FHIR JSON leaves an element out instead at line 1 column 44",
        ),
        // the same key twice
        (
            r#"{"resourceType":"Patient","gender":"male","gender":"female"}"#,
            "duplicate field `gender` at line 1 column 50",
        ),
        // two variants of one choice element
        (
            r#"{"resourceType":"Observation","code":{"text":"x"},"valueString":"a","valueBoolean":true}"#,
            "`valueBoolean` after `valueString`: a choice element holds one value at line 1 column 82",
        ),
        // a code outside a required binding
        (
            r#"{"resourceType":"Observation","status":"finall","code":{"text":"x"}}"#,
            "status: invalid code `finall`, expected one of `registered`, `preliminary`, `final`, `amended`, \
             `corrected`, `cancelled`, `entered-in-error`, `unknown` at line 1 column 47",
        ),
        // a required complex element missing
        (
            r#"{"resourceType":"Observation","status":"final"}"#,
            "missing field `code` at line 1 column 47",
        ),
        // 1..* elements the schema requires
        (
            r#"{"resourceType":"OperationOutcome","id":"x"}"#,
            "missing field `issue` at line 1 column 44",
        ),
        // integer ranges: FHIR integer is 32-bit
        (
            r#"{"resourceType":"Patient","multipleBirthInteger":3000000000}"#,
            "multipleBirthInteger: invalid value: integer `3000000000`, expected i32 at line 1 column 59",
        ),
        // a decimal must be a JSON number
        (
            r#"{"resourceType":"Observation","code":{"text":"x"},"valueQuantity":{"value":"1.5"}}"#,
            "valueQuantity.value: invalid decimal `\"1.5\"`, expected a JSON number at line 1 column 81",
        ),
        // types outside the supported list, and missing types
        (
            r#"{"resourceType":"Person","id":"d"}"#,
            "unsupported resource type `Person` at line 1 column 24",
        ),
        (
            r#"{"id":"p"}"#,
            "missing field `resourceType` at line 1 column 10",
        ),
        // extensions on a typed choice value are not supported
        (
            r#"{"resourceType":"Observation","code":{"text":"x"},"valueString":"a","_valueString":{"id":"e"}}"#,
            "unknown field `_valueString` in Observation: extensions on a typed choice value are not supported \
             at line 1 column 82",
        ),
        // primitive extension arrays must line up with their values
        (
            r#"{"resourceType":"Patient","name":[{"given":["A","B"],"_given":[null]}]}"#,
            "name[0]: `given` has 2 values but `_given` has 1: the arrays must line up at line 1 column 69",
        ),
        // errors inside a bundle entry carry the entry's path
        (
            r#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient"}},
                {"resource":{"resourceType":"Patient","active":"yes"}}]}"#,
            "entry[1].resource.active: invalid type: string \"yes\", expected a boolean at line 2 column 68",
        ),
        (
            r#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Person"}}]}"#,
            "entry[0].resource: unsupported resource type `Person` at line 1 column 91",
        ),
        // contained resources are read as strictly
        (
            r#"{"resourceType":"Observation","code":{"text":"x"},"contained":[{"resourceType":"Patient","x":1}]}"#,
            "contained[0]: unknown field `x` in Patient at line 1 column 92",
        ),
    ];
    for (input, expected) in table {
        assert_eq!(resource_error(input), *expected, "input: {input}");
    }
}

#[test]
fn error_kinds_and_parts() {
    let eof = fhir::from_str::<Resource>(r#"{"resourceType":"Patient","#).unwrap_err();
    assert_eq!(eof.kind(), ErrorKind::Eof);
    let syntax = fhir::from_str::<Resource>(r#"{"resourceType":"Patient",}"#).unwrap_err();
    assert_eq!(syntax.kind(), ErrorKind::Syntax);
    let data = fhir::from_str::<Resource>(r#"{"resourceType":"Patient","name":[{"use":"nick"}]}"#)
        .unwrap_err();
    assert_eq!(data.kind(), ErrorKind::Data);
    assert_eq!(data.path(), Some("name[0].use"));
    assert!(data.message().starts_with("invalid code `nick`"), "{data}");
    assert_eq!((data.line(), data.column()), (Some(1), Some(48)));
    // read through a serde_json::Value: no position
    let from_value =
        fhir::from_value::<Resource>(serde_json::json!({"resourceType": "Patient", "x": 1}))
            .unwrap_err();
    assert_eq!(from_value.to_string(), "unknown field `x` in Patient");
    assert_eq!(from_value.line(), None);
}

#[test]
fn reading_a_resource_type_directly_checks_its_resource_type() {
    let ok: Patient = fhir::from_str(r#"{"resourceType":"Patient","id":"p"}"#).unwrap();
    assert_eq!(ok.id.as_deref(), Some("p"));
    let wrong =
        fhir::from_str::<Patient>(r#"{"resourceType":"Observation","id":"p"}"#).unwrap_err();
    assert_eq!(
        wrong.to_string(),
        "resourceType: `Observation` where a Patient was expected at line 1 column 29"
    );
    let missing = fhir::from_str::<Patient>(r#"{"id":"p"}"#).unwrap_err();
    assert_eq!(
        missing.to_string(),
        "missing field `resourceType` at line 1 column 10"
    );
}

#[test]
fn resource_type_need_not_come_first() {
    let input = r#"{"id":"o1","code":{"text":"Hb"},"resourceType":"Observation","valueQuantity":{"value":13.50}}"#;
    let resource: Resource = fhir::from_str(input).unwrap();
    assert_eq!(resource.resource_type(), "Observation");
    assert_eq!(
        fhir::to_string(&resource),
        r#"{"resourceType":"Observation","id":"o1","code":{"text":"Hb"},"valueQuantity":{"value":13.50}}"#
    );
    // errors on that path keep the JSON path (the position is that of the end of the object)
    let late =
        resource_error(r#"{"id":"o1","code":{"text":"Hb","x":1},"resourceType":"Observation"}"#);
    assert_eq!(
        late,
        "code: unknown field `x` in CodeableConcept at line 1 column 67"
    );
    let unsupported = resource_error(r#"{"id":"d","resourceType":"Person"}"#);
    assert_eq!(
        unsupported,
        "unsupported resource type `Person` at line 1 column 34"
    );
}

#[test]
fn decimals_keep_their_text() {
    let input = r#"{"resourceType":"Observation","code":{"text":"x"},"valueQuantity":{"value":1.50},"component":[{"code":{"text":"y"},"valueQuantity":{"value":-0.0e+2}}]}"#;
    let obs: Observation = fhir::from_str(input).unwrap();
    let Some(ObservationValue::Quantity(q)) = &obs.value else {
        panic!("{:?}", obs.value)
    };
    assert_eq!(q.value.as_ref().map(Decimal::as_str), Some("1.50"));
    assert_eq!(fhir::to_string(&obs), input);
}

#[test]
fn primitive_extensions_and_contained_resources_round_trip() {
    let input = concat!(
        r#"{"resourceType":"Patient","contained":[{"resourceType":"Organization","id":"o","name":"Org"}],"#,
        r#""name":[{"given":["A","B"],"_given":[null,{"extension":[{"url":"http://x","valueCode":"c"}]}]}],"#,
        r#""_birthDate":{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]},"#,
        r##""managingOrganization":{"reference":"#o"}}"##
    );
    let patient: Patient = fhir::from_str(input).unwrap();
    assert_eq!(patient.name[0].given_ext[0], None);
    assert!(patient.birth_date.is_none() && patient.birth_date_ext.is_some());
    assert_eq!(patient.contained[0].resource_type(), "Organization");
    let written = fhir::to_string(&patient);
    let (a, b): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(input).unwrap(),
        serde_json::from_str(&written).unwrap(),
    );
    assert_eq!(a, b);
    assert_eq!(support::schema_errors(&b), Vec::<String>::new());
}

#[test]
fn resources_built_with_the_helpers_are_valid_r4() {
    use fhir::{CodeableConcept, Identifier, OperationOutcome, Reference, TypedResource};
    let patient = Patient {
        id: Some("p1".into()),
        identifier: vec![Identifier::new("urn:oid:1.2.3", "MRN-1")],
        gender: Some("female".into()),
        extension: vec![Extension::new(
            "http://example.org/x",
            ExtensionValue::Decimal(Decimal::new("2.50").unwrap()),
        )],
        ..Default::default()
    };
    let observation = Observation {
        id: Some("o1".into()),
        status: Some("final".into()),
        code: CodeableConcept::coding("http://loinc.org", "718-7", Some("Hemoglobin")),
        subject: patient.reference(),
        value: Some(ObservationValue::Quantity(Box::new(fhir::Quantity {
            value: Some(Decimal::new("13.50").unwrap()),
            unit: Some("g/dL".into()),
            ..Default::default()
        }))),
        ..Default::default()
    };
    let mut bundle = Bundle::transaction();
    bundle.push_request(patient, Some("urn:uuid:p1".into()), "PUT", "Patient/p1");
    bundle.push_request(
        observation,
        Some("urn:uuid:o1".into()),
        "PUT",
        "Observation/o1",
    );
    bundle.push(
        OperationOutcome::error("informational", "built in a test", None),
        None,
    );
    let value = fhir::to_value(&bundle).unwrap();
    assert_eq!(support::schema_errors(&value), Vec::<String>::new());
    let text = fhir::to_string(&bundle);
    assert!(
        text.contains(r#""valueQuantity":{"value":13.50,"unit":"g/dL"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#""subject":{"reference":"Patient/p1"}"#),
        "{text}"
    );
    let back: Bundle = fhir::from_str(&text).unwrap();
    assert_eq!(back, bundle);
    assert_eq!(
        back.resources_of::<Observation>().next().unwrap().subject,
        Some(Reference::to("Patient", "p1"))
    );
    // the error of a refused write turns into an OperationOutcome that is itself valid R4
    let err = fhir::from_str::<Resource>(r#"{"resourceType":"Patient","gender":"f"}"#).unwrap_err();
    let outcome = fhir::to_value(&err.to_operation_outcome()).unwrap();
    assert_eq!(support::schema_errors(&outcome), Vec::<String>::new());
    assert_eq!(outcome["issue"][0]["expression"][0], "gender");
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // Extensions nest by value: serde_json's recursion limit (128) stops them.
    let depth = 300;
    let mut input = String::from(r#"{"resourceType":"Patient","extension":["#);
    for _ in 0..depth {
        input.push_str(r#"{"url":"u","extension":["#);
    }
    input.push_str(r#"{"url":"u","valueString":"x"}"#);
    for _ in 0..depth {
        input.push_str("]}");
    }
    input.push_str("]}");
    let err = fhir::from_str::<Resource>(&input).unwrap_err();
    assert!(err.message().contains("recursion limit exceeded"), "{err}");

    // Resources whose resourceType comes last are re-read from a buffer, with a fresh recursion limit: their
    // nesting has its own bound.
    fn nested_bundles(levels: usize) -> String {
        let mut s = String::new();
        for _ in 0..levels {
            s.push_str(r#"{"type":"collection","entry":[{"resource":"#);
        }
        s.push_str(r#"{"id":"p","resourceType":"Patient"}"#);
        for _ in 0..levels {
            s.push_str(r#"}],"resourceType":"Bundle"}"#);
        }
        s
    }
    let ok = fhir::from_str::<Resource>(&nested_bundles(fhir::MAX_REREAD_NESTING - 1)).unwrap();
    assert_eq!(ok.resource_type(), "Bundle");
    let err =
        fhir::from_str::<Resource>(&nested_bundles(fhir::MAX_REREAD_NESTING + 5)).unwrap_err();
    assert!(
        err.message()
            .contains("nested resources without `resourceType` as their first key"),
        "{err}"
    );
    assert!(
        err.path()
            .is_some_and(|p| p.starts_with("entry[0].resource.entry[0]")),
        "{err}"
    );
    // the count is per read: a later read starts from zero
    assert!(fhir::from_str::<Resource>(&nested_bundles(2)).is_ok());
}
