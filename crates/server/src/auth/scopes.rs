//! SMART system scopes: `system/<Type|*>.<permissions>`.
//!
//! Both syntaxes are read: v1 (`read`, `write`, `*`) and v2 (some of `cruds`, in that order).
//! Internally a scope is a resource (or every resource) and a set of the five v2 permissions;
//! v1 `read` is `rs`, `write` is `cud`, `*` is `cruds`. Scopes with v2 query parameters
//! (`system/Observation.rs?category=laboratory`) and non-system scopes (`patient/...`,
//! `launch`, `openid`) are not understood, so never granted.
//!
//! The API asks coarser questions ([`Access`]): reading (read and search) needs `r`, writing
//! (create, update, delete) needs all of `c`, `u` and `d`, so a token never does more than its
//! scopes say.

use std::fmt;

use super::Access;

const C: u8 = 1;
const R: u8 = 2;
const U: u8 = 4;
const D: u8 = 8;
const S: u8 = 16;
const V1_READ: u8 = R | S;
const V1_WRITE: u8 = C | U | D;
const ALL: u8 = C | R | U | D | S;

/// One system scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    /// `None`: every resource type (`*`).
    resource: Option<String>,
    /// Bits of `cruds`.
    permissions: u8,
    /// Written in v1 syntax: rendered back the same way when it can be.
    v1: bool,
}

impl Scope {
    /// Parses one scope; `None` for anything this server does not grant.
    pub fn parse(text: &str) -> Option<Scope> {
        let rest = text.strip_prefix("system/")?;
        let (resource, permissions) = rest.split_once('.')?;
        let resource = if resource == "*" {
            None
        } else if resource.starts_with(|c: char| c.is_ascii_uppercase())
            && resource.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            Some(resource.to_owned())
        } else {
            return None;
        };
        let (permissions, v1) = match permissions {
            "read" => (V1_READ, true),
            "write" => (V1_WRITE, true),
            "*" => (ALL, true),
            v2 => (parse_v2(v2)?, false),
        };
        Some(Scope {
            resource,
            permissions,
            v1,
        })
    }

    /// The resource type, `None` for every type.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    fn covers(&self, resource_type: &str) -> bool {
        match &self.resource {
            None => true,
            // `*` as a question asks for every type: only a `*` scope answers it.
            Some(r) => r == resource_type,
        }
    }

    fn allows(&self, resource_type: &str, access: Access) -> bool {
        let needed = match access {
            Access::Read => R,
            Access::Write => C | U | D,
        };
        self.covers(resource_type) && self.permissions & needed == needed
    }

    /// What both scopes permit, if anything.
    fn intersect(&self, allowed: &Scope) -> Option<Scope> {
        let resource = match (&self.resource, &allowed.resource) {
            (None, None) => None,
            (Some(r), None) | (None, Some(r)) => Some(r.clone()),
            (Some(a), Some(b)) if a == b => Some(a.clone()),
            _ => return None,
        };
        let permissions = self.permissions & allowed.permissions;
        (permissions != 0).then_some(Scope {
            resource,
            permissions,
            v1: self.v1,
        })
    }
}

