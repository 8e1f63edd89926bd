//! Database connection and migrations, for SQLite and PostgreSQL alike.

use std::{
    future::Future,
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnAcquireErr, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode, Statement, TransactionOptions,
    TransactionTrait,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

use crate::error::{AppError, AppResult, Unavailable};

pub mod checkpoint;
mod health;
pub mod listen;
pub mod observe;
mod postgres_reader;
mod sqlite_reader;
pub use health::DbHealth;
pub use listen::Wake;
pub use postgres_reader::PostgresReader;
pub use sqlite_reader::SqliteReader;

/// How long a SQLite connection waits for a lock (the writer: another process's write) before
/// failing.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The size a SQLite WAL is cut back to whenever it is reset (`journal_size_limit`); see
/// [`checkpoint::spawn_wal_checkpointer`] for when that happens.
pub const SQLITE_JOURNAL_SIZE_LIMIT: u64 = 4 * 1024 * 1024;
/// Connections in a SQLite reader pool; the writer pool always has exactly one.
const SQLITE_READERS: u32 = 4;
/// Connections in a PostgreSQL pool, per replica.
const POSTGRES_MAX_CONNECTIONS: u32 = 16;
/// Connections of a replica's [`PostgresReader`], besides the pool's.
const POSTGRES_READERS: usize = 8;
/// How long a pool connection (or a reader's) may take to connect, or to become free.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// An arbitrary constant that names Storefront's migration lock in `pg_advisory_xact_lock`.
const MIGRATION_LOCK_KEY: i64 = 0x5354_4f52_4546_524e; // "STOREFRN"

/// The database: a pool that reads and a pool that writes.
///
/// On SQLite the writer is one connection, on which [`write`] runs every transaction, and the
/// readers are several connections opened with `query_only`, so a statement that would write
/// through them fails instead of taking the write lock. In WAL mode readers read the last
/// commit while the writer writes: a long write, or another process holding the write lock,
/// delays writes only. On PostgreSQL (and an in-memory SQLite database, which a second pool
/// could not share) both are the same pool.
///
/// `Db` dereferences to the reader pool, so every read is written as before (`&state.db`)
/// and a write has to go through [`write`].
#[derive(Clone, Debug)]
pub struct Db {
    reader: DatabaseConnection,
    writer: DatabaseConnection,
    /// Whether `reader` and `writer` are the same pool.
    shared: bool,
    /// When the pools ping a connection before handing it out.
    pings: Arc<Pings>,
    /// Where [`Db::rows`] reads.
    reads: Reads,
}

/// Where the hot reads ([`Db::rows`]) go.
#[derive(Clone, Debug)]
enum Reads {
    /// Through the reader pool (an in-memory SQLite database, and tests that compare).
    Pool,
    Sqlite(Arc<SqliteReader>),
    Postgres(Arc<PostgresReader>),
}

impl Db {
    /// One pool serving reads and writes alike.
    pub fn shared(pool: DatabaseConnection) -> Self {
        Self::shared_with(pool, Arc::default())
    }

    fn shared_with(pool: DatabaseConnection, pings: Arc<Pings>) -> Self {
        Self {
            reader: pool.clone(),
            writer: pool,
            shared: true,
            pings,
            reads: Reads::Pool,
        }
    }

    /// Runs a read and returns every row `decode` makes of it, in order: on a SQLite file
    /// through [`SqliteReader`] (one hand-off to a blocking thread and back, rows decoded
    /// there), on PostgreSQL through [`PostgresReader`] (one round trip, no ping after it),
    /// otherwise through the reader pool. What the catalog's reads use.
    ///
    /// # Errors
    /// `SERVICE_UNAVAILABLE` when the database cannot serve; internal, on any other failure,
    /// including a row `decode` refuses.
    pub async fn rows<T, F>(&self, statement: Statement, decode: F) -> AppResult<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(&dyn Columns) -> Result<T, DbErr> + Send + 'static,
    {
        match &self.reads {
            Reads::Sqlite(reader) => reader.rows(statement, decode).await,
            Reads::Postgres(reader) => reader.rows(statement, decode).await,
            Reads::Pool => {
                let rows = self.reader.query_all_raw(statement).await?;
                Ok(rows
                    .iter()
                    .map(|row| decode(row))
                    .collect::<Result<_, _>>()?)
            }
        }
    }

    /// The same database with [`Db::rows`] going through the reader pool: what a test
    /// compares the two ways of reading with.
    #[doc(hidden)]
    pub fn reading_through_the_pool(&self) -> Self {
        Self {
            reads: Reads::Pool,
            ..self.clone()
        }
    }

    /// Whether [`Db::rows`] reads through connections of its own rather than the pool.
    pub fn reads_apart(&self) -> bool {
        !matches!(self.reads, Reads::Pool)
    }

    /// Takes note that a query just failed because of the database: for a while, every
    /// connection is pinged before it is handed out (see [`PING_IF_IDLE_FOR`]), so the pool
    /// drops the ones the database cut instead of failing a request on each.
    pub fn distrust_connections(&self) {
        self.pings.distrust();
    }

    /// The pool every read uses.
    pub fn reader(&self) -> &DatabaseConnection {
        &self.reader
    }

    /// The pool [`write`] uses, for what must run on the writer outside a transaction:
    /// migrations and SQLite's WAL checkpoints. A change made here directly is not checked for
    /// its commit; changes go through [`write`].
    pub fn writer(&self) -> &DatabaseConnection {
        &self.writer
    }

    /// The pools, each once: the reader and, when it is a pool of its own, the writer.
    pub fn pools(&self) -> impl Iterator<Item = &DatabaseConnection> {
        let separate = !self.is_shared();
        std::iter::once(&self.reader).chain(separate.then_some(&self.writer))
    }

    /// Whether reads and writes share one pool.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Closes every pool.
    ///
    /// # Errors
    /// When a pool fails to close.
    pub async fn close(self) -> Result<(), DbErr> {
        if let Reads::Postgres(reader) = &self.reads {
            reader.close().await;
        }
        if !self.is_shared() {
            self.writer.close().await?;
        }
        self.reader.close().await
    }
}

impl std::ops::Deref for Db {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        &self.reader
    }
}

