//! The FHIR resource tables: writes (run by the writer inside a group) and reads (pooled).
//!
//! A write allocates the resource's row key first (it is bound into the encryption of every
//! version), appends the sealed version, moves the current pointer and replaces the search
//! values, all in the caller's transaction: a crash leaves either the old or the new version
//! current, never a version without its index.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use sha2::{Digest, Sha256};

use super::write::WriteCx;
use crate::crypto::Cipher;
use crate::error::Record;
use crate::resources::{MAX_RESOURCE_PAGE, decode_pending, encode_pending};
use crate::{
    DatePrefix, DateTest, Error, HistoryQuery, IndexEntry, IndexTest, IndexValue, MessageId,
    PendingState, PendingWrite, PutOutcome, QuantityTest, Reindex, ResourceChange, ResourcePage,
    ResourcePut, ResourceQuery, ResourceSort, Result, SortBy, SortKey, StoredResource, UnixMillis,
    ValueTest,
};

fn db(op: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::db(op, e)
}

/// The search indexes a bulk load suspends, as migration 0003 created them: their keys start
/// with a parameter and a value (references and identifiers, hashes by design), so each new row
/// lands on a random page, and once the index is much larger than a transaction every row costs
/// a page written to the WAL and again by the checkpoint. `resource_index_key` (new keys append)
/// and the tables stay, so searches remain correct while these are gone.
const VALUE_INDEXES: [(&str, &str); 3] = [
    (
        "resource_index_value",
        "CREATE INDEX IF NOT EXISTS resource_index_value ON resource_index (param, value, system, key)",
    ),
    (
        "resource_index_date",
        // One line, as the migration wrote it: SQLite keeps the text, and a test compares it.
        "CREATE INDEX IF NOT EXISTS resource_index_date ON resource_index (param, lo, hi, key) \
         WHERE lo IS NOT NULL",
    ),
    (
        "resource_index_num",
        // As migration 0006 wrote it.
        "CREATE INDEX IF NOT EXISTS resource_index_num ON resource_index (param, num, key) \
         WHERE num IS NOT NULL",
    ),
];

/// A load builds the value indexes again, instead of maintaining them, when the store holds at
/// most this many resources per incoming one: sorting a row costs far less than the page
/// writes of inserting it at random, so the rebuild pays for itself well beyond this ratio.
const BULK_LOAD_STORED_PER_INCOMING: u64 = 10;

/// Drops the [`VALUE_INDEXES`] when `incoming` resources are at least a tenth of those stored
/// ([`BULK_LOAD_STORED_PER_INCOMING`]). Returns whether they are now absent (dropped here, or
/// by another load still running).
pub(crate) fn suspend_value_indexes(conn: &Connection, incoming: u64) -> Result<bool> {
    const OP: &str = "begin bulk load";
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM resources", [], |r| r.get(0))
        .map_err(db(OP))?;
    let stored = u64::try_from(stored).unwrap_or(0);
    if incoming.saturating_mul(BULK_LOAD_STORED_PER_INCOMING) < stored {
        return value_indexes_missing(conn);
    }
    for (name, _) in VALUE_INDEXES {
        conn.execute_batch(&format!("DROP INDEX IF EXISTS {name}"))
            .map_err(db(OP))?;
    }
    Ok(true)
}

/// Creates whichever [`VALUE_INDEXES`] are missing; returns whether any was.
pub(crate) fn build_value_indexes(conn: &Connection) -> Result<bool> {
    const OP: &str = "build search indexes";
    if !value_indexes_missing(conn)? {
        return Ok(false);
    }
    for (_, create) in VALUE_INDEXES {
        conn.execute_batch(create).map_err(db(OP))?;
    }
    Ok(true)
}

