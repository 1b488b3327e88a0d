//! One v2 composite value -> one FHIR data type, after the HL7 v2-to-FHIR IG's datatype maps
//! (`XPN[HumanName]`, `XAD[Address]`, `XTN[ContactPoint]`, `CX[Identifier]`, `CWE[CodeableConcept]`).
//!
//! Map: [`xpn`], [`xad`], [`xtn`], [`cx`], [`cwe`], [`quantity`].
//!
//! Invariants: a node that is empty or `""` gives `None`; every component is read as its first
//! subcomponent (a component that carries subcomponents where the type has none never leaks `&` into
//! FHIR text); a component that is `""` counts as empty. A result with none of the elements that
//! identify it (a name with no name part, an identifier with no value, a contact point with no value)
//! is `None`, not an empty FHIR element (FHIR JSON forbids empty objects).

use fhir::{
    Address, CodeableConcept, Coding, ContactPoint, Decimal, HumanName, Identifier, Quantity,
};
use hl7v2::Node;

use crate::error::{Error, ErrorKind};
use crate::read::{Parts, comp, present};
use crate::vocab::{
    V2_0203_SYSTEM, address_type, address_use, coding_system_uri, contact_system_and_use,
    contact_use, name_use,
};

fn absent(node: Node<'_>) -> bool {
    !present(node)
}

/// XPN -> HumanName: family XPN.1.1, given XPN.2 then XPN.3 (kept whole: splitting on spaces would
/// break compound names), suffix XPN.4, XPN.6, XPN.14, prefix XPN.5, use from XPN.7 via table 0200.
///
/// Not mapped here: XPN.10-13 (validity period), XPN.11 (assembly order extension), XPN.15 (called-by,
/// which the IG maps to a second, `nickname` HumanName: [`xpn_called_by`]).
pub fn xpn(node: Node<'_>) -> Option<HumanName> {
    if absent(node) {
        return None;
    }
    let parts = Parts::of(node);
    let name = HumanName {
        family: parts.text(1),
        given: [2, 3].iter().filter_map(|&c| parts.text(c)).collect(),
        prefix: parts.text(5).into_iter().collect(),
        suffix: [4, 6, 14].iter().filter_map(|&c| parts.text(c)).collect(),
        r#use: parts.text(7).and_then(|c| name_use(&c)).map(str::to_owned),
        ..Default::default()
    };
    let has_part = name.family.is_some()
        || !name.given.is_empty()
        || !name.prefix.is_empty()
        || !name.suffix.is_empty();
    has_part.then_some(name)
}

/// A CWE component (its parts are subcomponents) as a string per the IG's `CWE[string]`: the original
/// text CWE.9, else the text CWE.2, else the code CWE.1 (what a sender of v2.6 or earlier, where such
/// components were IS codes, puts there).
pub fn cwe_string(node: Node<'_>) -> Option<String> {
    if absent(node) {
        return None;
    }
    let part = |s: usize| -> Option<String> {
        if node.level() == hl7v2::Level::Component {
            crate::read::text(node.subcomponent(s))
        } else {
            comp(node, s)
        }
    };
    part(9).or_else(|| part(2)).or_else(|| part(1))
}

/// XPN.15 (called by) -> the IG's second HumanName: `given` XPN.15 with use `nickname`, for elements that
/// hold several names (Patient.name, RelatedPerson.name, Practitioner.name). `None` when XPN.15 is empty.
pub fn xpn_called_by(node: Node<'_>) -> Option<HumanName> {
    if absent(node) {
        return None;
    }
    comp(node, 15).map(|called| HumanName {
        given: vec![called],
        r#use: Some("nickname".into()),
        ..Default::default()
    })
}

/// XAD -> Address: line XAD.1.1-3 (street, street name, dwelling number) then XAD.2, then XAD.19
/// (addressee, the IG's line[5]), city XAD.3, state XAD.4, postalCode XAD.5, country XAD.6, district
/// XAD.9 read as `CWE[string]` (see [`cwe_string`]), use and type from XAD.7 via table 0190.
///
/// Not mapped: XAD.7's iso21090 extensions, XAD.10 census tract, XAD.12-14 period.
pub fn xad(node: Node<'_>) -> Option<Address> {
    if absent(node) {
        return None;
    }
    let parts = Parts::of(node);
    let kind = parts.text(7);
    let address = Address {
        line: [(1, 1), (1, 2), (1, 3), (2, 1), (19, 1)]
            .iter()
            .filter_map(|&(c, s)| parts.sub(c, s))
            .collect(),
        city: parts.text(3),
        state: parts.text(4),
        postal_code: parts.text(5),
        country: parts.text(6),
        district: parts.get(9).and_then(cwe_string),
        r#use: kind.as_deref().and_then(address_use).map(str::to_owned),
        r#type: kind.as_deref().and_then(address_type).map(str::to_owned),
        ..Default::default()
    };
    let has_part = !address.line.is_empty()
        || address.city.is_some()
        || address.state.is_some()
        || address.postal_code.is_some()
        || address.country.is_some()
        || address.district.is_some();
    has_part.then_some(address)
}

