//! Reading a FHIR search's query string into the store's [`ResourceQuery`]: used by the FHIR
//! API's searches and by subscriptions' criteria, so both mean the same thing.
//!
//! Unknown parameters and modifiers are refused (400 naming them) rather than ignored, as with
//! `Prefer: handling=strict`: a misspelt `nmae=Smith` silently ignored would answer every
//! patient.

use causeway_store::{
    DatePrefix, DateTest, IndexTest, QuantityTest, ResourceQuery, SortBy, SortKey, ValueTest,
    resources::MAX_RESOURCE_PAGE,
};
use fhir::search::{self, ParamKind, SearchParam};

/// Why a search is refused: the parameter and what is wrong (`search parameter nmae: unknown
/// search parameter for Patient`). Answered as HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

type QueryResult<T> = Result<T, QueryError>;

/// Page size when `_count` is not given.
pub const DEFAULT_COUNT: u32 = 50;

/// A parsed search: the store query plus what the response needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    pub query: ResourceQuery,
    /// `_include=Type:param[:Target]`: what the matches refer to (`Type` is the searched type).
    pub includes: Vec<Link>,
    /// `_revinclude=Type:param[:Target]`: resources of `Type` whose `param` refers to a match.
    pub revincludes: Vec<Link>,
    /// `_include:iterate`: followed from every `Type` resource of the answer, those it adds
    /// included, round after round.
    pub iterate_includes: Vec<Link>,
    /// `_revinclude:iterate`: resources of `Type` whose `param` refers to any resource of the
    /// answer, round after round.
    pub iterate_revincludes: Vec<Link>,
    /// Chained parameters and `_has`: searches of other types whose matches decide this
    /// one's. The store answers one search at a time, so they are run first and their
    /// matches become clauses of `query` (the server's `resolve_chains`).
    pub chains: Vec<Chain>,
    /// How the matches are shown (`_elements`, `_summary=data`, `_pretty`).
    pub presentation: Presentation,
    /// The parameters as given (minus paging), to build paging links.
    pub echo: Vec<(String, String)>,
    /// `_summary=count`: the total only.
    pub count_only: bool,
}

/// One `_sort` key: `[-]name`, where the name is `_lastUpdated`, `_id` or a search parameter of
/// `resource_type`.
fn sort_key(resource_type: &str, key: &str, item: &str) -> QueryResult<SortKey> {
    let (descending, name) = match item.strip_prefix('-') {
        Some(name) => (true, name),
        None => (false, item),
    };
    let by = match name {
        "_lastUpdated" => SortBy::LastUpdated,
        "_id" => SortBy::Id,
        "" => {
            return Err(bad(
                key,
                "expected a parameter name, `-` before it to reverse",
            ));
        }
        _ => {
            let param = search::param(resource_type, name).ok_or_else(|| {
                bad(
                    key,
                    &format!("{name} is not a search parameter of {resource_type}"),
                )
            })?;
            if !param.union_of.is_empty() {
                return Err(bad(
                    key,
                    &format!(
                        "{name} unites {}, which cannot order results together: sort by one of them",
                        param.union_of.join(" and ")
                    ),
                ));
            }
            let qualified = format!("{resource_type}.{}", param.name);
            match param.kind {
                ParamKind::Date => SortBy::Date(qualified),
                ParamKind::Quantity => SortBy::Number(qualified),
                ParamKind::CodeQuantity => {
                    return Err(bad(
                        key,
                        &format!("{name} is a composite parameter, which cannot order results"),
                    ));
                }
                ParamKind::Token | ParamKind::String | ParamKind::Reference => {
                    SortBy::Value(qualified)
                }
            }
        }
    };
    Ok(SortKey { by, descending })
}

/// How returned resources are shown, on a read as on a search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presentation {
    /// `_elements`: the top-level elements to return (empty: all of them).
    pub elements: Vec<String>,
    /// `_summary=data`: without the narrative (`text`).
    pub without_text: bool,
    /// `_pretty=true`: indented JSON.
    pub pretty: bool,
}

impl Presentation {
    /// Reads `key=value` if it is a presentation parameter (`_elements`, `_pretty`, `_format`,
    /// `_summary=data|false`) of a search or a read; `None` when it is not one.
    fn read(&mut self, on: Interaction, key: &str, value: &str) -> Option<QueryResult<()>> {
        let bad = |key: &str, why: &str| on.bad(key, why);
        let (name, modifier) = match key.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (key, None),
        };
        if modifier.is_some() && matches!(name, "_elements" | "_pretty" | "_format" | "_summary") {
            return Some(Err(bad(
                key,
                &format!("no modifier is supported on {name}"),
            )));
        }
        let outcome = match (name, value) {
            ("_elements", _) => self.read_elements(on, key, value),
            ("_pretty", "true") => {
                self.pretty = true;
                Ok(())
            }
            ("_pretty", "false") => Ok(()),
            ("_pretty", _) => Err(bad(key, "expected true or false")),
            ("_format", "json" | "application/json" | "application/fhir+json") => Ok(()),
            ("_format", _) => Err(bad(key, "only JSON is served")),
            ("_summary", "data") => {
                self.without_text = true;
                Ok(())
            }
            ("_summary", "false") => Ok(()),
            _ => return None,
        };
        Some(outcome)
    }

    fn read_elements(&mut self, on: Interaction, key: &str, value: &str) -> QueryResult<()> {
        for element in value.split(',') {
            if !is_element_name(element) {
                return Err(on.bad(
                    key,
                    &format!(
                        "{element:?} is not an element name (top-level elements only, e.g. code,value)"
                    ),
                ));
            }
            self.elements.push(element.to_owned());
        }
        Ok(())
    }
}