fn value_indexes_missing(conn: &Connection) -> Result<bool> {
    let mut present = conn
        .prepare("SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?1")
        .map_err(db("read schema"))?;
    for (name, _) in VALUE_INDEXES {
        if !present.exists([name]).map_err(db("read schema"))? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The current row of a resource.
struct Current {
    key: i64,
    version: u64,
    deleted: bool,
    sha256: Vec<u8>,
}

pub(crate) fn put(cx: &mut WriteCx<'_>, puts: &[ResourcePut]) -> Result<Vec<PutOutcome>> {
    put_in_tx(cx, puts)
}

/// Writes resources inside the caller's transaction.
fn put_in_tx(cx: &mut WriteCx<'_>, puts: &[ResourcePut]) -> Result<Vec<PutOutcome>> {
    const OP: &str = "put_resources";
    let conn = cx.conn();
    let now = UnixMillis::now();
    let mut out = Vec::with_capacity(puts.len());
    for p in puts {
        let current: Option<Current> = conn
            .prepare_cached(
                "SELECT key, version, deleted, content_sha256 FROM resources
                 WHERE type = ?1 AND id = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![p.resource_type, p.id], |r| {
                    Ok(Current {
                        key: r.get(0)?,
                        version: r.get::<_, i64>(1)?.try_into().unwrap_or(0),
                        deleted: r.get(2)?,
                        sha256: r.get(3)?,
                    })
                })
                .optional()
            })
            .map_err(db(OP))?;
        let live_version = current
            .as_ref()
            .filter(|c| !c.deleted)
            .map_or(0, |c| c.version);
        if let Some(expected) = p.if_match
            && expected != live_version
        {
            return Err(Error::VersionConflict {
                resource: format!("{}/{}", p.resource_type, p.id),
                expected,
                current: live_version,
            });
        }
        let sha256: Vec<u8> = if p.delete {
            Vec::new()
        } else {
            Sha256::digest(&p.json).to_vec()
        };
        if let Some(c) = &current
            && c.deleted == p.delete
            && c.sha256 == sha256
        {
            let last_updated: i64 = conn
                .prepare_cached("SELECT last_updated FROM resources WHERE key = ?1")
                .and_then(|mut s| s.query_row([c.key], |r| r.get(0)))
                .map_err(db(OP))?;
            out.push(PutOutcome {
                version: c.version,
                last_updated: UnixMillis(last_updated),
                created: false,
                unchanged: true,
            });
            continue;
        }
        if current.is_none() && p.delete {
            // Deleting what never existed is a no-op (FHIR allows 200/204 for it).
            out.push(PutOutcome {
                version: 0,
                last_updated: now,
                created: false,
                unchanged: true,
            });
            continue;
        }
        let (key, version) = match &current {
            Some(c) => {
                conn.prepare_cached(
                    "UPDATE resources SET version = ?2, last_updated = ?3, deleted = ?4,
                         content_sha256 = ?5 WHERE key = ?1",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        c.key,
                        i64::try_from(c.version + 1).unwrap_or(i64::MAX),
                        now.0,
                        p.delete,
                        sha256
                    ])
                })
                .map_err(db(OP))?;
                (c.key, c.version + 1)
            }
            None => {
                conn.prepare_cached(
                    "INSERT INTO resources (type, id, version, last_updated, deleted,
                         content_sha256) VALUES (?1, ?2, 1, ?3, 0, ?4)",
                )
                .and_then(|mut s| s.execute(params![p.resource_type, p.id, now.0, sha256]))
                .map_err(db(OP))?;
                (conn.last_insert_rowid(), 1)
            }
        };
        let sealed = if p.delete {
            None
        } else {
            Some(
                cx.cipher()
                    .seal(Record::ResourceVersion { key, version }, &p.json)?,
            )
        };
        conn.prepare_cached(
            "INSERT INTO resource_versions (key, version, last_updated, deleted, payload,
                 source_message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                key,
                i64::try_from(version).unwrap_or(i64::MAX),
                now.0,
                p.delete,
                sealed,
                p.source.map(|m| m.0)
            ])
        })
        .map_err(db(OP))?;
        // A new resource has a key never used before (AUTOINCREMENT): nothing to remove.
        if current.is_some() {
            conn.prepare_cached("DELETE FROM resource_index WHERE key = ?1")
                .and_then(|mut s| s.execute([key]))
                .map_err(db(OP))?;
        }
        if !p.delete {
            insert_index(conn, key, &p.index).map_err(db(OP))?;
        }
        out.push(PutOutcome {
            version,
            last_updated: now,
            created: current.is_none_or(|c| c.deleted),
            unchanged: false,
        });
    }
    Ok(out)
}

/// Writes the search values of the resource row `key`.
fn insert_index(conn: &Connection, key: i64, index: &[IndexEntry]) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO resource_index (key, param, system, value, lo, hi, num, unit)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for entry in index {
        let row = match &entry.value {
            IndexValue::Token { system, code } => Row {
                system,
                value: Some(code),
                ..Row::default()
            },
            IndexValue::Text(t) | IndexValue::Reference(t) => Row {
                value: Some(t),
                ..Row::default()
            },
            IndexValue::Date { lo, hi } => Row {
                lo: Some(*lo),
                hi: Some(*hi),
                ..Row::default()
            },
            // SQLite stores no NaN (it becomes NULL) and its infinities compare as numbers, so
            // a value that is not finite is left out rather than found by the wrong test.
            IndexValue::Quantity { value, .. } | IndexValue::CodeQuantity { value, .. }
                if !value.is_finite() =>
            {
                continue;
            }
            IndexValue::Quantity {
                value,
                system,
                code,
            } => Row {
                system,
                value: Some(code),
                num: Some(*value),
                ..Row::default()
            },
            IndexValue::CodeQuantity {
                system,
                code,
                value,
                unit,
            } => Row {
                system,
                value: Some(code),
                num: Some(*value),
                unit: Some(unit),
                ..Row::default()
            },
        };
        insert.execute(params![
            key,
            entry.param,
            row.system,
            row.value,
            row.lo,
            row.hi,
            row.num,
            row.unit
        ])?;
    }
    Ok(())
}

