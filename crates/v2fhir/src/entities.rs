//! The resources v2 composite types name: XCN -> Practitioner, XON and HD -> Organization, PL -> Location,
//! HD (application) -> Device. Each is added once per bundle (deterministic id) and returned as an index.
//!
//! Also the identifier helpers these share: [`identifier`] (CX with its type display, period and
//! assigner Organization) and [`v2_0203_display`].

use fhir::{
    CodeableConcept, Coding, Device, HumanName, Identifier, Location, Organization, Period,
    Practitioner, Reference,
};
use hl7v2::Node;

use crate::context::{Ctx, Entity};
use crate::read::{Parts, comp, present, sub, text};

/// `http://terminology.hl7.org/CodeSystem/v2-0301`, universal id types (HD.3).
pub const V2_0301: &str = "http://terminology.hl7.org/CodeSystem/v2-0301";
/// `http://terminology.hl7.org/CodeSystem/location-physical-type`.
pub const LOCATION_PHYSICAL_TYPE: &str =
    "http://terminology.hl7.org/CodeSystem/location-physical-type";

/// The display of a v2 table 0203 identifier type, for the codes senders use most.
pub fn v2_0203_display(code: &str) -> Option<&'static str> {
    Some(match code {
        "AM" => "American Express",
        "AN" => "Account number",
        "ANC" => "Account number Creditor",
        "AND" => "Account number debitor",
        "ANON" => "Anonymous identifier",
        "BA" => "Bank Account Number",
        "BC" => "Bank Card Number",
        "BR" => "Birth registry number",
        "DI" => "Diner’s Club card",
        "DL" => "Driver's license number",
        "DN" => "Doctor number",
        "EI" => "Employee number",
        "EN" => "Employer number",
        "FI" => "Facility ID",
        "FILL" => "Filler Identifier",
        "LR" => "Local Registry ID",
        "MA" => "Patient Medicaid number",
        "MB" => "Member Number",
        "MC" => "Patient's Medicare number",
        "MI" => "Military ID number",
        "MR" => "Medical record number",
        "NH" => "National Health Plan Identifier",
        "NI" => "National unique individual identifier",
        "NIIP" => "National Insurance Payor Identifier (Payor)",
        "NPI" => "National provider identifier",
        "PI" => "Patient internal identifier",
        "PLAC" => "Placer Identifier",
        "PN" => "Person number",
        "PPN" => "Passport number",
        "PRN" => "Provider number",
        "PT" => "Patient external identifier",
        "SB" => "Social Beneficiary Identifier",
        "SL" => "State license",
        "SN" => "Subscriber Number",
        "SR" => "State registry ID",
        "SS" => "Social Security number",
        "TAX" => "Tax ID number",
        "U" => "Unspecified identifier",
        "VN" => "Visit number",
        "XX" => "Organization identifier",
        _ => return None,
    })
}

/// The display of a v2 table 0301 universal id type (HD.3).
fn v2_0301_display(code: &str) -> Option<&'static str> {
    Some(match code {
        "DNS" => {
            "An Internet host name, in accordance with RFC 1035; or an IP address. Either in ASCII or as integers, with periods between components (“dotted” notation)."
        }
        "GUID" => "Same as UUID.",
        "HCD" => "The CEN Healthcare Coding Scheme Designator",
        "ISO" => {
            "An International Standards Organization Object Identifier (OID), in accordance with ISO/IEC 8824. Formatted as decimal digits separated by periods; recommended limit of 64 characters"
        }
        "URI" => "Uniform Resource Identifier",
        "UUID" => {
            "The DCE Universal Unique Identifier, in accordance with RFC 4122. Recommended format is 32 hexadecimal digits separated by hyphens, in the digit grouping 8-4-4-4-12"
        }
        "X400" => "An X.400 MHS identifier",
        "X500" => "An X.500 directory name",
        _ => return None,
    })
}

/// A v2-0203 identifier type concept with its display where known.
pub fn identifier_type(code: String) -> CodeableConcept {
    let display = v2_0203_display(&code);
    CodeableConcept::coding(crate::V2_0203_SYSTEM, code, display)
}