/// A search parameter that is answered by searching another type first.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    /// The parameter as given (`patient.identifier`), for messages.
    pub key: String,
    pub kind: ChainKind,
    /// The search of the other type (one clause; paging and order are the resolver's).
    pub query: ResourceQuery,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChainKind {
    /// `param.name=v` (`subject:Patient.name=v`): the searched resource's `param` (qualified,
    /// `Observation.patient`) refers to a `target` resource matching `name=v`.
    Forward { param: String, target: &'static str },
    /// `_has:Type:param:name=v`: a `Type` resource matching `name=v` refers to the searched
    /// resource through `param`.
    Reverse { param: &'static SearchParam },
}

/// A chained parameter (`patient.identifier`, `subject:Patient.name:exact`) or a reverse chain
/// (`_has:Observation:patient:code`) of a `resource_type` search; `None` when `key` is neither.
fn chain(resource_type: &str, key: &str, value: &str) -> QueryResult<Option<Chain>> {
    if let Some(rest) = key.strip_prefix("_has:") {
        let mut parts = rest.splitn(3, ':');
        let (source, param, inner) = (parts.next(), parts.next(), parts.next());
        let found = source
            .zip(param)
            .and_then(|(t, p)| reference_param(t, p))
            .zip(inner.filter(|i| !i.is_empty()));
        let Some(((source, p), inner)) = found else {
            return Err(bad(
                key,
                "expected _has:Type:parameter:search, the parameter a reference parameter of Type",
            ));
        };
        if p.target.is_some_and(|t| t != resource_type) {
            return Err(bad(
                key,
                &format!("{source}.{} does not refer to {resource_type}", p.name),
            ));
        }
        let query = inner_query(key, source, inner, value)?;
        return Ok(Some(Chain {
            key: key.to_owned(),
            kind: ChainKind::Reverse { param: p },
            query,
        }));
    }
    let Some((left, inner)) = key.split_once('.') else {
        return Ok(None);
    };
    if left.starts_with('_') {
        return Ok(None);
    }
    let (name, named_type) = match left.split_once(':') {
        Some((n, t)) => (n, Some(t)),
        None => (left, None),
    };
    let p = search::param(resource_type, name)
        .filter(|p| p.kind == ParamKind::Reference)
        .ok_or_else(|| {
            bad(
                key,
                &format!(
                    "{name} is not a reference parameter of {resource_type}, which a chain needs"
                ),
            )
        })?;
    let target = match (named_type, p.target) {
        (Some(t), pt) => known_type(t)
            .filter(|k| pt.is_none_or(|pt| pt == *k))
            .ok_or_else(|| bad(key, &format!("{name} cannot refer to {t}")))?,
        (None, Some(t)) => t,
        (None, None) => {
            return Err(bad(
                key,
                &format!(
                    "{name} may refer to several types: name one, as in {name}:Patient.{inner}"
                ),
            ));
        }
    };
    let query = inner_query(key, target, inner, value)?;
    Ok(Some(Chain {
        key: key.to_owned(),
        kind: ChainKind::Forward {
            param: format!("{resource_type}.{}", p.name),
            target,
        },
        query,
    }))
}

/// The search `inner=value` of `resource_type` that a chain runs: one parameter, itself not a
/// chain.
fn inner_query(
    key: &str,
    resource_type: &str,
    inner: &str,
    value: &str,
) -> QueryResult<ResourceQuery> {
    let inner_name = inner.split(':').next().unwrap_or_default();
    if inner.contains('.') || inner.starts_with("_has") {
        return Err(bad(key, "a chain of more than one link is not supported"));
    }
    if RESULT_PARAMETERS.contains(&inner_name) {
        return Err(bad(key, &format!("{inner_name} cannot end a chain")));
    }
    let search = parse(resource_type, &[(inner.to_owned(), value.to_owned())]).map_err(|e| {
        // The refusal names the whole chained parameter, not its last link.
        let inner_prefix = format!("search parameter {inner}: ");
        bad(key, e.0.strip_prefix(&inner_prefix).unwrap_or(&e.0))
    })?;
    Ok(search.query)
}

/// `t` as the type table's own `&'static str`; `None` for a type the API does not know.
fn known_type(t: &str) -> Option<&'static str> {
    fhir::RESOURCE_TYPES.iter().copied().find(|k| *k == t)
}

/// The reference parameter `param` of type `t` (includes, `_revinclude`, `_has` name one).
fn reference_param(t: &str, param: &str) -> Option<(&'static str, &'static SearchParam)> {
    let t = known_type(t)?;
    search::param(t, param)
        .filter(|p| p.kind == ParamKind::Reference)
        .map(|p| (t, p))
}

/// One `_include` or `_revinclude`: a reference parameter of `source`, and the type of the
/// resources it may reach (`:Target`, or the parameter's own target type).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub source: &'static str,
    pub param: &'static SearchParam,
    pub target: Option<&'static str>,
}

impl Link {
    /// True when a reference to a `resource_type` resource can be followed by this link.
    pub fn reaches(&self, resource_type: &str) -> bool {
        self.target.is_none_or(|t| t == resource_type)
    }
}

/// A top-level element's name as `_elements` takes it (`code`, `valueQuantity`).
pub fn is_element_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Which request a parameter came with, for the wording of a refusal.
#[derive(Debug, Clone, Copy)]
enum Interaction {
    Search,
    Read,
}

impl Interaction {
    fn bad(self, key: &str, why: &str) -> QueryError {
        match self {
            Interaction::Search => bad(key, why),
            Interaction::Read => QueryError(format!("read parameter {key}: {why}")),
        }
    }
}