/// The columns of one `resource_index` row besides its key and parameter (`system` is `''`
/// when none, as the column's default).
#[derive(Default)]
struct Row<'a> {
    system: &'a str,
    value: Option<&'a str>,
    lo: Option<i64>,
    hi: Option<i64>,
    num: Option<f64>,
    unit: Option<&'a str>,
}

/// Replaces the search values of current, live resources whose version is still the one
/// given, then moves `cursor`; see [`crate::Store::reindex_resources`].
pub(crate) fn reindex(
    cx: &mut WriteCx<'_>,
    items: &[Reindex],
    cursor: Option<&(String, i64)>,
) -> Result<u64> {
    const OP: &str = "reindex resources";
    let conn = cx.conn();
    let mut done = 0;
    for item in items {
        let key: Option<i64> = conn
            .prepare_cached(
                "SELECT key FROM resources
                 WHERE type = ?1 AND id = ?2 AND version = ?3 AND deleted = 0",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![
                        item.resource_type,
                        item.id,
                        i64::try_from(item.version).unwrap_or(i64::MAX)
                    ],
                    |r| r.get(0),
                )
                .optional()
            })
            .map_err(db(OP))?;
        let Some(key) = key else { continue };
        conn.prepare_cached("DELETE FROM resource_index WHERE key = ?1")
            .and_then(|mut s| s.execute([key]))
            .map_err(db(OP))?;
        insert_index(conn, key, &item.index).map_err(db(OP))?;
        done += 1;
    }
    if let Some((name, position)) = cursor {
        conn.prepare_cached(
            "INSERT INTO cursors (name, position) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        )
        .and_then(|mut s| s.execute(params![name, position]))
        .map_err(db(OP))?;
    }
    Ok(done)
}

const VERSION_COLUMNS: &str =
    "r.type, r.id, v.key, v.version, v.last_updated, v.deleted, v.payload, v.source_message";

fn version_row(cipher: &Cipher, row: &rusqlite::Row<'_>) -> Result<StoredResource> {
    const OP: &str = "read resource";
    let key: i64 = row.get(2).map_err(db(OP))?;
    let version: i64 = row.get(3).map_err(db(OP))?;
    let version = u64::try_from(version).unwrap_or(0);
    let sealed: Option<Vec<u8>> = row.get(6).map_err(db(OP))?;
    let json = match sealed {
        Some(s) => cipher.open(Record::ResourceVersion { key, version }, &s)?,
        None => Vec::new(),
    };
    Ok(StoredResource {
        resource_type: row.get(0).map_err(db(OP))?,
        id: row.get(1).map_err(db(OP))?,
        version,
        last_updated: UnixMillis(row.get(4).map_err(db(OP))?),
        deleted: row.get(5).map_err(db(OP))?,
        json,
        source: row.get::<_, Option<i64>>(7).map_err(db(OP))?.map(MessageId),
    })
}

pub(crate) fn read(
    conn: &Connection,
    cipher: &Cipher,
    resource_type: &str,
    id: &str,
    version: Option<u64>,
) -> Result<Option<StoredResource>> {
    const OP: &str = "read resource";
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM resources r JOIN resource_versions v ON v.key = r.key
         WHERE r.type = ?1 AND r.id = ?2 AND v.version = {}",
        if version.is_some() { "?3" } else { "r.version" }
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db(OP))?;
    let mut rows = match version {
        Some(v) => stmt.query(params![
            resource_type,
            id,
            i64::try_from(v).unwrap_or(i64::MAX)
        ]),
        None => stmt.query(params![resource_type, id]),
    }
    .map_err(db(OP))?;
    match rows.next().map_err(db(OP))? {
        Some(row) => version_row(cipher, row).map(Some),
        None => Ok(None),
    }
}

/// One page of [`crate::Store::scan_resources`]: along the row keys (`NOT INDEXED` keeps SQLite
/// on the rowid range, where a type index would make it sort every later row for each page).
pub(crate) fn scan(
    conn: &Connection,
    cipher: &Cipher,
    resource_type: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<ResourceChange>> {
    const OP: &str = "scan resources";
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM resources r NOT INDEXED
             JOIN resource_versions v ON v.key = r.key AND v.version = r.version
             WHERE r.key > ?1 AND r.type = ?2 AND r.deleted = 0
             ORDER BY r.key LIMIT ?3"
        ))
        .map_err(db(OP))?;
    let mut rows = stmt
        .query(params![after, resource_type, page(limit.max(1))])
        .map_err(db(OP))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db(OP))? {
        out.push(ResourceChange {
            position: row.get(2).map_err(db(OP))?,
            resource: version_row(cipher, row)?,
        });
    }
    Ok(out)
}

