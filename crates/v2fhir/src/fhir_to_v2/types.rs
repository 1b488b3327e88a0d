//! One FHIR data type -> one v2 composite, written at a path: the reverse of `crate::datatypes`.
//!
//! Map: [`dtm`] (dateTime, date, instant -> DTM), [`tm`] (time -> TM), [`cx`] (Identifier -> CX),
//! [`ei`] (Identifier -> EI), [`xpn`] (HumanName -> XPN), [`xad`] (Address -> XAD), [`xtn`]
//! (ContactPoint -> XTN), [`cwe`] (CodeableConcept -> CWE, through the receiver's code maps), [`units`]
//! (Quantity unit -> CWE), [`xcn`] (Practitioner -> XCN), [`pl`] (Location -> PL).
//!
//! Each writer takes the path of the field repetition (`3(2)`) or component (`16(1).9`) it fills and
//! returns whether it wrote anything, so callers number repetitions without gaps.

use fhir::{
    Address, CodeableConcept, Coding, ContactPoint, Decimal, HumanName, Identifier, Location,
    Practitioner, Quantity,
};

use super::resolve::Lookup;
use super::vocab;
use super::writer::Writer;
use super::{Hd, Result};
use crate::error::{Error, ErrorKind};
use crate::profile::Profile;

/// FHIR `dateTime` / `date` / `instant` text -> HL7 DTM, keeping the precision and the zone as written:
/// `2013-04-02T09:30:10.5+01:00` -> `20130402093010.5+0100`, `Z` -> `+0000`, `1974-12` -> `197412`.
/// `element` names the FHIR element in the error.
///
/// # Errors
/// [`ErrorKind::InvalidElement`] when the text is not a FHIR date/dateTime (the value is not quoted),
/// or a part is out of its range (month 13, February 30, hour 24, zone +15:00): the EHR would get a
/// date that does not exist.
pub fn dtm(text: &str, element: &str) -> Result<String> {
    let bad = || {
        Error::new(
            ErrorKind::InvalidElement,
            0,
            format!("{element} is not a FHIR dateTime"),
        )
    };
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let date_parts: Vec<&str> = date.split('-').collect();
    let widths = [4, 2, 2];
    if date_parts.len() > 3
        || date_parts
            .iter()
            .zip(widths)
            .any(|(p, w)| p.len() != w || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    let mut out: String = date_parts.concat();
    let mut zone = String::new();
    if let Some(time) = time {
        if date_parts.len() != 3 {
            return Err(bad());
        }
        let (clock, z) = split_zone(time).ok_or_else(bad)?;
        out.push_str(&clock_digits(clock).ok_or_else(bad)?);
        zone = z;
    }
    // Names the part, not its value: a birth date is patient data.
    let out_of_range = |e: Error| {
        let part = e.message.split(' ').next().unwrap_or("value");
        Error::new(
            ErrorKind::InvalidElement,
            0,
            format!("{element} is not a FHIR dateTime: its {part} is out of range"),
        )
    };
    let whole = out.split_once('.').map_or(out.as_str(), |(w, _)| w);
    crate::dtm::check_ranges(&crate::dtm::split_parts(whole)).map_err(out_of_range)?;
    if !zone.is_empty() {
        crate::dtm::parse_zone(&zone, 0).map_err(out_of_range)?;
    }
    out.push_str(&zone);
    Ok(out)
}

/// Splits `hh:mm:ss[.f](Z|+hh:mm|-hh:mm)` into the clock and the v2 zone (`+0100`; empty when none).
fn split_zone(time: &str) -> Option<(&str, String)> {
    if let Some(clock) = time.strip_suffix('Z') {
        return Some((clock, "+0000".to_owned()));
    }
    match time.find(['+', '-']) {
        Some(i) => {
            let zone = &time[i + 1..];
            let (h, m) = zone.split_once(':')?;
            let ok = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit());
            (ok(h) && ok(m)).then(|| (&time[..i], format!("{}{h}{m}", &time[i..=i])))
        }
        None => Some((time, String::new())),
    }
}