/// CX `node` -> Identifier per `CX[Identifier]`: [`crate::cx`] (value, system, type) plus the type's
/// display, period CX.7-8 and the assigner Organization from CX.4 when it carries a universal id.
pub fn identifier(ctx: &mut Ctx<'_>, node: Node<'_>, at: &str) -> Option<Identifier> {
    if !present(node) {
        return None;
    }
    let parts = Parts::of(node);
    let mut id = crate::datatypes::cx_parts(&parts, ctx.profile.default_authority.as_deref())?;
    // `cx_parts` typed it from CX.5 in table 0203; the display is added here.
    if let Some(coding) = id.r#type.as_mut().and_then(|t| t.coding.first_mut()) {
        coding.display = coding
            .code
            .as_deref()
            .and_then(v2_0203_display)
            .map(str::to_owned);
    }
    let start = ctx.date(parts.get(7), at);
    let end = ctx.date(parts.get(8), at);
    id.period = period(start, end);
    id.assigner = parts.get(4).and_then(|hd| assigner(ctx, hd));
    Some(id)
}

/// A Period from optional start and end; `None` when both are empty.
pub fn period(start: Option<String>, end: Option<String>) -> Option<Period> {
    (start.is_some() || end.is_some()).then(|| Period {
        start,
        end,
        ..Default::default()
    })
}

/// An HD naming who assigned an identifier (CX.4, XCN.9, XON.6) -> a reference to its Organization, when
/// the HD carries a universal id (a namespace id alone is already the identifier's system).
pub fn assigner(ctx: &mut Ctx<'_>, hd: Node<'_>) -> Option<Reference> {
    // Only whether HD.2 holds a value: reading it as text here was three strings per identifier.
    hd_part(hd, 2).filter(|u| present(*u))?;
    organization_hd(ctx, hd).map(|i| ctx.reference(i))
}

/// XCN (or CNN/NDL name part) -> Practitioner per `XCN[Practitioner]`: identifier XCN.1 with system
/// from XCN.9 (assigner Organization when it has a universal id) and type XCN.13; name family XCN.2,
/// given XCN.3-4, suffix XCN.5, XCN.7 and XCN.21, prefix XCN.6, use XCN.10 (table 0200), period
/// XCN.19-20. The id comes from the identifier when there is one, else from the name.
pub fn practitioner(ctx: &mut Ctx<'_>, xcn: Node<'_>) -> Option<usize> {
    ctx.memo(Entity::Practitioner, xcn, build_practitioner)
}

fn build_practitioner(ctx: &mut Ctx<'_>, xcn: Node<'_>) -> Option<usize> {
    if !present(xcn) {
        return None;
    }
    let parts = Parts::of(xcn);
    let identifier = parts.text(1).map(|value| {
        let system = parts
            .get(9)
            .and_then(hd_system)
            .or_else(|| ctx.profile.default_authority.clone().map(local));
        Identifier {
            value: Some(value),
            system,
            r#type: parts.text(13).map(identifier_type),
            ..Default::default()
        }
    });
    // The id first: a practitioner named in several fields of one message is built once.
    let id = match &identifier {
        Some(i) => ctx.id(
            "Practitioner",
            &[
                i.system.as_deref().unwrap_or(""),
                i.value.as_deref().unwrap_or(""),
            ],
        ),
        None => ctx.id("Practitioner", &["name", &xcn.decoded()]),
    };
    if let Some(i) = ctx.existing("Practitioner", &id) {
        return Some(i);
    }
    let name = xcn_name_parts(ctx, &parts);
    if identifier.is_none() && name.is_none() {
        return None;
    }
    let identifier = identifier.map(|mut i| {
        i.assigner = parts.get(9).and_then(|hd| assigner(ctx, hd));
        i
    });
    let resource = Practitioner {
        id: Some(id),
        identifier: identifier.into_iter().collect(),
        name: name.into_iter().collect(),
        ..Default::default()
    };
    Some(ctx.add_identified(resource, |p| conditional_identity(&p.identifier)))
}