pub(crate) fn history(
    conn: &Connection,
    cipher: &Cipher,
    q: &HistoryQuery,
) -> Result<Vec<StoredResource>> {
    const OP: &str = "resource history";
    let mut sql = format!(
        "SELECT {VERSION_COLUMNS} FROM resource_versions v JOIN resources r ON r.key = v.key
         WHERE 1"
    );
    let mut args: Vec<Value> = Vec::new();
    if let Some(t) = &q.resource_type {
        sql.push_str(" AND r.type = ?");
        args.push(Value::Text(t.clone()));
        if let Some(id) = &q.id {
            sql.push_str(" AND r.id = ?");
            args.push(Value::Text(id.clone()));
        }
    }
    if let Some(since) = q.since {
        sql.push_str(" AND v.last_updated >= ?");
        args.push(Value::Integer(since.0));
    }
    sql.push_str(" ORDER BY v.last_updated DESC, v.key DESC, v.version DESC LIMIT ? OFFSET ?");
    args.push(Value::Integer(page(q.count)));
    args.push(Value::Integer(i64::from(q.offset)));
    let mut stmt = conn.prepare(&sql).map_err(db(OP))?;
    let mut rows = stmt.query(params_from_iter(args)).map_err(db(OP))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db(OP))? {
        out.push(version_row(cipher, row)?);
    }
    Ok(out)
}

fn page(count: u32) -> i64 {
    i64::from(count.min(MAX_RESOURCE_PAGE))
}

/// How selective a test usually is (lower first): the most selective clause drives a search
/// from the index, the others are checked per candidate.
fn rank(t: &ValueTest) -> u8 {
    match t {
        ValueTest::Reference(_) => 0,
        ValueTest::SystemCode { .. } | ValueTest::CodeQuantity { .. } => 1,
        ValueTest::Code(_) | ValueTest::NoSystemCode(_) => 2,
        ValueTest::TextExact(_) => 3,
        ValueTest::System(_) => 4,
        ValueTest::Date(_) | ValueTest::Quantity(_) => 5,
        ValueTest::TextPrefix(_) => 6,
        ValueTest::TextContains(_) => 7,
        ValueTest::Missing(_) => 9,
    }
}

/// The condition of one test on the index row alias `x` (parameter included), with its
/// arguments in order. `Missing` has none (see [`clause_sql`]).
fn test_sql(t: &IndexTest, x: &str, args: &mut Vec<Value>) -> String {
    args.push(Value::Text(t.param.clone()));
    let text = |s: &str| Value::Text(s.to_owned());
    let (cond, values): (String, Vec<Value>) = match &t.test {
        ValueTest::Code(code) => (format!("{x}.value = ?"), vec![text(code)]),
        ValueTest::SystemCode { system, code } => (
            format!("{x}.value = ? AND {x}.system = ?"),
            vec![text(code), text(system)],
        ),
        ValueTest::NoSystemCode(code) => (
            format!("{x}.value = ? AND {x}.system = ''"),
            vec![text(code)],
        ),
        ValueTest::System(system) => (
            format!("{x}.system = ? AND {x}.value IS NOT NULL"),
            vec![text(system)],
        ),
        ValueTest::TextPrefix(p) => (
            format!("{x}.value >= ? AND {x}.value < ?"),
            vec![text(p), Value::Text(format!("{p}\u{10FFFF}"))],
        ),
        ValueTest::TextExact(v) | ValueTest::Reference(v) => {
            (format!("{x}.value = ?"), vec![text(v)])
        }
        ValueTest::TextContains(v) => (format!("instr({x}.value, ?) > 0"), vec![text(v)]),
        ValueTest::Date(d) => {
            let (c, values) = date_sql(&format!("{x}.lo"), &format!("{x}.hi"), d);
            (format!("{x}.lo IS NOT NULL AND {c}"), values)
        }
        ValueTest::Quantity(q) => {
            // The first term is the WHERE of the partial index `resource_index_num`.
            let (c, mut values) = quantity_sql(&format!("{x}.num"), q);
            let mut cond = format!("{x}.num IS NOT NULL AND {c}");
            if let Some(system) = &q.system {
                cond.push_str(&format!(" AND {x}.system = ?"));
                values.push(text(system));
            }
            if let Some(code) = &q.code {
                cond.push_str(&format!(" AND {x}.value = ?"));
                values.push(text(code));
            }
            (cond, values)
        }
        ValueTest::CodeQuantity {
            system,
            code,
            quantity,
        } => {
            // The code first: `resource_index_value` then finds the rows of that code at once.
            let mut values = vec![text(code)];
            let mut cond = format!("{x}.value = ?");
            if let Some(system) = system {
                cond.push_str(&format!(" AND {x}.system = ?"));
                values.push(text(system));
            }
            let (c, numbers) = quantity_sql(&format!("{x}.num"), quantity);
            cond.push_str(&format!(" AND {x}.num IS NOT NULL AND {c}"));
            values.extend(numbers);
            if let Some(unit) = &quantity.code {
                cond.push_str(&format!(" AND {x}.unit = ?"));
                values.push(text(unit));
            }
            (cond, values)
        }
        ValueTest::Missing(_) => ("1".to_owned(), Vec::new()),
    };
    args.extend(values);
    format!("({x}.param = ? AND {cond})")
}

