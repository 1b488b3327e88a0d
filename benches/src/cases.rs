//! The rows of the parser benchmark: one function per parser, same contract.
//!
//! Map:
//! - [`Case`]: a row — id, label, depth reached, the function to run.
//! - [`cases`]: every row, in table order (the floor, ours, then the peers).
//! - [`Target`]: which one value a row reads and decodes per message.
//! - [`Outcome`]: what a run saw, so rows can be checked against each other.
//!
//! Contract of every `run` function:
//! 1. take the message bytes (peers that want `&str` pay `from_utf8` here, as a
//!    real receiver would);
//! 2. parse, then call `after_parse` exactly once (the heap probe snapshots
//!    the allocator there; the timing harness passes a no-op);
//! 3. walk every node the library lets us reach, counting non-empty leaves and
//!    their bytes (so the optimiser cannot drop the walk, and so rows that reach
//!    the same depth can be seen to agree);
//! 4. read [`Target`] through the library's own lookup and decode it.
//!
//! Errors come back as text; panics are left to the caller (the harness runs a
//! checking pass under `catch_unwind` before timing anything).

use std::borrow::Cow;
use std::sync::LazyLock;

use crate::corpus::{MessageKind, Sample};

/// The one value a row reads per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `PID-5.1`, the patient's family name (ADT and ORM).
    PatientFamily,
    /// `OBX-5` of the first OBX, the observation value (ORU).
    ObservationValue,
}

impl Target {
    /// The target the benchmark reads for a kind of message.
    pub fn for_kind(kind: MessageKind) -> Target {
        match kind {
            MessageKind::OruR01 => Target::ObservationValue,
            _ => Target::PatientFamily,
        }
    }
}

/// What one run over one message saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Non-empty leaves reached (subcomponents, or the deepest level the
    /// library offers).
    pub leaves: u64,
    /// Sum of those leaves' raw lengths.
    pub leaf_bytes: u64,
    /// Length of the decoded [`Target`] value (0 when absent).
    pub read_len: usize,
}

impl Outcome {
    fn leaf(&mut self, raw_len: usize) {
        if raw_len > 0 {
            self.leaves += 1;
            self.leaf_bytes += raw_len as u64;
        }
    }
}

/// Which group a row belongs to, for the ratios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// The memchr scan: no parse, the floor.
    Floor,
    /// Causeway's `hl7v2`.
    Ours,
    /// `er7`, the reference peer for the "x er7" column.
    Er7,
    /// Any other peer.
    Peer,
}

/// The signature every row implements; see the module doc for the contract.
pub type RunFn = fn(&[u8], Target, &mut dyn FnMut()) -> Result<Outcome, String>;

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Stable id, used by `CAUSEWAY_BENCH_ONLY` and the heap probe's output.
    pub id: &'static str,
    /// Label for the table.
    pub name: &'static str,
    /// What the row's walk can reach.
    pub depth: &'static str,
    /// Group, for the ratio columns.
    pub group: Group,
    /// The work measured.
    pub run: RunFn,
}

/// Every row, in table order.
pub fn cases() -> Vec<Case> {
    let mut all = vec![Case {
        id: "memchr",
        name: "memchr scan (\\r, |)",
        depth: "none: counts \\r and | only",
        group: Group::Floor,
        run: memchr_scan,
    }];
    all.extend(ours::cases());
    all.extend([
        Case {
            id: "er7",
            name: "er7 0.1.4",
            depth: "full: subcomponents",
            group: Group::Er7,
            run: er7_full,
        },
        Case {
            id: "hl7-parser",
            name: "hl7-parser 0.3.0",
            depth: "full: subcomponents",
            group: Group::Peer,
            run: hl7_parser_full,
        },
        Case {
            id: "rust-hl7",
            name: "rust-hl7 0.5.0",
            depth: "full: subcomponents",
            group: Group::Peer,
            run: rust_hl7_full,
        },
        Case {
            id: "hl7-v2-fields",
            name: "hl7-v2 0.1.0",
            depth: "fields only; no decoding",
            group: Group::Peer,
            run: hl7_v2_fields,
        },
        Case {
            id: "hl7-v2-components",
            name: "hl7-v2 0.1.0",
            depth: "components by re-split; no reps/subs/decoding",
            group: Group::Peer,
            run: hl7_v2_components,
        },
    ]);
    all
}

