//! Building acknowledgements: ACK with MSA and ERR, in original or enhanced mode.
//!
//! Original mode (MSH-15 and MSH-16 empty) answers each message once with AA, AE or AR.
//! Enhanced mode (MSH-15 or MSH-16 present) separates the commit ACK (CA/CE/CR: "stored
//! safely") from the application ACK (AA/AE/AR), each sent only when the matching field asks
//! for it: AL always, NE never, ER on error, SU on success.
//!
//! The builder is pure: the caller passes the new control id and the timestamp, so this crate
//! reads no clock. The ACK uses the original's separators and charset, swaps sender and
//! receiver, and echoes MSH-10 in MSA-2. ERR follows the layout of the original's version:
//! ERR-2 (location), ERR-3 (table 0357 code), ERR-4 (severity) and ERR-8 (text) from v2.5 on,
//! ERR-1 (location and code together) before.

use crate::charset::Charset;
use crate::error::{Error, Position};
use crate::escape;
use crate::message::Message;
use crate::separators::Separators;

/// MSA-1 acknowledgement codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// Application accept.
    AA,
    /// Application error: the sender may retry.
    AE,
    /// Application reject: retrying will not help.
    AR,
    /// Commit accept (enhanced mode).
    CA,
    /// Commit error (enhanced mode).
    CE,
    /// Commit reject (enhanced mode).
    CR,
}

impl AckCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }

    pub fn parse(s: &str) -> Option<AckCode> {
        Some(match s {
            "AA" => AckCode::AA,
            "AE" => AckCode::AE,
            "AR" => AckCode::AR,
            "CA" => AckCode::CA,
            "CE" => AckCode::CE,
            "CR" => AckCode::CR,
            _ => return None,
        })
    }

    /// True for AA and CA.
    pub fn is_accept(&self) -> bool {
        matches!(self, AckCode::AA | AckCode::CA)
    }

    /// The commit-mode code with the same outcome (AA -> CA ...).
    pub fn to_commit(self) -> AckCode {
        match self {
            AckCode::AA | AckCode::CA => AckCode::CA,
            AckCode::AE | AckCode::CE => AckCode::CE,
            AckCode::AR | AckCode::CR => AckCode::CR,
        }
    }
}

/// When MSH-15 / MSH-16 ask for an acknowledgement (HL7 table 0155).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCondition {
    Always,
    Never,
    OnError,
    OnSuccess,
}

impl AckCondition {
    fn parse(s: &str) -> Option<AckCondition> {
        Some(match s.trim() {
            "AL" => AckCondition::Always,
            "NE" => AckCondition::Never,
            "ER" => AckCondition::OnError,
            "SU" => AckCondition::OnSuccess,
            _ => return None,
        })
    }

    /// Whether an acknowledgement with this outcome should be sent.
    pub fn wants(&self, accepted: bool) -> bool {
        match self {
            AckCondition::Always => true,
            AckCondition::Never => false,
            AckCondition::OnError => !accepted,
            AckCondition::OnSuccess => accepted,
        }
    }
}

/// The acknowledgement protocol a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    Original,
    Enhanced {
        /// MSH-15: commit ACK; `None` when empty (no commit ACK).
        accept: Option<AckCondition>,
        /// MSH-16: application ACK; `None` when empty.
        application: Option<AckCondition>,
    },
}

impl AckMode {
    /// When the receiver sends the accept (commit) acknowledgement: always in original mode and
    /// when MSH-15 is empty, else as MSH-15 says. One rule for Causeway receiving and sending.
    pub fn accept_condition(&self) -> AckCondition {
        match self {
            AckMode::Enhanced {
                accept: Some(condition),
                ..
            } => *condition,
            _ => AckCondition::Always,
        }
    }

    pub fn of(msg: &Message<'_>) -> AckMode {
        let accept = msg.text("MSH-15").and_then(|s| AckCondition::parse(&s));
        let application = msg.text("MSH-16").and_then(|s| AckCondition::parse(&s));
        if accept.is_none() && application.is_none() {
            AckMode::Original
        } else {
            AckMode::Enhanced {
                accept,
                application,
            }
        }
    }
}

