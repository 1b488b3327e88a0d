//! A generator of legacy HL7 v2 archives with ground truth: test data for `causeway import`
//! (issue 7).
//!
//! Map:
//! - [`ArchiveSpec`]: what to generate (size, years, mix of files); `Default` is the issue's
//!   shape (1,000,000 messages, 50,000 patients, five years), [`ArchiveSpec::scaled`] keeps
//!   the shape at another size.
//! - [`write_archive`]: writes the message files under a folder and returns the
//!   [`ArchiveManifest`], the ground truth an importer's report is checked against;
//!   [`ArchiveManifest::write_json`] saves it (outside the archive folder, so an importer
//!   reading the folder never sees it).
//! - `src/bin/gen-archive.rs`: the command line around both.
//!
//! Layout of an archive:
//! - `YYYY/MM/{adt,lab,orders}-YYYY-MM-DD[-k].hl7[.gz]`: each month's messages of one feed
//!   (ADT, ORU^R01, ORM^O01) in time order, about `messages_per_file` per file, the date
//!   being that of the file's first message;
//! - `backfill/backfill-NNNN.hl7[.gz]`: messages sent late (the out-of-order fraction, taken
//!   out of their month's file) and second copies of messages sent twice (the duplicate
//!   fraction), shuffled: file order is not time order.
//!
//! Each file has one line ending (CR, LF or CRLF), one text encoding (UTF-8; ISO-8859-1
//! declaring `8859/1` in MSH-18; ISO-8859-1 declaring nothing), may be gzip-compressed and may
//! be a batch (`FHS`/`BHS` ... `BTS`/`FTS`, with the right `BTS-1` count).
//!
//! Counting rules (what "messages read" means, and how totals reconcile):
//! - A file is read as [`hl7v2::split_file`] reads it (after gunzip). Every item it yields is
//!   one message read: an `Ok` item (a message starting at an `MSH` line) or an `Err` item (a
//!   block of lines before a message that does not start with `MSH`; the `no_msh` kind).
//!   Envelope lines (`FHS`, `BHS`, `BTS`, `FTS`) are not messages.
//! - `messages_written = distinct_valid + duplicates + broken`, and an importer must report
//!   `messages read = converted + quarantined + duplicates` with `converted = distinct_valid`,
//!   `quarantined = broken` and `duplicates` = second copies (byte-identical to the first,
//!   always in another file; which copy counts as the first does not change the totals).
//! - Garbage text between messages is **not** a message of its own: the splitter appends any
//!   non-`MSH` line after a message to that message, which then fails to parse (invalid
//!   segment id). So the generator writes such text only right after a broken message of its
//!   own (kind `garbage_segment`) and never spoils a valid one; the only garbage that stands
//!   alone is a block before a file's first message (or right after a batch's `BHS`), kind
//!   `no_msh`.
//!
//! Broken kinds, each checked with the CLI (`causeway parse` / `causeway convert`, exit code 1):
//! - `no_msh`: orphan segments or free text before the first `MSH` of a file: split error
//!   "message does not start with MSH"; no message number (the manifest gives its offset);
//! - `bad_encoding_characters`: MSH-2 `^~` (two characters): parse error;
//! - `garbage_segment`: a message followed by a line of free text: parse error (invalid
//!   segment id);
//! - `missing_type`: MSH-9 empty: convert error ("message type ... is not converted");
//! - `unsupported_type`: an `MFN^M02` master file message: convert error;
//! - `truncated`: the last message of a (non-batch) file cut inside MSH-7, as an interrupted
//!   transfer leaves it: convert error (no message type).
//!
//! Not generated, because the converter accepts them (with a warning in the bundle, or
//! silently): a malformed date in MSH-7, PID-7 or EVN-6, a non-numeric NM value, a message cut
//! after its MSH (a short message is indistinguishable from a truncated one), an unknown
//! escape, `ADT^A99`, `DFT`, `MDM`.
//!
//! Invariants:
//! - The same spec gives the same bytes (SplitMix64 streams derived from the seed and a
//!   stable index; gzip headers carry no time or name).
//! - Every valid message parses with [`hl7v2::parse`] and has a type the converter handles
//!   (ADT^A01/A03/A04/A08, ORU^R01, ORM^O01); MSH-10 is unique across the archive (broken
//!   messages too).
//! - A patient's messages are at least two hours apart, so ordering by MSH-7 as written
//!   (offsets -0500 and -0400 both occur) or by instant gives the same order.
//! - Every message carries the patient's demographics as of its time; A08s and some
//!   registrations change the address or the phone. The manifest's sample patients give the
//!   state after the last message by time, whichever file it sits in.
//! - All data is synthetic.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use serde::{Deserialize, Serialize};

use crate::corpus::{self, Rng};

/// Assigning authority of every MRN (one master patient index across the archive).
pub const MRN_AUTHORITY: &str = "GENHOSP";

/// Format tag of the manifest, bumped when its meaning changes.
pub const MANIFEST_FORMAT: &str = "causeway-archive-manifest/1";

/// The counting rules, as written into every manifest.
pub const COUNTING_RULES: &str = "Each file is read (after gunzip) as hl7v2::split_file reads it; every item it yields is one message read: an Ok item (a message starting at an MSH line) or an Err item (a block of non-MSH lines before a file's first message or right after a BHS: kind no_msh). FHS/BHS/BTS/FTS lines are not messages. Garbage text after a message belongs to that message (kind garbage_segment). messages_written = distinct_valid + duplicates + broken; an import must give messages read = converted + quarantined + duplicates with converted = distinct_valid, quarantined = broken, duplicates = second byte-identical copies (always in another file).";

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveSpec {
    /// Seed of every pseudo-random choice.
    pub seed: u64,
    /// Distinct valid messages (duplicates and broken messages come on top).
    pub messages: usize,
    /// Patients (capped at `messages`: every patient has at least one message).
    pub patients: usize,
    /// Years covered, from 1 January of `start_year`.
    pub years: u32,
    /// First year.
    pub start_year: i32,
    /// Target messages per file (each month's feed is split evenly into files of about this size).
    pub messages_per_file: usize,
    /// Fraction of files written gzip-compressed (`.hl7.gz`); the rest are plain `.hl7`.
    pub gzip_fraction: f64,
    /// Fraction of files in ISO-8859-1 that declare it (MSH-18 `8859/1`).
    pub latin1_with_msh18_fraction: f64,
    /// Fraction of files in ISO-8859-1 that declare nothing (read as windows-1252 by fallback).
    pub latin1_without_msh18_fraction: f64,
    /// Broken messages, as a fraction of `messages`.
    pub broken_fraction: f64,
    /// Messages written twice, as a fraction of `messages`.
    pub duplicate_fraction: f64,
    /// Fraction of files wrapped as batches (FHS/BHS ... BTS/FTS).
    pub batch_fraction: f64,
    /// Fraction of messages written to a backfill file instead of their month's file.
    pub out_of_order_fraction: f64,
    /// Fraction of patients whose name or address has Latin-1 letters (é ñ ü ö ...).
    pub accented_fraction: f64,
    /// Patients whose expected final state the manifest records.
    pub sample_patients: usize,
}

impl Default for ArchiveSpec {
    /// The issue's shape: 1,000,000 messages, 50,000 patients, 2019-2023.
    fn default() -> Self {
        ArchiveSpec {
            seed: crate::DEFAULT_SEED,
            messages: 1_000_000,
            patients: 50_000,
            years: 5,
            start_year: 2019,
            messages_per_file: 1_000,
            gzip_fraction: 0.85,
            latin1_with_msh18_fraction: 0.05,
            latin1_without_msh18_fraction: 0.05,
            broken_fraction: 0.002,
            duplicate_fraction: 0.01,
            batch_fraction: 0.10,
            out_of_order_fraction: 0.02,
            accented_fraction: 0.10,
            sample_patients: 100,
        }
    }
}