/// Totals of one row over a corpus, from [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    /// Messages run.
    pub messages: u64,
    /// Sum of [`Outcome::leaves`].
    pub leaves: u64,
    /// Sum of [`Outcome::leaf_bytes`].
    pub leaf_bytes: u64,
    /// Sum of [`Outcome::read_len`].
    pub read_bytes: u64,
}

/// Runs `case` once over every sample, catching panics, and adds up what it saw.
///
/// # Errors
/// How many messages failed or panicked, and the first reason.
pub fn check(case: &Case, samples: &[Sample]) -> Result<Totals, String> {
    let hook = std::panic::take_hook();
    // Silence the default hook: a peer that panics on every message would
    // otherwise print thousands of backtraces; the first message is kept.
    std::panic::set_hook(Box::new(|_| {}));
    let mut totals = Totals::default();
    let mut failed = 0usize;
    let mut first: Option<String> = None;
    for (i, s) in samples.iter().enumerate() {
        let target = Target::for_kind(s.kind);
        let run = std::panic::catch_unwind(|| (case.run)(&s.bytes, target, &mut || {}));
        let problem = match run {
            Ok(Ok(out)) => {
                totals.messages += 1;
                totals.leaves += out.leaves;
                totals.leaf_bytes += out.leaf_bytes;
                totals.read_bytes += out.read_len as u64;
                None
            }
            Ok(Err(e)) => Some(format!("error: {e}")),
            Err(payload) => {
                let text = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-text payload".to_string());
                Some(format!("panic: {text}"))
            }
        };
        if let Some(p) = problem {
            failed += 1;
            first.get_or_insert_with(|| format!("message {} ({}): {p}", i + 1, s.kind.label()));
        }
    }
    std::panic::set_hook(hook);
    match first {
        None => Ok(totals),
        Some(first) => Err(format!(
            "failed on {failed} of {} messages; first: {first}",
            samples.len()
        )),
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))
}

/// The floor: find every segment and field boundary, build nothing.
fn memchr_scan(bytes: &[u8], _: Target, after_parse: &mut dyn FnMut()) -> Result<Outcome, String> {
    let hits = memchr::memchr2_iter(b'\r', b'|', bytes).count();
    after_parse();
    Ok(Outcome {
        leaves: hits as u64,
        leaf_bytes: 0,
        read_len: 0,
    })
}

#[cfg(feature = "hl7v2")]
mod ours {
    use super::{Case, Group, Outcome, Target};

    pub(super) fn cases() -> Vec<Case> {
        vec![
            Case {
                id: "hl7v2-full",
                name: "causeway hl7v2",
                depth: "full: subcomponents",
                group: Group::Ours,
                run: full,
            },
            Case {
                id: "hl7v2-parse",
                name: "causeway hl7v2",
                depth: "parse + 1 read, no walk",
                group: Group::Ours,
                run: parse_only,
            },
        ]
    }

    fn read(message: &hl7v2::Message<'_>, target: Target) -> Result<usize, String> {
        let path = match target {
            Target::PatientFamily => "PID-5.1",
            Target::ObservationValue => "OBX-5",
        };
        let node = message.get(path).map_err(|e| e.to_string())?;
        Ok(node.map_or(0, |n| n.decoded().len()))
    }

    fn full(
        bytes: &[u8],
        target: Target,
        after_parse: &mut dyn FnMut(),
    ) -> Result<Outcome, String> {
        let message = hl7v2::parse(bytes).map_err(|e| e.to_string())?;
        after_parse();
        let mut out = Outcome::default();
        for segment in message.segments() {
            for field in segment.fields() {
                for repetition in field.repetitions() {
                    for component in repetition.components() {
                        for sub in component.subcomponents() {
                            out.leaf(sub.raw().len());
                        }
                    }
                }
            }
        }
        out.read_len = read(&message, target)?;
        Ok(out)
    }