/// One condition of a clause: a test, or the tests of one parameter that each ask for one
/// exact value (`code`, exact text, a reference), merged into `value IN (...)` so that a
/// search naming a thousand patients (or a `_revinclude` of a full page) stays one index
/// lookup per value and a small expression.
enum Cond<'a> {
    One(&'a IndexTest),
    AnyValue {
        param: &'a str,
        values: Vec<&'a str>,
    },
}

fn conditions(clause: &[IndexTest]) -> Vec<Cond<'_>> {
    let mut out: Vec<Cond<'_>> = Vec::new();
    for t in clause {
        let exact = match &t.test {
            ValueTest::Code(v) | ValueTest::TextExact(v) | ValueTest::Reference(v) => v,
            _ => {
                out.push(Cond::One(t));
                continue;
            }
        };
        let same_param = out.iter_mut().find_map(|c| match c {
            Cond::AnyValue { param, values } if *param == t.param => Some(values),
            _ => None,
        });
        match same_param {
            Some(values) => values.push(exact),
            None => out.push(Cond::AnyValue {
                param: &t.param,
                values: vec![exact],
            }),
        }
    }
    out
}

/// The condition on the index row alias `x`, with its arguments in order.
fn cond_sql(c: &Cond<'_>, x: &str, args: &mut Vec<Value>) -> String {
    match c {
        Cond::One(t) => test_sql(t, x, args),
        Cond::AnyValue { param, values } => {
            args.push(Value::Text((*param).to_owned()));
            args.extend(values.iter().map(|v| Value::Text((*v).to_owned())));
            format!(
                "({x}.param = ? AND {x}.value IN ({}))",
                vec!["?"; values.len()].join(", ")
            )
        }
    }
}

/// `parts` ORed as a balanced tree: SQLite refuses expressions nested more than 1,000 deep,
/// which a flat chain of that many alternatives is.
fn or_all(parts: &[String]) -> String {
    match parts {
        [] => "0".to_owned(),
        [one] => one.clone(),
        _ => {
            let (left, right) = parts.split_at(parts.len() / 2);
            format!("({} OR {})", or_all(left), or_all(right))
        }
    }
}

/// A clause (tests ORed) checked for the candidate whose key is `{owner}.key`.
fn clause_sql(clause: &[IndexTest], owner: &str, args: &mut Vec<Value>) -> String {
    let parts: Vec<String> = conditions(clause)
        .iter()
        .map(|c| match c {
            Cond::One(IndexTest {
                param,
                test: ValueTest::Missing(missing),
            }) => {
                args.push(Value::Text(param.clone()));
                format!(
                    "{}EXISTS (SELECT 1 FROM resource_index x INDEXED BY resource_index_key
                     WHERE x.key = {owner}.key AND x.param = ?)",
                    if *missing { "NOT " } else { "" }
                )
            }
            _ => {
                let cond = cond_sql(c, "x", args);
                // The candidate's own few rows, whatever the planner would guess from the value.
                format!(
                    "EXISTS (SELECT 1 FROM resource_index x INDEXED BY resource_index_key
                     WHERE x.key = {owner}.key AND {cond})"
                )
            }
        })
        .collect();
    or_all(&parts)
}

/// FHIR date semantics: the resource's period `[lo, hi]` against the search value's.
fn date_sql(lo: &str, hi: &str, d: &DateTest) -> (String, Vec<Value>) {
    let (slo, shi) = (Value::Integer(d.lo), Value::Integer(d.hi));
    match d.prefix {
        DatePrefix::Eq => (format!("{lo} >= ? AND {hi} <= ?"), vec![slo, shi]),
        DatePrefix::Ne => (format!("NOT ({lo} >= ? AND {hi} <= ?)"), vec![slo, shi]),
        DatePrefix::Lt => (format!("{lo} < ?"), vec![slo]),
        DatePrefix::Le => (format!("{lo} <= ?"), vec![shi]),
        DatePrefix::Gt => (format!("{hi} > ?"), vec![shi]),
        DatePrefix::Ge => (format!("{hi} >= ?"), vec![slo]),
        DatePrefix::Sa => (format!("{lo} > ?"), vec![shi]),
        DatePrefix::Eb => (format!("{hi} < ?"), vec![slo]),
        DatePrefix::Ap => {
            // Approximately: within a tenth of the value's distance from now, at least a day.
            let now = UnixMillis::now().0;
            let margin = ((now - d.lo).abs() / 10).max(86_400_000);
            (
                format!("{lo} <= ? AND {hi} >= ?"),
                vec![
                    Value::Integer(d.hi.saturating_add(margin)),
                    Value::Integer(d.lo.saturating_sub(margin)),
                ],
            )
        }
    }
}