impl ArchiveSpec {
    /// The default shape at another size: one patient per 20 messages.
    pub fn scaled(messages: usize) -> ArchiveSpec {
        ArchiveSpec {
            messages,
            patients: (messages / 20).max(1),
            ..ArchiveSpec::default()
        }
    }
}

/// The ground truth of one archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveManifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// The spec it was generated from.
    pub spec: ArchiveSpec,
    /// [`COUNTING_RULES`].
    pub counting: String,
    /// Messages read by the counting rules, over all files.
    pub messages_written: u64,
    /// Messages that must convert (each once).
    pub distinct_valid: u64,
    /// Second copies of valid messages.
    pub duplicates: u64,
    /// Messages that must be quarantined.
    pub broken: u64,
    /// Valid messages written to a backfill file instead of their month's file.
    pub out_of_order: u64,
    /// Broken messages per kind.
    pub broken_by_kind: BTreeMap<String, u64>,
    /// Every broken message.
    pub broken_messages: Vec<BrokenMessage>,
    /// Distinct valid messages per type (`ADT^A01`, ...).
    pub by_type: BTreeMap<String, u64>,
    /// Distinct valid messages per version (MSH-12).
    pub by_version: BTreeMap<String, u64>,
    /// File counts.
    pub files: FileCounts,
    /// Bytes of message text (after gunzip) and on disk.
    pub bytes_text: u64,
    /// Bytes on disk.
    pub bytes_on_disk: u64,
    /// MSH-7 of the earliest valid message, as written.
    pub first_message_time: String,
    /// MSH-7 of the latest valid message, as written.
    pub last_message_time: String,
    /// Patients (distinct MRNs).
    pub patients: u64,
    /// Distinct visits (PV1-19) over all patients.
    pub visits: u64,
    /// Expected final state of a sample of patients.
    pub sample_patients: Vec<PatientTruth>,
    /// Every file.
    pub file_list: Vec<FileEntry>,
}

/// One broken message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenMessage {
    /// Path relative to the archive folder, `/`-separated.
    pub file: String,
    /// 1-based number of the message in the file as `hl7v2::split_file` numbers them; `None`
    /// for `no_msh` (not a message to the splitter).
    pub message: Option<u64>,
    /// Byte offset in the file's text (after gunzip): its `MSH`, or the block's first byte.
    pub offset: u64,
    /// The kind (`no_msh`, `bad_encoding_characters`, ...).
    pub kind: String,
}

/// Files by compression, encoding, line ending and batch wrapping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCounts {
    pub total: u64,
    pub gzip: u64,
    pub plain: u64,
    pub batch: u64,
    pub utf8: u64,
    pub latin1_msh18: u64,
    pub latin1_no_msh18: u64,
    pub cr: u64,
    pub lf: u64,
    pub crlf: u64,
    pub backfill: u64,
}

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the archive folder, `/`-separated.
    pub path: String,
    /// Messages read by the counting rules.
    pub messages: u64,
    /// Of which broken.
    pub broken: u64,
    /// Of which second copies.
    pub duplicates: u64,
    /// `utf-8`, `iso-8859-1+msh18`, `iso-8859-1`.
    pub encoding: String,
    /// `cr`, `lf`, `crlf`.
    pub line_ending: String,
    pub gzip: bool,
    pub batch: bool,
}

/// A patient's expected state after all their messages, in message-time order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientTruth {
    /// PID-3.1 (with PID-3.4 [`MRN_AUTHORITY`], PID-3.5 `MR`).
    pub mrn: String,
    pub family: String,
    pub given: String,
    /// PID-7.
    pub birth_date: String,
    /// PID-11.1 of the latest message.
    pub address_line: String,
    pub city: String,
    pub state: String,
    pub zip: String,
    /// PID-13.1 of the latest message, e.g. `(508)555-0134`.
    pub phone: String,
    /// Distinct visit numbers (PV1-19), one Encounter each.
    pub visits: u64,
    /// Distinct valid messages about this patient.
    pub messages: u64,
    /// MSH-7 of the patient's latest message.
    pub last_message_time: String,
}

impl ArchiveManifest {
    /// Writes the manifest as pretty JSON.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_json(&self, path: &Path) -> io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        fs::write(path, text + "\n")
    }

    /// A few lines for people.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let f = &self.files;
        let _ = writeln!(
            s,
            "messages written {} = distinct valid {} + duplicates {} + broken {}",
            self.messages_written, self.distinct_valid, self.duplicates, self.broken
        );
        let kinds: Vec<String> = self
            .broken_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(s, "broken by kind: {}", kinds.join(", "));
        let types: Vec<String> = self
            .by_type
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(s, "valid by type: {}", types.join(", "));
        let versions: Vec<String> = self
            .by_version
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(s, "valid by version: {}", versions.join(", "));
        let _ = writeln!(
            s,
            "out of order (in backfill files) {}; patients {}; visits {}",
            self.out_of_order, self.patients, self.visits
        );
        let _ = writeln!(
            s,
            "files {} (gzip {}, plain {}; batch {}; backfill {}; utf-8 {}, latin-1 with MSH-18 {}, latin-1 without {}; CR {}, LF {}, CRLF {})",
            f.total,
            f.gzip,
            f.plain,
            f.batch,
            f.backfill,
            f.utf8,
            f.latin1_msh18,
            f.latin1_no_msh18,
            f.cr,
            f.lf,
            f.crlf
        );
        let _ = writeln!(
            s,
            "bytes: {} of text, {} on disk; messages from {} to {}",
            self.bytes_text, self.bytes_on_disk, self.first_message_time, self.last_message_time
        );
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Pools (synthetic). Plain ones come from the corpus generator; these add Latin-1 letters.

const FAMILY_ACCENTED: &[&str] = &[
    "Müller",
    "Peña",
    "Gómez",
    "Böhm",
    "Lefèvre",
    "Ibáñez",
    "Sørensen",
    "Jäger",
    "Núñez",
    "Dubé",
    "Østergaard",
    "Çelik",
];
const GIVEN_ACCENTED: &[&str] = &[
    "José",
    "Zoë",
    "Chloé",
    "Jürgen",
    "Inés",
    "Renée",
    "Søren",
    "François",
    "Björn",
    "Anaïs",
];
const STREET_ACCENTED: &[&str] = &[
    "Rue de l'Église",
    "Avenida Peñalosa",
    "Königsweg",
    "Chemin des Érables",
    "Calle Ñandú",
];
const CITY_ACCENTED: &[(&str, &str, &str)] = &[
    ("San José", "CA", "951"),
    ("Española", "NM", "875"),
    ("Cañon City", "CO", "812"),
];
const SERVICE: &[&str] = &["MED", "SUR", "CAR", "PUL", "URO"];

/// Sending applications per feed, each with the version it speaks.
const ADT_SENDERS: &[(&str, &str, &str)] = &[
    ("EPICADT", "GENHOSP", "2.5.1"),
    ("MEDIPAC", "GENHOSP", "2.3"),
    ("REGSYS", "NORTHCLINIC", "2.4"),
];
const LAB_SENDERS: &[(&str, &str, &str)] = &[
    ("LABSYS", "GENHOSP", "2.4"),
    ("CERNERLAB", "STMARY", "2.5.1"),
];
const ORDER_SENDERS: &[(&str, &str, &str)] = &[
    ("EPICORD", "GENHOSP", "2.5.1"),
    ("MEDIPAC", "GENHOSP", "2.3"),
];

// ---------------------------------------------------------------------------------------------
// Deterministic derivation: every choice comes from a SplitMix64 stream seeded by the spec's
// seed, a tag and an index, so it does not depend on the order things are generated in.

