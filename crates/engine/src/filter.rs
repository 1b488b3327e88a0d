//! Which messages a channel takes and which it routes.
//!
//! Map:
//! - [`Accept`]: the channel's contract with its senders. A message outside it is refused
//!   with an AR whose ERR-3 (HL7 table 0357) says why: [`ERR3_UNSUPPORTED_MESSAGE_TYPE`] (200),
//!   [`ERR3_UNSUPPORTED_EVENT`] (201), [`ERR3_UNSUPPORTED_PROCESSING_ID`] (202) or
//!   [`ERR3_UNSUPPORTED_VERSION`] (203).
//! - [`Filter`]: routing conditions on accepted messages. Every condition of one filter must
//!   hold and every filter of a channel must pass; a message that fails is stored as
//!   "filtered" and not queued to any destination (it was accepted: the sender gets AA).
//! - [`Condition`]: a `when` expression, `PATH == 'x'`, `PATH != 'x'`, `PATH in ['a', 'b']`,
//!   `PATH not in [...]`, `PATH matches 'regex'`.
//! - [`Wildcard`] and [`TypePattern`]: `*` and `?` patterns such as `ADT^A0*`.
//!
//! Invariants: everything here is compiled once, at config load, and never fails at run
//! time: a value that is absent compares as the empty string, and a path is always valid
//! because it was parsed when the filter was built. Comparisons are on decoded text (escapes
//! resolved) and case-sensitive, as HL7 codes are.

use std::fmt;

use hl7v2::{Message, Path};
use regex::Regex;

/// ERR-3 for a message code this channel does not take (HL7 table 0357).
pub const ERR3_UNSUPPORTED_MESSAGE_TYPE: u16 = 200;
/// ERR-3 for a known message code with a trigger event this channel does not take.
pub const ERR3_UNSUPPORTED_EVENT: u16 = 201;
/// ERR-3 for a processing id (MSH-11) this channel does not take.
pub const ERR3_UNSUPPORTED_PROCESSING_ID: u16 = 202;
/// ERR-3 for a version (MSH-12) this channel does not take.
pub const ERR3_UNSUPPORTED_VERSION: u16 = 203;

/// Compiled size limit of a `matches` regular expression.
///
/// Filter regexes are short (codes, prefixes); 1 MiB of compiled program is far above any
/// real one and stops a pasted monster from slowing every message. The `regex` crate runs in
/// linear time, so no expression can hang on hostile input.
pub const MAX_REGEX_SIZE: usize = 1 << 20;

/// A text pattern where `*` matches any run of characters (also none) and `?` exactly one;
/// every other character matches itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Wildcard {
    text: String,
}

impl Wildcard {
    pub fn new(text: &str) -> Wildcard {
        Wildcard {
            text: text.to_string(),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when `value` matches the whole pattern.
    pub fn matches(&self, value: &str) -> bool {
        if !self.text.contains(['*', '?']) {
            return self.text == value;
        }
        // Greedy matching with one backtrack point (the last `*`): linear in practice and
        // never worse than pattern length times value length.
        let p: Vec<char> = self.text.chars().collect();
        let v: Vec<char> = value.chars().collect();
        let (mut pi, mut vi) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while vi < v.len() {
            if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == v[vi])) {
                pi += 1;
                vi += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, vi));
                pi += 1;
            } else if let Some((sp, sv)) = star {
                pi = sp + 1;
                vi = sv + 1;
                star = Some((sp, sv + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

impl fmt::Display for Wildcard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Wildcard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

/// `CODE^EVENT` with wildcards in either part, e.g. `ADT^A0*`, `ORU^R01`, `ADT^*`; a bare
/// `CODE` takes any event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypePattern {
    code: Wildcard,
    event: Option<Wildcard>,
}

impl TypePattern {
    pub fn parse(text: &str) -> Result<TypePattern, String> {
        let bad = |why: &str| format!("invalid message type pattern {text:?}: {why}");
        let (code, event) = match text.split_once('^') {
            Some((c, e)) => (c, Some(e)),
            None => (text, None),
        };
        if code.is_empty() {
            return Err(bad(
                "expected a message code, e.g. \"ADT^A01\" or \"ORU^*\"",
            ));
        }
        if event.is_some_and(|e| e.is_empty() || e.contains('^')) {
            return Err(bad("expected CODE^EVENT, e.g. \"ADT^A01\" or \"ORU^*\""));
        }
        let ok = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '?' | '_'))
        };
        if !ok(code) || !event.is_none_or(ok) {
            return Err(bad(
                "use letters, digits, '_' and the wildcards '*' and '?'",
            ));
        }
        Ok(TypePattern {
            code: Wildcard::new(code),
            event: event.map(Wildcard::new),
        })
    }