/// `hh:mm[:ss[.f]]` -> `hhmm[ss[.f]]`.
fn clock_digits(clock: &str) -> Option<String> {
    let (main, fraction) = match clock.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (clock, None),
    };
    let parts: Vec<&str> = main.split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut out = parts.concat();
    if let Some(f) = fraction {
        if parts.len() != 3 || f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        out.push('.');
        out.push_str(f);
    }
    Some(out)
}

/// FHIR `time` (`hh:mm:ss[.f]`) -> HL7 TM (`hhmmss[.f]`).
///
/// # Errors
/// [`ErrorKind::InvalidElement`] naming `element`.
pub fn tm(text: &str, element: &str) -> Result<String> {
    clock_digits(text).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidElement,
            0,
            format!("{element} is not a FHIR time"),
        )
    })
}

/// Writes an optional FHIR dateTime as DTM at `path`.
pub(crate) fn put_dtm(w: &mut Writer, path: &str, text: Option<&str>, element: &str) -> Result<()> {
    match text {
        Some(t) if !t.is_empty() => w.put(path, &dtm(t, element)?),
        _ => Ok(()),
    }
}

/// The FHIR system of US social security numbers (PID-19, and PID-3 with authority `USSSA`).
pub(crate) const US_SSN: &str = "http://hl7.org/fhir/sid/us-ssn";

/// An identifier system -> the HD that assigns it: `urn:oid:x` -> `^x^ISO`, `urn:uuid:x` -> `^x^UUID`,
/// another URI -> `^uri^URI`, a local name -> the namespace id (the reverse of `crate::cx`). The US
/// SSN system is the Social Security Administration, `USSSA` (table 0363).
pub fn authority(system: &str) -> Hd {
    if system == US_SSN {
        return Hd::named("USSSA");
    }
    let universal = |id: &str, kind: &str| Hd {
        namespace_id: None,
        universal_id: Some(id.to_owned()),
        universal_id_type: Some(kind.to_owned()),
    };
    if let Some(oid) = system.strip_prefix("urn:oid:") {
        universal(oid, "ISO")
    } else if let Some(uuid) = system.strip_prefix("urn:uuid:") {
        universal(uuid, "UUID")
    } else if system.contains(':') {
        universal(system, "URI")
    } else {
        Hd::named(crate::vocab::local_name(system))
    }
}

/// The v2-0203 code of an identifier's type, when it has one.
pub(crate) fn identifier_type(id: &Identifier) -> Option<&str> {
    let t = id.r#type.as_ref()?;
    t.coding
        .iter()
        .find(|c| c.system.as_deref() == Some(crate::V2_0203_SYSTEM))
        .or_else(|| t.coding.first())
        .and_then(|c| c.code.as_deref())
}

/// Identifier -> CX: CX.1 value, CX.4 assigning authority from the system ([`authority`]), CX.5 the
/// v2-0203 type code. A system equal to `default_authority` (the receiver's, from its profile) leaves
/// CX.4 empty, as the receiver sends it. Nothing is written without a value.
pub(crate) fn cx(
    w: &mut Writer,
    at: &str,
    id: &Identifier,
    default_authority: Option<&str>,
) -> Result<bool> {
    let Some(value) = id.value.as_deref().filter(|v| !v.is_empty()) else {
        return Ok(false);
    };
    w.put(&format!("{at}.1"), value)?;
    if let Some(system) = id
        .system
        .as_deref()
        .filter(|s| Some(*s) != default_authority)
    {
        w.put_hd(&format!("{at}.4"), &authority(system))?;
    }
    w.put_opt(&format!("{at}.5"), identifier_type(id))?;
    Ok(true)
}

