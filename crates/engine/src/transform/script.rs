//! The `script` transform: Rhai scripts, sandboxed and compiled once at config load.
//!
//! Map:
//! - [`ScriptEngine`]: one sandboxed [`rhai::Engine`] per configuration, shared by every
//!   script of every channel (building an engine costs far more than running a script).
//! - [`Script`]: a compiled AST plus its engine; [`Script::run`] edits one message.
//!
//! What a script sees: a variable `msg` (the message being transformed) with
//! `msg.get(path)`, `msg.set(path, value)`, `msg.delete(path)`, `msg.segments()`,
//! `msg.count(id)`, `msg.remove_segments(id)`, `msg.rename_segments(from, to)` and the
//! properties `msg.message_type` and `msg.control_id`; and two verdicts, `filter()` (store
//! the message as filtered, route it nowhere) and `reject(reason)` (refuse it: AR). Both end
//! the script at once, and `try`/`catch` cannot intercept them.
//!
//! The sandbox: no `import` (compile error, and a module resolver that refuses as a second
//! wall), no `eval`, no `sleep` (it would block a runtime thread without counting operations),
//! `print` and `debug` discarded (they could carry patient data to stdout),
//! undeclared variables refused at compile time, and limits on operations, call depth,
//! expression depth, string, array and map sizes and variables. A runaway loop ends with
//! [`ScriptErrorKind::Limit`] after [`MAX_OPERATIONS`]; nothing a script does can outlive its
//! message or touch the file system or the network.
//!
//! Invariants: the message moves into the script's scope and back (no copy); if the script
//! fails half way, the message keeps the edits made before the failure, so the runtime must
//! keep the received bytes for the error queue rather than the transformed ones.

use std::fmt;
use std::sync::Arc;

use hl7v2::{Charset, OwnedMessage, Separators};
use rhai::{AST, Dynamic, Engine, EvalAltResult, Position, Scope};

use super::Verdict;

/// Operations one script run may take before it is stopped.
///
/// A mapping script over an ordinary message takes a few hundred operations and one looping
/// over an 839-OBX result a few tens of thousands; 100,000 stops a runaway loop within a few
/// milliseconds, so one bad script cannot stall a channel.
pub const MAX_OPERATIONS: u64 = 100_000;

/// Longest string a script may build, in bytes.
///
/// Equal to the MLLP frame limit: a script may read any value of a message it was given
/// (ORU results embed PDFs of several MiB), but cannot grow memory past that in one string.
pub const MAX_STRING_LEN: usize = 16 * 1024 * 1024;

/// Most elements of one array (or blob) in a script.
///
/// `msg.segments()` of the largest real messages returns about a thousand ids; ten times that
/// leaves room while bounding memory.
pub const MAX_ARRAY_LEN: usize = 10_000;

/// Most entries of one object map in a script (lookup maps of codes are the main use).
pub const MAX_MAP_LEN: usize = 10_000;

/// Deepest function call nesting; real mapping scripts call a few helpers deep.
pub const MAX_CALL_LEVELS: usize = 32;

/// Deepest expression nesting at global level and inside functions, checked at compile time.
pub const MAX_EXPR_DEPTH: (usize, usize) = (64, 32);

/// Most variables alive at once in a script run.
pub const MAX_VARIABLES: usize = 1_000;

/// Longest script file, in bytes: a script is a mapping, not a program of its own.
pub const MAX_SCRIPT_LEN: usize = 1024 * 1024;

/// Longest reason kept from `reject(reason)`: it travels back to the sender in ERR-8 and MSA-3.
pub const MAX_REJECT_REASON_LEN: usize = 200;

/// The sandboxed engine shared by every script of a configuration.
#[derive(Clone)]
pub struct ScriptEngine {
    engine: Arc<Engine>,
}

impl fmt::Debug for ScriptEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScriptEngine")
    }
}

impl Default for ScriptEngine {
    fn default() -> Self {
        ScriptEngine::new()
    }
}