/// Opens the pools, tuned for the database the URL names.
///
/// SQLite: WAL journal, `synchronous = NORMAL`, a busy timeout and foreign keys on; one writer
/// and [`SQLITE_READERS`] readers (see [`Db`]). PostgreSQL: one bounded pool with connect and
/// acquire timeouts, so an unreachable database fails fast instead of hanging.
///
/// # Errors
/// When the URL is malformed or the database cannot be reached.
pub async fn connect(url: &str) -> Result<Db, DbErr> {
    if !url.starts_with("sqlite:") {
        let pings = Arc::new(Pings::default());
        let hook = pings.clone();
        let mut options = pool_options(url);
        options
            .max_connections(POSTGRES_MAX_CONNECTIONS)
            .min_connections(1)
            .test_before_acquire(false)
            .map_sqlx_postgres_before_acquire(move |connection, meta| {
                let ping = hook.should_ping(meta.idle_for);
                Box::pin(async move {
                    if ping {
                        sea_orm::sqlx::Connection::ping(connection).await?;
                    }
                    Ok(true)
                })
            });
        let reader = PostgresReader::new(url, POSTGRES_READERS, pings.clone())?;
        let mut db = Db::shared_with(Database::connect(options).await?, pings);
        db.reads = Reads::Postgres(Arc::new(reader));
        return Ok(db);
    }
    if is_sqlite_memory(url) {
        return Ok(Db::shared(
            connect_sqlite(url, SQLITE_READERS, false).await?,
        ));
    }
    // The writer first: it makes a new database file and puts it in WAL mode.
    let writer = connect_sqlite(url, 1, false).await?;
    let reader = connect_sqlite(url, SQLITE_READERS, true).await?;
    Ok(Db {
        reader,
        writer,
        shared: false,
        pings: Arc::default(),
        reads: Reads::Sqlite(Arc::new(SqliteReader::new(url, SQLITE_READERS as usize)?)),
    })
}