/// The name in an XCN (XCN.2-7, 10, 19-21): XCN.2..7 are XPN.1..6 shifted by one.
pub fn xcn_name(ctx: &mut Ctx<'_>, xcn: Node<'_>) -> Option<HumanName> {
    xcn_name_parts(ctx, &Parts::of(xcn))
}

fn xcn_name_parts(ctx: &mut Ctx<'_>, xcn: &Parts<'_>) -> Option<HumanName> {
    let family = xcn.text(2);
    let given: Vec<String> = [3, 4].iter().filter_map(|&c| xcn.text(c)).collect();
    let prefix: Vec<String> = xcn.text(6).into_iter().collect();
    let suffix: Vec<String> = [5, 7, 21].iter().filter_map(|&c| xcn.text(c)).collect();
    if family.is_none() && given.is_empty() {
        return None;
    }
    let given_at = |c| xcn.get(c).filter(|n| present(*n));
    let (start, end) = match (given_at(19), given_at(20)) {
        (None, None) => (None, None),
        (from, to) => {
            let at = format!("{}(XCN.19)", ctx.at_segment);
            (ctx.dtm(from, at.clone()), ctx.dtm(to, at))
        }
    };
    Some(HumanName {
        family,
        given,
        prefix,
        suffix,
        r#use: xcn
            .text(10)
            .and_then(|u| crate::name_use(&u))
            .map(str::to_owned),
        period: period(start, end),
        ..Default::default()
    })
}

/// The (namespace id, universal id, universal id type) of an HD, whether it is a field or repetition
/// (parts are components) or a component inside a composite (parts are subcomponents).
pub fn hd_parts(hd: Node<'_>) -> (Option<String>, Option<String>, Option<String>) {
    let part = |k| text(hd_part(hd, k));
    (part(1), part(2), part(3))
}

/// Part `k` of an HD: a subcomponent when the HD is itself a component (CX.4, XCN.9), else the
/// first subcomponent of component `k` (an HD field such as MSH-4).
fn hd_part(hd: Node<'_>, k: usize) -> Option<Node<'_>> {
    if hd.level() == hl7v2::Level::Component {
        hd.subcomponent(k)
    } else {
        hd.component(k).and_then(|c| c.subcomponent(1))
    }
}

/// An HD as an identifier system: its universal id as a URI (`urn:oid:` for ISO, `urn:uuid:` for UUID,
/// as given for URI), else its namespace id as given.
pub fn hd_system(hd: Node<'_>) -> Option<String> {
    let (namespace, universal, kind) = hd_parts(hd);
    authority_system(namespace, universal, kind.as_deref())
}

/// The identifier system of an assigning authority given as its parts (HD.1-3, CX.4, EI.2-4): the
/// universal id as a URI when it is what its type says ([`universal_uri`]: `urn:oid:` only for a real
/// OID, `urn:uuid:` only for a UUID), else the namespace id, else the universal id, as a local name
/// made a valid URI by [`crate::vocab::local_system`]. The one place HD-like authorities become systems,
/// so CX, EI, XCN and HD agree.
pub fn authority_system(
    namespace: Option<String>,
    universal: Option<String>,
    kind: Option<&str>,
) -> Option<String> {
    match universal_uri(universal.as_deref(), kind) {
        Some(uri) => Some(uri),
        None => namespace.or(universal).map(local),
    }
}

/// A local name as a `uri` ([`crate::vocab::local_system`]), owned.
fn local(name: String) -> String {
    match crate::vocab::local_system(&name) {
        std::borrow::Cow::Borrowed(kept) if kept.len() == name.len() => name,
        std::borrow::Cow::Borrowed(trimmed) => trimmed.to_owned(),
        std::borrow::Cow::Owned(encoded) => encoded,
    }
}

/// A universal id (HD.2) of type HD.3 as a URI: `urn:oid:` for an ISO OID, `urn:uuid:` for a UUID, as
/// given for a URI. `None` for other types and for values that are not what their type says (a name
/// sent as `ISO` is not an OID).
pub fn universal_uri(universal: Option<&str>, kind: Option<&str>) -> Option<String> {
    let u = universal?;
    let oid = !u.is_empty()
        && u.split('.')
            .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()));
    let uuid = u.len() == 36 && u.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    match kind? {
        "ISO" if oid => Some(["urn:oid:", u].concat()),
        "UUID" | "GUID" if uuid => Some(format!("urn:uuid:{}", u.to_ascii_lowercase())),
        "URI" if !u.contains(char::is_whitespace) && u.contains(':') => Some(u.to_owned()),
        _ => None,
    }
}

