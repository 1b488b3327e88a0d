//! UCUM unit codes in canonical form, so that quantities written in different units of one
//! kind compare: `5.4 mmol/L` is `5.4 mol.m-3`, `90 mg/dL` is `900 g.m-3`.
//!
//! The common clinical subset of [UCUM](https://ucum.org/ucum): the metric base and derived
//! units with every prefix (`mg`, `dL`, `umol`, `kPa`, `mm[Hg]`, `U`, `[iU]`...), time
//! (`min`, `h`, `d`, `wk`, `mo`, `a`), `%`, the customary units of weight and length, powers
//! of ten (`10*9/L`), exponents (`m2`, `s-1`), `.` and `/`, and annotations (`{cells}/uL`,
//! ignored as UCUM says). Units whose scale is not a ratio (`Cel`, `[degF]`) and anything else
//! have no canonical form: such quantities are compared by their unit code as written.

use std::collections::BTreeMap;

/// The UCUM code system.
pub const UCUM: &str = "http://unitsofmeasure.org";

/// A unit in canonical form: the factor to multiply a value by, and the canonical unit
/// (base units with their exponents, `g.m-3`; `1` when there are none).
#[derive(Debug, Clone, PartialEq)]
pub struct Canonical {
    pub factor: f64,
    pub unit: String,
}

/// Base units: every canonical unit is a product of powers of these. Amounts of substance
/// (`mol`, `eq`, `osm`), international units and arbitrary units stay their own kinds.
type Dimensions = BTreeMap<&'static str, i32>;

/// An atom: its value in base units, and whether it takes prefixes.
struct Atom {
    symbol: &'static str,
    factor: f64,
    dims: &'static [(&'static str, i32)],
    metric: bool,
}

const fn atom(
    symbol: &'static str,
    factor: f64,
    dims: &'static [(&'static str, i32)],
    metric: bool,
) -> Atom {
    Atom {
        symbol,
        factor,
        dims,
        metric,
    }
}

/// Pressure in base units: g.m-1.s-2 (1 Pa is 1000 g.m-1.s-2).
const PRESSURE: &[(&str, i32)] = &[("g", 1), ("m", -1), ("s", -2)];

const ATOMS: &[Atom] = &[
    atom("m", 1.0, &[("m", 1)], true),
    atom("g", 1.0, &[("g", 1)], true),
    atom("s", 1.0, &[("s", 1)], true),
    atom("L", 1e-3, &[("m", 3)], true),
    atom("l", 1e-3, &[("m", 3)], true),
    atom("mol", 1.0, &[("mol", 1)], true),
    atom("eq", 1.0, &[("mol", 1)], true),
    atom("osm", 1.0, &[("mol", 1)], true),
    atom("kat", 1.0, &[("mol", 1), ("s", -1)], true),
    // An enzyme unit: 1 umol/min.
    atom("U", 1e-6 / 60.0, &[("mol", 1), ("s", -1)], true),
    atom("[iU]", 1.0, &[("[iU]", 1)], true),
    atom("[IU]", 1.0, &[("[iU]", 1)], true),
    atom("[arb'U]", 1.0, &[("[arb'U]", 1)], false),
    atom("K", 1.0, &[("K", 1)], true),
    atom("C", 1.0, &[("C", 1)], true),
    atom("A", 1.0, &[("C", 1), ("s", -1)], true),
    atom(
        "V",
        1000.0,
        &[("g", 1), ("m", 2), ("s", -3), ("C", -1)],
        true,
    ),
    atom("cd", 1.0, &[("cd", 1)], true),
    atom("Hz", 1.0, &[("s", -1)], true),
    atom("N", 1000.0, &[("g", 1), ("m", 1), ("s", -2)], true),
    atom("Pa", 1000.0, PRESSURE, true),
    atom("bar", 1e8, PRESSURE, true),
    atom("J", 1000.0, &[("g", 1), ("m", 2), ("s", -2)], true),
    atom("W", 1000.0, &[("g", 1), ("m", 2), ("s", -3)], true),
    atom("cal", 4184.0, &[("g", 1), ("m", 2), ("s", -2)], true),
    atom("m[Hg]", 133_322_387.415, PRESSURE, true),
    atom("m[H2O]", 9_806_650.0, PRESSURE, true),
    atom("min", 60.0, &[("s", 1)], false),
    atom("h", 3600.0, &[("s", 1)], false),
    atom("d", 86_400.0, &[("s", 1)], false),
    atom("wk", 604_800.0, &[("s", 1)], false),
    atom("mo", 2_629_800.0, &[("s", 1)], false),
    atom("a", 31_557_600.0, &[("s", 1)], false),
    atom("%", 0.01, &[], false),
    atom("[ppm]", 1e-6, &[], false),
    atom("[ppb]", 1e-9, &[], false),
    atom("[in_i]", 0.0254, &[("m", 1)], false),
    atom("[ft_i]", 0.3048, &[("m", 1)], false),
    atom("[lb_av]", 453.592_37, &[("g", 1)], false),
    atom("[oz_av]", 28.349_523_125, &[("g", 1)], false),
];