/// Refuses every `import`, in case the keyword is ever re-enabled.
struct NoModules;

impl rhai::ModuleResolver for NoModules {
    fn resolve(
        &self,
        _engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<rhai::Shared<rhai::Module>, Box<EvalAltResult>> {
        Err(Box::new(EvalAltResult::ErrorModuleNotFound(
            path.to_string(),
            pos,
        )))
    }
}

/// An error raised by our own functions (bad path, missing segment): its text names paths
/// and segment ids only, so unlike a script's own `throw` it is safe to show.
#[derive(Debug, Clone)]
struct HostError(String);

/// The marker carried by `filter()` / `reject()` out of the script.
#[derive(Debug, Clone)]
struct VerdictSignal(Verdict);

fn host_error(text: String) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(HostError(text)),
        Position::NONE,
    ))
}

fn hl7_error(e: hl7v2::Error) -> Box<EvalAltResult> {
    host_error(e.kind.to_string())
}

impl ScriptEngine {
    pub fn new() -> ScriptEngine {
        let mut engine = Engine::new();
        engine
            .set_max_operations(MAX_OPERATIONS)
            .set_max_string_size(MAX_STRING_LEN)
            .set_max_array_size(MAX_ARRAY_LEN)
            .set_max_map_size(MAX_MAP_LEN)
            .set_max_call_levels(MAX_CALL_LEVELS)
            .set_max_expr_depths(MAX_EXPR_DEPTH.0, MAX_EXPR_DEPTH.1)
            .set_max_variables(MAX_VARIABLES)
            .set_max_modules(0)
            .set_module_resolver(NoModules)
            .set_strict_variables(true)
            .disable_symbol("import")
            .disable_symbol("eval")
            .on_print(|_| {})
            .on_debug(|_, _, _| {});
        register_message_api(&mut engine);
        ScriptEngine {
            engine: Arc::new(engine),
        }
    }

    /// Compiles a script; `name` (its path as written) appears in errors.
    pub fn compile(&self, name: &str, text: &str) -> Result<Script, String> {
        if text.len() > MAX_SCRIPT_LEN {
            return Err(format!("the script is longer than {MAX_SCRIPT_LEN} bytes"));
        }
        let ast = self
            .engine
            .compile_with_scope(&initial_scope(placeholder()), text)
            .map_err(|e| {
                let reason = lowercase_first(&e.err_type().to_string());
                match (e.position().line(), e.position().position()) {
                    (Some(l), Some(p)) => format!("{reason} at line {l}, position {p}"),
                    (Some(l), None) => format!("{reason} at line {l}"),
                    _ => reason,
                }
            })?;
        Ok(Script {
            name: name.to_string(),
            ast: Arc::new(ast),
            engine: Arc::clone(&self.engine),
        })
    }
}

fn placeholder() -> OwnedMessage {
    OwnedMessage::new(Separators::default(), Charset::Utf8)
}