/// XON -> Organization per `XON[Organization]`: name XON.1, identifier XON.10 (else XON.3) with system
/// from XON.6 (assigner Organization when it has a universal id) and type XON.7 (table 0203).
pub fn organization(ctx: &mut Ctx<'_>, xon: Node<'_>) -> Option<usize> {
    ctx.memo(Entity::OrganizationXon, xon, build_organization)
}

fn build_organization(ctx: &mut Ctx<'_>, xon: Node<'_>) -> Option<usize> {
    if !present(xon) {
        return None;
    }
    let parts = Parts::of(xon);
    let name = parts.text(1);
    let value = parts.text(10).or_else(|| parts.text(3));
    let identifier = value.map(|value| Identifier {
        value: Some(value),
        system: parts.get(6).and_then(hd_system),
        r#type: parts.text(7).map(identifier_type),
        ..Default::default()
    });
    if name.is_none() && identifier.is_none() {
        return None;
    }
    let id = match &identifier {
        Some(Identifier {
            system: Some(s),
            value: Some(v),
            ..
        }) => ctx.id("Organization", &[s, v]),
        Some(i) => ctx.id(
            "Organization",
            &[
                "local",
                i.value.as_deref().unwrap_or(""),
                name.as_deref().unwrap_or(""),
            ],
        ),
        None => ctx.id("Organization", &["name", name.as_deref().unwrap_or("")]),
    };
    if let Some(i) = ctx.existing("Organization", &id) {
        return Some(i);
    }
    // IG: XON.6/XON.7 give the identifier's system and type even when no value is sent (the
    // organization is known to have an identifier of that kind; the id stays the name's).
    let identifier = identifier
        .or_else(|| {
            let r#type = parts.text(7).map(identifier_type);
            r#type.as_ref()?;
            Some(Identifier {
                system: parts.get(6).and_then(hd_system),
                r#type,
                ..Default::default()
            })
        })
        .map(|mut i| {
            i.assigner = parts.get(6).and_then(|hd| assigner(ctx, hd));
            i
        });
    let resource = Organization {
        id: Some(id),
        name,
        identifier: identifier.into_iter().collect(),
        ..Default::default()
    };
    Some(ctx.add_identified(resource, |o| conditional_identity(&o.identifier)))
}

/// HD (a facility, MSH-4/6, or an assigning authority CX.4, XCN.9) -> Organization per
/// `HD[Organization]`: identifier[1] the namespace id HD.1; identifier[2] the universal id HD.2 typed
/// by HD.3 (table 0301), as a URI (`urn:oid:`, `urn:uuid:`) in system `urn:ietf:rfc:3986` when HD.3 is
/// ISO, UUID or URI.
pub fn organization_hd(ctx: &mut Ctx<'_>, hd: Node<'_>) -> Option<usize> {
    ctx.memo(Entity::OrganizationHd, hd, build_organization_hd)
}

fn build_organization_hd(ctx: &mut Ctx<'_>, hd: Node<'_>) -> Option<usize> {
    if !present(hd) {
        return None;
    }
    let (namespace, universal, kind) = hd_parts(hd);
    if namespace.is_none() && universal.is_none() {
        return None;
    }
    let id = ctx.id(
        "Organization",
        &[
            "hd",
            namespace.as_deref().unwrap_or(""),
            universal.as_deref().unwrap_or(""),
        ],
    );
    // The same authority is named by most identifiers of a message: build it once.
    if let Some(i) = ctx.existing("Organization", &id) {
        return Some(i);
    }
    let resource = Organization {
        id: Some(id),
        identifier: hd_identifiers(namespace, universal, kind),
        ..Default::default()
    };
    Some(ctx.add_identified(resource, |o| conditional_identity(&o.identifier)))
}