/// A row's columns by position, whichever way it was read (see [`Db::rows`]): one decoder
/// serves both.
pub trait Columns {
    /// # Errors
    /// When the column is not an id.
    fn uuid(&self, i: usize) -> Result<uuid::Uuid, DbErr>;
    /// # Errors
    /// When the column is neither an id nor NULL.
    fn optional_uuid(&self, i: usize) -> Result<Option<uuid::Uuid>, DbErr>;
    /// # Errors
    /// When the column is not text.
    fn text(&self, i: usize) -> Result<String, DbErr>;
    /// # Errors
    /// When the column is not a 64-bit integer.
    fn i64(&self, i: usize) -> Result<i64, DbErr>;
    /// # Errors
    /// When the column is not a 32-bit integer.
    fn i32(&self, i: usize) -> Result<i32, DbErr>;
    /// # Errors
    /// When the column is not a number.
    fn f64(&self, i: usize) -> Result<f64, DbErr>;
    /// # Errors
    /// When the column is not a time.
    fn time(&self, i: usize) -> Result<chrono::DateTime<chrono::Utc>, DbErr>;
}

impl Columns for sea_orm::QueryResult {
    fn uuid(&self, i: usize) -> Result<uuid::Uuid, DbErr> {
        self.try_get_by_index(i)
    }
    fn optional_uuid(&self, i: usize) -> Result<Option<uuid::Uuid>, DbErr> {
        self.try_get_by_index(i)
    }
    fn text(&self, i: usize) -> Result<String, DbErr> {
        self.try_get_by_index(i)
    }
    fn i64(&self, i: usize) -> Result<i64, DbErr> {
        self.try_get_by_index(i)
    }
    fn i32(&self, i: usize) -> Result<i32, DbErr> {
        self.try_get_by_index(i)
    }
    fn f64(&self, i: usize) -> Result<f64, DbErr> {
        self.try_get_by_index(i)
    }
    fn time(&self, i: usize) -> Result<chrono::DateTime<chrono::Utc>, DbErr> {
        self.try_get_by_index(i)
    }
}

/// A pooled connection used within this long is handed out without a ping first.
///
/// sqlx pings a connection on every checkout by default: one more round trip per query (to
/// PostgreSQL, or to SQLite's worker thread), about a third of a cached-off page read. A
/// connection in steady use has just answered, so only one idle for longer is pinged, as
/// HikariCP does (its `aliveBypassWindowMs`, 500 ms). A connection that dies while in use
/// fails one query and is closed on release, where sqlx pings it anyway; on PostgreSQL, that
/// failure makes every checkout ping for [`DISTRUST_FOR`] (see [`Db::distrust_connections`]),
/// so the other connections the database cut are dropped unused, not each met by a request.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// How long every checkout pings after a query failed because of the database.
const DISTRUST_FOR: Duration = Duration::from_secs(10);

/// When a pool pings a connection before handing it out.
#[derive(Debug, Default)]
struct Pings {
    /// Until when (ms on [`clock_ms`]) every checkout pings.
    every_checkout_until_ms: AtomicU64,
}

impl Pings {
    fn distrust(&self) {
        let until = clock_ms().saturating_add(DISTRUST_FOR.as_millis() as u64);
        self.every_checkout_until_ms
            .fetch_max(until, Ordering::Relaxed);
    }

    fn should_ping(&self, idle_for: Duration) -> bool {
        idle_for >= PING_IF_IDLE_FOR
            || clock_ms() < self.every_checkout_until_ms.load(Ordering::Relaxed)
    }
}

/// Milliseconds on a monotonic clock that starts with the process.
fn clock_ms() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    u64::try_from(START.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn pool_options(url: &str) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .idle_timeout(IDLE_TIMEOUT)
        .sqlx_logging(false);
    options
}

