//! A seedable generator of realistic, synthetic HL7 v2.5.1 messages.
//!
//! Map:
//! - [`Generator`]: a stream of messages from one seed; [`Generator::sample`]
//!   follows the default mix, [`Generator::message_of`] makes one kind.
//! - [`generate`] and [`samples`]: a whole corpus in one call.
//! - [`MessageKind`]: ADT^A01, ADT^A08, ORU^R01, ORM^O01.
//! - [`Stats`]: size and mix of a corpus, for reports.
//!
//! Invariants:
//! - The same seed gives the same bytes on every platform and every release of
//!   this crate's dependencies: the pseudo-random source is our own SplitMix64,
//!   not a library generator whose stream may change between versions.
//! - Every message starts `MSH|^~\&|`, is version 2.5.1, ends every segment
//!   (the last one too) with a lone `\r`, and is ASCII.
//! - Every value is written already encoded: a delimiter inside a value is
//!   always an escape sequence (`\F\ \S\ \T\ \R\ \E\ \X..\ \.br\`), never bare.
//! - Messages average about 2 KB (`Stats::mean_len`), with repeated fields
//!   (PID-3, PID-11, PID-13), components, subcomponents (CX-4 and XCN-9
//!   assigning authorities as HD with `&`) and escapes in notes and text.
//! - All names, numbers and addresses are synthetic: drawn from small made-up
//!   pools and random digits, never from real records.

use std::fmt::Write as _;

/// The kinds of message the generator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// ADT^A01, admit: the richest patient demographics.
    AdtA01,
    /// ADT^A08, update patient information.
    AdtA08,
    /// ORU^R01, observation results: many OBX with NM/ST/TX/CWE values.
    OruR01,
    /// ORM^O01, general order: one to three ORC/OBR pairs.
    OrmO01,
}

impl MessageKind {
    /// Every kind, in a fixed order (the order of [`Stats::by_kind`]).
    pub const ALL: [MessageKind; 4] = [
        MessageKind::AdtA01,
        MessageKind::AdtA08,
        MessageKind::OruR01,
        MessageKind::OrmO01,
    ];

    /// MSH-9 as written in the message, e.g. `ADT^A01^ADT_A01`.
    pub fn message_type(self) -> &'static str {
        match self {
            MessageKind::AdtA01 => "ADT^A01^ADT_A01",
            MessageKind::AdtA08 => "ADT^A08^ADT_A01",
            MessageKind::OruR01 => "ORU^R01^ORU_R01",
            MessageKind::OrmO01 => "ORM^O01^ORM_O01",
        }
    }

    /// A short label for reports, e.g. `ADT^A01`.
    pub fn label(self) -> &'static str {
        match self {
            MessageKind::AdtA01 => "ADT^A01",
            MessageKind::AdtA08 => "ADT^A08",
            MessageKind::OruR01 => "ORU^R01",
            MessageKind::OrmO01 => "ORM^O01",
        }
    }

    fn index(self) -> usize {
        match self {
            MessageKind::AdtA01 => 0,
            MessageKind::AdtA08 => 1,
            MessageKind::OruR01 => 2,
            MessageKind::OrmO01 => 3,
        }
    }
}

/// One generated message and what kind it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The kind the generator chose.
    pub kind: MessageKind,
    /// The message bytes (ER7, `\r` after every segment).
    pub bytes: Vec<u8>,
}

/// Percent weights of the default mix, in [`MessageKind::ALL`] order.
///
/// Results dominate a lab-heavy interface engine's traffic, then admissions
/// and updates, then orders; the exact split matters less than having all
/// four shapes in every run.
const MIX_PERCENT: [u32; 4] = [25, 20, 40, 15];

/// A deterministic stream of synthetic messages.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    /// Message counter, part of each MSH-10 so control ids never repeat
    /// within one stream.
    sequence: u64,
    /// Per-seed prefix of MSH-10, so two streams rarely share control ids.
    stream_tag: u32,
}

impl Generator {
    /// A new stream; the same seed always yields the same messages.
    pub fn new(seed: u64) -> Generator {
        let mut rng = Rng::new(seed);
        let stream_tag = (rng.next_u64() % 90_000 + 10_000) as u32;
        Generator {
            rng,
            sequence: 0,
            stream_tag,
        }
    }

    /// The next message of the default mix.
    pub fn sample(&mut self) -> Sample {
        let kind = self.next_kind();
        let bytes = self.message_of(kind);
        Sample { kind, bytes }
    }

    /// The next message, of the kind asked for.
    pub fn message_of(&mut self, kind: MessageKind) -> Vec<u8> {
        self.sequence += 1;
        let mut w = Writer::new(&mut self.rng);
        let control_id = format!("{}{:08}", self.stream_tag, self.sequence);
        match kind {
            MessageKind::AdtA01 => w.adt(kind, &control_id, true),
            MessageKind::AdtA08 => w.adt(kind, &control_id, false),
            MessageKind::OruR01 => w.oru(&control_id),
            MessageKind::OrmO01 => w.orm(&control_id),
        }
        w.out.into_bytes()
    }