/// FHIR quantity semantics: the resource's number against the search value and the range its
/// precision implies.
fn quantity_sql(num: &str, q: &QuantityTest) -> (String, Vec<Value>) {
    let (value, lo, hi) = (Value::Real(q.value), Value::Real(q.lo), Value::Real(q.hi));
    match q.prefix {
        DatePrefix::Eq => (format!("{num} >= ? AND {num} < ?"), vec![lo, hi]),
        DatePrefix::Ne => (format!("NOT ({num} >= ? AND {num} < ?)"), vec![lo, hi]),
        DatePrefix::Lt => (format!("{num} < ?"), vec![value]),
        DatePrefix::Le => (format!("{num} <= ?"), vec![value]),
        DatePrefix::Gt => (format!("{num} > ?"), vec![value]),
        DatePrefix::Ge => (format!("{num} >= ?"), vec![value]),
        DatePrefix::Sa => (format!("{num} >= ?"), vec![hi]),
        DatePrefix::Eb => (format!("{num} < ?"), vec![lo]),
        DatePrefix::Ap => {
            // Approximately: within a tenth of the value, and never closer than its precision.
            let margin = (q.value.abs() / 10.0).max((q.hi - q.lo) / 2.0);
            (
                format!("{num} >= ? AND {num} <= ?"),
                vec![Value::Real(q.value - margin), Value::Real(q.value + margin)],
            )
        }
    }
}