fn stream(seed: u64, tag: u64, index: u64) -> Rng {
    let mut r = Rng::new(seed ^ tag.wrapping_mul(0xA076_1D64_78BD_642F));
    let a = r.next_u64();
    Rng::new(a ^ index.wrapping_mul(0xE703_7ED1_A0B4_28DB))
}

const TAG_PATIENT: u64 = 1;
const TAG_ADDRESS: u64 = 2;
const TAG_PHONE: u64 = 3;
const TAG_TIMELINE: u64 = 4;
const TAG_MESSAGE: u64 = 5;
const TAG_FILE: u64 = 6;
const TAG_PLACE: u64 = 7;
const TAG_BROKEN: u64 = 8;

fn fraction(rng: &mut Rng, p: f64) -> bool {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
}

fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

// ---------------------------------------------------------------------------------------------
// Patients.

struct Patient {
    mrn: String,
    family: &'static str,
    given: &'static str,
    middle: &'static str,
    dob: String,
    sex: &'static str,
    accented: bool,
}

fn patient(seed: u64, accented_fraction: f64, i: u32) -> Patient {
    let mut r = stream(seed, TAG_PATIENT, u64::from(i));
    let accented = fraction(&mut r, accented_fraction);
    let (family, given) = if accented {
        (r.pick(FAMILY_ACCENTED), r.pick(GIVEN_ACCENTED))
    } else {
        (r.pick(corpus::FAMILY), r.pick(corpus::GIVEN))
    };
    let middle = r.pick(corpus::GIVEN);
    let dob = format!(
        "{}{:02}{:02}",
        r.range(1930, 2018),
        r.range(1, 12),
        r.range(1, 28)
    );
    let sex = r.pick(&["F", "M"]);
    // A check digit keeps MRNs from looking sequential; 100000 + i keeps them unique.
    let base = 100_000 + u64::from(i);
    let mrn = format!("{base}{}", (base * 7 + 3) % 10);
    Patient {
        mrn,
        family,
        given,
        middle,
        dob,
        sex,
        accented,
    }
}

struct Address {
    line: String,
    city: &'static str,
    state: &'static str,
    zip: String,
}

fn address(seed: u64, p: &Patient, i: u32, version: u16) -> Address {
    let mut r = stream(seed, TAG_ADDRESS, (u64::from(i) << 16) | u64::from(version));
    let number = r.range(1, 9899);
    let accented_here = p.accented && r.chance(60);
    let street = if accented_here {
        r.pick(STREET_ACCENTED)
    } else {
        r.pick(corpus::STREET)
    };
    let (city, state, zip) = if accented_here && r.chance(50) {
        CITY_ACCENTED[r.below(CITY_ACCENTED.len())]
    } else {
        corpus::CITY[r.below(corpus::CITY.len())]
    };
    let zip = format!("{zip}{}", r.digits(2));
    Address {
        line: format!("{number} {street}"),
        city,
        state,
        zip,
    }
}

fn phone(seed: u64, i: u32, version: u16) -> (u64, String) {
    let mut r = stream(seed, TAG_PHONE, (u64::from(i) << 16) | u64::from(version));
    (r.range(201, 989), format!("555{:04}", r.range(0, 9999)))
}

fn phone_text(area: u64, local: &str) -> String {
    format!("({area}){}-{}", &local[..3], &local[3..])
}