async fn connect_sqlite(
    url: &str,
    connections: u32,
    query_only: bool,
) -> Result<DatabaseConnection, DbErr> {
    let mut options = pool_options(url);
    options
        .max_connections(connections)
        .min_connections(1)
        .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
        .map_sqlx_sqlite_opts(move |opts| {
            let opts = opts
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
                .pragma("journal_size_limit", SQLITE_JOURNAL_SIZE_LIMIT.to_string());
            if query_only {
                opts.pragma("query_only", "ON")
            } else {
                opts
            }
        });
    Database::connect(options).await
}

/// Whether a `sqlite:` URL names an in-memory database, which only one pool can see.
fn is_sqlite_memory(url: &str) -> bool {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    rest.is_empty()
        || rest.starts_with(":memory:")
        || rest
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|pair| pair == "mode=memory"))
}

/// Applies every pending migration, on the writer.
///
/// On PostgreSQL the migrations run inside a transaction holding an advisory lock, so replicas
/// that start together do not race to create the same tables.
///
/// # Errors
/// When a migration fails; the database is left as the failed migration's transaction found it.
pub async fn migrate(db: &Db) -> Result<(), DbErr> {
    let db = db.writer();
    if db.get_database_backend() == DbBackend::Postgres {
        let txn = db.begin().await?;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [MIGRATION_LOCK_KEY.into()],
        ))
        .await?;
        Migrator::up(&txn, None).await?;
        txn.commit().await
    } else {
        Migrator::up(db, None).await
    }
}

/// Connects and migrates: what every command that touches the database does first.
///
/// # Errors
/// As [`connect`] and [`migrate`].
pub async fn connect_and_migrate(url: &str) -> Result<Db, DbErr> {
    let db = connect(url).await?;
    migrate(&db).await?;
    Ok(db)
}

/// Runs `work` in one transaction and returns its result only once the commit succeeded.
///
/// Every write goes through here. A statement that fails, or a commit that fails (a full disk, a
/// read-only database, a lost connection), rolls everything back and is returned as an error, so
/// no caller can report a change that was not stored. On SQLite the transaction starts with
/// `BEGIN IMMEDIATE`: it takes the write lock (waiting out the busy timeout) before reading, so
/// a read-then-write cannot fail half-way because another writer got in between.
///
/// Inside `work`, prefer statements that return no rows (`exec_without_returning`, `execute`)
/// and read back what is needed: sqlx can hand back a `RETURNING` row before its statement has
/// run to completion and then lose that statement's error (sqlx issues 2099 and 3430).
///
/// # Errors
/// Whatever `work` returns (after a rollback), or the database's failure to begin or commit.
pub async fn write<T>(
    db: &Db,
    work: impl AsyncFnOnce(&DatabaseTransaction) -> AppResult<T>,
) -> AppResult<T> {
    let (value, txn) = begin_and_work(db, work).await?;
    uncancellable(commit(txn)).await??;
    Ok(value)
}

/// As [`write`], and then `after_commit` with the committed value, in the task that commits:
/// once the commit has begun, the step after it runs even if the request is cancelled (its
/// client went away, its deadline passed), so what must follow every committed change (the
/// catalog announcing it to subscribers) is never skipped.
///
/// # Errors
/// As [`write`]; `after_commit` runs only after a successful commit.
pub async fn write_then<T, F, Fut>(
    db: &Db,
    work: impl AsyncFnOnce(&DatabaseTransaction) -> AppResult<T>,
    after_commit: F,
) -> AppResult<T>
where
    T: Clone + Send + 'static,
    F: FnOnce(T) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (value, txn) = begin_and_work(db, work).await?;
    let committed = value.clone();
    uncancellable(async move {
        commit(txn).await?;
        after_commit(committed).await;
        Ok::<(), DbErr>(())
    })
    .await??;
    Ok(value)
}

