//! Reading and writing speed: a Patient and an ORU^R01-sized Bundle (FHIR-Converter's expected output for
//! the LRI 2.0 CBC message: 42 entries, 36 of them Observations), each as compact JSON. `serde_json::Value`
//! reads the same text as a baseline: the cost of an untyped parse with no checks. Writing is timed twice:
//! the crate's own writer (`fhir::to_string`) and serde_json through the types' `Serialize` impls, which
//! write the same text.
//!
//! Run: `cargo bench -p fhir --bench serde`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fhir::{Bundle, Patient, Resource};

fn corpus_bundle() -> Bundle {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/corpus/fhir-converter/Expected/Hl7v2/ORU_R01/LRI_2.0-NG_CBC_Typ_Message-expected.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    fhir::from_str(&text).expect("the LRI CBC bundle is supported")
}

fn benches(c: &mut Criterion) {
    let bundle = corpus_bundle();
    let bundle_json = fhir::to_string(&bundle);
    let patient: &Patient = bundle.resources_of::<Patient>().next().expect("a Patient");
    let patient_json = fhir::to_string(patient);
    eprintln!(
        "patient: {} bytes; bundle: {} bytes, {} entries",
        patient_json.len(),
        bundle_json.len(),
        bundle.entry.len()
    );

    let mut group = c.benchmark_group("patient");
    group.bench_function("read Patient", |b| {
        b.iter(|| fhir::from_str::<Patient>(black_box(&patient_json)).unwrap())
    });
    group.bench_function("read Resource", |b| {
        b.iter(|| fhir::from_str::<Resource>(black_box(&patient_json)).unwrap())
    });
    group.bench_function("read serde_json::Value", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(&patient_json)).unwrap())
    });
    group.bench_function("write", |b| b.iter(|| fhir::to_string(black_box(patient))));
    group.bench_function("write with serde_json", |b| {
        b.iter(|| serde_json::to_string(black_box(patient)).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("oru_bundle");
    group.bench_function("read Bundle", |b| {
        b.iter(|| fhir::from_str::<Bundle>(black_box(&bundle_json)).unwrap())
    });
    group.bench_function("read serde_json::Value", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(&bundle_json)).unwrap())
    });
    group.bench_function("write", |b| b.iter(|| fhir::to_string(black_box(&bundle))));
    group.bench_function("write with serde_json", |b| {
        b.iter(|| serde_json::to_string(black_box(&bundle)).unwrap())
    });
    group.finish();
}

criterion_group!(serde_benches, benches);
criterion_main!(serde_benches);