/// Prefixes, the two-letter one first so that `da` is not read as `d` and `a`.
const PREFIXES: &[(&str, f64)] = &[
    ("da", 1e1),
    ("Y", 1e24),
    ("Z", 1e21),
    ("E", 1e18),
    ("P", 1e15),
    ("T", 1e12),
    ("G", 1e9),
    ("M", 1e6),
    ("k", 1e3),
    ("h", 1e2),
    ("d", 1e-1),
    ("c", 1e-2),
    ("m", 1e-3),
    ("u", 1e-6),
    ("n", 1e-9),
    ("p", 1e-12),
    ("f", 1e-15),
    ("a", 1e-18),
    ("z", 1e-21),
    ("y", 1e-24),
];

fn find_atom(symbol: &str) -> Option<&'static Atom> {
    ATOMS.iter().find(|a| a.symbol == symbol)
}

/// A symbol without its exponent: an atom, or a prefix and a metric atom (atoms first, as
/// UCUM reads `cd` as the candela and `min` as the minute).
fn unit_symbol(symbol: &str) -> Option<(f64, &'static Atom)> {
    if let Some(a) = find_atom(symbol) {
        return Some((1.0, a));
    }
    PREFIXES.iter().find_map(|(prefix, factor)| {
        let a = find_atom(symbol.strip_prefix(prefix)?)?;
        a.metric.then_some((*factor, a))
    })
}