fn initial_scope(msg: OwnedMessage) -> Scope<'static> {
    let mut scope = Scope::new();
    scope.push("msg", msg);
    scope
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn register_message_api(engine: &mut Engine) {
    engine.register_type_with_name::<OwnedMessage>("Message");
    engine.register_fn(
        "get",
        |m: &mut OwnedMessage, path: &str| -> Result<String, Box<EvalAltResult>> {
            Ok(m.get(path)
                .map_err(hl7_error)?
                .map(|n| n.decoded().into_owned())
                .unwrap_or_default())
        },
    );
    fn set(m: &mut OwnedMessage, path: &str, value: &str) -> Result<(), Box<EvalAltResult>> {
        let parsed = hl7v2::Path::parse(path).map_err(hl7_error)?;
        if !super::has_segment(m, &parsed) {
            return Err(host_error(format!(
                "the message has no {} segment",
                super::segment_label(&parsed)
            )));
        }
        m.set(path, value).map_err(hl7_error)
    }
    engine.register_fn("set", set);
    engine.register_fn(
        "set",
        |m: &mut OwnedMessage, path: &str, value: rhai::INT| set(m, path, &value.to_string()),
    );
    engine.register_fn(
        "delete",
        |m: &mut OwnedMessage, path: &str| -> Result<(), Box<EvalAltResult>> {
            m.delete(path).map_err(hl7_error)
        },
    );
    engine.register_fn("segments", |m: &mut OwnedMessage| -> rhai::Array {
        m.segments()
            .iter()
            .map(|s| Dynamic::from(s.id().to_string()))
            .collect()
    });
    engine.register_fn("count", |m: &mut OwnedMessage, id: &str| -> rhai::INT {
        m.segments().iter().filter(|s| s.id() == id).count() as rhai::INT
    });
    engine.register_fn("remove_segments", |m: &mut OwnedMessage, id: &str| {
        m.remove_segments(id) as rhai::INT
    });
    engine.register_fn(
        "rename_segments",
        |m: &mut OwnedMessage, from: &str, to: &str| -> Result<rhai::INT, Box<EvalAltResult>> {
            if from == "MSH" || to == "MSH" {
                return Err(host_error("the MSH segment cannot be renamed".to_string()));
            }
            Ok(m.rename_segments(from, to).map_err(hl7_error)? as rhai::INT)
        },
    );
    engine.register_get("message_type", |m: &mut OwnedMessage| -> String {
        super::message_type(m)
    });
    engine.register_get("control_id", |m: &mut OwnedMessage| -> String {
        m.text("MSH-10").map(|t| t.into_owned()).unwrap_or_default()
    });
    // The standard `sleep` would block a runtime thread without counting operations; these
    // overrides are found before it.
    let no_sleep = || -> Result<(), Box<EvalAltResult>> {
        Err(host_error("sleep is not available in scripts".to_string()))
    };
    engine.register_fn("sleep", move |_: rhai::INT| no_sleep());
    engine.register_fn("sleep", move |_: rhai::FLOAT| no_sleep());
    engine.register_fn("filter", || -> Result<(), Box<EvalAltResult>> {
        Err(Box::new(EvalAltResult::ErrorTerminated(
            Dynamic::from(VerdictSignal(Verdict::Filter)),
            Position::NONE,
        )))
    });
    engine.register_fn("reject", |reason: &str| -> Result<(), Box<EvalAltResult>> {
        let reason: String = reason.chars().take(MAX_REJECT_REASON_LEN).collect();
        Err(Box::new(EvalAltResult::ErrorTerminated(
            Dynamic::from(VerdictSignal(Verdict::Reject { reason })),
            Position::NONE,
        )))
    });
}

/// A compiled script.
#[derive(Clone)]
pub struct Script {
    name: String,
    ast: Arc<AST>,
    engine: Arc<Engine>,
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script").field("name", &self.name).finish()
    }
}

/// Why a script run failed. Texts never include values from the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptErrorKind {
    /// Stopped by a sandbox limit (operations, sizes, depth): the script is broken or the
    /// message is far larger than the script expects.
    Limit { what: String },
    /// An error of the script or of a `msg` function (bad path, missing segment, wrong type).
    Runtime { text: String },
    /// The script's own `throw`: its value may hold patient data, so it is kept out of
    /// `Display` and logs; `detail` is for the encrypted error record only.
    Thrown { detail: String },
    /// The script assigned something else to `msg`, so there is no message to continue with.
    MessageReplaced,
}

/// A failed script run, with the script's line and position when rhai knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    pub kind: ScriptErrorKind,
    pub line: Option<usize>,
    pub position: Option<usize>,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ScriptErrorKind::Limit { what } => write!(f, "script stopped: {what}")?,
            ScriptErrorKind::Runtime { text } => write!(f, "script error: {text}")?,
            ScriptErrorKind::Thrown { .. } => {
                write!(f, "script threw an error (value withheld from logs)")?
            }
            ScriptErrorKind::MessageReplaced => {
                write!(f, "script error: `msg` was replaced by another value")?
            }
        }
        match (self.line, self.position) {
            (Some(l), Some(p)) => write!(f, " at line {l}, position {p}"),
            (Some(l), None) => write!(f, " at line {l}"),
            _ => Ok(()),
        }
    }
}