/// Begins a write transaction and runs `work` in it; on `work`'s failure, rolls back.
async fn begin_and_work<T>(
    db: &Db,
    work: impl AsyncFnOnce(&DatabaseTransaction) -> AppResult<T>,
) -> AppResult<(T, DatabaseTransaction)> {
    let options = TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..TransactionOptions::default()
    };
    let txn = match db.writer().begin_with_options(options).await {
        Ok(txn) => txn,
        // SQLite's one writer was busy for the whole acquire timeout: the database answers,
        // but writes are queued behind a lock (another process's, or a long write).
        Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)) if !db.is_shared() => {
            return Err(AppError::ServiceUnavailable {
                cause: Unavailable::Unwritable(WRITER_BUSY),
                detail: None,
            });
        }
        Err(err) => return Err(err.into()),
    };
    // The request's observer records, in this same transaction, that it changed something.
    let worked = match work(&txn).await {
        Ok(value) => observe::before_commit(&txn).await.map(|()| value),
        Err(err) => Err(err),
    };
    // From here the transaction ends in a task of its own, which runs to completion even if
    // this request is cancelled (its client went away, its deadline passed): stopped half-way
    // through the sequences below, SQLite and sqlx would disagree about whether a transaction
    // is open, and every later write on that connection would go wrong.
    match worked {
        Ok(value) => Ok((value, txn)),
        Err(err) => {
            uncancellable(abandon(txn)).await?;
            Err(err)
        }
    }
}

/// Runs `future` in a task of its own and waits for it: dropping the waiting future does not
/// stop it.
async fn uncancellable<F>(future: F) -> AppResult<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future).await.map_err(AppError::internal)
}

/// Commits, reporting the commit's own failure.
async fn commit(txn: DatabaseTransaction) -> Result<(), DbErr> {
    if txn.get_database_backend() != DbBackend::Sqlite {
        return txn.commit().await;
    }
    // SQLite: sqlx counts transaction depth itself and, when a COMMIT fails (a full disk), it
    // keeps counting one open transaction whether or not SQLite rolled it back. The pooled
    // connection's next "transaction" then became a SAVEPOINT inside a transaction that never
    // commits: acknowledged and later lost. So the real COMMIT is ours, and the transaction
    // sqlx tracks is ended with statements that cannot fail for want of space.
    match txn.execute_unprepared("COMMIT").await {
        Ok(_) => {
            txn.execute_unprepared("BEGIN").await?;
            txn.commit().await
        }
        Err(err) => {
            abandon(txn).await;
            Err(err)
        }
    }
}

/// Rolls back a write that failed, leaving the connection outside any transaction both in
/// SQLite's eyes and in sqlx's (see [`write`]).
async fn abandon(txn: DatabaseTransaction) {
    if txn.get_database_backend() == DbBackend::Sqlite {
        // Whatever SQLite did after the error, end its transaction (an error here means it had
        // already ended it), then open an empty one for sqlx's ROLLBACK to end.
        let _ = txn.execute_unprepared("ROLLBACK").await;
        if let Err(err) = txn.execute_unprepared("BEGIN").await {
            tracing::error!(error = %err, "cannot reset a connection after a failed write");
        }
    }
    if let Err(err) = txn.rollback().await {
        tracing::warn!(error = %err, "rolling back a failed write failed");
    }
}

/// The cause of a timeout waiting for SQLite's writer connection.
const WRITER_BUSY: &str = "the write connection stayed busy: writes are queued behind a lock";

/// Calls `poll` every `interval`, and at once whenever `wake` is woken (a notification said
/// that what it reads changed), with `target` and the database, for as long as something else
/// holds `target` (the task ends once its last other `Arc` is dropped). A failed poll is
/// logged, naming `what` it reads, and retried at the next tick.
pub fn poll_every<T, F, Fut>(
    target: &Arc<T>,
    db: DatabaseConnection,
    interval: Duration,
    wake: Wake,
    what: &'static str,
    poll: F,
) -> tokio::task::JoinHandle<()>
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>, DatabaseConnection) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), DbErr>> + Send,
{
    let target = Arc::downgrade(target);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = wake.woken() => {}
            }
            let Some(target) = target.upgrade() else {
                return;
            };
            if let Err(err) = poll(target, db.clone()).await {
                tracing::warn!(error = %err, "could not read {what}; retrying");
            }
        }
    })
}

