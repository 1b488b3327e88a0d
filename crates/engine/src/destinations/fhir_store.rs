//! The `fhir-store` destination: each message's FHIR bundle written into the resource store
//! that the FHIR API serves.
//!
//! The bundle's entries become resources under their own ids (the conversion derives them from
//! business identifiers, so an A08 updates the Patient an A01 created). Bundle-local references
//! (`urn:uuid:<id>`) are rewritten to `Type/id`, search values are extracted, and the whole
//! bundle is written in one store transaction: a crash leaves all of it or none. A resource
//! that exists already is merged as HL7 v2 updates are read (an element not sent is kept).

use std::collections::HashMap;
use std::sync::Arc;

use causeway_store::{
    Delivery, ErrorKind, IndexEntry, IndexValue, MessageId, ResourcePut, Store, StoredResource,
    UnixMillis,
};
use fhir::search::{self, SearchValue};
use serde_json::Value;

use super::Attempt;

/// Writes bundles into the store it runs on.
pub struct FhirStoreSender {
    pub store: Arc<dyn Store>,
    /// Woken after each write (the subscription worker).
    pub wake: Option<Arc<tokio::sync::Notify>>,
}

impl FhirStoreSender {
    pub async fn deliver(&mut self, bundle: &[u8], delivery: &Delivery) -> Attempt {
        let mut puts = match resource_puts(bundle, Some(delivery.message_id)) {
            Ok(p) => p,
            Err(error) => return Attempt::Fail { error, ack: None },
        };
        for put in &mut puts {
            let current = match self.store.resource(&put.resource_type, &put.id, None).await {
                Ok(c) => c,
                Err(e) => {
                    return Attempt::Retry {
                        error: e.to_string(),
                        ack: None,
                    };
                }
            };
            if let Some(current) = current.filter(|c| !c.deleted)
                && let Err(error) = merge_into(&current.json, put)
            {
                return Attempt::Fail { error, ack: None };
            }
        }
        match self.store.put_resources(puts).await {
            Ok(_) => {
                if let Some(w) = &self.wake {
                    w.notify_one();
                }
                Attempt::Delivered { ack: None }
            }
            Err(e) if e.kind() == ErrorKind::InvalidInput => Attempt::Fail {
                error: e.to_string(),
                ack: None,
            },
            Err(e) => Attempt::Retry {
                error: e.to_string(),
                ack: None,
            },
        }
    }
}

/// The resource writes of a transaction (or batch, or collection) bundle's JSON.
///
/// # Errors
/// JSON that is not a bundle, or an entry without a resource type and id; the text names the
/// entry, never its content.
pub fn resource_puts(bundle: &[u8], source: Option<MessageId>) -> Result<Vec<ResourcePut>, String> {
    let bundle: Value =
        serde_json::from_slice(bundle).map_err(|e| format!("bundle is not JSON: {e}"))?;
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err("not a Bundle".into());
    }
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // fullUrl -> Type/id, for rewriting bundle-local references.
    let mut local: HashMap<String, String> = HashMap::new();
    for entry in &entries {
        if let (Some(full), Some((t, id))) = (
            entry.get("fullUrl").and_then(Value::as_str),
            entry.get("resource").and_then(type_and_id),
        ) {
            local.insert(full.to_owned(), format!("{t}/{id}"));
        }
    }
    let mut puts = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let Some(mut resource) = entry.get("resource").cloned() else {
            continue;
        };
        let (resource_type, id) =
            type_and_id(&resource).ok_or_else(|| format!("entry {i} has no resourceType or id"))?;
        rewrite_references(&mut resource, &local);
        puts.push(resource_put(&resource_type, &id, resource, source)?);
    }
    Ok(puts)
}

/// HL7 v2 update semantics on a stored resource: an element the new message did not send is
/// kept, one it sent replaces the stored one (whole top-level elements: a new `address` list
/// replaces the old list). So an ORU whose PID carries only the MRN and name does not erase
/// the address an ADT gave, while an A03 replaces the Encounter's status and period.
fn merge_into(current: &[u8], put: &mut ResourcePut) -> Result<(), String> {
    let mut merged: serde_json::Map<String, Value> =
        serde_json::from_slice(current).map_err(|e| format!("stored resource: {e}"))?;
    let new: serde_json::Map<String, Value> =
        serde_json::from_slice(&put.json).map_err(|e| format!("resource: {e}"))?;
    for (k, v) in new {
        merged.insert(k, v);
    }
    let merged = Value::Object(merged);
    put.index = index_entries(&put.resource_type, &merged);
    put.json = serde_json::to_vec(&merged).map_err(|e| format!("resource JSON: {e}"))?;
    Ok(())
}

/// One resource's write: meta's server-owned fields removed, search values extracted.
///
/// # Errors
/// A resource that cannot be serialised back (never for parsed JSON).
pub fn resource_put(
    resource_type: &str,
    id: &str,
    mut resource: Value,
    source: Option<MessageId>,
) -> Result<ResourcePut, String> {
    if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty()
            && let Some(o) = resource.as_object_mut()
        {
            o.remove("meta");
        }
    }
    let index = index_entries(resource_type, &resource);
    let json = serde_json::to_vec(&resource).map_err(|e| format!("resource JSON: {e}"))?;
    Ok(ResourcePut {
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        json,
        index,
        if_match: None,
        source,
        delete: false,
    })
}