impl Script {
    /// The script's path as written in the configuration.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the script on `msg`. `Ok(Verdict::Continue)` when it ends normally, `Filter` or
    /// `Reject` when it called `filter()` / `reject()`.
    pub fn run(&self, msg: &mut OwnedMessage) -> Result<Verdict, ScriptError> {
        let mut scope = initial_scope(std::mem::replace(msg, placeholder()));
        let result = self.engine.run_ast_with_scope(&mut scope, &self.ast);
        // Top-level `let` bindings stay in the scope after a run; drop them so a script's own
        // `let msg = ...` cannot shadow the message.
        scope.rewind(1);
        let returned = scope.remove::<OwnedMessage>("msg");
        let replaced = returned.is_none();
        if let Some(m) = returned {
            *msg = m;
        }
        let verdict = match result {
            Ok(()) => Verdict::Continue,
            Err(e) => classify(*e)?,
        };
        if replaced {
            return Err(ScriptError {
                kind: ScriptErrorKind::MessageReplaced,
                line: None,
                position: None,
            });
        }
        Ok(verdict)
    }
}

/// Turns rhai's error into a verdict (for `filter()` / `reject()`) or a [`ScriptError`].
fn classify(mut e: EvalAltResult) -> Result<Verdict, ScriptError> {
    // The position of the outermost call is the line in the script the operator wrote.
    let pos = e.position();
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = e
    {
        e = *inner;
    }
    let (line, position) = (pos.line(), pos.position());
    let err = |kind| ScriptError {
        kind,
        line,
        position,
    };
    match e {
        EvalAltResult::ErrorTerminated(value, _) => match value.try_cast::<VerdictSignal>() {
            Some(VerdictSignal(v)) => Ok(v),
            None => Err(err(ScriptErrorKind::Limit {
                what: "terminated".to_string(),
            })),
        },
        EvalAltResult::ErrorTooManyOperations(_) => Err(err(ScriptErrorKind::Limit {
            what: format!("more than {MAX_OPERATIONS} operations"),
        })),
        EvalAltResult::ErrorDataTooLarge(what, _) => Err(err(ScriptErrorKind::Limit {
            what: format!("{} too large", what.to_lowercase()),
        })),
        EvalAltResult::ErrorStackOverflow(_) => Err(err(ScriptErrorKind::Limit {
            what: format!("calls nested deeper than {MAX_CALL_LEVELS}"),
        })),
        EvalAltResult::ErrorTooManyVariables(_) => Err(err(ScriptErrorKind::Limit {
            what: format!("more than {MAX_VARIABLES} variables"),
        })),
        EvalAltResult::ErrorTooManyModules(_) | EvalAltResult::ErrorModuleNotFound(..) => {
            Err(err(ScriptErrorKind::Runtime {
                text: "modules cannot be imported".to_string(),
            }))
        }
        EvalAltResult::ErrorRuntime(value, _) => {
            if value.is::<HostError>() {
                let HostError(text) = value.cast::<HostError>();
                Err(err(ScriptErrorKind::Runtime { text }))
            } else {
                Err(err(ScriptErrorKind::Thrown {
                    detail: value.to_string(),
                }))
            }
        }
        other => {
            let text = lowercase_first(&strip_position(&other));
            Err(err(ScriptErrorKind::Runtime { text }))
        }
    }
}