/// An arbitrary constant naming the lock, in `pg_advisory_xact_lock`, that every change which
/// could leave no active account able to manage roles takes: role changes, deactivations,
/// deletions, and putting a new policy in force.
const ROLE_CHANGE_LOCK_KEY: i64 = 0x5354_4f52_524f_4c45; // "STORROLE"

/// Serializes, until the caller's transaction ends, the changes that could together leave no
/// active account able to manage roles: statement snapshots would otherwise let two of them
/// both see two such accounts. SQLite runs one writer at a time already.
///
/// # Errors
/// On a database failure.
pub async fn lock_role_changes(txn: &impl ConnectionTrait) -> AppResult<()> {
    let backend = txn.get_database_backend();
    if backend == DbBackend::Postgres {
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            "SELECT pg_advisory_xact_lock($1)",
            [ROLE_CHANGE_LOCK_KEY.into()],
        ))
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, sqlx};

    /// A statement that writes on the reader pool is refused (`query_only`), so a write that
    /// bypasses `db::write` fails instead of taking the write lock; `db::write` stores it.
    #[tokio::test]
    async fn sqlite_readers_refuse_writes_and_the_writer_takes_them() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = super::connect_and_migrate(&url).await.unwrap();
        assert!(!db.is_shared());
        // An in-memory database is private to its pool: one pool serves both.
        assert!(super::connect("sqlite::memory:").await.unwrap().is_shared());
        let insert = |key: &str| {
            Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "INSERT INTO app_meta (key, value) VALUES ($1, 'v')",
                [key.into()],
            )
        };
        let count = async || {
            let row = db
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT count(*) AS n FROM app_meta WHERE key LIKE 'unit-%'",
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<i64>("", "n").unwrap()
        };
        // Through deref, as `&state.db` reads do, and through the pool by name; in a
        // transaction too.
        for refused in [
            db.execute_raw(insert("unit-deref")).await,
            db.reader().execute_raw(insert("unit-reader")).await,
            db.reader().execute_unprepared("DELETE FROM app_meta").await,
        ] {
            let err = refused.expect_err("a reader must refuse a write");
            assert!(err.to_string().contains("readonly"), "{err}");
        }
        let txn = db.reader().begin().await.unwrap();
        assert!(txn.execute_raw(insert("unit-txn")).await.is_err());
        txn.rollback().await.unwrap();
        // Every reader connection refuses, not only the first one opened.
        assert_eq!(
            readers_refusing_a_write(&db).await,
            super::SQLITE_READERS as usize
        );
        assert_eq!(count().await, 0);

        super::write(&db, async |txn| {
            txn.execute_raw(insert("unit-written")).await?;
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(
            count().await,
            1,
            "a commit on the writer is seen by the readers"
        );
    }

    /// Takes every reader connection at once, tries a write on each and counts the refusals.
    async fn readers_refusing_a_write(db: &super::Db) -> usize {
        let pool = db.reader().get_sqlite_connection_pool();
        let mut connections = Vec::new();
        for _ in 0..super::SQLITE_READERS {
            connections.push(pool.acquire().await.unwrap());
        }
        let mut refused = 0;
        for connection in &mut connections {
            let result = sqlx::query("INSERT INTO app_meta (key, value) VALUES ('unit-raw', 'v')")
                .execute(&mut **connection)
                .await;
            refused += usize::from(result.is_err());
        }
        refused
    }

    /// `.cargo/config.toml` builds the bundled SQLite with `SQLITE_ENABLE_QPSG`; without it,
    /// every statement with `LIMIT ?` is re-parsed and re-planned on each execution.
    #[tokio::test]
    async fn bundled_sqlite_keeps_query_plans_stable() {
        let db = super::connect("sqlite::memory:").await.unwrap();
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT count(*) AS n FROM pragma_compile_options \
                 WHERE compile_options = 'ENABLE_QPSG'",
            ))
            .await
            .unwrap()
            .unwrap();
        let n: i64 = row.try_get("", "n").unwrap();
        assert_eq!(n, 1, "SQLite was built without SQLITE_ENABLE_QPSG");
    }
}
