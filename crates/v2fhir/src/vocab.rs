//! The vocabulary maps the data types use, each in one place.
//!
//! Map: v2 table 0200 (name type) -> `HumanName.use`; 0190 (address type) -> `Address.use` and
//! `Address.type`; 0202 (equipment type) -> `ContactPoint.system` (and `use` for cell phones); 0201
//! (telecommunication use) -> `ContactPoint.use`; coding-system names (CWE.3) -> FHIR system URIs.
//!
//! The v2 code maps follow the HL7 v2-to-FHIR IG concept maps (NameType, AddressType[Use],
//! AddressType[Type], TelecommunicationEquipmentType, TelecommunicationUseCode). A code the IG leaves
//! unmapped gives `None`: FHIR has no equivalent, and guessing one would misstate the data. Codes are
//! matched exactly (case-sensitive), as v2 tables define them.

use std::borrow::Cow;

/// The FHIR system of v2 table 0203 (identifier type).
pub const V2_0203_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";

/// v2 table 0200 name type -> FHIR `name-use`.
pub fn name_use(code: &str) -> Option<&'static str> {
    Some(match code {
        "BAD" => "old",
        "D" => "usual",
        "L" | "R" => "official",
        "M" => "maiden",
        "MSK" => "anonymous",
        "N" => "nickname",
        "NAV" | "TEMP" => "temp",
        _ => return None,
    })
}

/// v2 table 0190 address type -> FHIR `address-use`.
pub fn address_use(code: &str) -> Option<&'static str> {
    Some(match code {
        "BA" => "old",
        "BI" => "billing",
        "C" => "temp",
        "B" | "O" => "work",
        "H" => "home",
        _ => return None,
    })
}

/// v2 table 0190 address type -> FHIR `address-type`.
pub fn address_type(code: &str) -> Option<&'static str> {
    Some(match code {
        "M" | "SH" => "postal",
        _ => return None,
    })
}

/// v2 table 0202 equipment type -> FHIR (`contact-point-system`, `contact-point-use`).
///
/// The IG's concept map lists `CP` (cellular phone) as `mobile`, which is a `ContactPoint.use` code,
/// not a system: a cell phone is system `phone` with use `mobile`.
pub fn contact_system_and_use(code: &str) -> (Option<&'static str>, Option<&'static str>) {
    match code {
        "PH" => (Some("phone"), None),
        "FX" => (Some("fax"), None),
        "CP" => (Some("phone"), Some("mobile")),
        "BP" => (Some("pager"), None),
        "Internet" | "X.400" => (Some("email"), None),
        "MD" | "SAT" | "TDD" | "TTY" => (Some("other"), None),
        _ => (None, None),
    }
}

/// v2 table 0201 telecommunication use -> FHIR `contact-point-use`.
pub fn contact_use(code: &str) -> Option<&'static str> {
    Some(match code {
        "PRN" => "home",
        "WPN" => "work",
        "PRS" => "mobile",
        _ => return None,
    })
}

/// A local name (an assigning authority's namespace id, a coding-system name no URI is known for) as a
/// FHIR `uri`: kept as given, except that what a URI cannot carry (whitespace, controls, the
/// characters RFC 3986 excludes such as `"`, `<`, `|`, non-ASCII, a `%` that does not start an escape)
/// is percent-encoded as UTF-8 (`St Mary` ->
/// `St%20Mary`). FHIR's `uri` forbids whitespace, and a system must stay one token in search URLs.
/// Leading and trailing whitespace is dropped. Borrowed when nothing needs encoding (the common case).
/// The sender's name behind a [`local_system`]: percent-escapes decoded (`St%20Mary` -> `St Mary`), for
/// write-back. Borrowed when there is nothing to decode.
pub fn local_name(system: &str) -> Cow<'_, str> {
    if !system.contains('%') {
        return Cow::Borrowed(system);
    }
    let bytes = system.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

