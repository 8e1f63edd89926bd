//! Reads on PostgreSQL over connections held outside sqlx's pool.
//!
//! sqlx's pool pings every connection when it goes back to the pool (`SELECT`-less `Sync`, a
//! round trip to the database server), in a task spawned for it, and this cannot be turned
//! off: each catalog read through the pool cost two round trips, and the second one a
//! database server process's time as well (docs/benchmarks.md, "Where the time goes"). The
//! catalog's reads (pages, counts, the checks for rows beyond a cursor) run here instead, on
//! connections kept in a list of their own:
//!
//! - a connection used within [`PING_IF_IDLE_FOR`] is used as is; one idle for longer, or any
//!   while [`Db::distrust_connections`] is in force, is pinged first and replaced if the ping
//!   fails (the pool's own rule: see `db::Pings`);
//! - a connection whose statement failed for another reason than the statement itself (the
//!   connection was lost, the server went away) is closed, not kept, and the idle ones are
//!   dropped with it: a database that restarted cut them all;
//! - a read runs in a task of its own: a caller that stops waiting (a request timed out)
//!   leaves it to finish and put its connection back, so a short request timeout does not
//!   make every read connect anew, and a statement the database is still working on keeps its
//!   connection's place (a read waits for a free one rather than opening more);
//! - at most `connections` at a time; a read waits for one at most the pool's acquire timeout,
//!   and a connection idle for longer than the pool's idle timeout is closed when a read
//!   puts another back.
//!
//! [`Db::distrust_connections`]: super::Db::distrust_connections

use std::{
    str::FromStr,
    sync::{Arc, Mutex},
    time::Instant,
};

use sea_orm::{
    ConnAcquireErr, DbErr, RuntimeErr, Statement, Values,
    sqlx::{
        self, ConnectOptions, Connection, Decode, Row, Type,
        postgres::{PgConnectOptions, PgConnection, PgRow, Postgres},
    },
};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Semaphore;

use super::{ACQUIRE_TIMEOUT, Columns, IDLE_TIMEOUT, Pings};
use crate::error::{AppError, AppResult, sqlx_cause};

/// Connections to one PostgreSQL database, for reads.
pub struct PostgresReader {
    options: PgConnectOptions,
    /// Connections not in use, each with when it was last used.
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    /// One permit per connection that may be open.
    permits: Arc<Semaphore>,
    /// When a connection is pinged before use: shared with the pool.
    pings: Arc<Pings>,
}

impl std::fmt::Debug for PostgresReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresReader").finish_non_exhaustive()
    }
}