/// Identifier -> EI: EI.1 value, EI.2 namespace id, EI.3-4 universal id and type (from the system as
/// [`authority`] reads it).
pub(crate) fn ei(w: &mut Writer, at: &str, id: &Identifier) -> Result<bool> {
    let Some(value) = id.value.as_deref().filter(|v| !v.is_empty()) else {
        return Ok(false);
    };
    w.put(&format!("{at}.1"), value)?;
    if let Some(system) = id.system.as_deref() {
        let hd = authority(system);
        w.put_opt(&format!("{at}.2"), hd.namespace_id.as_deref())?;
        w.put_opt(&format!("{at}.3"), hd.universal_id.as_deref())?;
        w.put_opt(&format!("{at}.4"), hd.universal_id_type.as_deref())?;
    }
    Ok(true)
}

/// HumanName -> XPN: XPN.1 family, XPN.2 first given, XPN.3 the other given names (space-separated),
/// XPN.4 first suffix, XPN.5 prefixes, XPN.14 the other suffixes, XPN.7 name type from `use` (table
/// 0200 reversed). A name with only `text` is not written (splitting free text into parts would guess).
pub(crate) fn xpn(w: &mut Writer, at: &str, name: &HumanName) -> Result<bool> {
    xpn_parts(w, at, name, 0)
}