/// Severity in ERR-4 (HL7 table 0516).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
    Information,
}

impl Severity {
    fn code(&self) -> &'static str {
        match self {
            Severity::Error => "E",
            Severity::Warning => "W",
            Severity::Information => "I",
        }
    }
}

/// Text for each HL7 table 0357 code.
pub fn err3_text(code: u16) -> &'static str {
    match code {
        0 => "Message accepted",
        100 => "Segment sequence error",
        101 => "Required field missing",
        102 => "Data type error",
        103 => "Table value not found",
        104 => "Value too long",
        200 => "Unsupported message type",
        201 => "Unsupported event code",
        202 => "Unsupported processing id",
        203 => "Unsupported version id",
        204 => "Unknown key identifier",
        205 => "Duplicate key identifier",
        206 => "Application record locked",
        207 => "Application internal error",
        _ => "Error",
    }
}

/// One ERR segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    /// HL7 table 0357 code.
    pub code: u16,
    pub severity: Severity,
    /// Where the problem is; `None` for the message as a whole.
    pub location: Option<Position>,
    /// Free text for people (ERR-8, or MSA-3); never patient data.
    pub text: String,
}

impl AckError {
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        AckError {
            code,
            severity: Severity::Error,
            location: None,
            text: text.into(),
        }
    }

    pub fn at(mut self, location: Position) -> Self {
        self.location = Some(location);
        self
    }

    /// The ERR for a parse error.
    pub fn from_error(error: &Error) -> Self {
        AckError {
            code: error.err3_code(),
            severity: Severity::Error,
            location: (error.position.segment_index > 0).then_some(error.position),
            text: error.to_string(),
        }
    }
}

/// What the ACK's own MSH needs from the caller.
#[derive(Debug, Clone, Copy)]
pub struct AckHeader<'s> {
    /// MSH-10 of the ACK itself.
    pub control_id: &'s str,
    /// MSH-7, e.g. `20240102030405.123+0000`.
    pub timestamp: &'s str,
}

/// Builds the ACK for a parsed message.
pub fn build_ack(
    original: &Message<'_>,
    code: AckCode,
    errors: &[AckError],
    header: AckHeader<'_>,
) -> Vec<u8> {
    let seps = original.separators();
    let raw = |path: &str| {
        original
            .get(path)
            .ok()
            .flatten()
            .map(|n| n.raw())
            .unwrap_or_default()
    };
    let trigger = original
        .get("MSH-9.2")
        .ok()
        .flatten()
        .map(|n| n.raw())
        .unwrap_or_default();
    let fields = MshFields {
        sending_app: raw("MSH-5"),
        sending_facility: raw("MSH-6"),
        receiving_app: raw("MSH-3"),
        receiving_facility: raw("MSH-4"),
        trigger,
        processing_id: raw("MSH-11"),
        version: raw("MSH-12"),
        charset: raw("MSH-18"),
        original_control_id: raw("MSH-10"),
    };
    let version = original
        .version()
        .map(|v| v.into_owned())
        .unwrap_or_default();
    // ERL-2 counts occurrences of the segment id, not positions in the message.
    let occurrence = |p: &Position| {
        original
            .segments()
            .take(p.segment_index as usize)
            .filter(|s| s.id().as_bytes() == p.segment_id)
            .count()
    };
    write_ack(
        &seps,
        original.charset(),
        &fields,
        &version,
        code,
        errors,
        header,
        &occurrence,
    )
}

/// MSH-1/MSH-2 (or the standard separators when unreadable) and the raw MSH fields of the
/// first line, `parts[0]` being MSH-2; no fields when the first line is not MSH.
fn msh_parts(bytes: &[u8]) -> (Separators, Vec<&[u8]>) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = bytes
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    let line_end = memchr::memchr2(b'\r', b'\n', bytes).unwrap_or(bytes.len());
    let line = &bytes[..line_end];
    if !line.starts_with(b"MSH") || line.len() <= 3 {
        return (Separators::default(), Vec::new());
    }
    let seps = Separators::from_header(line, 0, true)
        .map(|(s, _)| s)
        .unwrap_or_default();
    (seps, line[4..].split(|&b| b == line[3]).collect())
}