pub(crate) fn search(
    conn: &Connection,
    cipher: &Cipher,
    q: &ResourceQuery,
) -> Result<ResourcePage> {
    const OP: &str = "search resources";
    // The most selective clause (by kind) drives from the index; a clause with a `Missing`
    // test cannot (absence has no index row), nor can an empty one.
    let clauses: Vec<&Vec<IndexTest>> = q.clauses.iter().filter(|c| !c.is_empty()).collect();
    let driver = clauses
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.iter().any(|t| matches!(t.test, ValueTest::Missing(_))))
        .min_by_key(|(_, c)| c.iter().map(|t| rank(&t.test)).max().unwrap_or(u8::MAX))
        .map(|(i, _)| i);
    let mut args: Vec<Value> = Vec::new();
    // The candidates: every key of the driving clause, or every resource of the type.
    let candidates = match driver {
        Some(i) => {
            let parts: Vec<String> = conditions(clauses[i])
                .iter()
                .map(|c| cond_sql(c, "d", &mut args))
                .collect();
            format!(
                "SELECT DISTINCT d.key FROM resource_index d WHERE {}",
                or_all(&parts)
            )
        }
        None => {
            args.push(Value::Text(q.resource_type.clone()));
            "SELECT key FROM resources WHERE type = ? AND deleted = 0".to_owned()
        }
    };
    // The other clauses, checked on each candidate's own index rows (no resource row read:
    // a deleted resource has no index rows, and parameters are type-qualified).
    let mut filters = String::new();
    for (i, clause) in clauses.iter().enumerate() {
        if Some(i) != driver {
            filters.push_str(" AND ");
            filters.push_str(&clause_sql(clause, "c", &mut args));
        }
    }
    // The conditions on the resource row, bound last.
    let mut cond = String::from("r.type = ? AND r.deleted = 0");
    let mut cond_args = vec![Value::Text(q.resource_type.clone())];
    if !q.ids.is_empty() {
        cond.push_str(" AND r.id IN (");
        for (i, id) in q.ids.iter().enumerate() {
            cond.push_str(if i == 0 { "?" } else { ", ?" });
            cond_args.push(Value::Text(id.clone()));
        }
        cond.push(')');
    }
    for d in &q.last_updated {
        let (c, values) = date_sql("r.last_updated", "r.last_updated", d);
        cond.push_str(&format!(" AND {c}"));
        cond_args.extend(values);
    }
    if driver.is_none() && filters.is_empty() && q.sort.is_by_last_updated() {
        return search_by_type(conn, cipher, q, &cond, &cond_args);
    }
    // The sort keys' values, one column each, bound between the filters and the conditions.
    let mut sort_columns = String::new();
    for key in &q.sort.0 {
        sort_columns.push_str(", ");
        sort_columns.push_str(&sort_column_sql(key, &mut args));
    }
    args.extend(cond_args);
    // One pass: every match's key, time and sort values, then the page is cut here, so the
    // total and the page come from one evaluation and only the page's payloads are read.
    let sql = format!(
        "WITH m AS MATERIALIZED (SELECT c.key FROM ({candidates}) c WHERE 1{filters})
         SELECT r.key, r.last_updated{sort_columns} FROM m JOIN resources r ON r.key = m.key
         WHERE {cond}"
    );
    let mut matches: Vec<Match> = conn
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(params_from_iter(args.iter()), |r| {
                Ok(Match {
                    key: r.get(0)?,
                    last_updated: r.get(1)?,
                    sort_values: (0..q.sort.0.len())
                        .map(|i| r.get(2 + i))
                        .collect::<rusqlite::Result<_>>()?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(db(OP))?;
    matches.sort_unstable_by(|a, b| compare_matches(&q.sort, a, b));
    let total = matches.len();
    let start = usize::try_from(q.offset).unwrap_or(usize::MAX).min(total);
    let end = start
        .saturating_add(usize::try_from(page(q.count)).unwrap_or(0))
        .min(total);
    let mut resources = Vec::with_capacity(end - start);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM resources r
             JOIN resource_versions v ON v.key = r.key AND v.version = r.version
             WHERE r.key = ?1"
        ))
        .map_err(db(OP))?;
    for m in &matches[start..end] {
        let mut rows = stmt.query([m.key]).map_err(db(OP))?;
        if let Some(row) = rows.next().map_err(db(OP))? {
            resources.push(version_row(cipher, row)?);
        }
    }
    Ok(ResourcePage {
        total: u64::try_from(total).unwrap_or(0),
        resources,
    })
}

/// One search match, before the page is cut.
struct Match {
    key: i64,
    last_updated: i64,
    /// One per sort key, in order: a number, text, or null when the resource has no value.
    sort_values: Vec<Value>,
}

/// The SQL of one sort key's value for the match row `r`: the lowest of the parameter's
/// values ascending, the highest descending (a date's period start or end); null when the
/// resource has none.
fn sort_column_sql(key: &SortKey, args: &mut Vec<Value>) -> String {
    let of_param = |aggregate: &str, column: &str, param: &str, args: &mut Vec<Value>| {
        args.push(Value::Text(param.to_owned()));
        format!(
            "(SELECT {aggregate}(x.{column}) FROM resource_index x INDEXED BY resource_index_key
              WHERE x.key = r.key AND x.param = ?)"
        )
    };
    let aggregate = if key.descending { "max" } else { "min" };
    match &key.by {
        SortBy::LastUpdated => "r.last_updated".to_owned(),
        SortBy::Id => "r.id".to_owned(),
        SortBy::Date(param) => of_param(
            aggregate,
            if key.descending { "hi" } else { "lo" },
            param,
            args,
        ),
        SortBy::Value(param) => of_param(aggregate, "value", param, args),
        SortBy::Number(param) => of_param(aggregate, "num", param, args),
    }
}

/// The result order: each sort key in turn (a missing value after every present one, in
/// either direction), then update time and row as [`ResourceSort::newest_first`] says (the
/// order [`search_by_type`] reads from the time index).
fn compare_matches(sort: &ResourceSort, a: &Match, b: &Match) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for (i, key) in sort.0.iter().enumerate() {
        let order = match (&a.sort_values[i], &b.sort_values[i]) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Null, _) => return Ordering::Greater,
            (_, Value::Null) => return Ordering::Less,
            (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
            (Value::Text(x), Value::Text(y)) => x.cmp(y),
            // `num` holds reals, but SQLite hands back a whole number as an integer.
            (Value::Real(x), Value::Real(y)) => x.total_cmp(y),
            (Value::Real(x), Value::Integer(y)) => x.total_cmp(&(*y as f64)),
            (Value::Integer(x), Value::Real(y)) => (*x as f64).total_cmp(y),
            // One column holds one kind; a mix (never written) sorts numbers first.
            (Value::Integer(_) | Value::Real(_), _) => Ordering::Less,
            (_, Value::Integer(_) | Value::Real(_)) => Ordering::Greater,
            _ => Ordering::Equal,
        };
        let order = if key.descending {
            order.reverse()
        } else {
            order
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    let oldest_first = (a.last_updated, a.key).cmp(&(b.last_updated, b.key));
    if sort.newest_first() {
        oldest_first.reverse()
    } else {
        oldest_first
    }
}