    fn next_kind(&mut self) -> MessageKind {
        let total: u32 = MIX_PERCENT.iter().sum();
        let mut roll = self.rng.below(total as usize) as u32;
        for (kind, weight) in MessageKind::ALL.iter().zip(MIX_PERCENT) {
            if roll < weight {
                return *kind;
            }
            roll -= weight;
        }
        MessageKind::OruR01
    }
}

/// `n` messages of the default mix from `seed`, bytes only.
pub fn generate(seed: u64, n: usize) -> Vec<Vec<u8>> {
    samples(seed, n).into_iter().map(|s| s.bytes).collect()
}

/// `n` messages of the default mix from `seed`, each with its kind.
///
/// The bytes are the same as [`generate`] gives for the same arguments.
pub fn samples(seed: u64, n: usize) -> Vec<Sample> {
    let mut generator = Generator::new(seed);
    (0..n).map(|_| generator.sample()).collect()
}

/// Size and mix of a corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Number of messages.
    pub messages: usize,
    /// Total bytes.
    pub bytes: usize,
    /// Smallest message, in bytes.
    pub min_len: usize,
    /// Largest message, in bytes.
    pub max_len: usize,
    /// Message count per kind, in [`MessageKind::ALL`] order.
    pub by_kind: [usize; 4],
}

impl Stats {
    /// Measures a corpus.
    pub fn of(samples: &[Sample]) -> Stats {
        let mut stats = Stats {
            min_len: usize::MAX,
            ..Stats::default()
        };
        for s in samples {
            stats.messages += 1;
            stats.bytes += s.bytes.len();
            stats.min_len = stats.min_len.min(s.bytes.len());
            stats.max_len = stats.max_len.max(s.bytes.len());
            stats.by_kind[s.kind.index()] += 1;
        }
        if stats.messages == 0 {
            stats.min_len = 0;
        }
        stats
    }

    /// Mean message length in bytes (0 for an empty corpus).
    pub fn mean_len(&self) -> usize {
        self.bytes.checked_div(self.messages).unwrap_or(0)
    }
}

/// SplitMix64: tiny, fast, and fixed forever, which is what a reproducible
/// corpus needs (statistical quality beyond "looks varied" does not matter).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-high: no modulo bias worth
    /// caring about at these sizes.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below((hi - lo + 1) as usize) as u64
    }

    /// True with probability `percent` / 100.
    pub(crate) fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub(crate) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    pub(crate) fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|i| {
                let d = self.below(10) as u8;
                // No leading zero, so numbers look like numbers.
                char::from(b'0' + if i == 0 { d.max(1) } else { d })
            })
            .collect()
    }
}

