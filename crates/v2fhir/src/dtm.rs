//! HL7 DTM / TS / DT text to FHIR `dateTime` / `date` text.
//!
//! Map: [`dtm`] (DTM, TS.1) and [`date`] (DT, or a DTM whose time is not wanted), both returning a
//! [`DateTime`] that carries the FHIR text and the precision the sender gave.
//!
//! Rules (FHIR R4 `dateTime`: a time needs seconds and a zone; a date alone takes no zone):
//! - precision is kept: `2011` -> `2011`, `201101` -> `2011-01`, `20110103` -> `2011-01-03`;
//! - a time to the hour or minute gets `:00` seconds (`201101031434-0800` -> `2011-01-03T14:34:00-08:00`);
//!   fractional seconds are kept digit for digit;
//! - the sender's zone is kept as written, never converted to another zone;
//! - a time without a zone takes the caller's `default_zone` (`+HHMM`, `-HHMM` or `Z`: the zone the sending
//!   system is known to use). Without one, the time is dropped and the value keeps day precision, with
//!   [`DateTime::time_dropped`] set so the caller can record it: inventing a zone would shift the instant;
//! - a zone on a value of day precision or less is checked and then dropped (FHIR forbids it there).
//!
//! Invariant: every returned text matches the FHIR R4 `dateTime` (or `date`) regex, because every part is
//! range-checked (including the day against the month and leap years).

use crate::error::{Error, ErrorKind};

/// The most fractional-second digits accepted; HL7 allows four, FHIR any, and nine (nanoseconds) is
/// the most any sending clock means.
pub const MAX_FRACTION_DIGITS: usize = 9;

/// How precise the sender's value was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    /// Seconds with a fraction.
    Fraction,
}

/// A FHIR `dateTime` (or `date`) text built from an HL7 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateTime {
    text: String,
    precision: Precision,
    time_dropped: bool,
}

impl DateTime {
    /// The FHIR text, e.g. `2011-01-03T14:34:28-08:00`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn into_string(self) -> String {
        self.text
    }

    /// The precision of the FHIR text (day when a time was dropped).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// True when the HL7 value had a time that the FHIR text does not carry.
    pub fn time_dropped(&self) -> bool {
        self.time_dropped
    }
}

/// HL7 DTM/TS text to a FHIR `dateTime`; `Ok(None)` for empty or `""`. See the module docs for the
/// zone rule and `default_zone`.
pub fn dtm(value: &str, default_zone: Option<&str>) -> Result<Option<DateTime>, Error> {
    let default_zone = default_zone.map(parse_default_zone).transpose()?;
    let Some(p) = parse(value)? else {
        return Ok(None);
    };
    Ok(Some(render(&p, default_zone.as_ref(), false)))
}

/// HL7 DT (or DTM) text to a FHIR `date`: the date as the sender wrote it, any time and zone checked and
/// dropped; `Ok(None)` for empty or `""`.
pub fn date(value: &str) -> Result<Option<DateTime>, Error> {
    let Some(p) = parse(value)? else {
        return Ok(None);
    };
    Ok(Some(render(&p, None, true)))
}

struct Parsed<'a> {
    /// `YYYY`, `MM`, `DD`, `HH`, `MM`, `SS` present so far.
    parts: DateParts<'a>,
    fraction: Option<&'a str>,
    /// `+HH:MM` / `-HH:MM`.
    zone: Option<Zone>,
}

/// The parts of a date/time's digits, `YYYY` then up to five pairs, kept inline: every date of
/// every message is split, and a `Vec` was an allocation each time.
pub(crate) struct DateParts<'a> {
    parts: [&'a str; 6],
    len: usize,
}

impl<'a> std::ops::Deref for DateParts<'a> {
    type Target = [&'a str];

    fn deref(&self) -> &[&'a str] {
        &self.parts[..self.len]
    }
}

/// A FHIR zone (`Z`, `+HH:MM`, `-HH:MM`), kept inline.
#[derive(Clone, Copy)]
pub(crate) struct Zone {
    text: [u8; 6],
    len: usize,
}

impl Zone {
    const UTC: Zone = Zone {
        text: *b"Z     ",
        len: 1,
    };

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text[..self.len]).expect("built from ASCII")
    }
}