/// Header fields read from bytes that did not parse, as far as MSH can be read: each the
/// first component, as text (escapes not decoded). Empty strings for what is unreadable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawHeader {
    pub sending_application: String,
    pub sending_facility: String,
    /// `code^trigger`, e.g. `ADT^A01`.
    pub message_type: String,
    pub control_id: String,
    pub version: String,
}

/// Reads what it can of MSH from bytes that [`crate::parse`] refused, so a refused message
/// can still be stored and found by its control id.
pub fn read_raw_header(bytes: &[u8]) -> RawHeader {
    let (seps, parts) = msh_parts(bytes);
    let component = |n: usize, c: usize| -> String {
        let field = parts.get(n - 2).copied().unwrap_or_default();
        let value = field
            .split(|&b| b == seps.component)
            .nth(c - 1)
            .unwrap_or_default();
        String::from_utf8_lossy(value).into_owned()
    };
    let code = component(9, 1);
    let trigger = component(9, 2);
    RawHeader {
        sending_application: component(3, 1),
        sending_facility: component(4, 1),
        message_type: if trigger.is_empty() {
            code
        } else {
            format!("{code}^{trigger}")
        },
        control_id: component(10, 1),
        version: component(12, 1),
    }
}

/// Builds a negative ACK for bytes that did not parse, from whatever of MSH can be read.
///
/// Uses the message's own separators when MSH-1/MSH-2 are readable and the standard ones
/// otherwise, so the sender gets an answer it can match by MSA-2 whenever MSH-10 is readable.
pub fn build_nak_for_bytes(
    bytes: &[u8],
    code: AckCode,
    error: &AckError,
    header: AckHeader<'_>,
) -> Vec<u8> {
    let (seps, parts) = msh_parts(bytes);
    // parts[0] is MSH-2, so MSH-n is parts[n - 2].
    let field = |n: usize| -> &[u8] {
        let v = parts.get(n - 2).copied().unwrap_or_default();
        // Only reuse a field if it cannot break the ACK's own structure.
        if v.iter()
            .all(|&b| b != b'\r' && b != b'\n' && b != seps.field)
        {
            v
        } else {
            b""
        }
    };
    let trigger = field(9)
        .split(|&b| b == seps.component)
        .nth(1)
        .unwrap_or_default();
    let fields = MshFields {
        sending_app: field(5),
        sending_facility: field(6),
        receiving_app: field(3),
        receiving_facility: field(4),
        trigger,
        processing_id: field(11),
        version: field(12),
        charset: b"",
        original_control_id: field(10),
    };
    let version = String::from_utf8_lossy(
        fields
            .version
            .split(|&b| b == seps.component)
            .next()
            .unwrap_or_default(),
    )
    .into_owned();
    let charset = Charset::Utf8;
    write_ack(
        &seps,
        charset,
        &fields,
        &version,
        code,
        std::slice::from_ref(error),
        header,
        &|p| p.segment_index as usize,
    )
}

struct MshFields<'a> {
    sending_app: &'a [u8],
    sending_facility: &'a [u8],
    receiving_app: &'a [u8],
    receiving_facility: &'a [u8],
    trigger: &'a [u8],
    processing_id: &'a [u8],
    version: &'a [u8],
    charset: &'a [u8],
    original_control_id: &'a [u8],
}

/// True for versions before 2.5 (ERR-1 layout); unknown versions get the modern layout.
fn uses_err1(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.trim().parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(2), Some(minor)) => minor < 5,
        (Some(major), _) => major < 2,
        _ => false,
    }
}