    fn matches_code(&self, code: &str) -> bool {
        self.code.matches(code)
    }

    fn matches_event(&self, event: &str) -> bool {
        self.event.as_ref().is_none_or(|e| e.matches(event))
    }

    pub fn matches(&self, code: &str, event: &str) -> bool {
        self.matches_code(code) && self.matches_event(event)
    }
}

impl fmt::Display for TypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code.as_str())?;
        if let Some(e) = &self.event {
            write!(f, "^{}", e.as_str())?;
        }
        Ok(())
    }
}

/// Why a message was refused: ERR-3 code and text for the AR. The text names message types,
/// versions and processing ids only, never patient data, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HL7 table 0357 code (200 to 203).
    pub err3: u16,
    pub text: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (err-3 {})", self.text, self.err3)
    }
}

/// A channel's `accept` rules. An empty list (or an absent key) takes everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accept {
    pub(crate) types: Vec<TypePattern>,
    pub(crate) processing_ids: Vec<Wildcard>,
    pub(crate) versions: Vec<Wildcard>,
}

impl Accept {
    /// Accepts every message.
    pub fn any() -> Accept {
        Accept::default()
    }

    pub fn new(
        types: Vec<TypePattern>,
        processing_ids: Vec<Wildcard>,
        versions: Vec<Wildcard>,
    ) -> Accept {
        Accept {
            types,
            processing_ids,
            versions,
        }
    }

    /// Checks the message code, trigger event, processing id and version, in that order;
    /// the first rule broken decides the ERR-3 code.
    pub fn check(&self, msg: &Message<'_>) -> Result<(), Refusal> {
        let code = msg.message_code().unwrap_or_default();
        let event = msg.trigger_event().unwrap_or_default();
        if !self.types.is_empty() {
            let by_code: Vec<&TypePattern> = self
                .types
                .iter()
                .filter(|t| t.matches_code(&code))
                .collect();
            if by_code.is_empty() {
                return Err(Refusal {
                    err3: ERR3_UNSUPPORTED_MESSAGE_TYPE,
                    text: if code.is_empty() {
                        "the message has no message code (msh-9.1)".to_string()
                    } else {
                        format!("message code {code:?} is not accepted by this channel")
                    },
                });
            }
            if !by_code.iter().any(|t| t.matches_event(&event)) {
                return Err(Refusal {
                    err3: ERR3_UNSUPPORTED_EVENT,
                    text: if event.is_empty() {
                        format!("the {code} message has no trigger event (msh-9.2)")
                    } else {
                        format!("trigger event {event:?} of {code} is not accepted by this channel")
                    },
                });
            }
        }
        if !self.processing_ids.is_empty() {
            let id = msg.processing_id().unwrap_or_default();
            if !self.processing_ids.iter().any(|p| p.matches(&id)) {
                return Err(Refusal {
                    err3: ERR3_UNSUPPORTED_PROCESSING_ID,
                    text: format!("processing id {id:?} is not accepted by this channel"),
                });
            }
        }
        if !self.versions.is_empty() {
            let version = msg.version().unwrap_or_default();
            if !self.versions.iter().any(|p| p.matches(&version)) {
                return Err(Refusal {
                    err3: ERR3_UNSUPPORTED_VERSION,
                    text: format!("version {version:?} is not accepted by this channel"),
                });
            }
        }
        Ok(())
    }
}