/// Parses the query of a read (`GET /fhir/{type}/{id}` or one of its versions): only
/// presentation parameters are meaningful there; anything else is refused rather than ignored.
///
/// # Errors
/// The first parameter that is not one, or an unreadable value, named.
pub fn parse_read(pairs: &[(String, String)]) -> QueryResult<Presentation> {
    let mut p = Presentation::default();
    for (key, value) in pairs {
        match p.read(Interaction::Read, key, value) {
            Some(outcome) => outcome?,
            None if key.starts_with("_summary") => {
                return Err(Interaction::Read.bad(key, "only data and false are supported"));
            }
            None => {
                return Err(QueryError(format!(
                    "read parameter {key} is not supported (a read takes _elements, _summary=data, _pretty and _format)"
                )));
            }
        }
    }
    Ok(p)
}

/// Parses `pairs` (decoded query parameters) for a search of `resource_type`.
///
/// # Errors
/// The first unknown parameter, modifier or unreadable value, named.
pub fn parse(resource_type: &str, pairs: &[(String, String)]) -> QueryResult<Search> {
    let mut s = Search {
        query: ResourceQuery {
            resource_type: resource_type.to_owned(),
            count: DEFAULT_COUNT,
            ..ResourceQuery::default()
        },
        ..Search::default()
    };
    for (key, value) in pairs {
        if let Some(chain) = chain(resource_type, key, value)? {
            s.chains.push(chain);
            s.echo.push((key.clone(), value.clone()));
            continue;
        }
        let (name, modifier) = match key.split_once(':') {
            Some((n, m)) => (n, Some(m)),
            None => (key.as_str(), None),
        };
        let echo = !matches!(name, "_count" | "_offset");
        if let Some(outcome) = s.presentation.read(Interaction::Search, key, value) {
            outcome?;
            s.echo.push((key.clone(), value.clone()));
            continue;
        }
        match name {
            "_count" => {
                s.query.count = value
                    .parse::<u32>()
                    .map_err(|_| bad(key, "expected a whole number"))?
                    .min(MAX_RESOURCE_PAGE);
            }
            "_offset" => {
                s.query.offset = value
                    .parse::<u32>()
                    .map_err(|_| bad(key, "expected a whole number"))?;
            }
            "_sort" => {
                if modifier.is_some() {
                    return Err(bad(key, "no modifier is supported on _sort"));
                }
                for item in value.split(',') {
                    s.query.sort.0.push(sort_key(resource_type, key, item)?);
                }
            }
            "_summary" => match value.as_str() {
                "count" => s.count_only = true,
                _ => return Err(bad(key, "only count, data and false are supported")),
            },
            "_total" => {
                if !matches!(value.as_str(), "accurate" | "estimate" | "none") {
                    return Err(bad(key, "expected accurate, estimate or none"));
                }
            }
            "_include" | "_revinclude" => {
                let iterate = match modifier {
                    None => false,
                    Some("iterate") => true,
                    Some(m) => {
                        return Err(bad(
                            key,
                            &format!("unknown modifier :{m} (only :iterate is supported)"),
                        ));
                    }
                };
                let link = if name == "_include" {
                    include(resource_type, key, value, iterate)?
                } else {
                    revinclude(resource_type, key, value, iterate)?
                };
                match (name, iterate) {
                    ("_include", false) => s.includes.push(link),
                    ("_include", true) => s.iterate_includes.push(link),
                    (_, false) => s.revincludes.push(link),
                    (_, true) => s.iterate_revincludes.push(link),
                }
            }
            "_id" => {
                if modifier.is_some() {
                    return Err(bad(key, "no modifier is supported on _id"));
                }
                s.query.ids.extend(split_or(value));
            }
            "_lastUpdated" => {
                if modifier.is_some() {
                    return Err(bad(key, "no modifier is supported on _lastUpdated"));
                }
                s.query.last_updated.push(date_test(key, value)?);
            }
            _ => {
                let param = search::param(resource_type, name).ok_or_else(|| {
                    bad(
                        key,
                        &format!("unknown search parameter for {resource_type}"),
                    )
                })?;
                // The indexed parameters searched: this one, or those a combo unites.
                let targets: Vec<String> = if param.union_of.is_empty() {
                    vec![format!("{resource_type}.{}", param.name)]
                } else {
                    param
                        .union_of
                        .iter()
                        .map(|name| format!("{resource_type}.{name}"))
                        .collect()
                };
                if modifier == Some("missing") {
                    let missing = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad(key, "expected true or false")),
                    };
                    let tests = targets.into_iter().map(|param| IndexTest {
                        param,
                        test: ValueTest::Missing(missing),
                    });
                    if missing {
                        // Missing from every united parameter: one clause each.
                        s.query.clauses.extend(tests.map(|t| vec![t]));
                    } else {
                        s.query.clauses.push(tests.collect());
                    }
                } else {
                    let mut clause = Vec::new();
                    for part in split_or(value) {
                        let test = value_test(param, modifier, key, &part)?;
                        for target in &targets {
                            clause.push(in_canonical_form(target, &test).unwrap_or_else(|| {
                                IndexTest {
                                    param: target.clone(),
                                    test: test.clone(),
                                }
                            }));
                        }
                    }
                    s.query.clauses.push(clause);
                }
            }
        }
        if echo {
            s.echo.push((key.clone(), value.clone()));
        }
    }
    if s.count_only {
        s.query.count = 0;
    }
    Ok(s)
}

/// `_include=Type:param[:Target]`: the type and its reference parameter. Without `:iterate`
/// the type is the one searched.
fn include(resource_type: &str, key: &str, value: &str, iterate: bool) -> QueryResult<Link> {
    let mut parts = value.splitn(3, ':');
    let (source, param, target) = (parts.next().unwrap_or(""), parts.next(), parts.next());
    let Some(param) = param else {
        return Err(bad(key, "expected Type:parameter"));
    };
    let found = reference_param(source, param).filter(|(t, _)| iterate || *t == resource_type);
    let Some((source, p)) = found else {
        let why = if iterate {
            format!("{value} is not Type:parameter naming a reference parameter of Type")
        } else {
            format!("{value} is not a reference parameter of {resource_type}")
        };
        return Err(bad(key, &why));
    };
    link(key, value, source, p, target)
}