/// A FHIR instant (RFC 3339, milliseconds, UTC) for a store time.
pub fn instant(at: UnixMillis) -> String {
    jiff::Timestamp::from_millisecond(at.0)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// A stored version as it is served: [`resource_put`] removed the server-owned `id` and
/// `meta.versionId` / `meta.lastUpdated`; this puts them back. `None` when the stored JSON is
/// not an object.
pub fn rendered(r: &StoredResource) -> Option<Value> {
    let mut v: Value = serde_json::from_slice(&r.json).ok()?;
    let o = v.as_object_mut()?;
    o.insert("id".into(), Value::String(r.id.clone()));
    let meta = o
        .entry("meta")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(m) = meta.as_object_mut() {
        m.insert("versionId".into(), Value::String(r.version.to_string()));
        m.insert("lastUpdated".into(), Value::String(instant(r.last_updated)));
    }
    Some(v)
}

/// The store's search values of a resource. A quantity with a UCUM unit is also indexed in
/// canonical form ([`canonical_param`]), for searches in another unit of the same kind.
pub fn index_entries(resource_type: &str, resource: &Value) -> Vec<IndexEntry> {
    let values = search::extract(resource_type, resource);
    let canonical: Vec<IndexEntry> = values
        .iter()
        .filter_map(|(name, v)| match v {
            SearchValue::Quantity {
                value,
                system,
                code,
            } if system == fhir::ucum::UCUM => {
                let c = fhir::ucum::canonical(code)?;
                Some(IndexEntry {
                    param: canonical_param(&format!("{resource_type}.{name}")),
                    value: IndexValue::Quantity {
                        value: value * c.factor,
                        system: system.clone(),
                        code: c.unit,
                    },
                })
            }
            _ => None,
        })
        .collect();
    let mut entries: Vec<IndexEntry> = values
        .into_iter()
        .map(|(name, v)| IndexEntry {
            param: format!("{resource_type}.{name}"),
            value: match v {
                SearchValue::Token { system, code } => IndexValue::Token { system, code },
                SearchValue::Text(t) => IndexValue::Text(t),
                SearchValue::Date { lo, hi } => IndexValue::Date { lo, hi },
                SearchValue::Reference(r) => IndexValue::Reference(r),
                SearchValue::Quantity {
                    value,
                    system,
                    code,
                } => IndexValue::Quantity {
                    value,
                    system,
                    code,
                },
                SearchValue::CodeQuantity {
                    system,
                    code,
                    value,
                    unit,
                } => IndexValue::CodeQuantity {
                    system,
                    code,
                    value,
                    unit,
                },
            },
        })
        .collect();
    entries.extend(canonical);
    entries
}

/// Where the canonical form of a quantity parameter's UCUM values is indexed: a parameter of
/// its own, so that searches without a UCUM unit, sorting and `:missing` see only the values
/// as written.
pub fn canonical_param(param: &str) -> String {
    format!("{param}:canonical")
}

fn type_and_id(resource: &Value) -> Option<(String, String)> {
    let t = resource.get("resourceType")?.as_str()?;
    let id = resource.get("id")?.as_str()?;
    Some((t.to_owned(), id.to_owned()))
}

/// Replaces `reference` values that name a bundle entry's fullUrl with `Type/id`.
fn rewrite_references(value: &mut Value, local: &HashMap<String, String>) {
    match value {
        Value::Object(o) => {
            for (k, v) in o.iter_mut() {
                if k == "reference"
                    && let Some(target) = v.as_str().and_then(|r| local.get(r))
                {
                    *v = Value::String(target.clone());
                } else {
                    rewrite_references(v, local);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_references(v, local)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn local_references_become_relative_and_are_indexed() {
        let bundle = json!({
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1",
                    "meta": {"versionId": "3"}, "gender": "male"}},
                {"fullUrl": "urn:uuid:o1", "resource": {"resourceType": "Observation", "id": "o1",
                    "status": "final", "code": {"text": "x"},
                    "subject": {"reference": "urn:uuid:p1"}}}
            ]
        });
        let puts = resource_puts(bundle.to_string().as_bytes(), Some(MessageId(9))).expect("puts");
        assert_eq!(puts.len(), 2);
        let patient: Value = serde_json::from_slice(&puts[0].json).expect("json");
        assert!(patient.get("meta").is_none(), "server-owned meta removed");
        let obs: Value = serde_json::from_slice(&puts[1].json).expect("json");
        assert_eq!(obs["subject"]["reference"], "Patient/p1");
        assert!(puts[1].index.contains(&IndexEntry {
            param: "Observation.patient".into(),
            value: IndexValue::Reference("Patient/p1".into()),
        }));
        assert_eq!(puts[1].source, Some(MessageId(9)));
    }

    #[test]
    fn an_update_keeps_what_the_message_did_not_send() {
        let stored = br#"{"resourceType":"Patient","id":"p","address":[{"city":"Portsmouth"}],"gender":"female"}"#;
        let mut put = resource_put(
            "Patient",
            "p",
            json!({"resourceType": "Patient", "id": "p", "gender": "male"}),
            None,
        )
        .expect("put");
        merge_into(stored, &mut put).expect("merge");
        let merged: Value = serde_json::from_slice(&put.json).expect("json");
        assert_eq!(merged["gender"], "male", "what was sent wins");
        assert_eq!(
            merged["address"][0]["city"], "Portsmouth",
            "what was not sent is kept"
        );
        assert!(put.index.iter().any(|e| e.param == "Patient.address"));
    }

    #[test]
    fn what_is_not_a_bundle_is_refused_by_name() {
        assert_eq!(
            resource_puts(b"{\"resourceType\":\"Patient\"}", None).unwrap_err(),
            "not a Bundle"
        );
        let no_id =
            json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient"}}]});
        assert_eq!(
            resource_puts(no_id.to_string().as_bytes(), None).unwrap_err(),
            "entry 0 has no resourceType or id"
        );
    }
}