/// A search with no index clause (`GET /fhir/Observation`, `_id`, `_lastUpdated`): counted
/// and paged by SQLite along the type's time index, without materialising every match.
fn search_by_type(
    conn: &Connection,
    cipher: &Cipher,
    q: &ResourceQuery,
    cond: &str,
    args: &[Value],
) -> Result<ResourcePage> {
    const OP: &str = "search resources";
    let total: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM resources r WHERE {cond}"))
        .and_then(|mut s| s.query_row(params_from_iter(args.iter()), |r| r.get(0)))
        .map_err(db(OP))?;
    let mut resources = Vec::new();
    if q.count > 0 && total > i64::from(q.offset) {
        let order = if q.sort.newest_first() {
            "r.last_updated DESC, r.key DESC"
        } else {
            "r.last_updated ASC, r.key ASC"
        };
        let mut args = args.to_vec();
        args.push(Value::Integer(page(q.count)));
        args.push(Value::Integer(i64::from(q.offset)));
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM resources r
                 JOIN resource_versions v ON v.key = r.key AND v.version = r.version
                 WHERE {cond} ORDER BY {order} LIMIT ? OFFSET ?"
            ))
            .map_err(db(OP))?;
        let mut rows = stmt.query(params_from_iter(args)).map_err(db(OP))?;
        while let Some(row) = rows.next().map_err(db(OP))? {
            resources.push(version_row(cipher, row)?);
        }
    }
    Ok(ResourcePage {
        total: u64::try_from(total).unwrap_or(0),
        resources,
    })
}

/// Keeps an API write with its message until the EHR answers.
pub(crate) fn insert_pending(
    cx: &mut WriteCx<'_>,
    message: MessageId,
    p: &ResourcePut,
) -> Result<()> {
    const OP: &str = "insert pending resource";
    let sealed = cx
        .cipher()
        .seal(Record::PendingResource(message), &encode_pending(p))?;
    cx.conn()
        .prepare_cached(
            "INSERT INTO pending_resources (message_id, type, id, payload, if_match, state,
                 updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                message.0,
                p.resource_type,
                p.id,
                sealed,
                p.if_match.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
                UnixMillis::now().0
            ])
        })
        .map(|_| ())
        .map_err(db(OP))
}

/// Applies (delivered) or rejects (failed) the pending write of `message`, if it has one still
/// pending. Runs in the transaction that settles the delivery.
pub(crate) fn settle_pending(
    cx: &mut WriteCx<'_>,
    message: MessageId,
    delivered: bool,
) -> Result<()> {
    const OP: &str = "settle pending resource";
    let row: Option<(String, String, Vec<u8>)> = cx
        .conn()
        .prepare_cached(
            "SELECT type, id, payload FROM pending_resources
             WHERE message_id = ?1 AND state = 'pending'",
        )
        .and_then(|mut s| {
            s.query_row([message.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(db(OP))?;
    let Some((resource_type, id, sealed)) = row else {
        return Ok(());
    };
    let (state, version) = if delivered {
        let plain = cx
            .cipher()
            .open(Record::PendingResource(message), &sealed)?;
        let (json, index) = decode_pending(&plain).ok_or_else(|| Error::Corrupt {
            table: "pending_resources",
            column: "payload",
            row: message.0,
            detail: "undecodable pending write".into(),
        })?;
        // The EHR accepted it: it is written even if the resource changed meanwhile (the EHR
        // is the system of record), so no version precondition here.
        let put = ResourcePut {
            resource_type,
            id,
            json,
            index,
            if_match: None,
            source: Some(message),
            delete: false,
        };
        let out = put_in_tx(cx, std::slice::from_ref(&put))?;
        ("applied", out.first().map(|o| o.version))
    } else {
        ("rejected", None)
    };
    cx.conn()
        .prepare_cached(
            "UPDATE pending_resources SET state = ?2, version = ?3, updated_at = ?4
             WHERE message_id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                message.0,
                state,
                version.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
                UnixMillis::now().0
            ])
        })
        .map(|_| ())
        .map_err(db(OP))
}

pub(crate) fn read_pending(conn: &Connection, message: MessageId) -> Result<Option<PendingWrite>> {
    const OP: &str = "read pending resource";
    conn.prepare_cached(
        "SELECT type, id, state, version, updated_at FROM pending_resources WHERE message_id = ?1",
    )
    .and_then(|mut s| {
        s.query_row([message.0], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .optional()
    })
    .map_err(db(OP))?
    .map(|(resource_type, id, state, version, at)| {
        Ok(PendingWrite {
            message,
            resource_type,
            id,
            state: PendingState::parse(&state).ok_or_else(|| Error::Corrupt {
                table: "pending_resources",
                column: "state",
                row: message.0,
                detail: state.clone(),
            })?,
            version: version.and_then(|v| u64::try_from(v).ok()),
            updated_at: UnixMillis(at),
        })
    })
    .transpose()
}
