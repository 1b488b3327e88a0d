//! Cost of transforms per message, on a real ADT^A01 (the shared corpus's
//! `adt-a01-full.hl7`, 9 segments, ~1 KB): a small mapping script against the same edits
//! written as declarative transforms, and the bare parse + copy + encode they both include.
//!
//! Run: `cargo bench -p causeway-engine --bench script`.

use std::hint::black_box;
use std::path::Path;

use causeway_engine::config::Config;
use causeway_engine::transform::{TransformContext, Transforms};
use criterion::{Criterion, criterion_group, criterion_main};

const SCRIPT: &str = r#"
let sex = msg.get("PID-8");
if sex != "M" && sex != "F" { msg.set("PID-8", "U"); }
if msg.get("PV1-3.4") == "HOSP_A" { msg.set("PV1-3.4", "MAIN"); }
msg.delete("PID-19");
msg.set("PID-2", msg.get("PID-3(1).1"));
"#;

const DECLARATIVE: &str = r#"
[tables.facility-codes]
"HOSP_A" = "MAIN"

[[channel]]
name = "bench"
source = { type = "mllp", listen = "127.0.0.1:0" }
  [[channel.transform]]
  map = { path = "PV1-3.4", table = "facility-codes" }
  [[channel.transform]]
  delete = "PID-19"
  [[channel.transform]]
  copy = { from = "PID-3(1).1", to = "PID-2" }
"#;

fn message() -> Vec<u8> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus/rethinkhealth-hl7v2/qa/fixtures/adt-a01-full.hl7");
    let text = std::fs::read_to_string(&file).expect("the shared corpus beside the clone");
    text.replace('\n', "\r").into_bytes()
}

fn transforms(dir: &Path, config: &str) -> Transforms {
    Config::from_str(config, dir)
        .expect("valid bench config")
        .channels[0]
        .transforms
        .clone()
}

fn run(raw: &[u8], t: &Transforms) -> Vec<u8> {
    let msg = hl7v2::parse(raw).expect("parses");
    let mut owned = msg.to_owned_message();
    let mut ctx = TransformContext::new();
    t.apply(&mut owned, &mut ctx).expect("applies");
    owned.encode()
}

fn bench(c: &mut Criterion) {
    let raw = message();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("adt.rhai"), SCRIPT).expect("script written");
    let script = transforms(
        dir.path(),
        "[[channel]]\nname = \"bench\"\nsource = { type = \"mllp\", listen = \"127.0.0.1:0\" }\n  [[channel.transform]]\n  script = \"adt.rhai\"\n",
    );
    let declarative = transforms(dir.path(), DECLARATIVE);
    let none = Transforms::default();
    // Both variants must produce the same message, or the comparison means nothing.
    assert_eq!(run(&raw, &script), run(&raw, &declarative));

    let mut g = c.benchmark_group("transform per message (adt-a01-full)");
    g.bench_function("parse + owned copy + encode (no transform)", |b| {
        b.iter(|| run(black_box(&raw), &none))
    });
    g.bench_function("declarative: map + delete + copy", |b| {
        b.iter(|| run(black_box(&raw), &declarative))
    });
    g.bench_function("rhai script: same edits + sex check", |b| {
        b.iter(|| run(black_box(&raw), &script))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