    fn parse_only(
        bytes: &[u8],
        target: Target,
        after_parse: &mut dyn FnMut(),
    ) -> Result<Outcome, String> {
        let message = hl7v2::parse(bytes).map_err(|e| e.to_string())?;
        after_parse();
        Ok(Outcome {
            read_len: read(&message, target)?,
            ..Outcome::default()
        })
    }
}

#[cfg(not(feature = "hl7v2"))]
mod ours {
    pub(super) fn cases() -> Vec<super::Case> {
        Vec::new()
    }
}

fn er7_full(
    bytes: &[u8],
    target: Target,
    after_parse: &mut dyn FnMut(),
) -> Result<Outcome, String> {
    let message = er7::parse(utf8(bytes)?).map_err(|e| e.to_string())?;
    after_parse();
    let mut out = Outcome::default();
    for segment in &message.segments {
        for field in &segment.fields {
            for repetition in &field.repetitions {
                for component in &repetition.components {
                    for sub in &component.subcomponents {
                        out.leaf(sub.raw.len());
                    }
                }
            }
        }
    }
    let path = match target {
        Target::PatientFamily => "PID-5.1",
        Target::ObservationValue => "OBX-5",
    };
    let value = message.query(path).map_err(|e| e.to_string())?;
    out.read_len = value.map_or(0, |v| v.len());
    Ok(out)
}

fn hl7_parser_full(
    bytes: &[u8],
    target: Target,
    after_parse: &mut dyn FnMut(),
) -> Result<Outcome, String> {
    let message = hl7_parser::Message::parse(utf8(bytes)?).map_err(|e| e.to_string())?;
    after_parse();
    let mut out = Outcome::default();
    for segment in message.segments() {
        for field in segment.fields() {
            for repeat in field.repeats() {
                for component in repeat.components() {
                    for sub in component.subcomponents() {
                        out.leaf(sub.raw_value().len());
                    }
                }
            }
        }
    }
    let query = match target {
        Target::PatientFamily => "PID.5.1",
        Target::ObservationValue => "OBX.5",
    };
    // `display` decodes escape sequences; `to_string` makes the text.
    out.read_len = message.query(query).map_or(0, |found| {
        found.display(&message.separators).to_string().len()
    });
    Ok(out)
}

/// rust-hl7's decoder compiles a regex when built; its docs say to build one
/// per set of separators and keep it. Every generated message uses the
/// default separators, so one shared decoder is the documented fast path.
static RUST_HL7_DECODER: LazyLock<rusthl7::escape_sequence::EscapeSequence> = LazyLock::new(|| {
    rusthl7::escape_sequence::EscapeSequence::new(rusthl7::separators::Separators::default())
});

fn rust_hl7_full(
    bytes: &[u8],
    target: Target,
    after_parse: &mut dyn FnMut(),
) -> Result<Outcome, String> {
    let message = rusthl7::message::Message::try_from(utf8(bytes)?).map_err(|e| e.to_string())?;
    after_parse();
    let mut out = Outcome::default();
    for segment in &message.segments {
        // fields[0] is the segment id, not a field.
        for field in segment.fields.iter().skip(1) {
            for repetition in &field.subcomponents {
                for component in repetition {
                    for sub in component {
                        out.leaf(sub.len());
                    }
                }
            }
        }
    }
    // `query` panics when the segment is absent; every generated message has
    // PID, and every ORU has OBX.
    let raw = match target {
        Target::PatientFamily => message.query("PID.F5.R1.C1"),
        Target::ObservationValue => message.query("OBX.F5"),
    };
    let decoded: Cow<'_, str> = RUST_HL7_DECODER.decode(raw);
    out.read_len = decoded.len();
    Ok(out)
}

/// Length of the target value; the crate has no escape decoding, so it is raw.
fn hl7_v2_read(message: &hl7_v2::Hl7Message<'_>, target: Target) -> usize {
    match target {
        Target::PatientFamily => message
            .segment("PID")
            .and_then(|pid| pid.field(5).and_then(|f| f.component(1).map(str::len)))
            .unwrap_or(0),
        Target::ObservationValue => message
            .segments("OBX")
            .next()
            .and_then(|obx| obx.raw_fields().get(4).map(|v| v.len()))
            .unwrap_or(0),
    }
}