/// One `[[channel.filter]]`: every non-empty list must match (any entry of a list will do)
/// and every condition must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub(crate) types: Vec<TypePattern>,
    pub(crate) structures: Vec<Wildcard>,
    pub(crate) versions: Vec<Wildcard>,
    pub(crate) sending_applications: Vec<Wildcard>,
    pub(crate) sending_facilities: Vec<Wildcard>,
    pub(crate) conditions: Vec<Condition>,
}

impl Filter {
    pub fn matches(&self, msg: &Message<'_>) -> bool {
        fn any(list: &[Wildcard], value: Option<std::borrow::Cow<'_, str>>) -> bool {
            let value = value.unwrap_or_default();
            list.is_empty() || list.iter().any(|p| p.matches(&value))
        }
        if !self.types.is_empty() {
            let code = msg.message_code().unwrap_or_default();
            let event = msg.trigger_event().unwrap_or_default();
            if !self.types.iter().any(|t| t.matches(&code, &event)) {
                return false;
            }
        }
        any(&self.structures, msg.message_structure())
            && any(&self.versions, msg.version())
            && any(&self.sending_applications, msg.sending_application())
            && any(&self.sending_facilities, msg.sending_facility())
            && self.conditions.iter().all(|c| c.holds(msg))
    }
}

/// True when the message passes every filter (an empty list passes everything).
pub fn passes_all(filters: &[Filter], msg: &Message<'_>) -> bool {
    filters.iter().all(|f| f.matches(msg))
}

/// A compiled `when` condition.
#[derive(Debug, Clone)]
pub struct Condition {
    text: String,
    path: Path,
    op: Op,
}