/// `cruds` letters in order, each at most once.
fn parse_v2(text: &str) -> Option<u8> {
    if text.is_empty() {
        return None;
    }
    let mut order = [('c', C), ('r', R), ('u', U), ('d', D), ('s', S)].into_iter();
    let mut bits = 0;
    for ch in text.chars() {
        let (_, bit) = order.by_ref().find(|(c, _)| *c == ch)?;
        bits |= bit;
    }
    Some(bits)
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("system/")?;
        f.write_str(self.resource.as_deref().unwrap_or("*"))?;
        f.write_str(".")?;
        match (self.v1, self.permissions) {
            (true, V1_READ) => f.write_str("read"),
            (true, V1_WRITE) => f.write_str("write"),
            (true, ALL) => f.write_str("*"),
            (_, bits) => {
                for (ch, bit) in [('c', C), ('r', R), ('u', U), ('d', D), ('s', S)] {
                    if bits & bit != 0 {
                        write!(f, "{ch}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// A set of scopes: what a client may be granted, or what a token carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// The scopes of a space-separated list (an OAuth2 `scope` parameter); scopes this server
    /// does not understand are left out.
    pub fn parse(text: &str) -> Scopes {
        Scopes::from_iter_of(text.split_ascii_whitespace())
    }

    /// The scopes of a list, leaving out those not understood.
    pub fn from_iter_of<'a>(items: impl IntoIterator<Item = &'a str>) -> Scopes {
        let mut out = Scopes::default();
        for s in items.into_iter().filter_map(Scope::parse) {
            out.push(s);
        }
        out
    }

    fn push(&mut self, s: Scope) {
        if !self.0.contains(&s) {
            self.0.push(s);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Whether some scope allows `access` to `resource_type` (`*`: every type at once).
    pub fn allows(&self, resource_type: &str, access: Access) -> bool {
        self.0.iter().any(|s| s.allows(resource_type, access))
    }

    /// The part of `requested` that `allowed` permits: each requested scope narrowed to what
    /// an allowed scope grants (`system/*.read` allowed, `system/Patient.rs` requested:
    /// `system/Patient.rs`; `system/Patient.*` requested, `system/Patient.read` allowed:
    /// `system/Patient.read`).
    pub fn intersect(requested: &Scopes, allowed: &Scopes) -> Scopes {
        let mut out = Scopes::default();
        for r in &requested.0 {
            for a in &allowed.0 {
                if let Some(s) = r.intersect(a) {
                    out.push(s);
                }
            }
        }
        out
    }
}

impl fmt::Display for Scopes {
    /// Space-separated, as in an OAuth2 `scope` parameter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_render_in_their_own_syntax() {
        for (text, back) in [
            ("system/Patient.read", Some("system/Patient.read")),
            ("system/*.write", Some("system/*.write")),
            ("system/*.*", Some("system/*.*")),
            ("system/Observation.rs", Some("system/Observation.rs")),
            ("system/*.cruds", Some("system/*.cruds")),
            ("system/Encounter.cd", Some("system/Encounter.cd")),
            ("system/Observation.sr", None),
            ("system/Observation.rr", None),
            ("system/Observation.", None),
            ("system/observation.read", None),
            ("system/Observation.rs?category=laboratory", None),
            ("patient/Observation.read", None),
            ("user/*.*", None),
            ("launch", None),
        ] {
            assert_eq!(
                Scope::parse(text).map(|s| s.to_string()).as_deref(),
                back,
                "{text}"
            );
        }
    }

    #[test]
    fn access_needs_every_permission_it_implies() {
        let s = Scopes::parse("system/Observation.read system/Patient.cu system/*.s");
        assert!(s.allows("Observation", Access::Read));
        assert!(!s.allows("Observation", Access::Write));
        assert!(!s.allows("Patient", Access::Write), "no d");
        assert!(!s.allows("Patient", Access::Read), "no r");
        assert!(
            !s.allows("Encounter", Access::Read),
            "s alone is not a read"
        );
        assert!(
            !s.allows("*", Access::Read),
            "one type does not answer for all"
        );
        let all = Scopes::parse("system/*.read");
        assert!(all.allows("*", Access::Read) && all.allows("Encounter", Access::Read));
        assert!(Scopes::parse("system/*.cud").allows("Patient", Access::Write));
    }

    #[test]
    fn intersection_narrows_requests_to_what_is_allowed() {
        let allowed = Scopes::parse("system/*.read system/Observation.write");
        for (requested, granted) in [
            ("system/Patient.read", "system/Patient.read"),
            ("system/Patient.rs", "system/Patient.rs"),
            ("system/Patient.*", "system/Patient.read"),
            ("system/*.*", "system/*.read system/Observation.write"),
            ("system/*.cruds", "system/*.rs system/Observation.cud"),
            (
                "system/Observation.* system/Encounter.read launch",
                "system/Observation.read system/Observation.write system/Encounter.read",
            ),
            ("system/Patient.write", ""),
            ("patient/*.read", ""),
        ] {
            assert_eq!(
                Scopes::intersect(&Scopes::parse(requested), &allowed).to_string(),
                granted,
                "{requested}"
            );
        }
    }
}