// Synthetic pools. Values are stored already ER7-encoded.
pub(crate) const FAMILY: &[&str] = &[
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Ruiz",
    "Kowalski",
    "Haddad",
    "Brennan",
    "Nakamura",
    "Adeyemi",
    "Fischer",
    "Oliveira",
    "Novak",
    "Castillo",
    "Murphy",
    "Ivanova",
    "Chen",
    "Duarte",
    "Bergstrom",
    "Mbeki",
    "Quintero",
    "Halvorsen",
    "Petrov",
    "Achterberg",
    "Van Dijk",
    "O'Donnell",
    "Sato-Whitfield",
    "Abernathy",
];
pub(crate) const GIVEN: &[&str] = &[
    "Amara", "Bjorn", "Celine", "Dmitri", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonah",
    "Kamala", "Lars", "Maren", "Nikhil", "Odette", "Pavel", "Quinn", "Rosa", "Soren", "Talia",
    "Ugo", "Vera", "Wendell", "Ximena", "Yusuf", "Zora",
];
pub(crate) const STREET: &[&str] = &[
    "Maple Ave",
    "Harbour Rd",
    "Willow Ln",
    "Quarry St",
    "Beacon Hill Dr",
    "Orchard Way",
    "Juniper Ct",
    "Ferry Rd",
    "Larkspur Blvd",
    "Old Mill Rd",
];
pub(crate) const CITY: &[(&str, &str, &str)] = &[
    ("Fairhaven", "MA", "027"),
    ("Millbrook", "NY", "125"),
    ("Cedar Falls", "IA", "506"),
    ("Brightwater", "OR", "974"),
    ("Redfield", "SD", "574"),
    ("Lakemont", "GA", "305"),
    ("Stonebridge", "TX", "750"),
    ("Pinecrest", "CO", "804"),
];
const FACILITY: &[&str] = &["NGH", "SMC", "RVH", "EVMC", "PCH"];
const SENDING_APP: &[&str] = &["EPICADT", "CERNERPM", "MEDIPAC", "LABSYS", "OPENHIS"];
pub(crate) const UNIT: &[&str] = &["4WEST", "ICU", "MEDSURG", "ONC", "CARD", "ED"];
const ORG_NAME: &[&str] = &[
    r"Baker \T\ Sons Ltd",
    "Northwind Logistics",
    r"Harbor Freight \T\ Storage",
    "Fairhaven School District",
    r"Kline\S\Hart Partners",
    "Self-employed",
    "Retired",
];
const INSURER: &[(&str, &str)] = &[
    ("BCX", r"Blue Cedar Health \T\ Life"),
    ("UHP", "United Harbor Plan"),
    ("MCR", "Medicare Part A"),
    ("AET", "Aurora Employee Trust"),
];
const ALLERGEN: &[(&str, &str, &str)] = &[
    ("7980", "Penicillin G", "RXNORM"),
    ("2670", "Codeine", "RXNORM"),
    ("1191", "Aspirin", "RXNORM"),
    ("227493005", "Cashew nuts", "SCT"),
    ("256259004", "Pollen", "SCT"),
    ("111088007", "Latex", "SCT"),
];
const REACTION: &[&str] = &[
    "Hives",
    "Rash",
    "Anaphylaxis",
    "Wheezing",
    "Nausea",
    "Swelling",
];
pub(crate) const DIAGNOSIS: &[(&str, &str)] = &[
    ("I21.4", "Non-ST elevation myocardial infarction"),
    ("J18.9", "Pneumonia, unspecified organism"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("N17.9", "Acute kidney failure, unspecified"),
    ("K35.80", "Unspecified acute appendicitis"),
    ("I50.9", "Heart failure, unspecified"),
    (
        "S72.001A",
        "Fracture of unspecified part of neck of right femur",
    ),
];
/// Numeric results: LOINC code, name, UCUM unit, low, high, decimals.
pub(crate) const NUMERIC_TEST: &[(&str, &str, &str, f64, f64, usize)] = &[
    (
        "2345-7",
        "Glucose [Mass/volume] in Serum or Plasma",
        "mg/dL",
        70.0,
        99.0,
        0,
    ),
    (
        "2951-2",
        "Sodium [Moles/volume] in Serum or Plasma",
        "mmol/L",
        136.0,
        145.0,
        0,
    ),
    (
        "2823-3",
        "Potassium [Moles/volume] in Serum or Plasma",
        "mmol/L",
        3.5,
        5.1,
        1,
    ),
    (
        "2075-0",
        "Chloride [Moles/volume] in Serum or Plasma",
        "mmol/L",
        98.0,
        107.0,
        0,
    ),
    (
        "2160-0",
        "Creatinine [Mass/volume] in Serum or Plasma",
        "mg/dL",
        0.6,
        1.3,
        2,
    ),
    (
        "3094-0",
        "Urea nitrogen [Mass/volume] in Serum or Plasma",
        "mg/dL",
        7.0,
        20.0,
        0,
    ),
    (
        "718-7",
        "Hemoglobin [Mass/volume] in Blood",
        "g/dL",
        12.0,
        17.5,
        1,
    ),
    (
        "6690-2",
        "Leukocytes [#/volume] in Blood by Automated count",
        "10*3/uL",
        4.5,
        11.0,
        1,
    ),
    (
        "777-3",
        "Platelets [#/volume] in Blood by Automated count",
        "10*3/uL",
        150.0,
        400.0,
        0,
    ),
    (
        "17861-6",
        "Calcium [Mass/volume] in Serum or Plasma",
        "mg/dL",
        8.6,
        10.3,
        1,
    ),
    (
        "1751-7",
        "Albumin [Mass/volume] in Serum or Plasma",
        "g/dL",
        3.5,
        5.0,
        1,
    ),
    (
        "6598-7",
        "Troponin T.cardiac [Mass/volume] in Serum or Plasma",
        "ug/L",
        0.0,
        0.01,
        3,
    ),
];
/// String results: LOINC code, name, possible values.
const STRING_TEST: &[(&str, &str, &[&str])] = &[
    (
        "5778-6",
        "Color of Urine",
        &["Yellow", "Straw", "Amber", "Dark yellow"],
    ),
    (
        "5767-9",
        "Appearance of Urine",
        &["Clear", "Hazy", "Cloudy"],
    ),
    (
        "94500-6",
        "SARS-CoV-2 RNA [Presence] in Respiratory specimen",
        &["Not detected", "Detected"],
    ),
    (
        "882-1",
        "ABO and Rh group [Type] in Blood",
        &["O Pos", "A Neg", r"AB Pos \S\ weak D"],
    ),
];
pub(crate) const PANEL: &[(&str, &str)] = &[
    (
        "24323-8",
        "Comprehensive metabolic 2000 panel - Serum or Plasma",
    ),
    ("58410-2", "CBC panel - Blood by Automated count"),
    ("24357-6", "Urinalysis macro (dipstick) panel - Urine"),
    ("51990-0", "Basic metabolic panel - Blood"),
];
/// Narrative snippets with the escapes real senders use. `\.br\` is a line
/// break, `\X0D\\X0A\` a hex-encoded CR LF.
const NARRATIVE: &[&str] = &[
    r"Specimen received \T\ processed within 2 hours of collection.",
    r"Result verified by repeat analysis\.br\Dilution 1\S\2 applied.",
    r"Moderate hemolysis present \F\ potassium may be falsely elevated.",
    r"Reference range source: adult fasting \T\ non-fasting.\X0D\\X0A\See lab handbook section 4.",
    r"Called to ward nurse at 14:05; read-back confirmed.\.br\Critical value policy \R\ applies.",
    r"Path C:\E\LAB\E\QC\E\ documented; QC within limits.",
    r"Interpretation: values consistent with prior\.br\No further action required.",
    r"Sample labelled with 2 identifiers \T\ barcode matched.",
];
pub(crate) const ORDER_TEST: &[(&str, &str)] = &[
    ("80053", "Comprehensive metabolic panel"),
    ("85025", "Complete blood count with differential"),
    ("71046", "X-ray chest 2 views"),
    ("93000", "Electrocardiogram routine with interpretation"),
    ("81001", "Urinalysis automated with microscopy"),
];

/// Assigning authority OIDs. Under 2.999 (ISO's example arc), so they can
/// never name a real organisation.
const OID_ROOT: &str = "2.999.1.";

/// Builds one message; borrows the stream's generator.
struct Writer<'r> {
    rng: &'r mut Rng,
    out: String,
    facility: &'static str,
    timestamp: String,
}