/// The link of `source`'s `p`, reaching `target` (a type name) when one is given.
fn link(
    key: &str,
    value: &str,
    source: &'static str,
    p: &'static SearchParam,
    target: Option<&str>,
) -> QueryResult<Link> {
    let target = match target {
        None => p.target,
        Some(t) => match (known_type(t), p.target) {
            (Some(k), None) => Some(k),
            (Some(k), Some(pt)) if k == pt => Some(k),
            _ => return Err(bad(key, &format!("{value}: wrong target type"))),
        },
    };
    Ok(Link {
        source,
        param: p,
        target,
    })
}

/// `_revinclude=Type:param[:Target]`: the referring type and its reference parameter. Without
/// `:iterate` the parameter must be able to refer to the type searched.
fn revinclude(resource_type: &str, key: &str, value: &str, iterate: bool) -> QueryResult<Link> {
    let mut parts = value.splitn(3, ':');
    let (source, param, target) = (parts.next(), parts.next(), parts.next());
    let found = source.zip(param).and_then(|(t, p)| reference_param(t, p));
    let Some((source, p)) = found else {
        return Err(bad(
            key,
            &format!("{value:?} is not Type:parameter naming a reference parameter of Type"),
        ));
    };
    let refers_elsewhere =
        p.target.is_some_and(|t| t != resource_type) || target.is_some_and(|t| t != resource_type);
    if !iterate && refers_elsewhere {
        return Err(bad(
            key,
            &format!("{value} does not refer to {resource_type}"),
        ));
    }
    let mut link = link(key, value, source, p, target)?;
    if !iterate {
        // It reaches the matches.
        link.target = known_type(resource_type);
    }
    Ok(link)
}

/// The search parameters that shape the answer (paging, order, related resources, what of
/// each resource is shown) rather than choose the matches.
const RESULT_PARAMETERS: [&str; 10] = [
    "_count",
    "_offset",
    "_sort",
    "_include",
    "_revinclude",
    "_elements",
    "_summary",
    "_total",
    "_pretty",
    "_format",
];

/// A subscription's `criteria` (`Observation?code=http://loinc.org|2345-7`): its type and
/// search. The query part is decoded as a URL query (`%7C`, `+`).
///
/// # Errors
/// A criteria without a known type, with a result parameter (`_sort`, `_elements`...), or
/// whose search [`parse`] refuses.
pub fn parse_criteria(criteria: &str) -> QueryResult<(String, Search)> {
    let (resource_type, search) = parse_selection("criteria", criteria)?;
    // Chains are answered by searching first, at the time of a request; criteria are kept and
    // matched later, when the chain's own answer may have changed.
    if let Some(chain) = search.chains.first() {
        return Err(QueryError(format!(
            "criteria: {} is a chained parameter, not supported here",
            chain.key
        )));
    }
    Ok((resource_type, search))
}

/// A query that selects resources of one type, `Type?params` (a subscription's `criteria`, an
/// export's `_typeFilter`): its type and search, chains included; refusals start with `what`.
/// The query part is decoded as a URL query (`%7C`, `+`).
///
/// # Errors
/// A query without a known type, with a result parameter (`_sort`, `_elements`...), or whose
/// search [`parse`] refuses.
pub fn parse_selection(what: &str, text: &str) -> QueryResult<(String, Search)> {
    let (resource_type, query) = text.split_once('?').unwrap_or((text, ""));
    if !fhir::RESOURCE_TYPES.contains(&resource_type) {
        return Err(QueryError(format!(
            "{what}: {resource_type:?} is not a supported resource type"
        )));
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    // What is selected is taken as it is: parameters that shape a result page would be
    // ignored without a word.
    if let Some((key, _)) = pairs.iter().find(|(k, _)| {
        let name = k.split(':').next().unwrap_or_default();
        RESULT_PARAMETERS.contains(&name)
    }) {
        return Err(QueryError(format!(
            "{what}: {key} shapes search results; here the query only selects resources"
        )));
    }
    let search =
        parse(resource_type, &pairs).map_err(|e| QueryError(format!("{what}: {}", e.0)))?;
    Ok((resource_type.to_owned(), search))
}

fn bad(key: &str, why: &str) -> QueryError {
    QueryError(format!("search parameter {key}: {why}"))
}

/// Splits on unescaped commas (OR), undoing `\,`.
fn split_or(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next @ (',' | '|' | '$' | '\\')) => {
                    out.last_mut().map_or((), |s| s.push(next))
                }
                Some(next) => {
                    if let Some(s) = out.last_mut() {
                        s.push('\\');
                        s.push(next);
                    }
                }
                None => out.last_mut().map_or((), |s| s.push('\\')),
            },
            ',' => out.push(String::new()),
            c => out.last_mut().map_or((), |s| s.push(c)),
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn value_test(
    param: &SearchParam,
    modifier: Option<&str>,
    key: &str,
    value: &str,
) -> QueryResult<ValueTest> {
    Ok(match (param.kind, modifier) {
        (ParamKind::Token, None) => match value.split_once('|') {
            None => ValueTest::Code(value.to_owned()),
            Some(("", code)) => ValueTest::NoSystemCode(code.to_owned()),
            Some((system, "")) => ValueTest::System(system.to_owned()),
            Some((system, code)) => ValueTest::SystemCode {
                system: system.to_owned(),
                code: code.to_owned(),
            },
        },
        (ParamKind::String, None) => ValueTest::TextPrefix(search::normalize_text(value)),
        (ParamKind::String, Some("exact")) => ValueTest::TextExact(search::normalize_text(value)),
        (ParamKind::String, Some("contains")) => {
            ValueTest::TextContains(search::normalize_text(value))
        }
        (ParamKind::Date, None) => ValueTest::Date(date_test(key, value)?),
        (ParamKind::Quantity, None) => ValueTest::Quantity(quantity_test(key, value)?),
        (ParamKind::CodeQuantity, None) => code_quantity_test(key, value)?,
        (ParamKind::Reference, None) => ValueTest::Reference(reference(param, key, value)?),
        (ParamKind::Reference, Some(target)) if param.target.is_none_or(|t| t == target) => {
            let r = if value.contains('/') {
                value.to_owned()
            } else {
                format!("{target}/{value}")
            };
            ValueTest::Reference(reference(param, key, &r)?)
        }
        (_, Some(m)) => return Err(bad(key, &format!("modifier :{m} is not supported here"))),
    })
}