/// XTN -> ContactPoint.
///
/// - system from XTN.3 via table 0202; with no XTN.3, `email` when XTN.4 is valued (IG rule);
/// - use from XTN.2 via table 0201, else `mobile` for a cell phone (XTN.3 `CP`);
/// - value: for `Internet` / `X.400`, XTN.4 (XTN.1 when XTN.4 is empty, as older senders put the
///   address there); otherwise XTN.12 (unformatted number), else the IG's composition of XTN.5-8
///   (`+5 6 7 X8`) when XTN.7 is valued, else XTN.1;
/// - rank from XTN.18 (preference order) when it is a positive integer.
///
/// Not mapped: the contactpoint-country/area/local/extension extensions, XTN.13-14 period.
pub fn xtn(node: Node<'_>) -> Option<ContactPoint> {
    if absent(node) {
        return None;
    }
    let parts = Parts::of(node);
    let equipment = parts.text(3);
    let (system, equipment_use) = match equipment.as_deref() {
        Some(e) => contact_system_and_use(e),
        None if parts.text(4).is_some() => (Some("email"), None),
        None => (None, None),
    };
    let email = matches!(equipment.as_deref(), Some("Internet" | "X.400"));
    let value = if email {
        parts.text(4).or_else(|| parts.text(1))
    } else if system == Some("email") {
        parts.text(4)
    } else {
        parts
            .text(12)
            .or_else(|| structured_number(&parts))
            .or_else(|| parts.text(1))
    }?;
    Some(ContactPoint {
        system: system.map(str::to_owned),
        value: Some(value),
        r#use: parts
            .text(2)
            .and_then(|u| contact_use(&u))
            .or(equipment_use)
            .map(str::to_owned),
        rank: parts
            .text(18)
            .and_then(|r| r.parse::<u32>().ok())
            .filter(|&r| r > 0),
        ..Default::default()
    })
}

/// The IG's composition `[+XTN.5 ][XTN.6 ]XTN.7[ X XTN.8]`, when XTN.7 is valued.
fn structured_number(parts: &Parts<'_>) -> Option<String> {
    let local = parts.text(7)?;
    let mut out = String::new();
    if let Some(country) = parts.text(5) {
        out.push('+');
        out.push_str(&country);
        out.push(' ');
    }
    if let Some(area) = parts.text(6) {
        out.push_str(&area);
        out.push(' ');
    }
    out.push_str(&local);
    if let Some(ext) = parts.text(8) {
        out.push_str(" X");
        out.push_str(&ext);
    }
    Some(out)
}

/// CX -> Identifier: value CX.1, system from CX.4 (assigning authority), type from CX.5 coded in v2
/// table 0203.
///
/// The system is CX.4 read as an HD by [`crate::entities::authority_system`]: CX.4.2 as `urn:oid:` when
/// CX.4.3 is `ISO` and CX.4.2 is an OID, as `urn:uuid:` for a `UUID`, as given for a `URI`; else the
/// namespace id CX.4.1 as given (a local name, not a URI: mapping local namespaces to URIs is site
/// configuration the caller owns; only what a URI cannot carry is percent-encoded); else CX.4.2; else
/// `default_authority` (e.g. the sending facility's identifier system, for senders that leave CX.4
/// empty). `None` when CX.1 is empty.
///
/// Not mapped: CX.2-3 check digit extensions, CX.6 assigning facility, CX.7-8 period, the assigner
/// Organization reference (the resource layer creates Organizations).
pub fn cx(node: Node<'_>, default_authority: Option<&str>) -> Option<Identifier> {
    if absent(node) {
        return None;
    }
    cx_parts(&Parts::of(node), default_authority)
}

/// [`cx`] of a CX already split, for callers that read more of it.
pub(crate) fn cx_parts(parts: &Parts<'_>, default_authority: Option<&str>) -> Option<Identifier> {
    let value = parts.text(1)?;
    let system = crate::entities::authority_system(
        parts.sub(4, 1),
        parts.sub(4, 2),
        parts.sub(4, 3).as_deref(),
    )
    .or_else(|| default_authority.map(|a| crate::vocab::local_system(a).into_owned()));
    Some(Identifier {
        value: Some(value),
        system,
        r#type: parts
            .text(5)
            .map(|t| CodeableConcept::coding(V2_0203_SYSTEM, t, None)),
        ..Default::default()
    })
}

