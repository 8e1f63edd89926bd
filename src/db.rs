//! Database connection and migrations, for SQLite and PostgreSQL alike.

use std::{future::Future, sync::Arc, time::Duration};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
    TransactionTrait,
    sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous},
};

/// How long a SQLite writer waits for the lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The size a SQLite WAL is cut back to whenever it is reset (`journal_size_limit`); see
/// [`crate::maintenance::spawn_wal_checkpointer`] for when that happens.
pub const SQLITE_JOURNAL_SIZE_LIMIT: u64 = 4 * 1024 * 1024;
/// Connections in a SQLite pool: WAL lets readers run beside the one writer.
const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// Connections in a PostgreSQL pool, per replica.
const POSTGRES_MAX_CONNECTIONS: u32 = 16;
/// An arbitrary constant that names Storefront's migration lock in `pg_advisory_xact_lock`.
const MIGRATION_LOCK_KEY: i64 = 0x5354_4f52_4546_524e; // "STOREFRN"

/// Opens a pool tuned for the database the URL names.
///
/// SQLite: WAL journal, `synchronous = NORMAL`, a busy timeout and foreign keys on, with a few
/// connections so reads do not queue behind each other. PostgreSQL: a bounded pool with
/// connect and acquire timeouts, so an unreachable database fails fast instead of hanging.
///
/// # Errors
/// When the URL is malformed or the database cannot be reached.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(300))
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        options
            .max_connections(SQLITE_MAX_CONNECTIONS)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .foreign_keys(true)
                    .pragma("journal_size_limit", SQLITE_JOURNAL_SIZE_LIMIT.to_string())
            });
    } else {
        options
            .max_connections(POSTGRES_MAX_CONNECTIONS)
            .min_connections(1);
    }
    Database::connect(options).await
}

/// Applies every pending migration.
///
/// On PostgreSQL the migrations run inside a transaction holding an advisory lock, so replicas
/// that start together do not race to create the same tables.
///
/// # Errors
/// When a migration fails; the database is left as the failed migration's transaction found it.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
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
pub async fn connect_and_migrate(url: &str) -> Result<DatabaseConnection, DbErr> {
    let db = connect(url).await?;
    migrate(&db).await?;
    Ok(db)
}

/// Calls `poll` every `interval` with `target` and the database, for as long as something else
/// holds `target` (the task ends once its last other `Arc` is dropped). A failed poll is
/// logged, naming `what` it reads, and retried at the next tick.
pub fn poll_every<T, F, Fut>(
    target: &Arc<T>,
    db: DatabaseConnection,
    interval: Duration,
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
            ticker.tick().await;
            let Some(target) = target.upgrade() else {
                return;
            };
            if let Err(err) = poll(target, db.clone()).await {
                tracing::warn!(error = %err, "could not read {what}; retrying");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

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
