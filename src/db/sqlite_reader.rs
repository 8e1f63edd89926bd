//! Reads on SQLite that cost one thread hand-off each way.
//!
//! sqlx runs every SQLite connection on a worker thread of its own: a statement is sent to it,
//! each row comes back as a message of its own, each value copied (`sqlite3_value_dup`) and
//! freed again once decoded, and the connection is pinged on that thread when it goes back to
//! the pool, in a task spawned for it. For a page of 20 products that was about 40 % of a
//! request's instructions and four context switches (docs/benchmarks.md, "Where the time
//! goes"). The catalog's reads (pages, counts, the checks for rows beyond a cursor) run here
//! instead: a blocking task takes a connection, runs the statement, decodes every row into what
//! the caller asked for and hands the result back.
//!
//! The connections are SQLite's own (rusqlite, linked to the same bundled SQLite as sqlx), on
//! the same file, opened as sqlx opens the reader pool's (`query_only`, the same busy timeout),
//! at most `connections` at a time. A connection is opened when first needed and kept; one
//! whose task panicked is dropped (closed) and a new one is opened for the next read.
//! Statements are prepared once per connection and kept (rusqlite's statement cache).

use std::{
    path::{Path, PathBuf},
    str::FromStr,
    sync::{Arc, Mutex},
};

use chrono::{DateTime, NaiveDateTime, Utc};
use rusqlite::{
    OpenFlags,
    types::{Value as SqlValue, ValueRef},
};
use sea_orm::{DbErr, Statement, Value, sqlx::sqlite::SqliteConnectOptions};
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::{Columns, SQLITE_BUSY_TIMEOUT};
use crate::error::{AppError, AppResult};

/// Statements each connection keeps prepared: the catalog's reads take a few dozen shapes.
const CACHED_STATEMENTS: usize = 64;

/// Connections to one SQLite file, for reads.
pub struct SqliteReader {
    path: PathBuf,
    /// Connections not in use.
    idle: Mutex<Vec<rusqlite::Connection>>,
    /// One permit per connection that may be open.
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for SqliteReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteReader {
    /// Reads the file a `sqlite:` URL names, over at most `connections` connections. Nothing
    /// is opened yet.
    ///
    /// # Errors
    /// When the URL is malformed.
    pub fn new(url: &str, connections: usize) -> Result<Self, DbErr> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|err| DbErr::Custom(format!("the SQLite URL: {err}")))?;
        Ok(Self {
            path: options.get_filename().to_path_buf(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(connections)),
        })
    }

    /// Runs `statement` and returns every row `decode` makes of it, in order.
    ///
    /// # Errors
    /// `SERVICE_UNAVAILABLE` when the file cannot be read (gone, locked beyond the busy
    /// timeout, an I/O error); internal, on any other failure, including a row `decode`
    /// refuses.
    pub async fn rows<T, F>(self: &Arc<Self>, statement: Statement, decode: F) -> AppResult<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(&dyn Columns) -> Result<T, DbErr> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AppError::internal("the SQLite reader is closed"))?;
        let reader = self.clone();
        // The connection goes back to `idle` inside the task, so a caller that stops waiting
        // (a request timed out) loses nothing.
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let connection = match reader.idle.lock().map(|mut idle| idle.pop()) {
                Ok(Some(connection)) => connection,
                _ => open(&reader.path).map_err(sqlite_error)?,
            };
            let rows = run(&connection, &statement, &decode);
            if let Ok(mut idle) = reader.idle.lock() {
                idle.push(connection);
            }
            rows
        });
        task.await
            .map_err(|err| AppError::internal(format_args!("a SQLite read failed: {err}")))?
    }
}

fn open(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    // No CREATE: the writer made the file. NO_MUTEX: one thread uses a connection at a time.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = rusqlite::Connection::open_with_flags(path, flags)?;
    connection.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
    connection.pragma_update(None, "query_only", "ON")?;
    connection.set_prepared_statement_cache_capacity(CACHED_STATEMENTS);
    Ok(connection)
}

fn run<T>(
    connection: &rusqlite::Connection,
    statement: &Statement,
    decode: &dyn Fn(&dyn Columns) -> Result<T, DbErr>,
) -> AppResult<Vec<T>> {
    let mut prepared = connection
        .prepare_cached(&statement.sql)
        .map_err(sqlite_error)?;
    if let Some(values) = &statement.values {
        for (i, value) in values.0.iter().enumerate() {
            prepared
                .raw_bind_parameter(i + 1, bindable(value)?)
                .map_err(sqlite_error)?;
        }
    }
    let mut rows = prepared.raw_query();
    let mut decoded = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite_error)? {
        decoded.push(decode(&Row(row))?);
    }
    Ok(decoded)
}

