//! Reading a `Resource` from JSON, and typed access to its variants.
//!
//! `resourceType` is read first and selects the type, whose strict reader then takes the rest of the object
//! from the same stream. FHIR does not require `resourceType` to come first, only recommends it; when it comes
//! later, the object is buffered as raw JSON text (which keeps decimals exact), the type found, and the text
//! read again. Errors of that rare path carry the JSON path but the position of the end of the object.

use std::cell::Cell;
use std::fmt;

use serde::Serialize;
use serde::de::{Deserialize, DeserializeOwned, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::de::{self, Key};
use crate::{Reference, Resource};

/// A resource type that has a variant in [`Resource`]: generic access by type.
pub trait TypedResource: Sized + 'static + Into<Resource> + Serialize + DeserializeOwned {
    /// The `resourceType`, e.g. `"Patient"`.
    const TYPE: &'static str;

    /// The logical id, if any.
    fn id(&self) -> Option<&str>;

    /// The resource, when `resource` holds this type.
    fn from_resource(resource: &Resource) -> Option<&Self>;

    /// The resource, mutably, when `resource` holds this type.
    fn from_resource_mut(resource: &mut Resource) -> Option<&mut Self>;

    /// The resource, when `resource` holds this type; `resource` back otherwise.
    ///
    /// # Errors
    /// Returns the resource unchanged when it is of another type.
    fn try_from_resource(resource: Resource) -> Result<Self, Resource>;

    /// A relative reference `Type/id` to this resource; `None` when it has no id.
    fn reference(&self) -> Option<Reference> {
        self.id().map(|id| Reference::to(Self::TYPE, id))
    }
}

impl Resource {
    /// The resource as a `T`, if it is one: `resource.downcast_ref::<Patient>()`.
    pub fn downcast_ref<T: TypedResource>(&self) -> Option<&T> {
        T::from_resource(self)
    }

    /// The resource as a mutable `T`, if it is one.
    pub fn downcast_mut<T: TypedResource>(&mut self) -> Option<&mut T> {
        T::from_resource_mut(self)
    }

    /// The resource as a `T`, if it is one.
    ///
    /// # Errors
    /// Returns the resource unchanged when it is of another type.
    pub fn downcast<T: TypedResource>(self) -> Result<T, Resource> {
        T::try_from_resource(self)
    }

    /// A relative reference `Type/id` to this resource; `None` when it has no id.
    pub fn reference(&self) -> Option<Reference> {
        self.id().map(|id| Reference::to(self.resource_type(), id))
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ResourceVisitor)
    }
}

struct ResourceVisitor;

impl<'de> Visitor<'de> for ResourceVisitor {
    type Value = Resource;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a FHIR resource object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Resource, A::Error> {
        let Some(first) = map.next_key::<Key<'de>>()? else {
            return Err(A::Error::missing_field("resourceType"));
        };
        if first.as_str() == "resourceType" {
            let resource_type: Key<'de> =
                map.next_value().map_err(|e| de::at(e, "resourceType"))?;
            return Resource::visit_typed(resource_type.as_str(), map);
        }
        buffered(first, map)
    }
}

/// How many resources whose `resourceType` is not their first key may nest inside one another (a bundle, its
/// entries' resources, their contained resources, plus one level per bundle inside a bundle). Each is re-read by
/// a fresh serde_json deserializer whose recursion limit starts again at 128: without this bound, a hostile
/// document could nest them until the stack overflows.
pub const MAX_REREAD_NESTING: usize = 8;

thread_local! {
    /// Re-reads in progress on this thread (a re-read reads nested resources on the same thread).
    static REREAD_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Counts one re-read in progress, until dropped (also on error).
struct RereadGuard;

impl RereadGuard {
    fn enter<E: serde::de::Error>() -> Result<Self, E> {
        let depth = REREAD_DEPTH.with(Cell::get);
        if depth >= MAX_REREAD_NESTING {
            return Err(E::custom(format_args!(
                "more than {MAX_REREAD_NESTING} nested resources without `resourceType` as their first key"
            )));
        }
        REREAD_DEPTH.with(|d| d.set(depth + 1));
        Ok(RereadGuard)
    }
}

impl Drop for RereadGuard {
    fn drop(&mut self) {
        REREAD_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// The slow path: `resourceType` is not the first key.
fn buffered<'de, A: MapAccess<'de>>(first: Key<'de>, mut map: A) -> Result<Resource, A::Error> {
    let _guard = RereadGuard::enter::<A::Error>()?;
    let mut text = String::from("{");
    let mut resource_type: Option<String> = None;
    let mut next = Some(first);
    loop {
        let key = match next.take() {
            Some(key) => key,
            None => match map.next_key::<Key<'de>>()? {
                Some(key) => key,
                None => break,
            },
        };
        if key.as_str() == "resourceType" {
            if resource_type.is_some() {
                return Err(A::Error::duplicate_field("resourceType"));
            }
            resource_type = Some(map.next_value().map_err(|e| de::at(e, "resourceType"))?);
            continue;
        }
        let value: Box<RawValue> = map.next_value().map_err(|e| de::at(e, key.as_str()))?;
        if text.len() > 1 {
            text.push(',');
        }
        text.push_str(&serde_json::to_string(key.as_str()).map_err(A::Error::custom)?);
        text.push(':');
        text.push_str(value.get());
    }
    text.push('}');
    let Some(resource_type) = resource_type else {
        return Err(A::Error::missing_field("resourceType"));
    };
    let mut reread = serde_json::Deserializer::from_str(&text);
    reread
        .deserialize_map(TypedVisitor(&resource_type))
        // Positions in `text` mean nothing to the caller: keep the message and path, drop the position.
        .map_err(|e| A::Error::custom(de::split_position(&e.to_string()).0))
}

struct TypedVisitor<'a>(&'a str);

impl<'de> Visitor<'de> for TypedVisitor<'_> {
    type Value = Resource;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} object", self.0)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Resource, A::Error> {
        Resource::visit_typed(self.0, map)
    }
}
