//! The v2 -> FHIR vocabulary maps (`crate::vocab`, the IG concept maps) read backwards, for write-back.
//!
//! Where the forward map sends several v2 codes to one FHIR code, the reverse picks the v2 code that
//! means exactly that FHIR code (e.g. `work` -> `B`, not `O`); each table says which. A FHIR code with
//! no v2 counterpart gives `None` and the component is left empty.

use std::borrow::Cow;

/// FHIR system of v2 table `nnnn`.
const V2_TABLE_PREFIX: &str = "http://terminology.hl7.org/CodeSystem/v2-";

/// A FHIR system URI -> the v2 coding-system name for CWE.3 / CWE.6 (HL7 table 0396): the reverse of
/// [`crate::coding_system_uri`]. `http://terminology.hl7.org/CodeSystem/v2-nnnn` -> `HL7nnnn`; a system
/// not known here is written as given (a local name read from v2 comes back as it was sent).
pub fn coding_system_name(uri: &str) -> Cow<'_, str> {
    let name = match uri {
        "http://loinc.org" => "LN",
        "http://snomed.info/sct" => "SCT",
        "http://hl7.org/fhir/sid/icd-10" => "I10",
        "http://hl7.org/fhir/sid/icd-10-cm" => "I10C",
        "http://hl7.org/fhir/sid/icd-9-cm" => "I9C",
        "http://hl7.org/fhir/sid/cvx" => "CVX",
        "http://hl7.org/fhir/sid/mvx" => "MVX",
        "http://hl7.org/fhir/sid/ndc" => "NDC",
        "http://www.nlm.nih.gov/research/umls/rxnorm" => "RXNORM",
        "http://unitsofmeasure.org" => "UCUM",
        "http://www.ama-assn.org/go/cpt" => "C4",
        // v3 ObservationInterpretation shares its codes (H, L, N, A...) with v2 table 0078.
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation" => "HL70078",
        _ => {
            let table = uri
                .strip_prefix(V2_TABLE_PREFIX)
                .filter(|t| t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit()));
            return match table {
                Some(t) => Cow::Owned(format!("HL7{t}")),
                // A local name was percent-encoded to be a URI: give the sender its name back.
                None if !uri.contains(':') => crate::vocab::local_name(uri),
                None => Cow::Borrowed(uri),
            };
        }
    };
    Cow::Borrowed(name)
}

/// FHIR `administrative-gender` -> v2 table 0001.
pub fn sex(gender: &str) -> Option<&'static str> {
    Some(match gender {
        "female" => "F",
        "male" => "M",
        "other" => "O",
        "unknown" => "U",
        _ => return None,
    })
}

/// FHIR `name-use` -> v2 table 0200 (the IG's NameType map reversed; `official` -> `L`).
pub fn name_type(name_use: &str) -> Option<&'static str> {
    Some(match name_use {
        "old" => "BAD",
        "usual" => "D",
        "official" => "L",
        "maiden" => "M",
        "anonymous" => "MSK",
        "nickname" => "N",
        "temp" => "TEMP",
        _ => return None,
    })
}

/// FHIR `address-use` and `address-type` -> v2 table 0190: the use decides (`work` -> `B`), a
/// `postal` type without a use gives `M`.
pub fn address_type(address_use: Option<&str>, address_type: Option<&str>) -> Option<&'static str> {
    let by_use = match address_use {
        Some("old") => Some("BA"),
        Some("billing") => Some("BI"),
        Some("temp") => Some("C"),
        Some("work") => Some("B"),
        Some("home") => Some("H"),
        _ => None,
    };
    by_use.or(match address_type {
        Some("postal") => Some("M"),
        _ => None,
    })
}

/// FHIR `contact-point-system` and `contact-point-use` -> (v2 table 0202 equipment type, table 0201 use).
/// A mobile phone is `CP` (the forward map reads `CP` as `phone` + `mobile`); `url` and `sms` have no
/// 2.5.1 equipment type of their own (`sms` is written as a cell phone).
pub fn telecom(
    system: Option<&str>,
    contact_use: Option<&str>,
) -> (Option<&'static str>, Option<&'static str>) {
    let equipment = match (system, contact_use) {
        (Some("phone" | "sms"), Some("mobile")) | (Some("sms"), _) => Some("CP"),
        (Some("phone"), _) => Some("PH"),
        (Some("fax"), _) => Some("FX"),
        (Some("pager"), _) => Some("BP"),
        (Some("email"), _) => Some("Internet"),
        _ => None,
    };
    let use_code = match (system, contact_use) {
        (Some("email"), _) => Some("NET"),
        (_, Some("home")) => Some("PRN"),
        (_, Some("work")) => Some("WPN"),
        (_, Some("mobile")) => Some("PRS"),
        _ => None,
    };
    (equipment, use_code)
}

/// FHIR v3 MaritalStatus (or a v2-0002 code) -> v2 table 0002 (the IG's MaritalStatus map reversed,
/// taking the v2 code that means the FHIR one: `L` -> `A` separated, `T` -> `P` domestic partner).
pub fn marital_status(code: &str) -> Option<&'static str> {
    Some(match code {
        "L" => "A",
        "D" => "D",
        "M" => "M",
        "S" => "S",
        "W" => "W",
        "C" => "C",
        "T" => "P",
        "A" => "N",
        "I" => "I",
        "U" => "B",
        "UNK" => "U",
        "OTH" => "O",
        "NAVU" => "T",
        _ => return None,
    })
}

