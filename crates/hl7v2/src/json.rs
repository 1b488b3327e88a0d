//! A JSON view of a message: segments -> fields -> repetitions -> components ->
//! subcomponents, every leaf decoded text.
//!
//! The nesting is uniform (an empty field is `[[[""]]]`) so consumers never guess a depth.
//! MSH-1 and MSH-2 appear as written.

use serde_json::{Value, json};

use crate::message::{Message, Node};

/// The message as JSON.
pub fn to_json(msg: &Message<'_>) -> Value {
    let segments: Vec<Value> = msg
        .segments()
        .map(|seg| {
            let fields: Vec<Value> = seg.fields().map(|f| field_json(&f)).collect();
            json!({ "id": seg.id(), "fields": fields })
        })
        .collect();
    json!({ "segments": segments })
}

fn field_json(field: &Node<'_>) -> Value {
    Value::Array(
        field
            .repetitions()
            .map(|rep| {
                Value::Array(
                    rep.components()
                        .map(|comp| {
                            Value::Array(
                                comp.subcomponents()
                                    .map(|sub| Value::String(sub.decoded().into_owned()))
                                    .collect(),
                            )
                        })
                        .collect(),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_uniform() {
        let m = crate::parse(b"MSH|^~\\&|A\rPID|1||a^b&c~d||\\F\\\r").unwrap();
        let j = to_json(&m);
        assert_eq!(j["segments"][0]["fields"][0], json!([[["|"]]]));
        assert_eq!(j["segments"][0]["fields"][1], json!([[["^~\\&"]]]));
        assert_eq!(
            j["segments"][1]["fields"][2],
            json!([[["a"], ["b", "c"]], [["d"]]])
        );
        assert_eq!(j["segments"][1]["fields"][3], json!([[[""]]]));
        assert_eq!(j["segments"][1]["fields"][4], json!([[["|"]]]));
    }
}