/// One component (`mg`, `m2`, `s-1`, `10*9`, `1000`): its factor and dimensions.
fn component(text: &str) -> Option<(f64, Vec<(&'static str, i32)>)> {
    if text.is_empty() {
        // `{cells}` alone: an annotation of the unit one.
        return Some((1.0, Vec::new()));
    }
    if let Some(power) = text
        .strip_prefix("10*")
        .or_else(|| text.strip_prefix("10^"))
    {
        let n: i32 = power.parse().ok()?;
        return Some((10f64.powi(n), Vec::new()));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Some((text.parse().ok()?, Vec::new()));
    }
    // A trailing signed integer is the exponent, unless it is part of a bracketed atom.
    let digits = text
        .bytes()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let (mut symbol, mut exponent) = (text, 1i32);
    if digits > 0 && digits < text.len() {
        let mut split = text.len() - digits;
        if matches!(text.as_bytes()[split - 1], b'-' | b'+') && split > 1 {
            split -= 1;
        }
        exponent = text[split..].parse().ok()?;
        symbol = &text[..split];
    }
    let (prefix, atom) = unit_symbol(symbol)?;
    let factor = (prefix * atom.factor).powi(exponent);
    let dims = atom.dims.iter().map(|(d, e)| (*d, e * exponent)).collect();
    Some((factor, dims))
}

/// The canonical form of a UCUM unit code; `None` for what this subset does not read.
pub fn canonical(code: &str) -> Option<Canonical> {
    // Annotations carry no meaning in UCUM: `{cells}/uL` is `/uL`.
    let mut text = String::with_capacity(code.len());
    let mut depth = 0;
    for c in code.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            '}' => return None,
            _ if depth > 0 => {}
            c if c.is_whitespace() || c == '(' || c == ')' => return None,
            c => text.push(c),
        }
    }
    if depth != 0 || text.is_empty() && !code.starts_with('{') {
        return None;
    }
    let mut factor = 1.0;
    let mut dims: Dimensions = BTreeMap::new();
    let mut sign = 1;
    let mut start = 0;
    let bytes = text.as_bytes();
    for i in 0..=bytes.len() {
        if i < bytes.len() && !matches!(bytes[i], b'.' | b'/') {
            continue;
        }
        let part = &text[start..i];
        // A leading `/` (`/min`) divides the unit one.
        if !(i == 0 && part.is_empty()) {
            let (f, ds) = component(part)?;
            factor *= f.powi(sign);
            for (d, e) in ds {
                *dims.entry(d).or_insert(0) += e * sign;
            }
        }
        if i < bytes.len() {
            sign = if bytes[i] == b'/' { -1 } else { 1 };
        }
        start = i + 1;
    }
    if !factor.is_finite() || factor == 0.0 {
        return None;
    }
    let unit: Vec<String> = dims
        .iter()
        .filter(|(_, e)| **e != 0)
        .map(|(d, e)| {
            if *e == 1 {
                (*d).to_owned()
            } else {
                format!("{d}{e}")
            }
        })
        .collect();
    Some(Canonical {
        factor,
        unit: if unit.is_empty() {
            "1".to_owned()
        } else {
            unit.join(".")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(code: &str) -> (f64, String) {
        let c = canonical(code).unwrap_or_else(|| panic!("{code} has a canonical form"));
        (c.factor, c.unit)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
    }

    #[test]
    fn units_of_one_kind_share_a_canonical_unit() {
        for (code, factor, unit) in [
            ("mmol/L", 1.0, "m-3.mol"),
            ("umol/L", 1e-3, "m-3.mol"),
            ("mg/dL", 10.0, "g.m-3"),
            ("g/L", 1000.0, "g.m-3"),
            ("g/dL", 10_000.0, "g.m-3"),
            ("kg", 1000.0, "g"),
            ("[lb_av]", 453.592_37, "g"),
            ("cm", 0.01, "m"),
            ("[in_i]", 0.0254, "m"),
            ("mm[Hg]", 133_322.387_415, "g.m-1.s-2"),
            ("kPa", 1_000_000.0, "g.m-1.s-2"),
            ("/min", 1.0 / 60.0, "s-1"),
            ("{beats}/min", 1.0 / 60.0, "s-1"),
            ("10*9/L", 1e12, "m-3"),
            ("10*3/uL", 1e12, "m-3"),
            ("{cells}/uL", 1e9, "m-3"),
            ("%", 0.01, "1"),
            ("m2", 1.0, "m2"),
            ("mL/min/{1.73_m2}", 1e-6 / 60.0, "m3.s-1"),
            ("kg/m2", 1000.0, "g.m-2"),
            ("U/L", 1e-6 / 60.0 * 1000.0, "m-3.mol.s-1"),
            ("m[iU]/mL", 1000.0, "[iU].m-3"),
            ("meq/L", 1.0, "m-3.mol"),
            ("h", 3600.0, "s"),
            ("cd", 1.0, "cd"),
            ("min", 60.0, "s"),
        ] {
            let (f, u) = c(code);
            assert_eq!(u, unit, "{code}");
            assert!(close(f, factor), "{code}: {f} against {factor}");
        }
    }

    #[test]
    fn what_the_subset_does_not_read_has_no_canonical_form() {
        for code in [
            "Cel", "[degF]", "mmHg", "mEq/L", "foo", "kg/(m.s)", "", "{", "m}",
        ] {
            assert_eq!(canonical(code), None, "{code}");
        }
    }
}