#[allow(clippy::too_many_arguments)]
fn write_ack(
    seps: &Separators,
    charset: Charset,
    f: &MshFields<'_>,
    version: &str,
    code: AckCode,
    errors: &[AckError],
    header: AckHeader<'_>,
    occurrence: &dyn Fn(&Position) -> usize,
) -> Vec<u8> {
    let fs = seps.field;
    let enc = |text: &str| escape::encode(text, seps, charset).into_owned();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"MSH");
    out.push(fs);
    out.extend_from_slice(&seps.encoding_characters());
    let field = |out: &mut Vec<u8>, value: &[u8]| {
        out.push(fs);
        out.extend_from_slice(value);
    };
    field(&mut out, f.sending_app);
    field(&mut out, f.sending_facility);
    field(&mut out, f.receiving_app);
    field(&mut out, f.receiving_facility);
    field(&mut out, &enc(header.timestamp));
    field(&mut out, b"");
    let mut msh9 = b"ACK".to_vec();
    if !f.trigger.is_empty() {
        msh9.push(seps.component);
        msh9.extend_from_slice(f.trigger);
        msh9.push(seps.component);
        msh9.extend_from_slice(b"ACK");
    }
    field(&mut out, &msh9);
    field(&mut out, &enc(header.control_id));
    field(
        &mut out,
        if f.processing_id.is_empty() {
            b"P"
        } else {
            f.processing_id
        },
    );
    field(
        &mut out,
        if f.version.is_empty() {
            b"2.5"
        } else {
            f.version
        },
    );
    if !f.charset.is_empty() {
        for _ in 13..18 {
            field(&mut out, b"");
        }
        field(&mut out, f.charset);
    }
    out.push(b'\r');

    out.extend_from_slice(b"MSA");
    field(&mut out, code.as_str().as_bytes());
    field(&mut out, f.original_control_id);
    if let Some(first) = errors.first().filter(|_| !code.is_accept()) {
        // MSA-3 is deprecated since v2.4 but many receivers still only read it.
        field(&mut out, &enc(&truncate(&first.text, 80)));
    }
    out.push(b'\r');

    let old_layout = uses_err1(version);
    let comp = seps.component;
    let sub = seps.subcomponent.unwrap_or(b'&');
    for e in errors {
        out.extend_from_slice(b"ERR");
        let loc = e.location.filter(|p| p.segment_index > 0);
        let num = |n: u16| if n == 0 { String::new() } else { n.to_string() };
        if old_layout {
            // ERR-1 (ELD): segment ^ sequence ^ field ^ code & text & table
            let mut eld = Vec::new();
            if let Some(p) = loc {
                eld.extend_from_slice(p.segment_id_str().as_bytes());
                eld.push(comp);
                eld.extend_from_slice(occurrence(&p).to_string().as_bytes());
                eld.push(comp);
                eld.extend_from_slice(num(p.field).as_bytes());
            } else {
                eld.push(comp);
                eld.push(comp);
            }
            eld.push(comp);
            eld.extend_from_slice(e.code.to_string().as_bytes());
            eld.push(sub);
            eld.extend_from_slice(&enc(err3_text(e.code)));
            eld.push(sub);
            eld.extend_from_slice(b"HL70357");
            field(&mut out, &eld);
        } else {
            field(&mut out, b"");
            let mut erl = Vec::new();
            if let Some(p) = loc {
                let parts = [
                    p.segment_id_str().to_string(),
                    occurrence(&p).to_string(),
                    num(p.field),
                    num(p.repetition.max(u16::from(p.field > 0))),
                    num(p.component),
                    num(p.subcomponent),
                ];
                let joined: Vec<&str> = parts.iter().map(String::as_str).collect();
                erl = joined
                    .join(std::str::from_utf8(&[comp]).unwrap_or("^"))
                    .into_bytes();
                while erl.last() == Some(&comp) {
                    erl.pop();
                }
            }
            field(&mut out, &erl);
            let mut cwe = e.code.to_string().into_bytes();
            cwe.push(comp);
            cwe.extend_from_slice(&enc(err3_text(e.code)));
            cwe.push(comp);
            cwe.extend_from_slice(b"HL70357");
            field(&mut out, &cwe);
            field(&mut out, e.severity.code().as_bytes());
            for _ in 5..8 {
                field(&mut out, b"");
            }
            field(&mut out, &enc(&e.text));
        }
        out.push(b'\r');
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    const HEADER: AckHeader<'static> = AckHeader {
        control_id: "ACK1",
        timestamp: "20240102030405",
    };

    #[test]
    fn original_mode_accept() {
        let m =
            parse(b"MSH|^~\\&|LAB|HOSP|EHR|CLINIC|20240101||ORU^R01^ORU_R01|C42|P|2.5.1\rPID|1\r")
                .unwrap();
        assert_eq!(AckMode::of(&m), AckMode::Original);
        let ack = build_ack(&m, AckCode::AA, &[], HEADER);
        assert_eq!(
            String::from_utf8(ack).unwrap(),
            "MSH|^~\\&|EHR|CLINIC|LAB|HOSP|20240102030405||ACK^R01^ACK|ACK1|P|2.5.1\rMSA|AA|C42\r"
        );
    }

    #[test]
    fn error_with_location_v25_and_v23() {
        let m = parse(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C7|P|2.5\rPID|1\rPID|2\r").unwrap();
        let p = m
            .get("PID(2)-3")
            .unwrap()
            .map(|n| n.position())
            .unwrap_or(Position {
                segment_index: 3,
                segment_id: *b"PID",
                field: 3,
                ..Position::default()
            });
        let err = AckError::new(101, "PID-3 is required").at(p);
        let ack = String::from_utf8(build_ack(
            &m,
            AckCode::AE,
            std::slice::from_ref(&err),
            HEADER,
        ))
        .unwrap();
        assert_eq!(
            ack,
            "MSH|^~\\&|C|D|A|B|20240102030405||ACK^A01^ACK|ACK1|P|2.5\rMSA|AE|C7|PID-3 is required\rERR||PID^2^3^1|101^Required field missing^HL70357|E||||PID-3 is required\r"
        );
        let old = parse(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C7|P|2.3\rPID|1\rPID|2\r").unwrap();
        let ack = String::from_utf8(build_ack(&old, AckCode::AR, &[err], HEADER)).unwrap();
        assert!(
            ack.ends_with(
                "MSA|AR|C7|PID-3 is required\rERR|PID^2^3^101&Required field missing&HL70357\r"
            ),
            "{ack}"
        );
    }

    #[test]
    fn enhanced_mode() {
        let m = parse(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|C7|P|2.5|||AL|ER\r").unwrap();
        let AckMode::Enhanced {
            accept,
            application,
        } = AckMode::of(&m)
        else {
            panic!("not enhanced")
        };
        assert!(accept.unwrap().wants(true));
        assert!(!application.unwrap().wants(true));
        assert!(application.unwrap().wants(false));
        let ack = String::from_utf8(build_ack(&m, AckCode::CA, &[], HEADER)).unwrap();
        assert!(ack.contains("\rMSA|CA|C7\r"));
    }

    #[test]
    fn raw_header_of_unparseable_bytes() {
        let h = read_raw_header(
            b"\xEF\xBB\xBFMSH|^~\\&|APP|FAC|R|RF|x||ADT^A01^ADT_A01|C9|P|2.5.1\rPIDX|\r",
        );
        assert_eq!(
            h,
            RawHeader {
                sending_application: "APP".into(),
                sending_facility: "FAC".into(),
                message_type: "ADT^A01".into(),
                control_id: "C9".into(),
                version: "2.5.1".into(),
            }
        );
        assert_eq!(read_raw_header(b"PID|1\r"), RawHeader::default());
    }

    #[test]
    fn nak_from_unparseable_bytes() {
        let err = AckError::new(100, "message does not start with MSH");
        let nak =
            String::from_utf8(build_nak_for_bytes(b"PID|1\r", AckCode::AR, &err, HEADER)).unwrap();
        assert_eq!(
            nak,
            "MSH|^~\\&|||||20240102030405||ACK|ACK1|P|2.5\rMSA|AR||message does not start with MSH\rERR|||100^Segment sequence error^HL70357|E||||message does not start with MSH\r"
        );
        let nak = String::from_utf8(build_nak_for_bytes(
            b"MSH|^~\\&|A|B|C|D|x||ADT^A01|C9|P|2.5\rPIDX|\r",
            AckCode::AR,
            &err,
            HEADER,
        ))
        .unwrap();
        assert!(
            nak.starts_with("MSH|^~\\&|C|D|A|B|20240102030405||ACK^A01^ACK|ACK1|P|2.5\rMSA|AR|C9|"),
            "{nak}"
        );
    }
}