/// A statement's value as SQLite is given it: as sqlx binds it (an id as its 16 bytes, a time
/// as RFC 3339 text with as many fraction digits as it needs), so a statement finds the same
/// rows through either.
fn bindable(value: &Value) -> AppResult<SqlValue> {
    let int = |n: Option<i64>| n.map_or(SqlValue::Null, SqlValue::Integer);
    Ok(match value {
        Value::Bool(b) => int(b.map(i64::from)),
        Value::TinyInt(n) => int(n.map(i64::from)),
        Value::SmallInt(n) => int(n.map(i64::from)),
        Value::Int(n) => int(n.map(i64::from)),
        Value::BigInt(n) => int(*n),
        Value::TinyUnsigned(n) => int(n.map(i64::from)),
        Value::SmallUnsigned(n) => int(n.map(i64::from)),
        Value::Unsigned(n) => int(n.map(i64::from)),
        Value::Double(x) => x.map_or(SqlValue::Null, SqlValue::Real),
        Value::Float(x) => x.map_or(SqlValue::Null, |x| SqlValue::Real(f64::from(x))),
        Value::String(s) => s.clone().map_or(SqlValue::Null, SqlValue::Text),
        Value::Bytes(b) => b.clone().map_or(SqlValue::Null, SqlValue::Blob),
        Value::Uuid(id) => id.map_or(SqlValue::Null, |id| SqlValue::Blob(id.as_bytes().to_vec())),
        Value::ChronoDateTimeUtc(t) => t.map_or(SqlValue::Null, |t| {
            SqlValue::Text(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false))
        }),
        other => {
            return Err(AppError::internal(format_args!(
                "a SQLite read cannot bind {other:?}"
            )));
        }
    })
}

fn sqlite_error(err: rusqlite::Error) -> AppError {
    let cause = match &err {
        rusqlite::Error::SqliteFailure(failure, _) => {
            crate::error::sqlite_cause(failure.extended_code)
        }
        _ => None,
    };
    AppError::database(cause, err)
}

struct Row<'a>(&'a rusqlite::Row<'a>);

impl Row<'_> {
    fn value(&self, i: usize) -> Result<ValueRef<'_>, DbErr> {
        self.0.get_ref(i).map_err(decode_error)
    }
}

fn decode_error(err: impl std::fmt::Display) -> DbErr {
    DbErr::Type(format!("a SQLite column: {err}"))
}

fn mismatch(i: usize, wanted: &str, found: ValueRef<'_>) -> DbErr {
    DbErr::Type(format!(
        "column {i}: {wanted} wanted, {:?} found",
        found.data_type()
    ))
}

impl Columns for Row<'_> {
    fn uuid(&self, i: usize) -> Result<Uuid, DbErr> {
        self.optional_uuid(i)?
            .ok_or_else(|| DbErr::Type(format!("column {i}: an id wanted, NULL found")))
    }

    fn optional_uuid(&self, i: usize) -> Result<Option<Uuid>, DbErr> {
        match self.value(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(bytes) => Uuid::from_slice(bytes).map(Some).map_err(decode_error),
            other => Err(mismatch(i, "an id", other)),
        }
    }

    fn text(&self, i: usize) -> Result<String, DbErr> {
        match self.value(i)? {
            ValueRef::Text(text) => std::str::from_utf8(text)
                .map(str::to_owned)
                .map_err(decode_error),
            other => Err(mismatch(i, "text", other)),
        }
    }

    fn i64(&self, i: usize) -> Result<i64, DbErr> {
        match self.value(i)? {
            ValueRef::Integer(n) => Ok(n),
            other => Err(mismatch(i, "an integer", other)),
        }
    }

    fn i32(&self, i: usize) -> Result<i32, DbErr> {
        i32::try_from(self.i64(i)?).map_err(decode_error)
    }

    fn f64(&self, i: usize) -> Result<f64, DbErr> {
        match self.value(i)? {
            ValueRef::Real(x) => Ok(x),
            #[allow(clippy::cast_precision_loss)]
            ValueRef::Integer(n) => Ok(n as f64),
            other => Err(mismatch(i, "a number", other)),
        }
    }

    fn time(&self, i: usize) -> Result<DateTime<Utc>, DbErr> {
        match self.value(i)? {
            ValueRef::Text(text) => std::str::from_utf8(text)
                .ok()
                .and_then(parse_time)
                .ok_or_else(|| DbErr::Type(format!("column {i}: not a time"))),
            ValueRef::Integer(seconds) => DateTime::from_timestamp(seconds, 0)
                .ok_or_else(|| DbErr::Type(format!("column {i}: a time out of range"))),
            ValueRef::Real(day) => julian_day(day)
                .ok_or_else(|| DbErr::Type(format!("column {i}: a time out of range"))),
            other => Err(mismatch(i, "a time", other)),
        }
    }
}