/// The XPN parts at component offset `shift` (XCN carries them one component later).
fn xpn_parts(w: &mut Writer, at: &str, name: &HumanName, shift: usize) -> Result<bool> {
    let has_part = name.family.as_deref().is_some_and(|f| !f.is_empty())
        || !name.given.is_empty()
        || !name.prefix.is_empty()
        || !name.suffix.is_empty();
    if !has_part {
        return Ok(false);
    }
    let c = |n: usize| format!("{at}.{}", n + shift);
    w.put_opt(&c(1), name.family.as_deref())?;
    w.put_opt(&c(2), name.given.first().map(String::as_str))?;
    w.put(&c(3), &name.given.get(1..).unwrap_or_default().join(" "))?;
    w.put_opt(&c(4), name.suffix.first().map(String::as_str))?;
    w.put(&c(5), &name.prefix.join(" "))?;
    if shift == 0 {
        w.put(&c(14), &name.suffix.get(1..).unwrap_or_default().join(" "))?;
        w.put_opt(&c(7), name.r#use.as_deref().and_then(vocab::name_type))?;
    } else {
        // XCN.10 is the name type.
        w.put_opt(
            &format!("{at}.10"),
            name.r#use.as_deref().and_then(vocab::name_type),
        )?;
    }
    Ok(true)
}

/// Address -> XAD: XAD.1 first line, XAD.2 the other lines (`, `-separated), XAD.3 city, XAD.4 state,
/// XAD.5 postal code, XAD.6 country, XAD.9 district, XAD.7 address type from use/type (table 0190
/// reversed). An address with only `text` is not written.
pub(crate) fn xad(w: &mut Writer, at: &str, a: &Address) -> Result<bool> {
    let has_part = !a.line.is_empty()
        || [&a.city, &a.state, &a.postal_code, &a.country, &a.district]
            .iter()
            .any(|p| p.as_deref().is_some_and(|v| !v.is_empty()));
    if !has_part {
        return Ok(false);
    }
    w.put_opt(&format!("{at}.1"), a.line.first().map(String::as_str))?;
    w.put(
        &format!("{at}.2"),
        &a.line.get(1..).unwrap_or_default().join(", "),
    )?;
    w.put_opt(&format!("{at}.3"), a.city.as_deref())?;
    w.put_opt(&format!("{at}.4"), a.state.as_deref())?;
    w.put_opt(&format!("{at}.5"), a.postal_code.as_deref())?;
    w.put_opt(&format!("{at}.6"), a.country.as_deref())?;
    w.put_opt(
        &format!("{at}.7"),
        vocab::address_type(a.r#use.as_deref(), a.r#type.as_deref()),
    )?;
    w.put_opt(&format!("{at}.9"), a.district.as_deref())?;
    Ok(true)
}

/// ContactPoint -> XTN: XTN.2 use (table 0201), XTN.3 equipment type (table 0202) from system and use;
/// an email address in XTN.4, any other value in XTN.1; the rank in XTN.18 from v2.7 on. Nothing is
/// written without a value.
pub(crate) fn xtn(w: &mut Writer, at: &str, cp: &ContactPoint) -> Result<bool> {
    let Some(value) = cp.value.as_deref().filter(|v| !v.is_empty()) else {
        return Ok(false);
    };
    let (equipment, use_code) = vocab::telecom(cp.system.as_deref(), cp.r#use.as_deref());
    let value_at = if cp.system.as_deref() == Some("email") {
        4
    } else {
        1
    };
    w.put(&format!("{at}.{value_at}"), value)?;
    w.put_opt(&format!("{at}.2"), use_code)?;
    w.put_opt(&format!("{at}.3"), equipment)?;
    if let Some(rank) = cp.rank.filter(|_| w.v27) {
        w.put(&format!("{at}.18"), &rank.to_string())?;
    }
    Ok(true)
}

/// The codings to write for `concept` at `field` (`OBR-4`): the receiver's coding from its code maps
/// ([`crate::codemap::reverse`]) first when there is one, then the concept's own codings with a code.
fn codings_for(concept: &CodeableConcept, field: &str, profile: &Profile) -> Vec<Coding> {
    let mut out: Vec<Coding> = crate::codemap::reverse(profile, concept, field)
        .into_iter()
        .collect();
    for c in &concept.coding {
        let has_code = c.code.as_deref().is_some_and(|x| !x.is_empty());
        let seen = out.iter().any(|o| o.code == c.code && o.system == c.system);
        if has_code && !seen {
            out.push(c.clone());
        }
    }
    out
}

/// CodeableConcept -> CWE at `at`, `field` (`OBX-3`) naming the v2 field for the receiver's code maps.
///
/// The codings (the receiver's own first, see [`crate::codemap::reverse`]) fill CWE.1-3 (code, display,
/// coding-system name via [`vocab::coding_system_name`]) and CWE.4-6, and from v2.7 CWE.10-12; versions
/// go to CWE.7-8. `text` goes to CWE.9 when it differs from the first display, or to CWE.2 when there
/// is no coding (a text-only CWE, as v2 senders write one).
pub(crate) fn cwe(
    w: &mut Writer,
    at: &str,
    concept: &CodeableConcept,
    field: &str,
    profile: &Profile,
) -> Result<bool> {
    let mut codings = codings_for(concept, field, profile);
    codings.truncate(if w.v27 { 3 } else { 2 });
    const TRIPLETS: [(usize, usize, usize, Option<usize>); 3] =
        [(1, 2, 3, Some(7)), (4, 5, 6, Some(8)), (10, 11, 12, None)];
    for (coding, &(c, d, s, v)) in codings.iter().zip(TRIPLETS.iter()) {
        w.put_opt(&format!("{at}.{c}"), coding.code.as_deref())?;
        w.put_opt(&format!("{at}.{d}"), coding.display.as_deref())?;
        if let Some(system) = coding.system.as_deref() {
            w.put(&format!("{at}.{s}"), &vocab::coding_system_name(system))?;
        }
        if let Some(v) = v {
            w.put_opt(&format!("{at}.{v}"), coding.version.as_deref())?;
        }
    }
    let text = concept.text.as_deref().filter(|t| !t.is_empty());
    match (codings.first(), text) {
        (None, Some(t)) => w.put(&format!("{at}.2"), t)?,
        (Some(first), Some(t)) if first.display.as_deref() != Some(t) => {
            w.put(&format!("{at}.9"), t)?;
        }
        _ => {}
    }
    Ok(!codings.is_empty() || text.is_some())
}

/// The plain decimal text of a FHIR decimal (exponent forms such as `1e3` are written out, NM has none).
pub(crate) fn decimal(d: &Decimal) -> String {
    let s = d.as_str();
    if s.contains(['e', 'E']) {
        d.to_f64().to_string()
    } else {
        s.to_owned()
    }
}

/// A Quantity's unit -> CWE units (OBX-6, RXA-7): CWE.1 the code, CWE.2 the unit text, CWE.3 the
/// coding-system name (`UCUM`). A unit without a code is written as text only (CWE.2).
pub(crate) fn units(w: &mut Writer, at: &str, q: &Quantity) -> Result<bool> {
    let code = q.code.as_deref().filter(|c| !c.is_empty());
    let unit = q.unit.as_deref().filter(|u| !u.is_empty());
    if code.is_none() && unit.is_none() {
        return Ok(false);
    }
    w.put_opt(&format!("{at}.1"), code)?;
    w.put_opt(&format!("{at}.2"), unit)?;
    if let (Some(_), Some(system)) = (code, q.system.as_deref()) {
        w.put(&format!("{at}.3"), &vocab::coding_system_name(system))?;
    }
    Ok(true)
}

/// Practitioner -> XCN: XCN.1 the first identifier's value with XCN.9 its assigning authority and XCN.13
/// its type; XCN.2-6 and 10 the first name with parts (as XPN.1-5 and 7). The reverse of
/// `crate::entities::practitioner`.
pub(crate) fn xcn(w: &mut Writer, at: &str, p: &Practitioner) -> Result<bool> {
    let mut wrote = false;
    if let Some(id) = p
        .identifier
        .iter()
        .find(|i| i.value.as_deref().is_some_and(|v| !v.is_empty()))
    {
        wrote = xcn_identifier(w, at, id)?;
    }
    if let Some(name) = p.name.first() {
        wrote |= xpn_parts(w, at, name, 1)?;
    }
    Ok(wrote)
}

/// An identifier alone into XCN.1, XCN.9, XCN.13.
pub(crate) fn xcn_identifier(w: &mut Writer, at: &str, id: &Identifier) -> Result<bool> {
    let Some(value) = id.value.as_deref().filter(|v| !v.is_empty()) else {
        return Ok(false);
    };
    w.put(&format!("{at}.1"), value)?;
    if let Some(system) = id.system.as_deref() {
        w.put_hd(&format!("{at}.9"), &authority(system))?;
    }
    w.put_opt(&format!("{at}.13"), identifier_type(id))?;
    Ok(true)
}

/// The PL component a Location's physical type names (the reverse of `crate::entities::location`'s
/// levels: bed PL.3, room PL.2, ward PL.1, floor PL.8, building PL.7, site/facility PL.4).
fn pl_component(location: &Location) -> Option<usize> {
    let code = location
        .physical_type
        .as_ref()?
        .coding
        .iter()
        .find_map(|c| c.code.as_deref())?;
    Some(match code {
        "bd" => 3,
        "ro" => 2,
        "wa" => 1,
        "lvl" => 8,
        "bu" => 7,
        "si" => 4,
        _ => return None,
    })
}

/// Location (and the Locations it is `partOf`, up to six levels) -> PL: each level's name into the
/// component its physical type names; a level without a known physical type takes PL.1 when free.
/// PL.9 is the first Location's description.
pub(crate) fn pl(
    w: &mut Writer,
    at: &str,
    location: &Location,
    lookup: &Lookup<'_>,
) -> Result<bool> {
    let mut filled: Vec<usize> = Vec::new();
    let mut current = Some(location);
    for _ in 0..6 {
        let Some(loc) = current else { break };
        let component = pl_component(loc).or((!filled.contains(&1)).then_some(1));
        if let (Some(c), Some(name)) = (component, loc.name.as_deref())
            && !filled.contains(&c)
            && !name.is_empty()
        {
            w.put(&format!("{at}.{c}"), name)?;
            filled.push(c);
        }
        current = loc.part_of.as_ref().and_then(|r| lookup.get::<Location>(r));
    }
    if let Some(d) = location.description.as_deref() {
        w.put(&format!("{at}.9"), d)?;
        filled.push(9);
    }
    Ok(!filled.is_empty())
}