/// The identifiers of an HD per `HD[Organization]` and `HD[Device]`: [1] the namespace id HD.1;
/// [2] the universal id HD.2 typed by HD.3 (table 0301), as a URI (`urn:oid:`, `urn:uuid:`) in system
/// `urn:ietf:rfc:3986` when HD.3 is ISO, UUID or URI and HD.2 is one (then also the identity of a
/// conditional update, [`conditional_identity`]).
fn hd_identifiers(
    namespace: Option<String>,
    universal: Option<String>,
    kind: Option<String>,
) -> Vec<Identifier> {
    let mut identifier = Vec::new();
    if let Some(ns) = namespace {
        identifier.push(Identifier {
            value: Some(ns),
            ..Default::default()
        });
    }
    if let Some(u) = universal {
        let (value, system) = match universal_uri(Some(&u), kind.as_deref()) {
            Some(uri) => (uri, Some("urn:ietf:rfc:3986")),
            None => (u, None),
        };
        let id = Identifier {
            value: Some(value),
            system: system.map(str::to_owned),
            r#type: kind.map(|k| CodeableConcept {
                coding: vec![Coding::new(V2_0301, k.clone(), v2_0301_display(&k))],
                ..Default::default()
            }),
            ..Default::default()
        };
        identifier.push(id);
    }
    identifier
}

/// The identifier a shared resource's entry is conditional on: the first with a system and a
/// value (an HD's namespace id alone has no system; its universal id as a URI has one).
fn conditional_identity(identifiers: &[Identifier]) -> Option<&Identifier> {
    identifiers
        .iter()
        .find(|i| i.system.is_some() && i.value.is_some())
}

/// HD (a facility where something happened, EVN-7) -> Location per `HD[Location]`: name HD.1; identifier
/// the universal id HD.2 as a URI (`urn:oid:`, `urn:uuid:`) in system `urn:ietf:rfc:3986` when HD.3 says
/// ISO or UUID and HD.2 is one; physical type `si` (site).
pub fn location_hd(ctx: &mut Ctx<'_>, hd: Node<'_>) -> Option<usize> {
    ctx.memo(Entity::LocationHd, hd, build_location_hd)
}

fn build_location_hd(ctx: &mut Ctx<'_>, hd: Node<'_>) -> Option<usize> {
    if !present(hd) {
        return None;
    }
    let (namespace, universal, kind) = hd_parts(hd);
    let uri = universal_uri(universal.as_deref(), kind.as_deref());
    if namespace.is_none() && uri.is_none() {
        return None;
    }
    let id = ctx.id(
        "Location",
        &[
            "hd",
            namespace.as_deref().unwrap_or(""),
            universal.as_deref().unwrap_or(""),
        ],
    );
    if let Some(i) = ctx.existing("Location", &id) {
        return Some(i);
    }
    let identifier: Vec<Identifier> = uri
        .map(|u| Identifier {
            value: Some(u),
            system: Some("urn:ietf:rfc:3986".into()),
            ..Default::default()
        })
        .into_iter()
        .collect();
    let conditional = identifier.first().cloned();
    let resource = Location {
        id: Some(id),
        name: namespace,
        identifier,
        physical_type: Some(CodeableConcept::coding(
            LOCATION_PHYSICAL_TYPE,
            "si",
            Some("site"),
        )),
        ..Default::default()
    };
    Some(ctx.add(resource, conditional.as_ref()))
}

/// HD (an application, MSH-3/5) -> Device per `HD[Device]`: identifier[1] the namespace id HD.1,
/// identifier[2] the universal id HD.2 typed by HD.3 (as for `HD[Organization]`).
pub fn device_hd(ctx: &mut Ctx<'_>, hd: Node<'_>) -> Option<usize> {
    ctx.memo(Entity::DeviceHd, hd, build_device_hd)
}