/// A time stored as text, read as sqlx reads it (`decode_datetime_from_text` in sqlx-sqlite
/// 0.9): RFC 3339 (how sqlx writes times), else the first of the formats SQLite's own
/// functions and its documentation use that fits, with or without an offset (none: UTC).
/// Found by an outside attack: a shorter list here refused times the pool read, such as
/// `2026-01-01 10:00+01:00` written at a SQL prompt.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    const FORMATS: [&str; 12] = [
        "%F %T%.f",
        "%F %R",
        "%F %RZ",
        "%F %R%:z",
        "%F %T%.fZ",
        "%F %T%.f%:z",
        "%FT%R",
        "%FT%RZ",
        "%FT%R%:z",
        "%FT%T%.f",
        "%FT%T%.fZ",
        "%FT%T%.f%:z",
    ];
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.to_utc());
    }
    FORMATS.iter().find_map(|format| {
        DateTime::parse_from_str(text, format)
            .map(|time| time.to_utc())
            .or_else(|_| NaiveDateTime::parse_from_str(text, format).map(|naive| naive.and_utc()))
            .ok()
    })
}

/// A time stored as a Julian day number (SQLite's `julianday()`), read as sqlx reads it.
fn julian_day(day: f64) -> Option<DateTime<Utc>> {
    const UNIX_EPOCH_JULIAN_DAY: f64 = 2_440_587.5;
    let seconds = (day - UNIX_EPOCH_JULIAN_DAY) * 86_400.0;
    if !seconds.is_finite() {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let (whole, nanos) = (seconds.trunc() as i64, (seconds.fract() * 1e9).abs() as u32);
    DateTime::from_timestamp(whole, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_sqlx_writes_them_and_as_sqlite_does() {
        let t = |s: &str| parse_time(s).map(|t| t.to_rfc3339());
        let want = Some("2026-12-03T16:45:56.721388830+00:00".to_owned());
        assert_eq!(t("2026-12-03T16:45:56.721388830+00:00"), want);
        assert_eq!(t("2026-12-03T17:45:56.721388830+01:00"), want);
        assert_eq!(t("2026-12-03 16:45:56.721388830"), want);
        assert_eq!(t("2026-12-03 16:45:56.721388830Z"), want);
        assert_eq!(t("2026-12-03 16:45:56.721388830+00:00"), want);
        assert_eq!(
            t("2026-12-03 16:45:56"),
            Some("2026-12-03T16:45:56+00:00".to_owned())
        );
        assert_eq!(
            t("2026-12-03 16:45"),
            Some("2026-12-03T16:45:00+00:00".to_owned())
        );
        assert_eq!(
            t("2026-12-03 16:45+01:00"),
            Some("2026-12-03T15:45:00+00:00".to_owned())
        );
        assert_eq!(
            t("2026-12-03T16:45Z"),
            Some("2026-12-03T16:45:00+00:00".to_owned())
        );
        assert_eq!(t("yesterday"), None);
        assert_eq!(
            julian_day(2_440_588.0).map(|t| t.to_rfc3339()),
            Some("1970-01-01T12:00:00+00:00".to_owned())
        );
    }

    #[test]
    fn values_are_bound_as_sqlx_binds_them() {
        let time: DateTime<Utc> = "2026-12-03T16:45:56.721388830Z".parse().unwrap();
        let id = Uuid::now_v7();
        assert_eq!(
            bindable(&time.into()).unwrap(),
            SqlValue::Text("2026-12-03T16:45:56.721388830+00:00".to_owned())
        );
        assert_eq!(
            bindable(&id.into()).unwrap(),
            SqlValue::Blob(id.as_bytes().to_vec())
        );
        assert_eq!(bindable(&5_i32.into()).unwrap(), SqlValue::Integer(5));
        assert_eq!(bindable(&Value::String(None)).unwrap(), SqlValue::Null);
    }
}