/// Rhai's message without its trailing ` (line l, position p)`, which we print ourselves.
fn strip_position(e: &EvalAltResult) -> String {
    let text = e.to_string();
    match text.rfind(" (line ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adt() -> OwnedMessage {
        hl7v2::parse(b"MSH|^~\\&|EPIC|MAIN|LAB|HOSP|20240101||ADT^A01|C1|P|2.5.1\rPID|1||123^^^H^MR||DOE^JANE||19800101|F\r")
            .unwrap()
            .to_owned_message()
    }

    fn run(text: &str) -> (OwnedMessage, Result<Verdict, ScriptError>) {
        let script = ScriptEngine::new().compile("t.rhai", text).unwrap();
        let mut m = adt();
        let r = script.run(&mut m);
        (m, r)
    }

    #[test]
    fn edits_the_message() {
        let (m, r) = run(r#"
            let family = msg.get("PID-5.1");
            msg.set("PID-5.1", family + "-X");
            msg.set("PID-1", 2);
            msg.delete("PID-8");
            if msg.message_type == "ADT^A01" && msg.control_id == "C1" { msg.set("PID-2", "ok"); }
            let ids = msg.segments();
            msg.set("PID-19", ids.len().to_string() + msg.count("PID").to_string());
            let msg = 5; // shadowing does not lose the message
            "#);
        assert_eq!(r, Ok(Verdict::Continue));
        assert_eq!(
            String::from_utf8(m.encode()).unwrap(),
            "MSH|^~\\&|EPIC|MAIN|LAB|HOSP|20240101||ADT^A01|C1|P|2.5.1\rPID|2|ok|123^^^H^MR||DOE-X^JANE||19800101||||||||||||21\r"
        );
    }

    #[test]
    fn verdicts_end_the_script_and_cannot_be_caught() {
        let (m, r) = run(r#"try { filter(); } catch { } msg.set("PID-8", "X");"#);
        assert_eq!(r, Ok(Verdict::Filter));
        assert_eq!(m.text("PID-8").unwrap(), "F");
        let (_, r) =
            run(r#"fn check(m) { if m.get("PID-8") == "F" { reject("no F here"); } } check(msg);"#);
        assert_eq!(
            r,
            Ok(Verdict::Reject {
                reason: "no F here".into()
            })
        );
    }

    #[test]
    fn errors() {
        let mut wrong = Vec::new();
        for (text, want) in [
            (
                "msg.set(\"PV1-3\", \"x\");",
                "script error: the message has no PV1 segment at line 1, position 5",
            ),
            (
                "msg.get(\"PID-x\");",
                "script error: invalid path \"PID-x\": expected a field number at line 1, position 5",
            ),
            (
                "throw \"DOE\";",
                "script threw an error (value withheld from logs) at line 1, position 1",
            ),
            (
                "msg = 1;",
                "script error: `msg` was replaced by another value",
            ),
            (
                "sleep(1000);",
                "script error: sleep is not available in scripts at line 1, position 1",
            ),
            (
                "sleep(0.5);",
                "script error: sleep is not available in scripts at line 1, position 1",
            ),
            (
                "loop { }",
                "script stopped: more than 100000 operations at line 1, position 6",
            ),
            (
                "let s = \"x\"; loop { s += s; }",
                "script stopped: length of string too large at line 1, position 23",
            ),
            (
                "fn f(n) { f(n + 1) } f(1);",
                "script stopped: calls nested deeper than 32 at line 1, position 22",
            ),
            (
                "msg.nope();",
                "script error: function not found: nope (Message) at line 1, position 5",
            ),
        ] {
            let (_, r) = run(text);
            let got = r.unwrap_err().to_string();
            if got != want {
                wrong.push(format!("{text}\n  got:  {got}\n  want: {want}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn compile_errors() {
        let engine = ScriptEngine::new();
        for (text, want) in [
            (
                "import \"x\" as x;",
                "'import' is a reserved keyword at line 1, position 1",
            ),
            (
                "eval(\"1\")",
                "reserved keyword 'eval' is disabled at line 1, position 1",
            ),
            ("let a = b;", "undefined variable: b at line 1, position 9"),
            ("let a = ;", "unexpected ';' at line 1, position 9"),
        ] {
            assert_eq!(engine.compile("t.rhai", text).unwrap_err(), want, "{text}");
        }
    }
}