/// `Type/id`, a bare id (for a parameter with one target type) or an absolute URL ending so.
fn reference(param: &SearchParam, key: &str, value: &str) -> QueryResult<String> {
    let parts: Vec<&str> = value.rsplitn(3, '/').collect();
    let r = match parts.as_slice() {
        [id] => match param.target {
            Some(t) => format!("{t}/{id}"),
            None => return Err(bad(key, "expected Type/id")),
        },
        [id, t, ..] => format!("{t}/{id}"),
        [] => return Err(bad(key, "empty reference")),
    };
    if !search::is_relative_reference(&r) {
        return Err(bad(key, "expected Type/id"));
    }
    Ok(r)
}

/// The comparison prefix of a date or number (`eq` when none), and the rest of the value;
/// `expected` describes what should follow, for the error.
fn prefixed<'v>(key: &str, value: &'v str, expected: &str) -> QueryResult<(DatePrefix, &'v str)> {
    let Some(p) = value
        .get(..2)
        .filter(|p| p.bytes().all(|b| b.is_ascii_lowercase()))
    else {
        return Ok((DatePrefix::Eq, value));
    };
    let prefix = match p {
        "eq" => DatePrefix::Eq,
        "ne" => DatePrefix::Ne,
        "lt" => DatePrefix::Lt,
        "le" => DatePrefix::Le,
        "gt" => DatePrefix::Gt,
        "ge" => DatePrefix::Ge,
        "sa" => DatePrefix::Sa,
        "eb" => DatePrefix::Eb,
        "ap" => DatePrefix::Ap,
        _ => {
            return Err(bad(
                key,
                &format!(
                    "unknown prefix {p:?} in {value:?}: expected {expected}, or one after eq, ne, lt, le, gt, ge, sa, eb or ap"
                ),
            ));
        }
    };
    Ok((prefix, &value[2..]))
}

fn date_test(key: &str, value: &str) -> QueryResult<DateTest> {
    let (prefix, date) = prefixed(key, value, "a FHIR date such as 2024-03-01")?;
    let (lo, hi) = search::parse_date(date).ok_or_else(|| {
        bad(
            key,
            "expected a FHIR date, e.g. 2024-03-01 or 2024-03-01T10:00:00Z",
        )
    })?;
    Ok(DateTest { prefix, lo, hi })
}

/// `[prefix]number[|system|code]`: `5.4||mg` names the unit by code in any system,
/// `5.4|http://unitsofmeasure.org|mg` by both, `5.4` any unit.
fn quantity_test(key: &str, value: &str) -> QueryResult<QuantityTest> {
    let (prefix, rest) = prefixed(key, value, "a number such as 5.4")?;
    let mut parts = rest.splitn(3, '|');
    let number = parts.next().unwrap_or_default();
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let (system, code) = match (parts.next(), parts.next()) {
        (None, _) => (None, None),
        (Some(system), Some(code)) => (non_empty(system), non_empty(code)),
        (Some(_), None) => {
            return Err(bad(
                key,
                &format!(
                    "{value:?}: expected number|system|code, e.g. 5.4|http://unitsofmeasure.org|mg or 5.4||mg"
                ),
            ));
        }
    };
    let (value, lo, hi) = decimal_range(number).ok_or_else(|| {
        bad(
            key,
            &format!("expected a number such as 5.4, -2 or 1.5e-3, not {number:?}"),
        )
    })?;
    Ok(QuantityTest {
        prefix,
        value,
        lo,
        hi,
        system,
        code,
    })
}

/// A quantity test in a UCUM unit, as a test of the canonical values of `param`
/// (`5.4|http://unitsofmeasure.org|mmol/L` finds `0.0054 mol/L` and `97 mg/dL` of glucose
/// does not, being another kind): `None` for other tests, and for units without a canonical
/// form, which are matched as written.
fn in_canonical_form(param: &str, test: &ValueTest) -> Option<IndexTest> {
    let ValueTest::Quantity(q) = test else {
        return None;
    };
    if q.system.as_deref() != Some(fhir::ucum::UCUM) {
        return None;
    }
    let c = fhir::ucum::canonical(q.code.as_deref()?)?;
    Some(IndexTest {
        param: crate::destinations::fhir_store::canonical_param(param),
        test: ValueTest::Quantity(QuantityTest {
            prefix: q.prefix,
            value: q.value * c.factor,
            lo: q.lo * c.factor,
            hi: q.hi * c.factor,
            system: q.system.clone(),
            code: Some(c.unit),
        }),
    })
}

/// `[system|]code$[prefix]number[|system|code]`: `8480-6$gt140`,
/// `http://loinc.org|8480-6$gt140||mm[Hg]`. The unit is matched by its code.
fn code_quantity_test(key: &str, value: &str) -> QueryResult<ValueTest> {
    let (token, quantity) = value.split_once('$').ok_or_else(|| {
        bad(
            key,
            &format!("{value:?}: expected code$quantity, e.g. http://loinc.org|8480-6$gt140"),
        )
    })?;
    let (system, code) = match token.split_once('|') {
        None => (None, token),
        Some((system, code)) => (Some(system.to_owned()), code),
    };
    if code.is_empty() {
        return Err(bad(key, &format!("{value:?}: the code before $ is empty")));
    }
    Ok(ValueTest::CodeQuantity {
        system,
        code: code.to_owned(),
        quantity: quantity_test(key, quantity)?,
    })
}