fn parse(value: &str) -> Result<Option<Parsed<'_>>, Error> {
    if value.is_empty() || value == "\"\"" {
        return Ok(None);
    }
    let syntax = |offset: usize, what: &str| Error::new(ErrorKind::DateTimeSyntax, offset, what);
    let (main, zone) = match value.find(['+', '-']) {
        Some(i) => (&value[..i], Some((i, &value[i..]))),
        None => (value, None),
    };
    let (digits, fraction) = match main.find('.') {
        Some(i) => (&main[..i], Some((i + 1, &main[i + 1..]))),
        None => (main, None),
    };
    if let Some(i) = digits.find(|c: char| !c.is_ascii_digit()) {
        return Err(syntax(i, "unexpected character in date/time"));
    }
    if !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14) {
        return Err(syntax(
            digits.len(),
            "date/time must have 4, 6, 8, 10, 12 or 14 digits before any fraction or zone",
        ));
    }
    let parts = split_parts(digits);
    check_ranges(&parts)?;
    let fraction = match fraction {
        None => None,
        Some((at, f)) => {
            if digits.len() != 14 {
                return Err(syntax(
                    at - 1,
                    "fractional seconds need a time to the second",
                ));
            }
            if f.is_empty() || f.len() > MAX_FRACTION_DIGITS {
                return Err(syntax(at, "fractional seconds must have 1 to 9 digits"));
            }
            if let Some(i) = f.find(|c: char| !c.is_ascii_digit()) {
                return Err(syntax(at + i, "unexpected character in fractional seconds"));
            }
            Some(f)
        }
    };
    let zone = match zone {
        None => None,
        Some((at, z)) => Some(parse_zone(z, at)?),
    };
    Ok(Some(Parsed {
        parts,
        fraction,
        zone,
    }))
}

/// `digits` (4, 6, 8, 10, 12 or 14 ASCII digits) split into `YYYY`, `MM`, `DD`, `HH`, `MM`, `SS`.
pub(crate) fn split_parts(digits: &str) -> DateParts<'_> {
    let mut parts = DateParts {
        parts: [&digits[0..4]; 6],
        len: 1,
    };
    let mut i = 4;
    while i + 2 <= digits.len() && parts.len < 6 {
        parts.parts[parts.len] = &digits[i..i + 2];
        parts.len += 1;
        i += 2;
    }
    parts
}

pub(crate) fn check_ranges(parts: &[&str]) -> Result<(), Error> {
    let num = |s: &str| s.parse::<u32>().unwrap_or(u32::MAX);
    let year = num(parts[0]);
    let month = parts.get(1).map(|m| num(m));
    let limits: [(&str, u32, u32); 6] = [
        ("year", 1, 9999),
        ("month", 1, 12),
        ("day", 1, days_in_month(year, month.unwrap_or(1))),
        ("hour", 0, 23),
        ("minute", 0, 59),
        ("second", 0, 59),
    ];
    let mut offset = 0;
    for (part, (name, lo, hi)) in parts.iter().zip(limits) {
        let n = num(part);
        if n < lo || n > hi {
            return Err(Error::new(
                ErrorKind::DateTimeRange,
                offset,
                format!("{name} `{part}` out of range {lo}..={hi}"),
            ));
        }
        offset += part.len();
    }
    Ok(())
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `+HHMM` at byte `at` to `+HH:MM`; FHIR zones run from -14:00 to +14:00.
pub(crate) fn parse_zone(z: &str, at: usize) -> Result<Zone, Error> {
    let digits = &z[1..];
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::new(
            ErrorKind::DateTimeSyntax,
            at,
            "zone must be +HHMM or -HHMM",
        ));
    }
    let (hh, mm) = (&digits[..2], &digits[2..]);
    let (h, m) = (
        hh.parse::<u32>().unwrap_or(99),
        mm.parse::<u32>().unwrap_or(99),
    );
    if h > 14 || m > 59 || (h == 14 && m != 0) {
        return Err(Error::new(
            ErrorKind::DateTimeRange,
            at,
            format!("zone `{z}` out of range -1400..=+1400"),
        ));
    }
    let (hh, mm) = (hh.as_bytes(), mm.as_bytes());
    Ok(Zone {
        text: [z.as_bytes()[0], hh[0], hh[1], b':', mm[0], mm[1]],
        len: 6,
    })
}

fn parse_default_zone(z: &str) -> Result<Zone, Error> {
    if z == "Z" {
        return Ok(Zone::UTC);
    }
    if !z.starts_with(['+', '-']) {
        return Err(Error::new(
            ErrorKind::DefaultZone,
            0,
            "default zone must be Z, +HHMM or -HHMM",
        ));
    }
    parse_zone(z, 0).map_err(|e| Error::new(ErrorKind::DefaultZone, e.offset, e.message))
}