#[derive(Debug, Clone)]
enum Op {
    Eq(String),
    Ne(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Matches(Regex),
}

impl Condition {
    /// Parses a `when` expression. Errors name the 1-based character where the problem
    /// starts.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let mut p = Parser {
            chars: text.chars().collect(),
            at: 0,
        };
        let fail = |at: usize, why: &str| format!("{why} at character {}", at + 1);
        p.skip_ws();
        let path_start = p.at;
        let path_text = p.take_while(|c| !c.is_whitespace() && c != '=' && c != '!');
        if path_text.is_empty() {
            return Err(fail(path_start, "expected a path such as PID-8"));
        }
        let path = Path::parse(&path_text).map_err(|e| fail(path_start, &e.kind.to_string()))?;
        p.skip_ws();
        let op_start = p.at;
        let word = if p.eat("==") {
            "=="
        } else if p.eat("!=") {
            "!="
        } else {
            let w = p.take_while(|c| c.is_ascii_alphabetic());
            match w.as_str() {
                "in" => "in",
                "matches" => "matches",
                "not" => {
                    p.skip_ws();
                    if p.take_while(|c| c.is_ascii_alphabetic()) != "in" {
                        return Err(fail(p.at, "expected 'in' after 'not'"));
                    }
                    "not in"
                }
                _ => {
                    return Err(fail(
                        op_start,
                        "expected an operator (==, !=, in, not in, matches)",
                    ));
                }
            }
        };
        p.skip_ws();
        let op = match word {
            "==" => Op::Eq(p.literal().map_err(|(at, why)| fail(at, why))?),
            "!=" => Op::Ne(p.literal().map_err(|(at, why)| fail(at, why))?),
            "in" => Op::In(p.list().map_err(|(at, why)| fail(at, why))?),
            "not in" => Op::NotIn(p.list().map_err(|(at, why)| fail(at, why))?),
            _ => {
                let at = p.at;
                let pattern = p.literal().map_err(|(at, why)| fail(at, why))?;
                let re = regex::RegexBuilder::new(&pattern)
                    .size_limit(MAX_REGEX_SIZE)
                    .build()
                    .map_err(|e| fail(at, &regex_error(&e)))?;
                Op::Matches(re)
            }
        };
        p.skip_ws();
        if p.at < p.chars.len() {
            return Err(fail(p.at, "unexpected text after the condition"));
        }
        Ok(Condition {
            text: text.to_string(),
            path,
            op,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Evaluates against the decoded value at the path (absent: the empty string).
    pub fn holds(&self, msg: &Message<'_>) -> bool {
        let node = msg.get_path(&self.path);
        let value = node.map(|n| n.decoded()).unwrap_or_default();
        let value = value.as_ref();
        match &self.op {
            Op::Eq(v) => value == v,
            Op::Ne(v) => value != v,
            Op::In(list) => list.iter().any(|v| v == value),
            Op::NotIn(list) => !list.iter().any(|v| v == value),
            Op::Matches(re) => re.is_match(value),
        }
    }
}

/// One line from a `regex` error (its syntax errors span several lines with a caret).
pub(crate) fn regex_error(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => {
            let reason = text
                .lines()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or("syntax error");
            format!("invalid regular expression: {reason}")
        }
        regex::Error::CompiledTooBig(limit) => {
            format!("regular expression too large (limit {limit} bytes compiled)")
        }
        _ => "invalid regular expression".to_string(),
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn skip_ws(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> String {
        let start = self.at;
        while self.chars.get(self.at).is_some_and(|&c| f(c)) {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    fn eat(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self.chars.len() >= self.at + n
            && self.chars[self.at..self.at + n]
                .iter()
                .copied()
                .eq(s.chars())
        {
            self.at += n;
            true
        } else {
            false
        }
    }

    /// `'text'` or `"text"`; the quote character doubled stands for itself (`'it''s'`).
    /// Backslashes are ordinary characters, so a regex is written as it is (`'^\d+$'`).
    fn literal(&mut self) -> Result<String, (usize, &'static str)> {
        let start = self.at;
        let quote = match self.chars.get(self.at) {
            Some(&q) if q == '\'' || q == '"' => q,
            _ => return Err((start, "expected a quoted value such as 'M'")),
        };
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.chars.get(self.at) {
                None => return Err((start, "unterminated quoted value")),
                Some(&c) if c == quote => {
                    if self.chars.get(self.at + 1) == Some(&quote) {
                        out.push(quote);
                        self.at += 2;
                    } else {
                        self.at += 1;
                        return Ok(out);
                    }
                }
                Some(&c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }

    /// `['a', 'b']`, at least one value, a trailing comma allowed.
    fn list(&mut self) -> Result<Vec<String>, (usize, &'static str)> {
        if !self.eat("[") {
            return Err((self.at, "expected a list such as ['A', 'B']"));
        }
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            if self.eat("]") {
                if out.is_empty() {
                    return Err((self.at - 1, "the list is empty"));
                }
                return Ok(out);
            }
            out.push(self.literal()?);
            self.skip_ws();
            if self.eat(",") {
                continue;
            }
            if self.eat("]") {
                return Ok(out);
            }
            return Err((self.at, "expected ',' or ']'"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        for (pattern, value, want) in [
            ("ADT", "ADT", true),
            ("ADT", "ADTX", false),
            ("*", "", true),
            ("*", "anything", true),
            ("A0*", "A01", true),
            ("A0*", "A1", false),
            ("A?1", "A01", true),
            ("A?1", "A001", false),
            ("*1", "A01", true),
            ("*0*1*", "A0x1", true),
            ("a*b*c", "abxbxc", true),
            ("a*b*c", "abxbx", false),
            ("2.*", "2.5.1", true),
            ("2.*", "3.0", false),
        ] {
            assert_eq!(
                Wildcard::new(pattern).matches(value),
                want,
                "{pattern} {value}"
            );
        }
    }

    #[test]
    fn type_patterns() {
        let p = TypePattern::parse("ADT^A0*").unwrap();
        assert!(p.matches("ADT", "A01"));
        assert!(!p.matches("ADT", "A11"));
        assert!(!p.matches("ORU", "A01"));
        let bare = TypePattern::parse("ORU").unwrap();
        assert!(bare.matches("ORU", "R01") && bare.matches("ORU", ""));
        assert_eq!(bare.to_string(), "ORU");
        for (text, why) in [
            ("", "expected a message code, e.g. \"ADT^A01\" or \"ORU^*\""),
            (
                "^A01",
                "expected a message code, e.g. \"ADT^A01\" or \"ORU^*\"",
            ),
            ("ADT^", "expected CODE^EVENT, e.g. \"ADT^A01\" or \"ORU^*\""),
            (
                "ADT^A01^X",
                "expected CODE^EVENT, e.g. \"ADT^A01\" or \"ORU^*\"",
            ),
            (
                "AD T",
                "use letters, digits, '_' and the wildcards '*' and '?'",
            ),
        ] {
            assert_eq!(
                TypePattern::parse(text).unwrap_err(),
                format!("invalid message type pattern {text:?}: {why}")
            );
        }
    }

    #[test]
    fn condition_errors_are_exact() {
        for (text, want) in [
            ("", "expected a path such as PID-8 at character 1"),
            ("== 'M'", "expected a path such as PID-8 at character 1"),
            (
                "PID-x == 'M'",
                "invalid path \"PID-x\": expected a field number at character 1",
            ),
            (
                "PID-8 = 'M'",
                "expected an operator (==, !=, in, not in, matches) at character 7",
            ),
            (
                "PID-8 == M",
                "expected a quoted value such as 'M' at character 10",
            ),
            ("PID-8 == 'M", "unterminated quoted value at character 10"),
            (
                "PID-8 in 'M'",
                "expected a list such as ['A', 'B'] at character 10",
            ),
            ("PID-8 in []", "the list is empty at character 11"),
            ("PID-8 in ['M' 'F']", "expected ',' or ']' at character 15"),
            ("PID-8 not 'M'", "expected 'in' after 'not' at character 11"),
            (
                "PID-8 == 'M' or",
                "unexpected text after the condition at character 14",
            ),
            (
                "PID-8 matches '('",
                "invalid regular expression: unclosed group at character 15",
            ),
        ] {
            assert_eq!(Condition::parse(text).unwrap_err(), want, "{text}");
        }
    }

    #[test]
    fn conditions_hold() {
        let msg = hl7v2::parse(
            b"MSH|^~\\&|EPIC|MAIN|LAB|HOSP|20240101||ADT^A01^ADT_A01|C1|P|2.5.1\rPID|1||123^^^H^MR~456^^^H^PI||DOE^JANE||19800101|F\r",
        )
        .unwrap();
        for (text, want) in [
            ("PID-8 == 'F'", true),
            ("PID-8 == \"F\"", true),
            ("PID-8 != 'F'", false),
            ("PID-8 in ['M', 'F',]", true),
            ("PID-8 not in ['M', 'U']", true),
            ("PID-3(2).1 matches '^4\\d+$'", true),
            ("PID-3(2).1 matches '^1'", false),
            ("PID-19 == ''", true),
            ("ZZZ-1 == ''", true),
            ("PV1-2 in ['I', '']", true),
            ("MSH-9.2 == 'A01'", true),
            ("  PID-5.1   ==   'DOE'  ", true),
            ("PID-5.1 == 'it''s'", false),
            ("PID-5.1 in ['O''NEIL', 'DOE']", true),
        ] {
            let c = Condition::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(c.holds(&msg), want, "{text}");
        }
    }
}