// ---------------------------------------------------------------------------------------------
// Timelines.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    A01,
    A04,
    A08,
    A03,
    Oru,
    Orm,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::A01 => "ADT^A01",
            Kind::A04 => "ADT^A04",
            Kind::A08 => "ADT^A08",
            Kind::A03 => "ADT^A03",
            Kind::Oru => "ORU^R01",
            Kind::Orm => "ORM^O01",
        }
    }

    fn feed(self) -> Feed {
        match self {
            Kind::Oru => Feed::Lab,
            Kind::Orm => Feed::Orders,
            _ => Feed::Adt,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Feed {
    Adt,
    Lab,
    Orders,
}

impl Feed {
    fn name(self) -> &'static str {
        match self {
            Feed::Adt => "adt",
            Feed::Lab => "lab",
            Feed::Orders => "orders",
        }
    }
}

/// One valid message to write; its content is derived from these fields and its index.
#[derive(Debug, Clone, Copy)]
struct Event {
    /// Unix seconds (UTC).
    time: i64,
    /// Start of the visit (Unix seconds), for PV1-44.
    visit_start: i64,
    patient: u32,
    visit: u16,
    addr_v: u16,
    phone_v: u16,
    kind: Kind,
    inpatient: bool,
}

/// Minimum gap between two messages of one patient: larger than the one-hour difference
/// between the -0500 and -0400 offsets, so local and instant order agree.
const MIN_GAP: i64 = 2 * 3600;

struct Timeline {
    events: Vec<Event>,
    visits: u16,
    addr_v: u16,
    phone_v: u16,
}

fn timeline(seed: u64, i: u32, budget: usize, t0: i64, t1: i64) -> Timeline {
    let mut r = stream(seed, TAG_TIMELINE, u64::from(i));
    let mut events = Vec::with_capacity(budget);
    let planned = (budget / 5).max(1) as i64;
    let slot = ((t1 - t0 - 40 * 86_400) / planned).max(86_400);
    let mut last = i64::MIN / 2;
    let (mut visit, mut addr_v, mut phone_v) = (0u16, 0u16, 0u16);
    let mut left = budget;
    let mut v = 0i64;
    let push = |events: &mut Vec<Event>, e: Event, left: &mut usize| {
        events.push(e);
        *left -= 1;
    };
    while left > 0 {
        let planned_start = t0 + v.min(planned - 1) * slot + r.range(0, (slot - 1) as u64) as i64;
        let start = planned_start.max(last + MIN_GAP);
        v += 1;
        visit += 1;
        let inpatient = r.chance(30);
        if visit > 1 && r.chance(15) {
            addr_v += 1; // moved, told at registration
        }
        let mut t = start;
        let ev = |kind: Kind, t: i64, addr_v: u16, phone_v: u16| Event {
            time: t,
            visit_start: start,
            patient: i,
            visit,
            addr_v,
            phone_v,
            kind,
            inpatient,
        };
        let reg = if inpatient { Kind::A01 } else { Kind::A04 };
        push(&mut events, ev(reg, t, addr_v, phone_v), &mut left);
        // After the last planned visit, the rest of the budget goes to its results.
        let mut clinical = r.range(1, 6) as usize;
        if v >= planned {
            clinical = clinical.max(left.saturating_sub(usize::from(inpatient)));
        }
        let update_at = if r.chance(35) {
            Some(r.below(clinical + 1))
        } else {
            None
        };
        for k in 0..=clinical {
            if left == 0 {
                break;
            }
            if update_at == Some(k) {
                t += MIN_GAP + r.range(0, 20 * 3600) as i64;
                if r.chance(50) {
                    addr_v += 1;
                } else {
                    phone_v += 1;
                }
                push(&mut events, ev(Kind::A08, t, addr_v, phone_v), &mut left);
                if left == 0 {
                    break;
                }
            }
            if k == clinical {
                break;
            }
            t += MIN_GAP + r.range(0, 30 * 3600) as i64;
            let kind = if r.chance(40) { Kind::Orm } else { Kind::Oru };
            push(&mut events, ev(kind, t, addr_v, phone_v), &mut left);
        }
        if inpatient && left > 0 {
            t += MIN_GAP + r.range(0, 72 * 3600) as i64;
            push(&mut events, ev(Kind::A03, t, addr_v, phone_v), &mut left);
        }
        last = t;
    }
    Timeline {
        events,
        visits: visit,
        addr_v,
        phone_v,
    }
}

/// Message budgets per patient: equal shares, then pairs trade a random amount so that
/// counts vary while the total stays exact.
fn budgets(seed: u64, messages: usize, patients: usize) -> Vec<usize> {
    let base = messages / patients;
    let extra = messages % patients;
    let mut b: Vec<usize> = (0..patients)
        .map(|i| base + usize::from(i < extra))
        .collect();
    let mut r = stream(seed, TAG_TIMELINE, u64::MAX);
    for pair in b.chunks_mut(2) {
        if let [x, y] = pair {
            let give = r.below(*x); // x keeps at least 1
            *x -= give;
            *y += give;
        }
    }
    b
}

// ---------------------------------------------------------------------------------------------
// Time.

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Local civil time of an instant: -0400 from April through October, -0500 otherwise (a
/// simplification of US daylight time; what matters is that both offsets occur).
struct Local {
    y: i64,
    mo: i64,
    d: i64,
    h: i64,
    mi: i64,
    s: i64,
    offset: &'static str,
}

fn local(t: i64) -> Local {
    // The month in standard time decides the offset.
    let (_, standard_month, _) = civil_from_days((t - 5 * 3600).div_euclid(86_400));
    let (shift, offset) = if (4..=10).contains(&standard_month) {
        (4 * 3600, "-0400")
    } else {
        (5 * 3600, "-0500")
    };
    let lt = t - shift;
    let (y, mo, d) = civil_from_days(lt.div_euclid(86_400));
    let sec = lt.rem_euclid(86_400);
    Local {
        y,
        mo,
        d,
        h: sec / 3600,
        mi: sec / 60 % 60,
        s: sec % 60,
        offset,
    }
}

fn ts(t: i64) -> String {
    let l = local(t);
    format!(
        "{}{:02}{:02}{:02}{:02}{:02}{}",
        l.y, l.mo, l.d, l.h, l.mi, l.s, l.offset
    )
}

// ---------------------------------------------------------------------------------------------
// Files.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Encoding {
    Utf8,
    Latin1Msh18,
    Latin1Bare,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Latin1Msh18 => "iso-8859-1+msh18",
            Encoding::Latin1Bare => "iso-8859-1",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Eol {
    Cr,
    Lf,
    CrLf,
}

impl Eol {
    fn bytes(self) -> &'static [u8] {
        match self {
            Eol::Cr => b"\r",
            Eol::Lf => b"\n",
            Eol::CrLf => b"\r\n",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Eol::Cr => "cr",
            Eol::Lf => "lf",
            Eol::CrLf => "crlf",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrokenKind {
    NoMsh,
    BadEncodingCharacters,
    GarbageSegment,
    MissingType,
    UnsupportedType,
    Truncated,
}

impl BrokenKind {
    const ALL: [BrokenKind; 6] = [
        BrokenKind::NoMsh,
        BrokenKind::BadEncodingCharacters,
        BrokenKind::GarbageSegment,
        BrokenKind::MissingType,
        BrokenKind::UnsupportedType,
        BrokenKind::Truncated,
    ];

    fn name(self) -> &'static str {
        match self {
            BrokenKind::NoMsh => "no_msh",
            BrokenKind::BadEncodingCharacters => "bad_encoding_characters",
            BrokenKind::GarbageSegment => "garbage_segment",
            BrokenKind::MissingType => "missing_type",
            BrokenKind::UnsupportedType => "unsupported_type",
            BrokenKind::Truncated => "truncated",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Item {
    /// A valid message: index into the sorted events.
    Valid(u32),
    /// A second copy of a valid message.
    Duplicate(u32),
    /// A broken message: its kind and its own index (for MSH-10 and content).
    Broken(BrokenKind, u32),
}

struct FilePlan {
    path: String,
    encoding: Encoding,
    eol: Eol,
    gzip: bool,
    batch: bool,
    backfill: bool,
    items: Vec<Item>,
    /// A `no_msh` block first / a truncated message last.
    has_no_msh: bool,
    has_truncated: bool,
}

fn file_class(spec: &ArchiveSpec, r: &mut Rng) -> (Encoding, Eol, bool, bool) {
    let e = unit(r);
    let encoding = if e < spec.latin1_with_msh18_fraction {
        Encoding::Latin1Msh18
    } else if e < spec.latin1_with_msh18_fraction + spec.latin1_without_msh18_fraction {
        Encoding::Latin1Bare
    } else {
        Encoding::Utf8
    };
    let l = r.below(100);
    let eol = if l < 60 {
        Eol::Cr
    } else if l < 85 {
        Eol::Lf
    } else {
        Eol::CrLf
    };
    let gzip = fraction(r, spec.gzip_fraction);
    let batch = fraction(r, spec.batch_fraction);
    (encoding, eol, gzip, batch)
}

// ---------------------------------------------------------------------------------------------
// Rendering.

struct Ctx<'a> {
    spec: &'a ArchiveSpec,
    events: &'a [Event],
}

fn sender(kind: Kind, r: &mut Rng) -> (&'static str, &'static str, &'static str) {
    let pool = match kind.feed() {
        Feed::Adt => ADT_SENDERS,
        Feed::Lab => LAB_SENDERS,
        Feed::Orders => ORDER_SENDERS,
    };
    pool[r.below(pool.len())]
}

fn clinician(r: &mut Rng) -> String {
    format!(
        "{}^{}^{}^^^Dr^MD",
        r.digits(7),
        r.pick(corpus::FAMILY),
        r.pick(corpus::GIVEN)
    )
}

/// Renders valid message `index` into `out` (UTF-8 text, `\r` after every segment).
fn render_valid(ctx: &Ctx<'_>, index: u32, encoding: Encoding, out: &mut String) {
    let seed = ctx.spec.seed;
    let e = ctx.events[index as usize];
    let mut r = stream(seed, TAG_MESSAGE, u64::from(index));
    let p = patient(seed, ctx.spec.accented_fraction, e.patient);
    let (app, facility, version) = sender(e.kind, &mut r);
    let time = ts(e.time);
    let charset = match encoding {
        Encoding::Latin1Msh18 => "8859/1",
        Encoding::Latin1Bare => "",
        Encoding::Utf8 if version == "2.5.1" => "UNICODE UTF-8",
        Encoding::Utf8 => "",
    };
    let msh9 = match (e.kind, version) {
        (_, "2.3") => e.kind.label().to_string(),
        (Kind::Oru, _) => "ORU^R01^ORU_R01".to_string(),
        (Kind::Orm, _) => "ORM^O01^ORM_O01".to_string(),
        (Kind::A03, _) => "ADT^A03^ADT_A03".to_string(),
        (k, _) => format!("{}^ADT_A01", k.label()),
    };
    let control = control_id(e.kind.feed(), index);
    let _ = write!(
        out,
        "MSH|^~\\&|{app}|{facility}|CAUSEWAY|HUB|{time}||{msh9}|{control}|P|{version}|||AL|NE|USA|{charset}\r"
    );
    if e.kind.feed() == Feed::Adt {
        let event = &e.kind.label()[4..];
        let _ = write!(out, "EVN|{event}|{time}\r");
    }
    pid(seed, &p, e, out);
    pv1(&p, e, &mut r, out);
    match e.kind {
        Kind::Oru => oru_body(index, &time, &mut r, out),
        Kind::Orm => orm_body(index, &time, &mut r, out),
        _ => {}
    }
}

fn control_id(feed: Feed, index: u32) -> String {
    let prefix = match feed {
        Feed::Adt => "A",
        Feed::Lab => "L",
        Feed::Orders => "O",
    };
    format!("{prefix}{index:09}")
}

fn pid(seed: u64, p: &Patient, e: Event, out: &mut String) {
    let a = address(seed, p, e.patient, e.addr_v);
    let (area, local) = phone(seed, e.patient, e.phone_v);
    let phone = phone_text(area, &local);
    let _ = write!(
        out,
        "PID|1||{}^^^{MRN_AUTHORITY}^MR||{}^{}^{}^^^^L||{}|{}|||{}^^{}^{}^{}^USA^H||{phone}^PRN^PH^^1^{area}^{local}|||||{}{:03}\r",
        p.mrn,
        p.family,
        p.given,
        p.middle,
        p.dob,
        p.sex,
        a.line,
        a.city,
        a.state,
        a.zip,
        p.mrn,
        e.visit
    );
}

fn visit_number(p: &Patient, visit: u16) -> String {
    format!("V{}{visit:03}", p.mrn)
}

fn pv1(p: &Patient, e: Event, r: &mut Rng, out: &mut String) {
    let class = if e.inpatient { "I" } else { "O" };
    let unit = if e.inpatient {
        r.pick(corpus::UNIT)
    } else {
        "CLINIC"
    };
    let attending = clinician(r);
    let service = r.pick(SERVICE);
    let visit = visit_number(p, e.visit);
    let admit = ts(e.visit_start);
    let discharge = if e.kind == Kind::A03 {
        ts(e.time)
    } else {
        String::new()
    };
    let _ = write!(
        out,
        "PV1|1|{class}|{unit}^{}^{}^{MRN_AUTHORITY}||||{attending}|||{service}|||||||||{visit}^^^{MRN_AUTHORITY}^VN|||||||||||||||||||||||||{admit}|{discharge}\r",
        r.range(100, 499),
        r.pick(&["A", "B"])
    );
}

fn oru_body(index: u32, time: &str, r: &mut Rng, out: &mut String) {
    let (panel, panel_name) = corpus::PANEL[r.below(corpus::PANEL.len())];
    let orderer = clinician(r);
    let _ = write!(
        out,
        "ORC|RE|P{index:09}^EHR|F{index:09}^LAB||CM||||{time}|||{orderer}\rOBR|1|P{index:09}^EHR|F{index:09}^LAB|{panel}^{panel_name}^LN|||{time}|||||||{time}||{orderer}||||||{time}||CH|F\r"
    );
    for set_id in 1..=r.range(2, 6) {
        let (code, name, unit, lo, hi, decimals) =
            corpus::NUMERIC_TEST[r.below(corpus::NUMERIC_TEST.len())];
        let span = hi - lo;
        let v = (lo - span * 0.25 + span * 1.5 * unit_f(r)).max(0.0);
        let flag = if v < lo {
            "L"
        } else if v > hi {
            "H"
        } else {
            "N"
        };
        let _ = write!(
            out,
            "OBX|{set_id}|NM|{code}^{name}^LN||{v:.decimals$}|{unit}^{unit}^UCUM|{lo:.decimals$}-{hi:.decimals$}|{flag}|||F|||{time}\r"
        );
    }
}

fn unit_f(r: &mut Rng) -> f64 {
    r.below(10_001) as f64 / 10_000.0
}

fn orm_body(index: u32, time: &str, r: &mut Rng, out: &mut String) {
    let (code, name) = corpus::ORDER_TEST[r.below(corpus::ORDER_TEST.len())];
    let (dx, dx_text) = corpus::DIAGNOSIS[r.below(corpus::DIAGNOSIS.len())];
    let orderer = clinician(r);
    let priority = r.pick(&["R", "S", "A"]);
    let _ = write!(
        out,
        "ORC|NW|P{index:09}^EHR|F{index:09}^LAB||SC||^^^{time}^^{priority}||{time}|||{orderer}\rOBR|1|P{index:09}^EHR|F{index:09}^LAB|{code}^{name}^CPT4|||{time}|||||||||{orderer}||||||||||^^^{time}^^{priority}\rDG1|1||{dx}^{dx_text}^I10||{time}|W\r"
    );
}

/// Renders broken message `n` (or, for `no_msh`, its block of lines) into `out`.
fn render_broken(ctx: &Ctx<'_>, kind: BrokenKind, n: u32, encoding: Encoding, out: &mut String) {
    let seed = ctx.spec.seed;
    let mut r = stream(seed, TAG_BROKEN, u64::from(n));
    // Content borrowed from a valid message (another control id, so nothing repeats).
    let base = r.below(ctx.events.len()) as u32;
    let e = ctx.events[base as usize];
    let p = patient(seed, ctx.spec.accented_fraction, e.patient);
    let time = ts(e.time);
    let control = format!("X{n:09}");
    let msh = |out: &mut String, enc: &str, msh9: &str| {
        let charset = if encoding == Encoding::Latin1Msh18 {
            "8859/1"
        } else {
            ""
        };
        let _ = write!(
            out,
            "MSH|{enc}|EPICADT|GENHOSP|CAUSEWAY|HUB|{time}||{msh9}|{control}|P|2.5.1|||AL|NE|USA|{charset}\r"
        );
    };
    match kind {
        BrokenKind::NoMsh => {
            if r.chance(50) {
                // The tail of a message whose header was lost.
                let _ = write!(out, "EVN|A08|{time}\r");
                pid(seed, &p, e, out);
            } else {
                out.push_str(
                    "*** RECOVERED FROM SPOOL: 3 RECORDS UNREADABLE ***\r<garbled 0x1C 0x0D at block 7>\r",
                );
            }
        }
        BrokenKind::BadEncodingCharacters => {
            msh(out, "^~", "ADT^A08^ADT_A01");
            let _ = write!(out, "EVN|A08|{time}\r");
            pid(seed, &p, e, out);
        }
        BrokenKind::GarbageSegment => {
            msh(out, "^~\\&", "ADT^A08^ADT_A01");
            let _ = write!(out, "EVN|A08|{time}\r");
            pid(seed, &p, e, out);
            out.push_str("-- line noise: +++ATH0 NO CARRIER --\r");
        }
        BrokenKind::MissingType => {
            msh(out, "^~\\&", "");
            pid(seed, &p, e, out);
        }
        BrokenKind::UnsupportedType => {
            msh(out, "^~\\&", "MFN^M02^MFN_M02");
            let _ = write!(
                out,
                "MFI|PRA^Practitioner master file^HL70175||UPD|||NE\rMFE|MAD|{control}|{time}|{}\r",
                clinician(&mut r)
            );
        }
        BrokenKind::Truncated => {
            msh(out, "^~\\&", "ADT^A08^ADT_A01");
            let cut = out.find(&time).map_or(out.len(), |at| at + 7);
            out.truncate(cut);
        }
    }
}

/// Appends `text` (with `\r` terminators) to `buf`, in the file's line ending and encoding.
fn encode_into(text: &str, encoding: Encoding, eol: Eol, buf: &mut Vec<u8>) {
    let latin1 = encoding != Encoding::Utf8;
    if eol == Eol::Cr && (!latin1 || text.is_ascii()) {
        buf.extend_from_slice(text.as_bytes());
        return;
    }
    for c in text.chars() {
        match c {
            '\r' => buf.extend_from_slice(eol.bytes()),
            c if c.is_ascii() => buf.push(c as u8),
            c if latin1 => {
                // Every pool value is within Latin-1 (U+00A0..U+00FF).
                let code = u32::from(c);
                debug_assert!((0xA0..=0xFF).contains(&code));
                buf.push(u8::try_from(code).unwrap_or(b'?'));
            }
            c => {
                let mut tmp = [0u8; 4];
                buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The archive.

/// Writes an archive under `dir` (created if missing) and returns its manifest (not written:
/// see [`ArchiveManifest::write_json`]).
///
/// # Errors
/// A folder or file cannot be created or written.
pub fn write_archive(dir: &Path, spec: &ArchiveSpec) -> io::Result<ArchiveManifest> {
    let seed = spec.seed;
    let patients = spec.patients.min(spec.messages).max(1);
    let t0 = days_from_civil(i64::from(spec.start_year), 1, 1) * 86_400 + 5 * 3600;
    let t1 = days_from_civil(
        i64::from(spec.start_year) + i64::from(spec.years.max(1)),
        1,
        1,
    ) * 86_400
        + 5 * 3600;

    // 1. Timelines, then every event in time order.
    let mut events = Vec::with_capacity(spec.messages);
    let mut sample = Vec::new();
    let sample_every = (patients / spec.sample_patients.max(1)).max(1);
    let mut visits_total = 0u64;
    if spec.messages > 0 {
        for (i, budget) in budgets(seed, spec.messages, patients)
            .into_iter()
            .enumerate()
        {
            let i = i as u32;
            let tl = timeline(seed, i, budget, t0, t1);
            visits_total += u64::from(tl.visits);
            if (i as usize).is_multiple_of(sample_every) && sample.len() < spec.sample_patients {
                sample.push((i, tl.visits, tl.addr_v, tl.phone_v, tl.events.len()));
            }
            events.extend(tl.events);
        }
    }
    events.sort_by_key(|e| (e.time, e.patient, e.visit));

    // 2. Files: each valid message goes to its month's feed file, or (out of order) to a
    // backfill file; duplicates go to backfill files of the original's class.
    let mut place = stream(seed, TAG_PLACE, 0);
    let mut monthly: BTreeMap<(i64, i64, Feed), Vec<u32>> = BTreeMap::new();
    let mut late: Vec<u32> = Vec::new();
    for (index, e) in events.iter().enumerate() {
        if fraction(&mut place, spec.out_of_order_fraction) {
            late.push(index as u32);
        } else {
            let l = local(e.time);
            monthly
                .entry((l.y, l.mo, e.kind.feed()))
                .or_default()
                .push(index as u32);
        }
    }
    let per_file = spec.messages_per_file.max(1);
    let mut files: Vec<FilePlan> = Vec::new();
    let mut used_names = std::collections::HashSet::new();
    for ((y, mo, feed), list) in &monthly {
        let n_files = list.len().div_ceil(per_file);
        let size = list.len().div_ceil(n_files);
        for chunk in list.chunks(size) {
            let first = local(events[chunk[0] as usize].time);
            let mut r = stream(seed, TAG_FILE, files.len() as u64);
            let (encoding, eol, gzip, batch) = file_class(spec, &mut r);
            let stem = format!(
                "{y:04}/{mo:02}/{}-{y:04}-{mo:02}-{:02}",
                feed.name(),
                first.d
            );
            let mut name = stem.clone();
            let mut k = 2;
            while !used_names.insert(name.clone()) {
                name = format!("{stem}-{k}");
                k += 1;
            }
            let ext = if gzip { "hl7.gz" } else { "hl7" };
            files.push(FilePlan {
                path: format!("{name}.{ext}"),
                encoding,
                eol,
                gzip,
                batch,
                backfill: false,
                items: chunk.iter().map(|&i| Item::Valid(i)).collect(),
                has_no_msh: false,
                has_truncated: false,
            });
        }
    }
    // Duplicates: chosen among messages in monthly files, by class of their file.
    let duplicates_wanted = (spec.messages as f64 * spec.duplicate_fraction).round() as usize;
    let mut backfill: BTreeMap<(Encoding, Eol), Vec<Item>> = BTreeMap::new();
    let mut in_main: Vec<(u32, usize)> = Vec::new();
    for (f, file) in files.iter().enumerate() {
        for item in &file.items {
            if let Item::Valid(i) = item {
                in_main.push((*i, f));
            }
        }
    }
    let mut duplicates = 0u64;
    if !in_main.is_empty() && duplicates_wanted > 0 {
        // Every k-th message (k from the fraction) with a random phase: no message twice.
        let step = (in_main.len() / duplicates_wanted.min(in_main.len())).max(1);
        let phase = place.below(step);
        for &(i, f) in in_main.iter().skip(phase).step_by(step) {
            if duplicates as usize == duplicates_wanted {
                break;
            }
            let class = (files[f].encoding, files[f].eol);
            backfill.entry(class).or_default().push(Item::Duplicate(i));
            duplicates += 1;
        }
    }
    for &i in &late {
        let mut r = stream(seed, TAG_PLACE, u64::from(i) + 1);
        let (encoding, eol, _, _) = file_class(spec, &mut r);
        backfill
            .entry((encoding, eol))
            .or_default()
            .push(Item::Valid(i));
    }
    let mut backfill_no = 0;
    for ((encoding, eol), mut items) in backfill {
        shuffle(&mut items, &mut place);
        let n_files = items.len().div_ceil(per_file);
        let size = items.len().div_ceil(n_files.max(1)).max(1);
        for chunk in items.chunks(size) {
            backfill_no += 1;
            let mut r = stream(seed, TAG_FILE, files.len() as u64);
            let (_, _, gzip, batch) = file_class(spec, &mut r);
            let ext = if gzip { "hl7.gz" } else { "hl7" };
            files.push(FilePlan {
                path: format!("backfill/backfill-{backfill_no:04}.{ext}"),
                encoding,
                eol,
                gzip,
                batch,
                backfill: true,
                items: chunk.to_vec(),
                has_no_msh: false,
                has_truncated: false,
            });
        }
    }

    // 3. Broken messages: kinds in turn; `no_msh` first in a file (or after BHS), `truncated`
    // last in a non-batch file, at most one of each per file; others anywhere.
    let broken_wanted = (spec.messages as f64 * spec.broken_fraction).round() as usize;
    let mut broken_by_kind: BTreeMap<String, u64> = BTreeMap::new();
    if !files.is_empty() {
        for n in 0..broken_wanted {
            let mut kind = BrokenKind::ALL[n % BrokenKind::ALL.len()];
            let start = place.below(files.len());
            let fits = |f: &FilePlan, kind: BrokenKind| match kind {
                BrokenKind::NoMsh => !f.has_no_msh,
                BrokenKind::Truncated => !f.has_truncated && !f.batch,
                _ => true,
            };
            let f = (0..files.len())
                .map(|k| (start + k) % files.len())
                .find(|&f| fits(&files[f], kind))
                .unwrap_or_else(|| {
                    kind = BrokenKind::GarbageSegment;
                    start
                });
            let file = &mut files[f];
            let item = Item::Broken(kind, n as u32);
            match kind {
                BrokenKind::NoMsh => {
                    file.has_no_msh = true;
                    file.items.insert(0, item);
                }
                BrokenKind::Truncated => {
                    file.has_truncated = true;
                    file.items.push(item);
                }
                _ => {
                    // Not before a no_msh block, not after a truncated message.
                    let lo = usize::from(file.has_no_msh);
                    let hi = file.items.len() - usize::from(file.has_truncated);
                    let at = lo + place.below(hi - lo + 1);
                    file.items.insert(at, item);
                }
            }
            *broken_by_kind.entry(kind.name().to_string()).or_default() += 1;
        }
    }

    // 4. Write.
    let ctx = Ctx {
        spec,
        events: &events,
    };
    fs::create_dir_all(dir)?;
    let mut manifest_files = Vec::with_capacity(files.len());
    let mut broken_messages = Vec::new();
    let mut counts = FileCounts::default();
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_version: BTreeMap<String, u64> = BTreeMap::new();
    let (mut bytes_text, mut bytes_on_disk) = (0u64, 0u64);
    let mut text = String::with_capacity(4096);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    for file in &files {
        buf.clear();
        let eol = file.eol.bytes();
        let header_time = match file.items.iter().find_map(|it| match it {
            Item::Valid(i) | Item::Duplicate(i) => Some(*i),
            Item::Broken(..) => None,
        }) {
            Some(i) => ts(events[i as usize].time),
            None => ts(t0),
        };
        let name = file.path.rsplit('/').next().unwrap_or("");
        if file.batch {
            let _ = write!(
                text,
                "FHS|^~\\&|ARCHIVER|GENHOSP|CAUSEWAY|HUB|{header_time}||{name}\rBHS|^~\\&|ARCHIVER|GENHOSP|CAUSEWAY|HUB|{header_time}\r"
            );
            encode_into(&text, file.encoding, file.eol, &mut buf);
            text.clear();
        }
        let (mut number, mut read, mut dups, mut broken) = (0u64, 0u64, 0u64, 0u64);
        let mut batch_messages = 0u64;
        for item in &file.items {
            text.clear();
            let offset = buf.len() as u64;
            read += 1;
            match *item {
                Item::Valid(i) | Item::Duplicate(i) => {
                    render_valid(&ctx, i, file.encoding, &mut text);
                    number += 1;
                    batch_messages += 1;
                    if let Item::Duplicate(_) = item {
                        dups += 1;
                    } else {
                        *by_type
                            .entry(events[i as usize].kind.label().to_string())
                            .or_default() += 1;
                        *by_version
                            .entry(text.split('|').nth(11).unwrap_or("").to_string())
                            .or_default() += 1;
                    }
                }
                Item::Broken(kind, n) => {
                    render_broken(&ctx, kind, n, file.encoding, &mut text);
                    broken += 1;
                    let message = if kind == BrokenKind::NoMsh {
                        None
                    } else {
                        number += 1;
                        batch_messages += 1;
                        Some(number)
                    };
                    broken_messages.push(BrokenMessage {
                        file: file.path.clone(),
                        message,
                        offset,
                        kind: kind.name().to_string(),
                    });
                }
            }
            encode_into(&text, file.encoding, file.eol, &mut buf);
        }
        if file.batch {
            buf.extend_from_slice(format!("BTS|{batch_messages}").as_bytes());
            buf.extend_from_slice(eol);
            buf.extend_from_slice(b"FTS|1");
            buf.extend_from_slice(eol);
        }
        text.clear();
        let path: PathBuf = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let out = BufWriter::with_capacity(1 << 16, File::create(&path)?);
        if file.gzip {
            let mut gz = GzBuilder::new().write(out, Compression::fast());
            gz.write_all(&buf)?;
            gz.finish()?.flush()?;
        } else {
            let mut out = out;
            out.write_all(&buf)?;
            out.flush()?;
        }
        bytes_text += buf.len() as u64;
        bytes_on_disk += fs::metadata(&path)?.len();
        counts.total += 1;
        if file.gzip {
            counts.gzip += 1;
        } else {
            counts.plain += 1;
        }
        counts.batch += u64::from(file.batch);
        counts.backfill += u64::from(file.backfill);
        match file.encoding {
            Encoding::Utf8 => counts.utf8 += 1,
            Encoding::Latin1Msh18 => counts.latin1_msh18 += 1,
            Encoding::Latin1Bare => counts.latin1_no_msh18 += 1,
        }
        match file.eol {
            Eol::Cr => counts.cr += 1,
            Eol::Lf => counts.lf += 1,
            Eol::CrLf => counts.crlf += 1,
        }
        manifest_files.push(FileEntry {
            path: file.path.clone(),
            messages: read,
            broken,
            duplicates: dups,
            encoding: file.encoding.name().to_string(),
            line_ending: file.eol.name().to_string(),
            gzip: file.gzip,
            batch: file.batch,
        });
    }

    // 5. Ground truth of the sample patients.
    let mut last_time = vec![None; sample.len()];
    for e in &events {
        if let Ok(k) = sample.binary_search_by_key(&e.patient, |s| s.0) {
            last_time[k] = Some(e.time);
        }
    }
    let sample_patients = sample
        .iter()
        .zip(&last_time)
        .map(|(&(i, visits, addr_v, phone_v, messages), last)| {
            let p = patient(seed, spec.accented_fraction, i);
            let a = address(seed, &p, i, addr_v);
            let (area, local) = phone(seed, i, phone_v);
            PatientTruth {
                mrn: p.mrn.clone(),
                family: p.family.to_string(),
                given: p.given.to_string(),
                birth_date: p.dob.clone(),
                address_line: a.line,
                city: a.city.to_string(),
                state: a.state.to_string(),
                zip: a.zip,
                phone: phone_text(area, &local),
                visits: u64::from(visits),
                messages: messages as u64,
                last_message_time: last.map(ts).unwrap_or_default(),
            }
        })
        .collect();

    let broken = broken_messages.len() as u64;
    Ok(ArchiveManifest {
        format: MANIFEST_FORMAT.to_string(),
        spec: spec.clone(),
        counting: COUNTING_RULES.to_string(),
        messages_written: events.len() as u64 + duplicates + broken,
        distinct_valid: events.len() as u64,
        duplicates,
        broken,
        out_of_order: late.len() as u64,
        broken_by_kind,
        broken_messages,
        by_type,
        by_version,
        files: counts,
        bytes_text,
        bytes_on_disk,
        first_message_time: events.first().map(|e| ts(e.time)).unwrap_or_default(),
        last_message_time: events.last().map(|e| ts(e.time)).unwrap_or_default(),
        patients: if spec.messages == 0 {
            0
        } else {
            patients as u64
        },
        visits: visits_total,
        sample_patients,
        file_list: manifest_files,
    })
}

/// Fisher-Yates with our own generator (deterministic).
fn shuffle<T>(items: &mut [T], r: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = r.below(i + 1);
        items.swap(i, j);
    }
}

#[cfg(all(test, feature = "hl7v2"))]
mod tests {
    use std::collections::{BTreeSet, HashMap};
    use std::io::Read;

    use super::*;

    fn small(seed: u64) -> ArchiveSpec {
        ArchiveSpec {
            seed,
            messages: 3_000,
            patients: 150,
            years: 2,
            messages_per_file: 150,
            // Enough of everything to see each feature in a small archive.
            broken_fraction: 0.01,
            duplicate_fraction: 0.02,
            batch_fraction: 0.3,
            latin1_with_msh18_fraction: 0.15,
            latin1_without_msh18_fraction: 0.15,
            gzip_fraction: 0.6,
            accented_fraction: 0.3,
            sample_patients: 20,
            ..ArchiveSpec::default()
        }
    }

    /// Every file of an archive as (relative path, text after gunzip).
    fn read_all(dir: &Path, m: &ArchiveManifest) -> Vec<(String, Vec<u8>)> {
        m.file_list
            .iter()
            .map(|f| {
                let raw = fs::read(dir.join(&f.path)).unwrap();
                let text = if f.gzip {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&raw[..])
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                } else {
                    raw
                };
                (f.path.clone(), text)
            })
            .collect()
    }

    fn files_on_disk(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                    out.insert(rel, fs::read(&p).unwrap());
                }
            }
        }
        out
    }

    #[test]
    fn same_spec_same_bytes_other_seed_other_bytes() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let ma = write_archive(a.path(), &small(7)).unwrap();
        let mb = write_archive(b.path(), &small(7)).unwrap();
        let mc = write_archive(c.path(), &small(8)).unwrap();
        assert_eq!(ma, mb);
        let (fa, fb) = (files_on_disk(a.path()), files_on_disk(b.path()));
        assert_eq!(fa.len(), ma.file_list.len());
        assert!(fa == fb, "same spec, different bytes");
        assert_ne!(fa, files_on_disk(c.path()));
        assert_ne!(ma.sample_patients, mc.sample_patients);
    }

    #[test]
    fn manifest_counts_match_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let spec = small(42);
        let m = write_archive(dir.path(), &spec).unwrap();
        let files = read_all(dir.path(), &m);
        let broken_at: HashMap<(String, Option<u64>, u64), String> = m
            .broken_messages
            .iter()
            .map(|b| ((b.file.clone(), b.message, b.offset), b.kind.clone()))
            .collect();
        assert_eq!(broken_at.len() as u64, m.broken);
        let supported: BTreeSet<&str> = [
            "ADT^A01", "ADT^A03", "ADT^A04", "ADT^A08", "ORU^R01", "ORM^O01",
        ]
        .into();

        let (mut read, mut valid_copies, mut broken_seen, mut msh_lines) = (0u64, 0u64, 0u64, 0u64);
        let mut copies: HashMap<Vec<u8>, u32> = HashMap::new();
        let mut control_ids = BTreeSet::new();
        let mut kinds_seen: BTreeMap<String, u64> = BTreeMap::new();
        for ((path, text), entry) in files.iter().zip(&m.file_list) {
            msh_lines += text
                .split(|&b| b == b'\r' || b == b'\n')
                .filter(|line| line.starts_with(b"MSH|"))
                .count() as u64;
            let mut in_file = 0;
            for item in hl7v2::split_file(text) {
                in_file += 1;
                match item {
                    Err(e) => {
                        let key = (path.clone(), None, e.position.byte as u64);
                        assert_eq!(broken_at.get(&key).map(String::as_str), Some("no_msh"));
                        broken_seen += 1;
                        *kinds_seen.entry("no_msh".into()).or_default() += 1;
                    }
                    Ok(raw) => {
                        let key = (path.clone(), Some(raw.number as u64), raw.offset as u64);
                        let parsed = hl7v2::parse(raw.bytes);
                        if let Some(kind) = broken_at.get(&key) {
                            broken_seen += 1;
                            *kinds_seen.entry(kind.clone()).or_default() += 1;
                            // Rejected by the parser, or of a type the converter refuses.
                            if let Ok(msg) = parsed {
                                let t = msg.message_type();
                                assert!(!supported.contains(t.as_str()), "{kind}: {t}");
                            }
                            continue;
                        }
                        let msg = parsed.unwrap_or_else(|e| panic!("{path} #{}: {e}", raw.number));
                        let t = msg.message_type();
                        assert!(supported.contains(t.as_str()), "{path}: {t}");
                        valid_copies += 1;
                        let n = copies.entry(raw.bytes.to_vec()).or_default();
                        *n += 1;
                        if *n == 1 {
                            let id = msg.control_id().unwrap().into_owned();
                            assert!(control_ids.insert(id), "MSH-10 repeated");
                        }
                    }
                }
            }
            read += in_file;
            assert_eq!(in_file, entry.messages, "{path}");
        }
        let distinct = copies.len() as u64;
        let twice = copies.values().filter(|&&n| n == 2).count() as u64;
        assert!(copies.values().all(|&n| n <= 2));
        assert_eq!(read, m.messages_written);
        assert_eq!(
            m.messages_written,
            m.distinct_valid + m.duplicates + m.broken
        );
        assert_eq!(distinct, m.distinct_valid);
        assert_eq!(distinct, spec.messages as u64);
        assert_eq!(valid_copies - distinct, m.duplicates);
        assert_eq!(twice, m.duplicates);
        assert!(m.duplicates > 0 && m.out_of_order > 0);
        assert_eq!(broken_seen, m.broken);
        assert_eq!(kinds_seen, m.broken_by_kind);
        assert_eq!(kinds_seen.len(), BrokenKind::ALL.len(), "{kinds_seen:?}");
        // Every message but a no_msh block starts at an MSH line.
        assert_eq!(msh_lines, m.messages_written - m.broken_by_kind["no_msh"]);
        let f = &m.files;
        assert_eq!(f.total, m.file_list.len() as u64);
        assert!(f.gzip > 0 && f.plain > 0 && f.batch > 0 && f.backfill > 0);
        assert!(f.latin1_msh18 > 0 && f.latin1_no_msh18 > 0 && f.cr > 0 && f.lf > 0 && f.crlf > 0);
    }

    #[test]
    fn sample_patients_final_state_is_the_latest_message() {
        let dir = tempfile::tempdir().unwrap();
        let m = write_archive(dir.path(), &small(3)).unwrap();
        assert_eq!(m.sample_patients.len(), 20);
        let wanted: BTreeSet<&str> = m.sample_patients.iter().map(|p| p.mrn.as_str()).collect();
        // Per sample MRN: (latest instant, address line, city, phone, family), visits, count.
        type Latest = (String, String, String, String, String);
        let mut latest: HashMap<String, (i64, Latest)> = HashMap::new();
        let mut visits: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut seen = BTreeSet::new();
        let mut counts: HashMap<String, u64> = HashMap::new();
        for (_, text) in read_all(dir.path(), &m) {
            for raw in hl7v2::split_file(&text).flatten() {
                let Ok(msg) = hl7v2::parse(raw.bytes) else {
                    continue;
                };
                if !seen.insert(raw.bytes.to_vec()) {
                    continue; // the second copy of a duplicate
                }
                let Some(mrn) = msg.text("PID-3.1") else {
                    continue;
                };
                if !wanted.contains(mrn.as_ref()) || msg.text("MSH-9.1").is_none() {
                    continue;
                }
                assert_eq!(msg.text("PID-3.4").as_deref(), Some(MRN_AUTHORITY));
                let mrn = mrn.into_owned();
                *counts.entry(mrn.clone()).or_default() += 1;
                let when = instant(&msg.text("MSH-7").unwrap());
                let get = |p: &str| msg.text(p).unwrap_or_default().into_owned();
                if let Some(v) = msg.text("PV1-19.1") {
                    visits
                        .entry(mrn.clone())
                        .or_default()
                        .insert(v.into_owned());
                }
                let state = (
                    get("PID-11.1"),
                    get("PID-11.3"),
                    get("PID-13.1"),
                    get("PID-5.1"),
                    get("MSH-7"),
                );
                let slot = latest.entry(mrn).or_insert((i64::MIN, state.clone()));
                assert_ne!(slot.0, when, "two messages of one patient at one instant");
                if when > slot.0 {
                    *slot = (when, state);
                }
            }
        }
        let mut accented = 0;
        for p in &m.sample_patients {
            let (_, (line, city, phone, family, time)) = &latest[&p.mrn];
            assert_eq!(
                (line, city, phone, family, time),
                (
                    &p.address_line,
                    &p.city,
                    &p.phone,
                    &p.family,
                    &p.last_message_time
                ),
                "{}",
                p.mrn
            );
            assert_eq!(visits[&p.mrn].len() as u64, p.visits, "{}", p.mrn);
            assert_eq!(counts[&p.mrn], p.messages, "{}", p.mrn);
            accented += usize::from(!format!("{}{}{line}{city}", p.family, p.given).is_ascii());
        }
        assert!(accented > 0, "no sample patient has Latin-1 letters");
    }

    /// Unix seconds of `YYYYMMDDHHMMSS±ZZZZ`.
    fn instant(ts: &str) -> i64 {
        let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
        let days = days_from_civil(n(0..4), n(4..6), n(6..8));
        let sign = if &ts[14..15] == "-" { -1 } else { 1 };
        let offset = sign * (n(15..17) * 3600 + n(17..19) * 60);
        days * 86_400 + n(8..10) * 3600 + n(10..12) * 60 + n(12..14) - offset
    }

    #[test]
    fn local_time_round_trips() {
        for t in [
            0i64,
            1_552_550_400,
            1_560_513_600,
            1_572_750_000,
            1_700_000_000,
        ] {
            assert_eq!(instant(&ts(t)), t);
        }
        // March is standard time in the simplification, June daylight time.
        assert_eq!(ts(1_552_550_400), "20190314030000-0500");
        assert_eq!(ts(1_560_513_600), "20190614080000-0400");
        assert_eq!(ts(1_548_979_200), "20190131190000-0500");
    }

    #[test]
    fn scaled_keeps_the_shape() {
        let s = ArchiveSpec::scaled(10_000);
        assert_eq!((s.messages, s.patients), (10_000, 500));
        assert_eq!(ArchiveSpec::default().patients, 50_000);
    }
}