fn build_device_hd(ctx: &mut Ctx<'_>, hd: Node<'_>) -> Option<usize> {
    if !present(hd) {
        return None;
    }
    let (namespace, universal, kind) = hd_parts(hd);
    if namespace.is_none() && universal.is_none() {
        return None;
    }
    let id = ctx.id(
        "Device",
        &[
            namespace.as_deref().unwrap_or(""),
            universal.as_deref().unwrap_or(""),
        ],
    );
    if let Some(i) = ctx.existing("Device", &id) {
        return Some(i);
    }
    let resource = Device {
        id: Some(id),
        identifier: hd_identifiers(namespace, universal, kind),
        ..Default::default()
    };
    Some(ctx.add_identified(resource, |d| conditional_identity(&d.identifier)))
}

/// The PL levels, most specific first: (component, physical type). A bed is part of its room, the
/// room of its point of care (nursing unit: `wa`, ward), that of the floor, the building, the facility.
const PL_LEVELS: [(usize, &str); 6] = [
    (3, "bd"),
    (2, "ro"),
    (1, "wa"),
    (8, "lvl"),
    (7, "bu"),
    (4, "si"),
];

/// PL -> Locations per `PL[Location]`: one Location per level sent (bed PL.3, room PL.2, point of care
/// PL.1, floor PL.8, building PL.7, facility PL.4), each named by its HD namespace id, identified by
/// its universal id, mode `instance`, with its physical type and `partOf` the next level up. The most
/// specific level also gets PL.9 (description) and PL.10 (entity identifier); its index is returned.
///
/// Ids come from the level's names and those of every level above it, so the same room named in two
/// messages is one Location.
pub fn location(ctx: &mut Ctx<'_>, pl: Node<'_>) -> Option<usize> {
    ctx.memo(Entity::LocationPl, pl, build_location)
}

fn build_location(ctx: &mut Ctx<'_>, pl: Node<'_>) -> Option<usize> {
    if !present(pl) {
        return None;
    }
    let levels: Vec<(usize, &str, String)> = PL_LEVELS
        .iter()
        .filter_map(|&(c, kind)| {
            let name = sub(pl, c, 1).or_else(|| sub(pl, c, 2))?;
            Some((c, kind, name))
        })
        .collect();
    if levels.is_empty() {
        return None;
    }
    // From the facility down, so each level knows its parent.
    let mut parent: Option<usize> = None;
    let mut path: Vec<String> = vec!["pl".into()];
    let mut first = None;
    for (n, (c, kind, name)) in levels.iter().enumerate().rev() {
        path.push(format!("{c}:{name}"));
        let parts: Vec<&str> = path.iter().map(String::as_str).collect();
        let id = ctx.id("Location", &parts);
        if let Some(i) = ctx.existing("Location", &id) {
            parent = Some(i);
            first = Some(i);
            continue;
        }
        let mut identifier: Vec<Identifier> = Vec::new();
        let universal = sub(pl, *c, 2);
        if let Some(u) = universal.filter(|_| sub(pl, *c, 1).is_some()) {
            let (value, system) = match universal_uri(Some(&u), sub(pl, *c, 3).as_deref()) {
                Some(uri) => (uri, Some("urn:ietf:rfc:3986".into())),
                None => (u, None),
            };
            identifier.push(Identifier {
                value: Some(value),
                system,
                ..Default::default()
            });
        }
        let most_specific = n == 0;
        if most_specific && let Some(v) = comp(pl, 10) {
            identifier.push(Identifier {
                value: Some(v),
                system: pl.component(10).and_then(|ei| {
                    let part = |s| text(ei.subcomponent(s));
                    authority_system(part(2), part(3), part(4).as_deref())
                }),
                ..Default::default()
            });
        }
        let resource = Location {
            id: Some(id),
            name: Some(name.clone()),
            identifier,
            description: most_specific.then(|| comp(pl, 9)).flatten(),
            mode: Some("instance".into()),
            physical_type: Some(CodeableConcept::coding(LOCATION_PHYSICAL_TYPE, *kind, None)),
            part_of: parent.map(|p| ctx.reference(p)),
            ..Default::default()
        };
        let i = ctx.add(resource, None);
        parent = Some(i);
        first = Some(i);
    }
    first
}