/// Most significant digits a searched number may have: more than an `f64` holds anyway.
const MAX_DECIMAL_DIGITS: usize = 30;

/// A decimal's value and the half-open range its precision implies (`5.4`: `[5.35, 5.45)`,
/// `5.40`: `[5.395, 5.405)`, `1e2`: `[50, 150)`). The bounds are parsed from decimal text, as the
/// stored values were, so a stored 5.35 equals the bound instead of missing it by a rounding.
/// `None` unless it is a FHIR decimal (`-?digits[.digits][e[+-]digits]`), finite.
fn decimal_range(text: &str) -> Option<(f64, f64, f64)> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty()
        || !digits_only(int)
        || !digits_only(frac)
        || (mantissa.contains('.') && frac.is_empty())
    {
        return None;
    }
    let significant = format!("{int}{frac}");
    let significant = significant.trim_start_matches('0');
    if significant.len() > MAX_DECIMAL_DIGITS {
        return None;
    }
    let m: i128 = if significant.is_empty() {
        0
    } else {
        significant.parse().ok()?
    };
    // Half a unit of the last digit either side: (10m ± 5) tenths of that digit.
    let frac_len = i32::try_from(frac.len()).ok()?;
    let scale = exponent.checked_sub(frac_len)?.checked_sub(1)?;
    let sign: i128 = if negative { -1 } else { 1 };
    let at = |tenths: i128| {
        format!("{}e{scale}", sign * tenths)
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
    };
    let value = text.parse::<f64>().ok().filter(|v| v.is_finite())?;
    let (below, above) = (at(m * 10 - 5)?, at(m * 10 + 5)?);
    let (lo, hi) = if negative {
        (above, below)
    } else {
        (below, above)
    };
    Some((value, lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tokens_strings_dates_and_references_become_store_tests() {
        let s = parse(
            "Observation",
            &pairs(&[
                ("code", "http://loinc.org|2345-7,|GLU"),
                ("date", "ge2024-03"),
                ("patient", "p1"),
                ("_count", "5"),
            ]),
        )
        .expect("parses");
        assert_eq!(s.query.count, 5);
        assert_eq!(s.query.clauses.len(), 3);
        assert_eq!(
            s.query.clauses[0][0].test,
            ValueTest::SystemCode {
                system: "http://loinc.org".into(),
                code: "2345-7".into()
            }
        );
        assert_eq!(
            s.query.clauses[0][1].test,
            ValueTest::NoSystemCode("GLU".into())
        );
        assert!(matches!(
            s.query.clauses[1][0].test,
            ValueTest::Date(DateTest {
                prefix: DatePrefix::Ge,
                ..
            })
        ));
        assert_eq!(
            s.query.clauses[2][0].test,
            ValueTest::Reference("Patient/p1".into())
        );
        assert_eq!(s.echo.len(), 3, "paging parameters are not echoed");
    }

    #[test]
    fn bad_searches_say_what_is_wrong() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            (
                "Patient",
                &[("nmae", "x")],
                "search parameter nmae: unknown search parameter for Patient",
            ),
            (
                "Patient",
                &[("birthdate", "xx2024")],
                "search parameter birthdate: unknown prefix \"xx\" in \"xx2024\": expected a FHIR date such as 2024-03-01, or one after eq, ne, lt, le, gt, ge, sa, eb or ap",
            ),
            (
                "Patient",
                &[("birthdate", "2024-13")],
                "search parameter birthdate: expected a FHIR date, e.g. 2024-03-01 or 2024-03-01T10:00:00Z",
            ),
            (
                "Patient",
                &[("_count", "-1")],
                "search parameter _count: expected a whole number",
            ),
            (
                "Patient",
                &[("family:fuzzy", "x")],
                "search parameter family:fuzzy: modifier :fuzzy is not supported here",
            ),
            (
                "Observation",
                &[("_include", "Observation:code")],
                "search parameter _include: Observation:code is not a reference parameter of Observation",
            ),
            (
                "Observation",
                &[("subject", "p1")],
                "search parameter subject: expected Type/id",
            ),
            (
                "Observation",
                &[("_sort", "date,-colour")],
                "search parameter _sort: colour is not a search parameter of Observation",
            ),
            (
                "Patient",
                &[("_revinclude", "Observation:code")],
                "search parameter _revinclude: \"Observation:code\" is not Type:parameter naming a reference parameter of Type",
            ),
            (
                "Encounter",
                &[("_revinclude", "Observation:patient")],
                "search parameter _revinclude: Observation:patient does not refer to Encounter",
            ),
            (
                "Patient",
                &[("_elements", "name,meta.tag")],
                "search parameter _elements: \"meta.tag\" is not an element name (top-level elements only, e.g. code,value)",
            ),
            (
                "Observation",
                &[("_sort", "-")],
                "search parameter _sort: expected a parameter name, `-` before it to reverse",
            ),
            (
                "Observation",
                &[("value-quantity", "gt5.4|mg")],
                "search parameter value-quantity: \"gt5.4|mg\": expected number|system|code, e.g. 5.4|http://unitsofmeasure.org|mg or 5.4||mg",
            ),
            (
                "Observation",
                &[("value-quantity", "gtseven")],
                "search parameter value-quantity: expected a number such as 5.4, -2 or 1.5e-3, not \"seven\"",
            ),
            (
                "Observation",
                &[("value-quantity", "xx7")],
                "search parameter value-quantity: unknown prefix \"xx\" in \"xx7\": expected a number such as 5.4, or one after eq, ne, lt, le, gt, ge, sa, eb or ap",
            ),
            (
                "Observation",
                &[("component-code-value-quantity", "8480-6")],
                "search parameter component-code-value-quantity: \"8480-6\": expected code$quantity, e.g. http://loinc.org|8480-6$gt140",
            ),
            (
                "Observation",
                &[("code-value-quantity", "http://loinc.org|$gt5")],
                "search parameter code-value-quantity: \"http://loinc.org|$gt5\": the code before $ is empty",
            ),
            (
                "Observation",
                &[("_sort", "code-value-quantity")],
                "search parameter _sort: code-value-quantity is a composite parameter, which cannot order results",
            ),
            (
                "Observation",
                &[("_sort", "-combo-value-quantity")],
                "search parameter _sort: combo-value-quantity unites value-quantity and component-value-quantity, which cannot order results together: sort by one of them",
            ),
            (
                "Observation",
                &[("value-quantity:exact", "7")],
                "search parameter value-quantity:exact: modifier :exact is not supported here",
            ),
        ];
        for (t, q, want) in cases {
            let err = parse(t, &pairs(q)).expect_err("refused");
            assert_eq!(err.0, *want);
        }
    }

    #[test]
    fn decimals_carry_the_range_of_their_precision() {
        let cases: &[(&str, (f64, f64, f64))] = &[
            ("5.4", (5.4, 5.35, 5.45)),
            ("5.40", (5.4, 5.395, 5.405)),
            ("100", (100.0, 99.5, 100.5)),
            ("1e2", (100.0, 50.0, 150.0)),
            ("1.5E-3", (0.0015, 0.00145, 0.00155)),
            ("-2.5", (-2.5, -2.55, -2.45)),
            ("0", (0.0, -0.5, 0.5)),
            ("007", (7.0, 6.5, 7.5)),
        ];
        for (text, want) in cases {
            assert_eq!(decimal_range(text), Some(*want), "{text}");
        }
        for text in [
            "",
            "-",
            ".5",
            "5.",
            "5.4.1",
            "1e",
            "1e+",
            "inf",
            "NaN",
            "0x10",
            "+5",
            "5 ",
            "1e999",
            "1234567890123456789012345678901",
        ] {
            assert_eq!(decimal_range(text), None, "{text:?}");
        }
    }

    /// 1 mm[Hg] in canonical units (g.m-1.s-2), as `fhir::ucum` computes it.
    const MM_HG: f64 = 1e-3 * 133_322_387.415;

    #[test]
    fn quantities_take_a_prefix_a_number_and_a_unit() {
        let s = parse(
            "Observation",
            &pairs(&[
                ("value-quantity", "gt7,5.4||mg/dL"),
                (
                    "component-value-quantity",
                    "le120|http://unitsofmeasure.org|mm[Hg]",
                ),
                ("_sort", "-value-quantity"),
            ]),
        )
        .expect("parses");
        let tests: Vec<&ValueTest> = s.query.clauses.iter().flatten().map(|t| &t.test).collect();
        assert_eq!(
            tests,
            [
                &ValueTest::Quantity(QuantityTest {
                    prefix: DatePrefix::Gt,
                    value: 7.0,
                    lo: 6.5,
                    hi: 7.5,
                    system: None,
                    code: None,
                }),
                &ValueTest::Quantity(QuantityTest {
                    prefix: DatePrefix::Eq,
                    value: 5.4,
                    lo: 5.35,
                    hi: 5.45,
                    system: None,
                    code: Some("mg/dL".into()),
                }),
                &ValueTest::Quantity(QuantityTest {
                    prefix: DatePrefix::Le,
                    value: 120.0 * MM_HG,
                    lo: 119.5 * MM_HG,
                    hi: 120.5 * MM_HG,
                    system: Some("http://unitsofmeasure.org".into()),
                    code: Some("g.m-1.s-2".into()),
                }),
            ]
        );
        // A UCUM unit is searched in canonical form, among the canonical values.
        assert_eq!(
            s.query.clauses[1][0].param,
            "Observation.component-value-quantity:canonical"
        );
        assert_eq!(s.query.clauses[0][1].param, "Observation.value-quantity");
        let combo = parse(
            "Observation",
            &pairs(&[
                ("combo-value-quantity", "gt7"),
                ("combo-code:missing", "true"),
            ]),
        )
        .expect("parses");
        let params = |clause: &[IndexTest]| -> Vec<String> {
            clause.iter().map(|t| t.param.clone()).collect()
        };
        assert_eq!(
            params(&combo.query.clauses[0]),
            [
                "Observation.value-quantity",
                "Observation.component-value-quantity"
            ],
            "either parameter, in one clause"
        );
        assert_eq!(
            combo.query.clauses[0][0].test,
            combo.query.clauses[0][1].test
        );
        assert_eq!(
            combo.query.clauses[1..]
                .iter()
                .map(|c| params(c))
                .collect::<Vec<_>>(),
            [["Observation.code"], ["Observation.component-code"]],
            "missing from both: one clause each"
        );
        let composite = parse(
            "Observation",
            &pairs(&[(
                "component-code-value-quantity",
                "http://loinc.org|8480-6$gt140||mm[Hg],|SYS$ap150",
            )]),
        )
        .expect("parses");
        let tests: Vec<&ValueTest> = composite.query.clauses[0].iter().map(|t| &t.test).collect();
        assert_eq!(
            tests,
            [
                &ValueTest::CodeQuantity {
                    system: Some("http://loinc.org".into()),
                    code: "8480-6".into(),
                    quantity: QuantityTest {
                        prefix: DatePrefix::Gt,
                        value: 140.0,
                        lo: 139.5,
                        hi: 140.5,
                        system: None,
                        code: Some("mm[Hg]".into()),
                    },
                },
                &ValueTest::CodeQuantity {
                    system: Some(String::new()),
                    code: "SYS".into(),
                    quantity: QuantityTest {
                        prefix: DatePrefix::Ap,
                        value: 150.0,
                        lo: 149.5,
                        hi: 150.5,
                        system: None,
                        code: None,
                    },
                },
            ]
        );
        assert_eq!(
            s.query.sort.0,
            [SortKey {
                by: SortBy::Number("Observation.value-quantity".into()),
                descending: true
            }]
        );
    }

    #[test]
    fn sort_keys_name_dates_values_ids_and_update_times() {
        let s = parse(
            "Observation",
            &pairs(&[("_sort", "-date,code"), ("_sort", "_id,-_lastUpdated")]),
        )
        .expect("parses");
        let key = |by, descending| SortKey { by, descending };
        assert_eq!(
            s.query.sort.0,
            vec![
                key(SortBy::Date("Observation.date".into()), true),
                key(SortBy::Value("Observation.code".into()), false),
                key(SortBy::Id, false),
                key(SortBy::LastUpdated, true),
            ]
        );
        assert_eq!(s.echo.len(), 2, "the sort is kept in the paging links");
        let s = parse(
            "Patient",
            &pairs(&[
                ("_revinclude", "Observation:patient"),
                ("_revinclude", "Encounter:subject:Patient"),
                ("_elements", "name,birthDate"),
            ]),
        )
        .expect("parses");
        let revincludes: Vec<(&str, &str)> = s
            .revincludes
            .iter()
            .map(|l| (l.source, l.param.name))
            .collect();
        assert_eq!(
            revincludes,
            [("Observation", "patient"), ("Encounter", "subject")]
        );
        assert_eq!(s.presentation.elements, ["name", "birthDate"]);
        let default = parse("Patient", &[]).expect("parses");
        assert!(
            default.query.sort.0.is_empty(),
            "most recently updated first"
        );
    }

    #[test]
    fn reads_take_presentation_parameters_only() {
        let p = parse_read(&pairs(&[
            ("_elements", "name,birthDate"),
            ("_pretty", "true"),
            ("_summary", "data"),
            ("_format", "application/fhir+json"),
        ]))
        .expect("parses");
        assert_eq!(
            p,
            Presentation {
                elements: vec!["name".into(), "birthDate".into()],
                without_text: true,
                pretty: true,
            }
        );
        for (q, want) in [
            (
                ("name", "x"),
                "read parameter name is not supported (a read takes _elements, _summary=data, _pretty and _format)",
            ),
            (
                ("_summary", "true"),
                "read parameter _summary: only data and false are supported",
            ),
            (
                ("_format", "xml"),
                "read parameter _format: only JSON is served",
            ),
            (
                ("_pretty", "yes"),
                "read parameter _pretty: expected true or false",
            ),
        ] {
            assert_eq!(parse_read(&pairs(&[q])).expect_err("refused").0, want);
        }
        let search = parse(
            "Patient",
            &pairs(&[("_summary", "data"), ("_pretty", "true")]),
        )
        .expect("parses");
        assert!(search.presentation.without_text && search.presentation.pretty);
        assert_eq!(search.echo.len(), 2, "kept in the paging links");
    }

    #[test]
    fn criteria_name_a_type_and_a_search() {
        let (t, s) =
            parse_criteria("Observation?code=http%3A%2F%2Floinc.org%7C2345-7&status=final")
                .expect("parses");
        assert_eq!(t, "Observation");
        assert_eq!(s.query.clauses.len(), 2);
        assert_eq!(
            parse_criteria("Banana?x=1").unwrap_err().0,
            "criteria: \"Banana\" is not a supported resource type"
        );
        assert!(parse_criteria("Patient?nmae=x").is_err());
        assert_eq!(
            parse_criteria("Observation?code=2345-7&_elements=value")
                .unwrap_err()
                .0,
            "criteria: _elements shapes search results; here the query only selects resources"
        );
    }

    #[test]
    fn chains_become_searches_of_their_type_and_criteria_refuse_them() {
        let s = parse(
            "Observation",
            &pairs(&[
                ("patient.identifier", "urn:mrn|123"),
                ("subject:Patient.name:exact", "Walker"),
                ("code", "2345-7"),
            ]),
        )
        .expect("parses");
        assert_eq!(
            s.query.clauses.len(),
            1,
            "code; the chains wait for the store"
        );
        assert_eq!(s.chains.len(), 2);
        assert_eq!(
            s.chains[0].kind,
            ChainKind::Forward {
                param: "Observation.patient".into(),
                target: "Patient"
            }
        );
        assert_eq!(s.chains[0].query.resource_type, "Patient");
        assert_eq!(s.chains[1].query.clauses.len(), 1);
        let s = parse(
            "Patient",
            &pairs(&[("_has:Observation:patient:code", "718-7")]),
        )
        .expect("parses");
        assert!(matches!(
            s.chains[0].kind,
            ChainKind::Reverse { param } if param.name == "patient"
        ));
        assert_eq!(s.chains[0].query.resource_type, "Observation");
        assert_eq!(
            parse_criteria("Observation?patient.identifier=123")
                .unwrap_err()
                .0,
            "criteria: patient.identifier is a chained parameter, not supported here"
        );
        assert_eq!(
            parse("Observation", &pairs(&[("patient.bogus", "1")]))
                .unwrap_err()
                .0,
            "search parameter patient.bogus: unknown search parameter for Patient"
        );
    }

    #[test]
    fn escaped_commas_stay_in_the_value() {
        assert_eq!(
            split_or(r"a\,b,c"),
            vec!["a,b".to_string(), "c".to_string()]
        );
    }
}