/// FHIR `observation-status` -> v2 table 0085 (OBX-11).
pub fn observation_status(status: &str) -> Option<&'static str> {
    Some(match status {
        "registered" => "I",
        "preliminary" => "P",
        "final" => "F",
        "amended" => "A",
        "corrected" => "C",
        "cancelled" => "X",
        "entered-in-error" => "W",
        _ => return None,
    })
}

/// FHIR `diagnostic-report-status` -> v2 table 0123 (OBR-25).
pub fn report_status(status: &str) -> Option<&'static str> {
    Some(match status {
        "registered" => "O",
        "partial" => "R",
        "preliminary" => "P",
        "final" => "F",
        "amended" | "corrected" | "appended" => "C",
        "cancelled" => "X",
        _ => return None,
    })
}

/// FHIR `request-status` -> (v2 table 0119 order control ORC-1, table 0038 order status ORC-5).
/// `active` and `draft` are a new order (`NW`); `revoked` a cancel request (`CA`); `on-hold` a hold
/// request (`HD`); `completed` a status change (`SC`, ORC-5 `CM`); `entered-in-error` a cancel with
/// ORC-5 `ER`.
pub fn order_control(status: Option<&str>) -> (&'static str, Option<&'static str>) {
    match status {
        Some("revoked") => ("CA", Some("CA")),
        Some("on-hold") => ("HD", Some("HD")),
        Some("completed") => ("SC", Some("CM")),
        Some("entered-in-error") => ("CA", Some("ER")),
        _ => ("NW", None),
    }
}

/// FHIR `request-priority` -> v2 table 0485 (TQ1-9, ORC-7.6).
pub fn priority(priority: &str) -> Option<&'static str> {
    Some(match priority {
        "routine" => "R",
        "urgent" => "A",
        "asap" => "A",
        "stat" => "S",
        _ => return None,
    })
}

/// FHIR `appointmentstatus` -> v2 table 0278 filler status (SCH-25).
pub fn appointment_status(status: &str) -> Option<&'static str> {
    Some(match status {
        "proposed" | "pending" => "Pending",
        "waitlist" => "Waitlist",
        "booked" => "Booked",
        "arrived" | "checked-in" => "Started",
        "fulfilled" => "Complete",
        "cancelled" => "Cancelled",
        "entered-in-error" => "Deleted",
        "noshow" => "Noshow",
        _ => return None,
    })
}

/// FHIR `immunization-status` -> (v2 table 0322 completion status RXA-20, table 0206 action code
/// RXA-21). `not-done` is `RE` (refused) when a reason is given, else `NA`; `entered-in-error` is sent
/// as a delete (`D`).
pub fn completion_status(
    status: Option<&str>,
    has_reason: bool,
) -> (Option<&'static str>, &'static str) {
    match status {
        Some("completed") => (Some("CP"), "A"),
        Some("not-done") if has_reason => (Some("RE"), "A"),
        Some("not-done") => (Some("NA"), "A"),
        Some("entered-in-error") => (Some("CP"), "D"),
        _ => (None, "A"),
    }
}

/// v3 RoleCode (what the forward NK1 map writes for table 0063) -> v2 table 0063 relationship.
pub fn relationship(role_code: &str) -> Option<&'static str> {
    Some(match role_code {
        "ONESELF" => "SEL",
        "SPS" => "SPO",
        "SIGOTHR" => "DOM",
        "CHILD" => "CHD",
        "GRNDCHILD" => "GCH",
        "NCHILD" => "NCH",
        "STPCHLD" => "SCH",
        "CHLDFOST" => "FCH",
        "PRN" => "PAR",
        "MTH" => "MTH",
        "FTH" => "FTH",
        "GRPRN" => "GRP",
        "EXT" => "EXF",
        "SIB" => "SIB",
        "BRO" => "BRO",
        "SIS" => "SIS",
        "FRND" => "FND",
        _ => return None,
    })
}

/// FHIR v3 ActCode encounter class -> v2 table 0004 patient class (PV1-2), the IG's PatientClass map
/// reversed.
pub fn patient_class(class: &str) -> Option<&'static str> {
    Some(match class {
        "EMER" => "E",
        "IMP" | "ACUTE" | "NONAC" => "I",
        "AMB" | "OBSENC" | "SS" => "O",
        "PRENC" => "P",
        "HH" | "VR" => "O",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coding_systems_reverse_the_forward_table() {
        for name in [
            "LN", "SCT", "I10", "CVX", "NDC", "RXNORM", "UCUM", "HL70078", "HL70203",
        ] {
            let uri = crate::coding_system_uri(name);
            assert_eq!(coding_system_name(&uri), name, "{name}");
        }
        assert_eq!(coding_system_name("LOCAL"), "LOCAL");
        assert_eq!(
            coding_system_name("http://terminology.hl7.org/CodeSystem/v2-00x1"),
            "http://terminology.hl7.org/CodeSystem/v2-00x1"
        );
    }

    #[test]
    fn tables_reverse_the_forward_tables() {
        for code in ["BAD", "D", "L", "M", "MSK", "N", "TEMP"] {
            let fhir = crate::name_use(code).unwrap();
            assert_eq!(name_type(fhir), Some(code));
        }
        for code in ["BA", "BI", "C", "B", "H"] {
            let u = crate::address_use(code);
            assert_eq!(address_type(u, None), Some(code));
        }
        assert_eq!(address_type(None, Some("postal")), Some("M"));
        for (code, u) in [("PRN", "home"), ("WPN", "work"), ("PRS", "mobile")] {
            assert_eq!(crate::contact_use(code), Some(u));
            assert_eq!(telecom(Some("phone"), Some(u)).1, Some(code));
        }
        assert_eq!(telecom(Some("phone"), Some("mobile")).0, Some("CP"));
    }
}