fn render(p: &Parsed<'_>, default_zone: Option<&Zone>, date_only: bool) -> DateTime {
    // Room for the longest: a time to nine fractional digits with its zone (35 bytes).
    let mut text = String::with_capacity(36);
    text.push_str(p.parts[0]);
    for part in p.parts.iter().skip(1).take(2) {
        text.push('-');
        text.push_str(part);
    }
    let has_time = p.parts.len() > 3;
    let date_precision = match p.parts.len() {
        1 => Precision::Year,
        2 => Precision::Month,
        _ => Precision::Day,
    };
    let zone = p.zone.as_ref().or(default_zone);
    let zone = match zone {
        Some(zone) if has_time && !date_only => zone,
        _ => {
            return DateTime {
                text,
                precision: date_precision,
                time_dropped: has_time,
            };
        }
    };
    text.push('T');
    text.push_str(p.parts[3]);
    text.push(':');
    text.push_str(p.parts.get(4).copied().unwrap_or("00"));
    text.push(':');
    text.push_str(p.parts.get(5).copied().unwrap_or("00"));
    if let Some(f) = p.fraction {
        text.push('.');
        text.push_str(f);
    }
    text.push_str(zone.as_str());
    let precision = match (p.parts.len(), p.fraction) {
        (4, _) => Precision::Hour,
        (5, _) => Precision::Minute,
        (_, None) => Precision::Second,
        (_, Some(_)) => Precision::Fraction,
    };
    DateTime {
        text,
        precision,
        time_dropped: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(v: &str, zone: Option<&str>) -> String {
        dtm(v, zone).unwrap().unwrap().into_string()
    }

    #[test]
    fn precisions() {
        assert_eq!(ok("2011", None), "2011");
        assert_eq!(ok("201101", None), "2011-01");
        assert_eq!(ok("20110103", None), "2011-01-03");
        assert_eq!(ok("2011010314-0800", None), "2011-01-03T14:00:00-08:00");
        assert_eq!(ok("201101031434+0000", None), "2011-01-03T14:34:00+00:00");
        assert_eq!(
            ok("20110103143428.1234-0800", None),
            "2011-01-03T14:34:28.1234-08:00"
        );
        assert_eq!(ok("20110103+0200", None), "2011-01-03");
    }

    #[test]
    fn zone_absent() {
        let d = dtm("20290801070724", None).unwrap().unwrap();
        assert_eq!((d.as_str(), d.time_dropped()), ("2029-08-01", true));
        assert_eq!(d.precision(), Precision::Day);
        assert_eq!(
            ok("20290801070724", Some("-0500")),
            "2029-08-01T07:07:24-05:00"
        );
        assert_eq!(ok("20290801070724", Some("Z")), "2029-08-01T07:07:24Z");
        // The sender's own zone wins over the default.
        assert_eq!(
            ok("20290801070724+0100", Some("Z")),
            "2029-08-01T07:07:24+01:00"
        );
    }

    #[test]
    fn empty_and_null() {
        assert_eq!(dtm("", None).unwrap(), None);
        assert_eq!(dtm("\"\"", None).unwrap(), None);
        assert_eq!(date("\"\"").unwrap(), None);
    }

    #[test]
    fn errors_are_positioned() {
        let e = dtm("20111303", None).unwrap_err();
        assert_eq!((e.kind, e.offset), (ErrorKind::DateTimeRange, 4));
        assert_eq!(e.to_string(), "month `13` out of range 1..=12 at byte 4");
        let e = dtm("20110230", None).unwrap_err();
        assert_eq!((e.kind, e.offset), (ErrorKind::DateTimeRange, 6));
        assert!(dtm("20000229", None).is_ok());
        assert!(dtm("19000229", None).is_err());
        let e = dtm("2011x103", None).unwrap_err();
        assert_eq!((e.kind, e.offset), (ErrorKind::DateTimeSyntax, 4));
        let e = dtm("20110", None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::DateTimeSyntax);
        let e = dtm("201101031434+08", None).unwrap_err();
        assert_eq!((e.kind, e.offset), (ErrorKind::DateTimeSyntax, 12));
        let e = dtm("201101031434+1500", None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::DateTimeRange);
        let e = dtm("201101031460", None).unwrap_err();
        assert_eq!((e.kind, e.offset), (ErrorKind::DateTimeRange, 10));
        let e = dtm("20110103.5", None).unwrap_err();
        assert_eq!((e.kind, e.offset), (ErrorKind::DateTimeSyntax, 8));
        let e = dtm("2011", Some("0800")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::DefaultZone);
    }

    #[test]
    fn date_drops_time() {
        let d = date("198808181126+0215").unwrap().unwrap();
        assert_eq!((d.as_str(), d.time_dropped()), ("1988-08-18", true));
        let d = date("19610615").unwrap().unwrap();
        assert_eq!((d.as_str(), d.time_dropped()), ("1961-06-15", false));
    }
}