pub fn local_system(name: &str) -> Cow<'_, str> {
    // Whitespace around a name is padding, not part of it.
    let name = name.trim();
    let bytes = name.as_bytes();
    let keep = |i: usize| -> bool {
        let b = bytes[i];
        match b {
            b'%' => {
                bytes.len() > i + 2
                    && bytes[i + 1].is_ascii_hexdigit()
                    && bytes[i + 2].is_ascii_hexdigit()
            }
            b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}' => false,
            0x21..=0x7e => true,
            _ => false,
        }
    };
    if (0..bytes.len()).all(keep) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for (i, &b) in bytes.iter().enumerate() {
        if keep(i) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

/// A v2 coding-system name (CWE.3, CWE.6) -> a FHIR system URI; names not known here are kept as given
/// (through [`local_system`], so they are valid URIs).
///
/// `HLnnnn` / `HL7nnnn` (v2 tables) map to `http://terminology.hl7.org/CodeSystem/v2-nnnn`. `I10` is
/// the WHO's ICD-10 (`I10C` is the US clinical modification, ICD-10-CM).
pub fn coding_system_uri(name: &str) -> Cow<'_, str> {
    let name = name.trim();
    let uri = match name {
        "LN" => "http://loinc.org",
        "SCT" | "SNM" => "http://snomed.info/sct",
        "I10" => "http://hl7.org/fhir/sid/icd-10",
        "I10C" | "ICD10CM" => "http://hl7.org/fhir/sid/icd-10-cm",
        "I9C" | "I9CM" => "http://hl7.org/fhir/sid/icd-9-cm",
        "C4" | "CPT" => "http://www.ama-assn.org/go/cpt",
        "ICDO" => "http://terminology.hl7.org/CodeSystem/icd-o",
        "MVX" => "http://hl7.org/fhir/sid/mvx",
        "ISO3166_1" => "urn:iso:std:iso:3166",
        "CVX" => "http://hl7.org/fhir/sid/cvx",
        "NDC" => "http://hl7.org/fhir/sid/ndc",
        "RXNORM" => "http://www.nlm.nih.gov/research/umls/rxnorm",
        "UCUM" => "http://unitsofmeasure.org",
        _ => {
            let table = name
                .strip_prefix("HL7")
                .or_else(|| name.strip_prefix("HL"))
                .filter(|t| t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit()));
            return match table {
                Some(t) => Cow::Owned(["http://terminology.hl7.org/CodeSystem/v2-", t].concat()),
                None => local_system(name),
            };
        }
    };
    Cow::Borrowed(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_round_trip() {
        for name in ["NIST MPI", "St Mary's", "GHH OE", "plain"] {
            assert_eq!(local_name(&local_system(name)), name);
        }
    }

    #[test]
    fn coding_systems() {
        assert_eq!(coding_system_uri("LN"), "http://loinc.org");
        assert_eq!(coding_system_uri("SNM"), "http://snomed.info/sct");
        assert_eq!(
            coding_system_uri("HL70005"),
            "http://terminology.hl7.org/CodeSystem/v2-0005"
        );
        assert_eq!(
            coding_system_uri("HL0078"),
            "http://terminology.hl7.org/CodeSystem/v2-0078"
        );
        // `HL7nnnn` with letters is a placeholder some senders use, not a table: kept.
        assert_eq!(coding_system_uri("HL7nnnn"), "HL7nnnn");
        assert_eq!(coding_system_uri("99zzz"), "99zzz");
        assert_eq!(coding_system_uri("I10"), "http://hl7.org/fhir/sid/icd-10");
        assert_eq!(
            coding_system_uri("I10C"),
            "http://hl7.org/fhir/sid/icd-10-cm"
        );
        assert_eq!(coding_system_uri("C4"), "http://www.ama-assn.org/go/cpt");
        assert_eq!(coding_system_uri("PHIN VS"), "PHIN%20VS");
        assert_eq!(coding_system_uri(" LN"), "http://loinc.org");
    }

    #[test]
    fn local_systems() {
        assert!(matches!(local_system("MR-1.2:x/y"), Cow::Borrowed(_)));
        assert_eq!(local_system("St Mary's\u{a0}Hosp"), "St%20Mary's%C2%A0Hosp");
        assert_eq!(local_system("a|b%zz%41"), "a%7Cb%25zz%41");
    }

    #[test]
    fn tables() {
        assert_eq!(name_use("D"), Some("usual"));
        assert_eq!(name_use("B"), None);
        assert_eq!(address_type("M"), Some("postal"));
        assert_eq!(address_use("M"), None);
        assert_eq!(
            contact_system_and_use("CP"),
            (Some("phone"), Some("mobile"))
        );
        assert_eq!(contact_use("ORN"), None);
    }
}