fn hl7_v2_fields(
    bytes: &[u8],
    target: Target,
    after_parse: &mut dyn FnMut(),
) -> Result<Outcome, String> {
    let message = hl7_v2::Hl7Message::parse(bytes).map_err(|e| e.to_string())?;
    after_parse();
    let mut out = Outcome::default();
    for segment in message.all_segments() {
        for field in segment.raw_fields() {
            out.leaf(field.len());
        }
    }
    out.read_len = hl7_v2_read(&message, target);
    Ok(out)
}

fn hl7_v2_components(
    bytes: &[u8],
    target: Target,
    after_parse: &mut dyn FnMut(),
) -> Result<Outcome, String> {
    let message = hl7_v2::Hl7Message::parse(bytes).map_err(|e| e.to_string())?;
    after_parse();
    let mut out = Outcome::default();
    for segment in message.all_segments() {
        for n in 1..=segment.raw_fields().len() {
            let Some(field) = segment.field(n) else {
                continue;
            };
            // `component(k)` re-splits the whole field each time: this is the
            // only way down its API. Repetitions are not split, so a repeated
            // field's components run across its `~`.
            let mut k = 1;
            while let Some(component) = field.component(k) {
                out.leaf(component.len());
                k += 1;
            }
        }
    }
    out.read_len = hl7_v2_read(&message, target);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::samples;

    /// Every row parses a small corpus without error or panic, reads a value for
    /// every message, and the rows that claim the same depth agree.
    #[test]
    fn every_row_runs_and_reads_the_target() {
        let corpus = samples(23, 60);
        for case in cases() {
            for s in &corpus {
                let target = Target::for_kind(s.kind);
                let mut calls = 0;
                let out = (case.run)(&s.bytes, target, &mut || calls += 1)
                    .unwrap_or_else(|e| panic!("{} failed: {e}", case.id));
                assert_eq!(calls, 1, "{} must call after_parse once", case.id);
                if !case.depth.contains("no walk") {
                    assert!(out.leaves > 50, "{} saw {} leaves", case.id, out.leaves);
                }
                if case.group != Group::Floor {
                    assert!(out.read_len > 0, "{} read nothing", case.id);
                }
            }
        }
    }

    #[test]
    fn full_depth_rows_see_the_same_leaves_below_the_header() {
        // Libraries differ only in how they present MSH-1 and MSH-2, so take
        // each row's count for a header-only message off its count for the
        // whole message: what is left must agree between full-depth rows.
        // (Decoded read lengths may differ: the libraries decode `\.br\` and
        // hex escapes differently.)
        // PID and OBX present (empty) so every row's lookup finds its segment.
        let header = b"MSH|^~\\&|X\rPID|\rOBX|\r";
        let corpus = samples(29, 40);
        let full: Vec<Case> = cases()
            .into_iter()
            .filter(|c| c.depth.starts_with("full"))
            .collect();
        assert!(full.len() >= 3);
        for s in &corpus {
            let text = std::str::from_utf8(&s.bytes).unwrap();
            let body = &text[text.find('\r').unwrap() + 1..];
            let message = format!("MSH|^~\\&|X\r{body}");
            let seen: Vec<(&str, u64, u64)> = full
                .iter()
                .map(|case| {
                    let run = |bytes: &[u8]| {
                        (case.run)(bytes, Target::for_kind(s.kind), &mut || {}).unwrap()
                    };
                    let whole = run(message.as_bytes());
                    let base = run(header);
                    (
                        case.id,
                        whole.leaves - base.leaves,
                        whole.leaf_bytes - base.leaf_bytes,
                    )
                })
                .collect();
            for row in &seen[1..] {
                let first = seen[0];
                assert_eq!((row.1, row.2), (first.1, first.2), "{row:?} vs {first:?}");
            }
        }
    }
}
