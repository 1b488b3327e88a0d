//! The resources v2 composite types name: XCN -> Practitioner, XON and HD -> Organization, PL -> Location,
//! HD (application) -> Device. Each is added once per bundle (deterministic id) and returned as an index.

use fhir::{Device, Identifier, Location, Organization, Practitioner};
use hl7v2::Node;

use crate::context::Ctx;
use crate::read::{comp, present};

/// XCN (or CNN/NDL name part) -> Practitioner: identifier XCN.1 with system from XCN.9, name XCN.2-7.
/// The id comes from the identifier when there is one, else from the name.
pub fn practitioner(ctx: &mut Ctx<'_>, xcn: Node<'_>) -> Option<usize> {
    if !present(xcn) {
        return None;
    }
    let identifier = comp(xcn, 1).map(|value| {
        let system = xcn
            .component(9)
            .and_then(hd_system)
            .or_else(|| ctx.profile.default_authority.clone());
        Identifier {
            value: Some(value),
            system,
            r#type: comp(xcn, 13)
                .map(|t| fhir::CodeableConcept::coding(crate::V2_0203_SYSTEM, t, None)),
            ..Default::default()
        }
    });
    // XCN.2..7 are XPN.1..6 shifted by one: family, given, middle, suffix, prefix, degree.
    let name = {
        let family = comp(xcn, 2);
        let given: Vec<String> = [3, 4].iter().filter_map(|&c| comp(xcn, c)).collect();
        let prefix: Vec<String> = comp(xcn, 6).into_iter().collect();
        let suffix: Vec<String> = [5, 7].iter().filter_map(|&c| comp(xcn, c)).collect();
        (family.is_some() || !given.is_empty()).then(|| fhir::HumanName {
            family,
            given,
            prefix,
            suffix,
            ..Default::default()
        })
    };
    if identifier.is_none() && name.is_none() {
        return None;
    }
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
    let resource = Practitioner {
        id: Some(id),
        identifier: identifier.clone().into_iter().collect(),
        name: name.into_iter().collect(),
        ..Default::default()
    };
    let conditional = identifier.filter(|i| i.system.is_some());
    Some(ctx.add(resource, conditional.as_ref()))
}

/// The (namespace id, universal id, universal id type) of an HD, whether it is a field or repetition
/// (parts are components) or a component inside a composite (parts are subcomponents).
pub fn hd_parts(hd: Node<'_>) -> (Option<String>, Option<String>, Option<String>) {
    if hd.level() == hl7v2::Level::Component {
        let part = |s| crate::read::text(hd.subcomponent(s));
        (part(1), part(2), part(3))
    } else {
        (comp(hd, 1), comp(hd, 2), comp(hd, 3))
    }
}

/// An HD as an identifier system: its universal id as a URI (`urn:oid:` for ISO, `urn:uuid:` for UUID,
/// as given for URI), else its namespace id as given.
pub fn hd_system(hd: Node<'_>) -> Option<String> {
    let (namespace, universal, kind) = hd_parts(hd);
    match (universal, kind.as_deref()) {
        (Some(u), Some("ISO")) => Some(format!("urn:oid:{u}")),
        (Some(u), Some("UUID")) => Some(format!("urn:uuid:{u}")),
        (Some(u), Some("URI")) => Some(u),
        (u, _) => namespace.or(u),
    }
}

/// XON -> Organization: name XON.1, identifier XON.10 (else XON.3) with system from XON.6.
pub fn organization(ctx: &mut Ctx<'_>, xon: Node<'_>) -> Option<usize> {
    if !present(xon) {
        return None;
    }
    let name = comp(xon, 1);
    let value = comp(xon, 10).or_else(|| comp(xon, 3));
    let identifier = value.map(|value| Identifier {
        value: Some(value),
        system: xon.component(6).and_then(hd_system),
        ..Default::default()
    });
    if name.is_none() && identifier.is_none() {
        return None;
    }
    let id = match &identifier {
        Some(i) => ctx.id(
            "Organization",
            &[
                i.system.as_deref().unwrap_or(""),
                i.value.as_deref().unwrap_or(""),
            ],
        ),
        None => ctx.id("Organization", &["name", name.as_deref().unwrap_or("")]),
    };
    let resource = Organization {
        id: Some(id),
        name,
        identifier: identifier.clone().into_iter().collect(),
        ..Default::default()
    };
    let conditional = identifier.filter(|i| i.system.is_some());
    Some(ctx.add(resource, conditional.as_ref()))
}

/// HD (a facility, MSH-4/6) -> Organization identified by the namespace id and the universal id.
pub fn organization_hd(ctx: &mut Ctx<'_>, hd: Node<'_>) -> Option<usize> {
    if !present(hd) {
        return None;
    }
    let namespace = comp(hd, 1);
    let universal = comp(hd, 2);
    let kind = comp(hd, 3);
    let mut identifier = Vec::new();
    if let Some(ns) = &namespace {
        identifier.push(Identifier {
            value: Some(ns.clone()),
            ..Default::default()
        });
    }
    if let Some(u) = &universal {
        let value = match kind.as_deref() {
            Some("ISO") => format!("urn:oid:{u}"),
            Some("UUID") => format!("urn:uuid:{u}"),
            _ => u.clone(),
        };
        identifier.push(Identifier {
            value: Some(value),
            system: Some("urn:ietf:rfc:3986".into()),
            ..Default::default()
        });
    }
    if identifier.is_empty() {
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
    let resource = Organization {
        id: Some(id),
        identifier,
        ..Default::default()
    };
    Some(ctx.add(resource, None))
}

/// HD (an application, MSH-3/5) -> Device identified by the namespace id.
pub fn device_hd(ctx: &mut Ctx<'_>, hd: Node<'_>) -> Option<usize> {
    if !present(hd) {
        return None;
    }
    let namespace = comp(hd, 1);
    let universal = comp(hd, 2);
    let identifier: Vec<Identifier> = namespace
        .iter()
        .map(|ns| Identifier {
            value: Some(ns.clone()),
            ..Default::default()
        })
        .collect();
    if identifier.is_empty() && universal.is_none() {
        return None;
    }
    let id = ctx.id(
        "Device",
        &[
            namespace.as_deref().unwrap_or(""),
            universal.as_deref().unwrap_or(""),
        ],
    );
    let resource = Device {
        id: Some(id),
        identifier,
        ..Default::default()
    };
    Some(ctx.add(resource, None))
}

/// PL -> Location: name from the most specific part given (bed, room, point of care), identifier from
/// PL.10 (entity id), mode `instance`. The id comes from the whole location text.
pub fn location(ctx: &mut Ctx<'_>, pl: Node<'_>) -> Option<usize> {
    if !present(pl) {
        return None;
    }
    let name = comp(pl, 1)
        .or_else(|| comp(pl, 3))
        .or_else(|| comp(pl, 2))
        .or_else(|| comp(pl, 4));
    let identifier: Vec<Identifier> = comp(pl, 10)
        .map(|v| Identifier {
            value: Some(v),
            ..Default::default()
        })
        .into_iter()
        .collect();
    let text = pl.decoded();
    let id = ctx.id("Location", &[&text]);
    let resource = Location {
        id: Some(id),
        name,
        identifier,
        mode: Some("instance".into()),
        ..Default::default()
    };
    Some(ctx.add(resource, None))
}