impl<'r> Writer<'r> {
    fn new(rng: &'r mut Rng) -> Writer<'r> {
        let facility = rng.pick(FACILITY);
        let timestamp = timestamp(rng);
        Writer {
            rng,
            out: String::with_capacity(2560),
            facility,
            timestamp,
        }
    }

    /// Ends the segment being written.
    fn end(&mut self) {
        self.out.push('\r');
    }

    /// HD with subcomponents, as it appears inside a CX or XCN: `NGH&2.999.1.3&ISO`.
    fn hd_sub(&self, name: &str) -> String {
        let n = name.bytes().map(u32::from).sum::<u32>() % 97;
        format!("{name}&{OID_ROOT}{n}&ISO")
    }

    /// A clinician as XCN: id, name, degree, assigning authority (HD in subcomponents).
    fn clinician(&mut self) -> String {
        let id = self.rng.digits(10);
        let family = self.rng.pick(FAMILY);
        let given = self.rng.pick(GIVEN);
        let initial = char::from(b'A' + self.rng.below(26) as u8);
        format!("{id}^{family}^{given}^{initial}^^Dr^MD^^NPI&{OID_ROOT}6&ISO^L^^^NPI")
    }

    fn address(&mut self, kind: &str) -> String {
        let number = self.rng.range(1, 9899);
        let street = self.rng.pick(STREET);
        let (city, state, zip) = CITY[self.rng.below(CITY.len())];
        let zip_tail = self.rng.digits(2);
        let other = if self.rng.chance(30) {
            format!(
                "Apt {}{}",
                self.rng.range(1, 40),
                self.rng.pick(&["A", "B", "C"])
            )
        } else {
            String::new()
        };
        format!("{number} {street}^{other}^{city}^{state}^{zip}{zip_tail}^USA^{kind}")
    }

    fn phone(&mut self, use_code: &str) -> String {
        let area = self.rng.range(201, 989);
        let local = self.rng.digits(7);
        format!("^{use_code}^PH^^1^{area}^{local}")
    }

    fn msh(&mut self, kind: MessageKind, control_id: &str) {
        let app = self.rng.pick(SENDING_APP);
        let facility = self.hd_sub(self.facility).replace('&', "^");
        let ts = self.timestamp.clone();
        let _ = write!(
            self.out,
            "MSH|^~\\&|{app}|{facility}|CAUSEWAY|HUB^{OID_ROOT}1^ISO|{ts}-0500||{}|{control_id}|P|2.5.1|||AL|NE|USA|UNICODE UTF-8",
            kind.message_type(),
        );
        if kind == MessageKind::OruR01 {
            self.out
                .push_str("|||PHLabReport-NoAck^HL7^2.16.840.1.113883.9.11^ISO");
        }
        self.end();
    }

    fn pid(&mut self) {
        let fac = self.facility;
        let mrn = self.rng.digits(8);
        let mut ids = format!("{mrn}^^^{}^MR^{fac}", self.hd_sub(fac));
        let extra = self.rng.range(1, 2);
        let _ = write!(ids, "~{}^^^EMPI&{OID_ROOT}90&ISO^PI", self.rng.digits(10));
        if extra == 2 {
            let _ = write!(
                ids,
                "~{}-{}-{}^^^SSA&2.16.840.1.113883.4.1&ISO^SS",
                self.rng.range(900, 999),
                self.rng.digits(2),
                self.rng.digits(4)
            );
        }
        let family = self.rng.pick(FAMILY);
        let given = self.rng.pick(GIVEN);
        let middle = self.rng.pick(GIVEN);
        let mut name = format!("{family}^{given}^{middle}^^^^L");
        if self.rng.chance(25) {
            let _ = write!(name, "~{}^{given}^^^^^M", self.rng.pick(FAMILY));
        }
        let mother = self.rng.pick(FAMILY);
        let dob = date(self.rng, 1931, 2023);
        let sex = self.rng.pick(&["F", "M", "U"]);
        let mut addresses = self.address("H");
        if self.rng.chance(50) {
            let second = self.address("M");
            let _ = write!(addresses, "~{second}");
        }
        let mut phones = self.phone("PRN");
        let cell = self.phone("PRN").replace("^PH^", "^CP^");
        let _ = write!(phones, "~{cell}");
        if self.rng.chance(60) {
            let user = given.to_ascii_lowercase();
            let _ = write!(
                phones,
                "~^NET^Internet^{user}.{}@example.org",
                self.rng.digits(3)
            );
        }
        let work = self.phone("WPN");
        let account = self.rng.digits(9);
        let hd = self.hd_sub(fac);
        let _ = write!(
            self.out,
            "PID|1||{ids}||{name}|{mother}^^^^^^M|{dob}|{sex}||2106-3^White^CDCREC|{addresses}||{phones}|{work}|eng^English^ISO639|M^Married^HL70002|CHR^Christian^HL70006|{account}^^^{hd}^AN||||N^Not Hispanic or Latino^HL70189||N|1|||||N"
        );
        self.end();
    }

    /// PV1 of an inpatient stay: location, attending, referring, admitting.
    fn pv1_inpatient(&mut self) {
        let unit = self.rng.pick(UNIT);
        let room = self.rng.range(100, 699);
        let bed = self.rng.pick(&["A", "B", "1", "2"]);
        let hd = self.hd_sub(self.facility);
        let attending = self.clinician();
        let referring = self.clinician();
        let visit = self.rng.digits(10);
        let ts = self.timestamp.clone();
        let _ = write!(
            self.out,
            "PV1|1|I|{unit}^{room}^{bed}^{hd}^^^MAIN^{}|E^Emergency^HL70007|||{attending}|{referring}||MED||||7|||{attending}|IP^Inpatient^HL70004||{visit}^^^{hd}^VN|SP^Self pay^HL70064||||||||||||||||||{}||||||{ts}",
            self.rng.range(1, 6),
            self.facility,
        );
        self.end();
    }

    /// PV1 of an outpatient encounter, as lab results and orders carry it.
    fn pv1_outpatient(&mut self) {
        let unit = self.rng.pick(UNIT);
        let hd = self.hd_sub(self.facility);
        let attending = self.clinician();
        let visit = self.rng.digits(10);
        let _ = write!(
            self.out,
            "PV1|1|O|{unit}^^^{hd}||||{attending}||||||||||OP^Outpatient^HL70004||{visit}^^^{hd}^VN"
        );
        self.end();
    }

    fn nte(&mut self, set_id: usize) {
        let text = self.rng.pick(NARRATIVE);
        let _ = write!(self.out, "NTE|{set_id}|L|{text}|RE^Remark^HL70364");
        self.end();
    }

    fn adt(&mut self, kind: MessageKind, control_id: &str, admit: bool) {
        self.msh(kind, control_id);
        let ts = self.timestamp.clone();
        let operator = self.clinician();
        let event = if admit { "A01" } else { "A08" };
        let _ = write!(self.out, "EVN|{event}|{ts}|||{operator}|{ts}");
        self.end();
        self.pid();
        let pcp = self.clinician();
        let _ = write!(
            self.out,
            "PD1|||{} Family Practice^^{}|{pcp}",
            self.rng.pick(&["Riverside", "Hilltop", "Bayview"]),
            self.rng.digits(5)
        );
        self.end();
        let contacts = if self.rng.chance(30) { 2 } else { 1 };
        for set_id in 1..=contacts {
            let family = self.rng.pick(FAMILY);
            let given = self.rng.pick(GIVEN);
            let (rel, rel_text) =
                [("SPO", "Spouse"), ("CHD", "Child"), ("PAR", "Parent")][self.rng.below(3)];
            let addr = self.address("H");
            let phone = self.phone("PRN");
            let _ = write!(
                self.out,
                "NK1|{set_id}|{family}^{given}|{rel}^{rel_text}^HL70063|{addr}|{phone}||EC^Emergency Contact^HL70131"
            );
            self.end();
        }
        self.pv1_inpatient();
        let (dx, dx_text) = DIAGNOSIS[self.rng.below(DIAGNOSIS.len())];
        let _ = write!(
            self.out,
            "PV2|||{dx}^{dx_text}^I10||||||{}",
            date(self.rng, 2024, 2025)
        );
        self.end();
        let height = self.rng.range(150, 195);
        let weight = self.rng.range(48, 130);
        let _ = write!(
            self.out,
            "OBX|1|NM|8302-2^Body height^LN||{height}|cm^centimeter^UCUM|||||F|||{ts}\rOBX|2|NM|29463-7^Body weight^LN||{weight}|kg^kilogram^UCUM|||||F|||{ts}"
        );
        self.end();
        for set_id in 1..=self.rng.range(0, 2) {
            let (code, name, system) = ALLERGEN[self.rng.below(ALLERGEN.len())];
            let first = self.rng.pick(REACTION);
            let second = self.rng.pick(REACTION);
            let _ = write!(
                self.out,
                "AL1|{set_id}|DA^Drug allergy^HL70127|{code}^{name}^{system}|MO^Moderate^HL70128|{first}~{second}|{}",
                date(self.rng, 1990, 2024)
            );
            self.end();
        }
        for set_id in 1..=self.rng.range(1, 2) {
            let (code, text) = DIAGNOSIS[self.rng.below(DIAGNOSIS.len())];
            let _ = write!(
                self.out,
                "DG1|{set_id}||{code}^{text}^I10||{ts}|A^Admitting^HL70052"
            );
            self.end();
        }
        if self.rng.chance(40) {
            let family = self.rng.pick(FAMILY);
            let given = self.rng.pick(GIVEN);
            let addr = self.address("H");
            let phone = self.phone("PRN");
            let employer = self.rng.pick(ORG_NAME);
            let _ = write!(
                self.out,
                "GT1|1||{family}^{given}||{addr}|{phone}||{}|F||SEL^Self^HL70063|||||{employer}",
                date(self.rng, 1940, 2005)
            );
            self.end();
        }
        if self.rng.chance(60) {
            self.in1();
        }
    }

    fn in1(&mut self) {
        let (plan, insurer) = INSURER[self.rng.below(INSURER.len())];
        let addr = self.address("B");
        let phone = self.phone("WPN");
        let group = self.rng.digits(6);
        let family = self.rng.pick(FAMILY);
        let given = self.rng.pick(GIVEN);
        let insured_address = self.address("H");
        let _ = write!(
            self.out,
            "IN1|1|{plan}01^{plan} Standard^HL70072|{}^^^{plan}&{OID_ROOT}40&ISO^NIIP|{insurer}|{addr}||{phone}|{group}|GRP {group}|||{}|{}||||{family}^{given}|SEL^Self^HL70063|{}|{}|||||||||||||||||{}",
            self.rng.digits(5),
            date(self.rng, 2020, 2024),
            date(self.rng, 2025, 2027),
            date(self.rng, 1940, 2005),
            insured_address,
            self.rng.digits(11),
        );
        self.end();
    }

    fn oru(&mut self, control_id: &str) {
        self.msh(MessageKind::OruR01, control_id);
        self.pid();
        self.pv1_outpatient();
        let ts = self.timestamp.clone();
        let placer = self.rng.digits(9);
        let filler = self.rng.digits(9);
        let orderer = self.clinician();
        let _ = write!(
            self.out,
            "ORC|RE|{placer}^EHR^{OID_ROOT}7^ISO|{filler}^LAB^{OID_ROOT}8^ISO||CM||||{ts}|||{orderer}"
        );
        self.end();
        let (panel, panel_name) = PANEL[self.rng.below(PANEL.len())];
        let _ = write!(
            self.out,
            "OBR|1|{placer}^EHR^{OID_ROOT}7^ISO|{filler}^LAB^{OID_ROOT}8^ISO|{panel}^{panel_name}^LN|||{ts}|||||||{ts}||{orderer}|||||||{ts}||CH|F"
        );
        self.end();
        let lab = format!(
            "{} Core Laboratory^L^^^^CLIA&2.16.840.1.113883.4.7&ISO^XX^^^{}D{}",
            self.facility,
            self.rng.digits(2),
            self.rng.digits(7)
        );
        let count = self.rng.range(2, 6) as usize;
        for set_id in 1..=count {
            self.obx(set_id, &ts, &lab);
            if self.rng.chance(20) {
                self.nte(1);
            }
        }
        if self.rng.chance(60) {
            let id = self.rng.digits(10);
            let _ = write!(
                self.out,
                "SPM|1|{id}&LAB&{OID_ROOT}8&ISO||119297000^Blood specimen^SCT|||||||||||||{ts}|{ts}"
            );
            self.end();
        }
    }

    fn obx(&mut self, set_id: usize, ts: &str, lab: &str) {
        let roll = self.rng.below(100);
        let (value_type, code, name, value, units, range, flag) = if roll < 65 {
            let (code, name, unit, lo, hi, decimals) =
                NUMERIC_TEST[self.rng.below(NUMERIC_TEST.len())];
            let span = hi - lo;
            // Mostly inside the range, sometimes outside it on either side.
            let v = lo - span * 0.25 + span * 1.5 * (self.rng.below(10_001) as f64 / 10_000.0);
            let v = v.max(0.0);
            let flag = if v < lo {
                "L"
            } else if v > hi {
                "H"
            } else {
                "N"
            };
            (
                "NM",
                code,
                name,
                format!("{v:.decimals$}"),
                format!("{unit}^{unit}^UCUM"),
                format!("{lo:.decimals$}-{hi:.decimals$}"),
                flag,
            )
        } else if roll < 80 {
            let (code, name, values) = STRING_TEST[self.rng.below(STRING_TEST.len())];
            let value = self.rng.pick(values).to_string();
            ("ST", code, name, value, String::new(), String::new(), "N")
        } else if roll < 92 {
            let first = self.rng.pick(NARRATIVE);
            let second = self.rng.pick(NARRATIVE);
            let value = format!("{first}\\.br\\{second}");
            (
                "TX",
                "48767-8",
                "Annotation comment [Interpretation] Narrative",
                value,
                String::new(),
                String::new(),
                "",
            )
        } else {
            let (code, text) =
                [("260385009", "Negative"), ("10828004", "Positive")][self.rng.below(2)];
            (
                "CWE",
                "600-7",
                "Bacteria identified in Blood by Culture",
                format!("{code}^{text}^SCT"),
                String::new(),
                String::new(),
                if code == "10828004" { "A" } else { "N" },
            )
        };
        let _ = write!(
            self.out,
            "OBX|{set_id}|{value_type}|{code}^{name}^LN||{value}|{units}|{range}|{flag}|||F|||{ts}|||||{ts}||||{lab}"
        );
        self.end();
    }

    fn orm(&mut self, control_id: &str) {
        self.msh(MessageKind::OrmO01, control_id);
        self.pid();
        self.pv1_outpatient();
        if self.rng.chance(50) {
            self.in1();
        }
        let ts = self.timestamp.clone();
        let orders = self.rng.range(1, 3);
        for set_id in 1..=orders {
            let placer = self.rng.digits(9);
            let orderer = self.clinician();
            let (code, name) = ORDER_TEST[self.rng.below(ORDER_TEST.len())];
            let priority = self.rng.pick(&["R", "S", "A"]);
            let unit = self.rng.pick(UNIT);
            let phone = self.phone("WPN");
            let _ = write!(
                self.out,
                "ORC|NW|{placer}^EHR^{OID_ROOT}7^ISO|||SC||^^^{ts}^^{priority}||{ts}|||{orderer}|{unit}^^^{}^^^MAIN|{phone}",
                self.facility,
            );
            self.end();
            let (dx, dx_text) = DIAGNOSIS[self.rng.below(DIAGNOSIS.len())];
            let _ = write!(
                self.out,
                "OBR|{set_id}|{placer}^EHR^{OID_ROOT}7^ISO||{code}^{name}^CPT4|||{ts}|||||||||{orderer}||||||||||^^^{ts}^^{priority}||||{dx}^{dx_text}^I10"
            );
            self.end();
            if self.rng.chance(50) {
                self.nte(1);
            }
            let _ = write!(
                self.out,
                "DG1|{set_id}||{dx}^{dx_text}^I10||{ts}|W^Working^HL70052"
            );
            self.end();
        }
    }
}

/// `YYYYMMDDHHMMSS` in 2024–2025.
fn timestamp(rng: &mut Rng) -> String {
    format!(
        "{}{:02}{:02}{:02}",
        date(rng, 2024, 2025),
        rng.range(0, 23),
        rng.range(0, 59),
        rng.range(0, 59)
    )
}

/// `YYYYMMDD` with the year in `from..=to` (day capped at 28: every month has it).
fn date(rng: &mut Rng, from: u64, to: u64) -> String {
    format!(
        "{}{:02}{:02}",
        rng.range(from, to),
        rng.range(1, 12),
        rng.range(1, 28)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> er7::Message {
        let text = std::str::from_utf8(bytes).expect("generator writes ASCII");
        er7::parse(text).expect("generated message parses")
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        assert_eq!(generate(7, 50), generate(7, 50));
        assert_ne!(generate(7, 50), generate(8, 50));
        let with_kinds: Vec<Vec<u8>> = samples(7, 50).into_iter().map(|s| s.bytes).collect();
        assert_eq!(with_kinds, generate(7, 50));
    }

    #[test]
    fn framing_is_er7_with_cr_terminators() {
        for s in samples(1, 400) {
            assert!(s.bytes.starts_with(b"MSH|^~\\&|"));
            assert!(s.bytes.ends_with(b"\r"));
            assert!(!s.bytes.contains(&b'\n'));
            assert!(s.bytes.is_ascii());
            assert!(
                !s.bytes.windows(2).any(|w| w == b"\r\r"),
                "no empty segment"
            );
        }
    }

    #[test]
    fn sizes_and_mix_are_realistic() {
        let corpus = samples(3, 2_000);
        let stats = Stats::of(&corpus);
        assert!(
            (1_700..=2_400).contains(&stats.mean_len()),
            "mean {} bytes",
            stats.mean_len()
        );
        assert!(stats.min_len > 900 && stats.max_len < 5_000, "{stats:?}");
        for count in stats.by_kind {
            assert!(count > 150, "{stats:?}");
        }
    }

    #[test]
    fn headers_name_the_kind_and_version() {
        for s in samples(11, 200) {
            let message = parse(&s.bytes);
            assert_eq!(
                message.query("MSH-9").unwrap().as_deref(),
                Some(s.kind.message_type())
            );
            assert_eq!(message.query("MSH-12").unwrap().as_deref(), Some("2.5.1"));
        }
    }

    #[test]
    fn control_ids_are_unique_within_a_stream() {
        let mut seen = std::collections::HashSet::new();
        for s in samples(5, 1_000) {
            let id = parse(&s.bytes).control_id().expect("MSH-10");
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn patient_fields_repeat_and_carry_subcomponents() {
        for s in samples(13, 200) {
            let message = parse(&s.bytes);
            let pid = message.segment("PID").expect("every kind has PID");
            let ids = &pid.field(3).expect("PID-3").repetitions;
            assert!((2..=3).contains(&ids.len()), "PID-3 has {} ids", ids.len());
            for id in ids {
                let authority = &id.components[3];
                assert_eq!(
                    authority.subcomponents.len(),
                    3,
                    "CX-4 is an HD in subcomponents"
                );
                assert_eq!(authority.subcomponents[2].raw, "ISO");
            }
            assert!(!pid.field(11).unwrap().repetitions.is_empty());
            assert!(pid.field(13).unwrap().repetitions.len() >= 2);
            assert!(
                !message
                    .query("PID-5.1")
                    .unwrap()
                    .unwrap_or_default()
                    .is_empty()
            );
            // Each value in its own field: ethnic group is PID-22, the death indicator PID-30,
            // and the death date PID-29 is empty (a value there is not a date).
            let query = |path: &str| message.query(path).unwrap().unwrap_or_default();
            assert_eq!(query("PID-22.1"), "N");
            assert_eq!(query("PID-21"), "");
            assert_eq!(query("PID-29"), "");
            assert_eq!(query("PID-30"), "N");
        }
    }

    #[test]
    fn results_carry_typed_values_and_escapes() {
        let corpus = samples(17, 600);
        let mut types = std::collections::HashSet::new();
        let mut escapes = std::collections::HashSet::new();
        for s in corpus.iter().filter(|s| s.kind == MessageKind::OruR01) {
            let message = parse(&s.bytes);
            assert!(message.segments_named("OBX").count() >= 2);
            for t in message.query_all("OBX-2").unwrap() {
                types.insert(t);
            }
        }
        for s in &corpus {
            let text = std::str::from_utf8(&s.bytes).unwrap();
            for e in [
                r"\T\",
                r"\S\",
                r"\F\",
                r"\E\",
                r"\R\",
                r"\X0D\\X0A\",
                r"\.br\",
            ] {
                if text.contains(e) {
                    escapes.insert(e);
                }
            }
        }
        for t in ["NM", "ST", "TX", "CWE"] {
            assert!(types.contains(t), "no {t} result in {types:?}");
        }
        assert_eq!(escapes.len(), 7, "escapes seen: {escapes:?}");
    }

    #[test]
    fn escaped_values_decode_to_their_characters() {
        // A delimiter inside a value is always escaped, so decoding gives the
        // character back and splitting never cuts a value in two.
        let corpus = samples(19, 400);
        let decoded: Vec<String> = corpus
            .iter()
            .filter(|s| s.kind == MessageKind::OruR01)
            .flat_map(|s| parse(&s.bytes).query_all("OBX-5").unwrap())
            .collect();
        assert!(decoded.iter().any(|v| v.contains('&')));
        assert!(
            decoded
                .iter()
                .any(|v| v.contains("\r\n") || v.contains('\n'))
        );
    }
}
