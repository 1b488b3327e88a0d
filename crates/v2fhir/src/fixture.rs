//! Interfaces tested like code: a fixture is an input message, an optional profile and the expected
//! result; [`result_json`] is what a conversion is compared as, and [`diff`] lists the differences field by
//! field. `causeway test DIR` runs fixture folders with these.

use serde_json::{Map, Value};

use crate::context::{IssueKind, Severity};
use crate::{Conversion, Error};

/// A conversion's comparable form: `{"bundle": …, "held": …, "issues": […]}`, or `{"error": "…"}` when
/// the message was refused.
pub fn result_json(result: &Result<Conversion, Error>) -> Value {
    match result {
        Err(e) => serde_json::json!({ "error": e.to_string() }),
        Ok(c) => {
            let issues: Vec<Value> = c
                .issues
                .iter()
                .map(|i| {
                    let mut o = Map::new();
                    o.insert(
                        "severity".into(),
                        match i.severity {
                            Severity::Warning => "warning",
                            Severity::Error => "error",
                        }
                        .into(),
                    );
                    o.insert("at".into(), i.at.clone().into());
                    o.insert("message".into(), i.message.clone().into());
                    if let IssueKind::Unmapped { map, system, code } = &i.kind {
                        o.insert("map".into(), map.clone().into());
                        o.insert("code".into(), code.clone().into());
                        if let Some(s) = system {
                            o.insert("system".into(), s.clone().into());
                        }
                    }
                    Value::Object(o)
                })
                .collect();
            serde_json::json!({
                "bundle": fhir::to_value(&c.bundle).unwrap_or(Value::Null),
                "held": c.held,
                "issues": issues,
            })
        }
    }
}

/// One difference: where (`/bundle/entry/3/resource/name/0/family`), what was expected and what came.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub path: String,
    pub expected: Option<Value>,
    pub actual: Option<Value>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<Value>| match v {
            None => "(absent)".to_owned(),
            Some(v) => {
                let s = v.to_string();
                if s.chars().count() > 120 {
                    format!("{}…", s.chars().take(120).collect::<String>())
                } else {
                    s
                }
            }
        };
        write!(
            f,
            "{}: expected {}, got {}",
            self.path,
            show(&self.expected),
            show(&self.actual)
        )
    }
}

/// Every leaf-level difference between `expected` and `actual`, in document order.
pub fn diff(expected: &Value, actual: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    walk("", Some(expected), Some(actual), &mut out);
    out
}

fn walk(path: &str, e: Option<&Value>, a: Option<&Value>, out: &mut Vec<Difference>) {
    match (e, a) {
        (Some(Value::Object(e)), Some(Value::Object(a))) => {
            for (k, v) in e {
                walk(&format!("{path}/{k}"), Some(v), a.get(k), out);
            }
            for (k, v) in a {
                if !e.contains_key(k) {
                    walk(&format!("{path}/{k}"), None, Some(v), out);
                }
            }
        }
        (Some(Value::Array(e)), Some(Value::Array(a))) => {
            for i in 0..e.len().max(a.len()) {
                walk(&format!("{path}/{i}"), e.get(i), a.get(i), out);
            }
        }
        (e, a) if e == a => {}
        (e, a) => out.push(Difference {
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            expected: e.cloned(),
            actual: a.cloned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_path() {
        let e = serde_json::json!({"a": {"b": [1, 2]}, "c": "x"});
        let a = serde_json::json!({"a": {"b": [1, 3, 4]}, "d": true});
        let d: Vec<String> = diff(&e, &a).iter().map(ToString::to_string).collect();
        assert_eq!(
            d,
            [
                "/a/b/1: expected 2, got 3",
                "/a/b/2: expected (absent), got 4",
                "/c: expected \"x\", got (absent)",
                "/d: expected (absent), got true",
            ]
        );
        assert!(diff(&e, &e).is_empty());
    }
}
