//! FHIR `decimal`: a JSON number whose text is kept exactly.
//!
//! FHIR decimals carry their precision in their text: `1.50` and `1.5` are different values to a lab system.
//! An `f64` would turn `1.50` into `1.5`, and serde_json's `arbitrary_precision` feature, which keeps the text,
//! changes how every crate in the binary parses numbers (feature unification) and breaks numbers inside
//! buffered serde content. So `Decimal` holds the number's JSON text, read and written through serde_json's
//! `RawValue` (the additive `raw_value` feature).
//!
//! Invariant: the text always matches the FHIR decimal grammar, which is the JSON number grammar
//! (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`), so it can be written into JSON as is.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::Error;

/// A FHIR `decimal`, kept as its exact JSON text (`"1.50"` stays `1.50`).
///
/// Equality compares the text: `1.50 != 1.5`, as in FHIR, where precision is part of the value. Use
/// [`Decimal::to_f64`] to compare magnitudes.
#[derive(Clone)]
pub struct Decimal(Box<RawValue>);

impl Decimal {
    /// A decimal from its text, e.g. `"1.50"`, `"-3"`, `"6.02e23"`.
    ///
    /// # Errors
    /// [`ErrorKind::Data`](crate::ErrorKind::Data) when `text` is not a JSON number.
    pub fn new(text: &str) -> Result<Self, Error> {
        if !is_json_number(text) {
            return Err(Error::invalid_decimal(text));
        }
        // A JSON number is valid JSON, so RawValue accepts it.
        RawValue::from_string(text.to_owned())
            .map(Decimal)
            .map_err(Error::from)
    }

    /// The exact text, e.g. `"1.50"`.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The value as the nearest `f64` (precision beyond `f64` and trailing zeros are lost).
    pub fn to_f64(&self) -> f64 {
        // The grammar invariant makes this parse succeed; an out-of-range exponent gives an infinity.
        self.as_str().parse().unwrap_or(f64::NAN)
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Decimal {}

impl std::hash::Hash for Decimal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({})", self.as_str())
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Decimal {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Decimal::new(s)
    }
}

macro_rules! from_integer {
    ($($t:ty),*) => {$(
        impl From<$t> for Decimal {
            fn from(value: $t) -> Self {
                // An integer's decimal text is a JSON number.
                Decimal(RawValue::from_string(value.to_string()).expect("an integer is a JSON number"))
            }
        }
    )*};
}
from_integer!(i8, i16, i32, i64, u8, u16, u32, u64);

impl TryFrom<f64> for Decimal {
    type Error = Error;

    /// The shortest text that reads back as `value` (`0.1` -> `0.1`); NaN and infinities are refused.
    fn try_from(value: f64) -> Result<Self, Error> {
        if !value.is_finite() {
            return Err(Error::invalid_decimal(&value.to_string()));
        }
        Decimal::new(&value.to_string())
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        if !is_json_number(raw.get()) {
            return Err(D::Error::custom(format_args!(
                "invalid decimal `{}`, expected a JSON number",
                raw.get()
            )));
        }
        Ok(Decimal(raw))
    }
}

/// The JSON number grammar, which is also FHIR's decimal grammar.
fn is_json_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.first() == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_is_the_json_number_grammar() {
        for ok in ["0", "-0", "1.50", "10", "6.02e23", "1E-7", "-12.000"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "+1", "1e", "1.5.2", "NaN", "1 ", "\"1\"", "0x10",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn text_is_kept_and_compared_exactly() {
        let a = Decimal::new("1.50").unwrap();
        assert_eq!(a.as_str(), "1.50");
        assert_ne!(a, Decimal::new("1.5").unwrap());
        assert_eq!(a.to_f64(), 1.5);
        assert_eq!(Decimal::from(-7i32).as_str(), "-7");
        assert_eq!(Decimal::try_from(0.1).unwrap().as_str(), "0.1");
        assert!(Decimal::try_from(f64::NAN).is_err());
        assert!(Decimal::new("1,5").is_err());
    }
}