/// The (code, display, system, version) components of CWE's three codings.
const CWE_TRIPLETS: [(usize, usize, usize, Option<usize>); 3] =
    [(1, 2, 3, Some(7)), (4, 5, 6, Some(8)), (10, 11, 12, None)];

/// CWE (also CE, CNE) -> CodeableConcept: a coding per triplet with a code (CWE.1-3, 4-6, 10-12, versions
/// CWE.7-8), coding-system names mapped by [`coding_system_uri`]; text CWE.9, else CWE.2 when there is
/// no coding (a display sent without a code is still the sender's meaning).
pub fn cwe(node: Node<'_>) -> Option<CodeableConcept> {
    if absent(node) {
        return None;
    }
    let parts = Parts::of(node);
    let coding: Vec<Coding> = CWE_TRIPLETS
        .iter()
        .filter_map(|&(c, d, s, v)| {
            Some(Coding {
                code: Some(parts.text(c).and_then(crate::read::code_text)?),
                display: parts.text(d),
                system: parts.text(s).map(|s| coding_system_uri(&s).into_owned()),
                version: v.and_then(|v| parts.text(v)),
                ..Default::default()
            })
        })
        .collect();
    let text = parts
        .text(9)
        .or_else(|| coding.is_empty().then(|| parts.text(2)).flatten());
    (!coding.is_empty() || text.is_some()).then_some(CodeableConcept {
        coding,
        text,
        ..Default::default()
    })
}

/// NM (e.g. OBX-5) with CWE units (e.g. OBX-6) -> Quantity: code CWE.1, unit CWE.2 (else the code),
/// system from CWE.3 via [`coding_system_uri`] (`UCUM` -> `http://unitsofmeasure.org`).
///
/// The number keeps its digits (`4.10` stays `4.10`); only what JSON numbers cannot carry is rewritten:
/// a leading `+` and leading zeros are dropped, `.5` becomes `0.5`, `5.` becomes `5`. `Ok(None)` when
/// the value is empty or `""`; an error, positioned in `value`, when it is not a number.
pub fn quantity(value: &str, units: Option<Node<'_>>) -> Result<Option<Quantity>, Error> {
    if value.is_empty() || value == "\"\"" {
        return Ok(None);
    }
    let number = json_number(value)?;
    let value = Decimal::new(&number)
        .map_err(|_| Error::new(ErrorKind::Number, 0, format!("`{value}` is not a number")))?;
    let units = units.filter(|u| !absent(*u)).map(Parts::of);
    let code = units.as_ref().and_then(|u| u.text(1));
    Ok(Some(Quantity {
        value: Some(value),
        unit: units
            .as_ref()
            .and_then(|u| u.text(2))
            .or_else(|| code.clone()),
        system: units
            .as_ref()
            .and_then(|u| u.text(3))
            .map(|s| coding_system_uri(&s).into_owned()),
        code,
        ..Default::default()
    }))
}

/// HL7 NM (`[+|-]digits[.digits]`) as JSON number text.
fn json_number(value: &str) -> Result<String, Error> {
    let (sign, body, at) = match value.as_bytes()[0] {
        b'+' => ("", &value[1..], 1),
        b'-' => ("-", &value[1..], 1),
        _ => ("", value, 0),
    };
    if let Some(i) = body.find(|c: char| !c.is_ascii_digit() && c != '.') {
        return Err(Error::new(
            ErrorKind::Number,
            at + i,
            "unexpected character in number",
        ));
    }
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if let Some(i) = frac.find('.') {
        return Err(Error::new(
            ErrorKind::Number,
            at + int.len() + 1 + i,
            "second decimal point in number",
        ));
    }
    if int.is_empty() && frac.is_empty() {
        return Err(Error::new(ErrorKind::Number, at, "number has no digits"));
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let sign = if int == "0" && frac.bytes().all(|b| b == b'0') {
        ""
    } else {
        sign
    };
    Ok(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for (nm, json) in [
            ("4.41", "4.41"),
            ("+4.10", "4.10"),
            ("-0.5", "-0.5"),
            (".5", "0.5"),
            ("5.", "5"),
            ("007", "7"),
            ("-0", "0"),
        ] {
            assert_eq!(json_number(nm).unwrap(), json, "{nm}");
        }
        for (nm, offset) in [("4,1", 1), ("1.2.3", 3), ("+", 1), ("12a", 2), ("<5", 0)] {
            let e = json_number(nm).unwrap_err();
            assert_eq!((e.kind, e.offset), (ErrorKind::Number, offset), "{nm}");
        }
    }
}