impl PostgresReader {
    /// Reads the database a `postgres:` URL names, over at most `connections` connections.
    /// Nothing is opened yet.
    ///
    /// # Errors
    /// When the URL is malformed.
    pub(super) fn new(url: &str, connections: usize, pings: Arc<Pings>) -> Result<Self, DbErr> {
        // As the pool's: statements are not logged (sea-orm's `sqlx_logging(false)`).
        let options = PgConnectOptions::from_str(url)
            .map_err(|err| DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))))?
            .disable_statement_logging();
        Ok(Self {
            options,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(connections)),
            pings,
        })
    }

    /// Runs `statement` and returns every row `decode` makes of it, in order.
    ///
    /// # Errors
    /// `SERVICE_UNAVAILABLE` when the database cannot be reached or no connection frees up
    /// within the acquire timeout; internal, on any other failure, including a row `decode`
    /// refuses.
    pub async fn rows<T, F>(self: &Arc<Self>, statement: Statement, decode: F) -> AppResult<Vec<T>>
    where
        F: Fn(&dyn Columns) -> Result<T, DbErr>,
    {
        let deadline = Instant::now() + ACQUIRE_TIMEOUT;
        let permit = tokio::time::timeout_at(deadline.into(), self.permits.clone().acquire_owned())
            .await
            .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::Timeout))?
            .map_err(|_| AppError::internal("the PostgreSQL reader is closed"))?;
        // In a task of its own, holding the permit: a caller that stops waiting (a request
        // timed out, a client left) neither drops a connection half-way through connecting or
        // reading, which made every read after a short timeout connect anew, nor lets another
        // read open a connection while the database still works on this one's statement (an
        // outside attack piled up connections behind a table lock that way).
        let reader = self.clone();
        let read = tokio::spawn(async move {
            let _permit = permit;
            reader.read(statement, deadline).await
        });
        let rows = read
            .await
            .map_err(|err| AppError::internal(format_args!("a PostgreSQL read failed: {err}")))??;
        Ok(rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                decode(&PgColumns {
                    row,
                    types_checked: i > 0,
                })
            })
            .collect::<Result<_, _>>()?)
    }

    async fn read(&self, statement: Statement, deadline: Instant) -> AppResult<Vec<PgRow>> {
        let mut connection = self.connection(deadline).await?;
        let values = statement.values.unwrap_or(Values(Vec::new()));
        let query = sqlx::query_with(sqlx::AssertSqlSafe(statement.sql), SqlxValues(values));
        match query.fetch_all(&mut connection).await {
            Ok(rows) => {
                self.put_back(connection);
                Ok(rows)
            }
            Err(err) => {
                if matches!(err, sqlx::Error::Database(_)) && sqlx_cause(&err).is_none() {
                    // The statement failed; the connection is as good as before.
                    self.put_back(connection);
                } else {
                    // Lost, or the server is going away (it says so before it closes a
                    // connection): so, most likely, are the idle ones.
                    self.idle_connections().clear();
                }
                Err(DbErr::Query(RuntimeErr::SqlxError(Arc::new(err))).into())
            }
        }
    }

    /// Closes the idle connections (telling the server, so it logs no lost client) and
    /// refuses reads from now on.
    pub async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle_connections());
        for (connection, _) in idle {
            let _ = connection.close().await;
        }
    }

    /// A connection for one read: an idle one (pinged first when it has been idle for long,
    /// or while connections are distrusted), else a new one.
    async fn connection(&self, deadline: Instant) -> AppResult<PgConnection> {
        loop {
            let Some((mut connection, used)) = self.idle_connections().pop() else {
                break;
            };
            if !self.pings.should_ping(used.elapsed()) {
                return Ok(connection);
            }
            let ping = tokio::time::timeout_at(deadline.into(), connection.ping()).await;
            if matches!(ping, Ok(Ok(()))) {
                return Ok(connection);
            }
            // Dropped: closed. The next idle one, or a new one.
        }
        match tokio::time::timeout_at(deadline.into(), PgConnection::connect_with(&self.options))
            .await
        {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(err)) => Err(DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err))).into()),
            Err(_) => Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout).into()),
        }
    }

    /// Keeps `connection` for the next read; drops (closes) those idle for longer than the
    /// pool keeps its own.
    fn put_back(&self, connection: PgConnection) {
        let mut idle = self.idle_connections();
        idle.retain(|(_, used)| used.elapsed() < IDLE_TIMEOUT);
        idle.push((connection, Instant::now()));
    }

    fn idle_connections(&self) -> std::sync::MutexGuard<'_, Vec<(PgConnection, Instant)>> {
        // A panic while the list was held left it whole (a push or a pop): keep using it.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A row read here, its columns by position, decoded by sqlx as sea-orm's `QueryResult`
/// decodes them, without its wrapping (a look-up of each time column by name, among others:
/// about 60,000 instructions of a page of 21 rows). The rows of one result share their
/// columns' types (one statement, one description), so the first row's are checked as sqlx
/// checks them and the rows after it are decoded without checking them again; a decoder
/// still refuses bytes that are not its type's (a length it does not expect, a NULL).
struct PgColumns<'r> {
    row: &'r PgRow,
    types_checked: bool,
}

impl<'r> PgColumns<'r> {
    fn get<T>(&self, i: usize) -> Result<T, DbErr>
    where
        T: Decode<'r, Postgres> + Type<Postgres>,
    {
        let value = if self.types_checked {
            self.row.try_get_unchecked(i)
        } else {
            self.row.try_get(i)
        };
        value.map_err(|err| DbErr::Query(RuntimeErr::SqlxError(Arc::new(err))))
    }
}

impl Columns for PgColumns<'_> {
    fn uuid(&self, i: usize) -> Result<uuid::Uuid, DbErr> {
        self.get(i)
    }
    fn optional_uuid(&self, i: usize) -> Result<Option<uuid::Uuid>, DbErr> {
        self.get(i)
    }
    fn text(&self, i: usize) -> Result<String, DbErr> {
        self.get(i)
    }
    fn i64(&self, i: usize) -> Result<i64, DbErr> {
        self.get(i)
    }
    fn i32(&self, i: usize) -> Result<i32, DbErr> {
        self.get(i)
    }
    fn f64(&self, i: usize) -> Result<f64, DbErr> {
        self.get(i)
    }
    fn time(&self, i: usize) -> Result<chrono::DateTime<chrono::Utc>, DbErr> {
        self.get(i)
    }
}
