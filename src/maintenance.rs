//! Housekeeping: rows that can no longer matter are deleted, so the security tables do not grow
//! without bound. Every replica may run it; each delete is idempotent.

use std::time::Duration;

use chrono::Utc;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
    sea_query::ExprTrait,
};

use crate::{
    auth::{revocation::RETENTION_MS, throttle::FAILURE_MEMORY_MS},
    db::{self, Db},
    entities::{login_throttle, refresh_token, revocation, session},
    error::AppResult,
    idempotency,
};

/// How often each replica prunes.
pub const PRUNE_EVERY: Duration = Duration::from_secs(10 * 60);
/// Ended sessions are kept this long (their spent tokens still tell a replay from a typo).
const ENDED_SESSION_RETENTION: chrono::Duration = chrono::Duration::days(7);

/// What one pass deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub revocations: u64,
    pub refresh_tokens: u64,
    pub sessions: u64,
    pub login_throttles: u64,
    pub idempotency_keys: u64,
}

/// Deletes revocations older than an access token's lifetime, expired refresh tokens, sessions
/// ended more than a week ago (their refresh tokens go with them), and throttle rows whose
/// failures are forgotten and whose lock has run out, and `Idempotency-Key`s older than 24 h.
///
/// # Errors
/// On a database failure (nothing is deleted then).
pub async fn prune(db: &Db) -> AppResult<Pruned> {
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    db::write(db, async |db| {
        Ok(Pruned {
            revocations: revocation::Entity::delete_many()
                .filter(revocation::Column::CreatedAtMs.lt(now_ms - RETENTION_MS))
                .exec(db)
                .await?
                .rows_affected,
            refresh_tokens: refresh_token::Entity::delete_many()
                .filter(refresh_token::Column::ExpiresAt.lt(now))
                .exec(db)
                .await?
                .rows_affected,
            sessions: session::Entity::delete_many()
                .filter(session::Column::RevokedAt.lt(now - ENDED_SESSION_RETENTION))
                .exec(db)
                .await?
                .rows_affected,
            login_throttles: login_throttle::Entity::delete_many()
                .filter(login_throttle::Column::UpdatedAtMs.lt(now_ms - FAILURE_MEMORY_MS))
                .filter(
                    login_throttle::Column::LockedUntilMs
                        .is_null()
                        .or(login_throttle::Column::LockedUntilMs.lt(now_ms)),
                )
                .exec(db)
                .await?
                .rows_affected,
            idempotency_keys: idempotency::prune(db, now_ms).await?,
        })
    })
    .await
}

/// Prunes every [`PRUNE_EVERY`] for as long as the process runs.
pub fn spawn_pruner(db: Db) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(PRUNE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match prune(&db).await {
                Ok(pruned) => tracing::debug!(?pruned, "pruned expired security rows"),
                Err(err) => tracing::warn!(error = ?err, "pruning failed; will retry"),
            }
        }
    })
}

/// How often a SQLite server looks for an idle moment to truncate its WAL.
pub const WAL_CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// On SQLite, truncates the write-ahead log, on the writer, whenever both pools are idle (no
/// connection in use), checking every [`WAL_CHECKPOINT_EVERY`].
///
/// SQLite's automatic checkpoints copy the WAL back into the database but never shrink the
/// file, and under a steady stream of writers they cannot reset it at all, so a burst of
/// writes can leave a WAL many times the database's size. A `TRUNCATE` checkpoint waits for
/// readers, copies every frame and empties the file; `journal_size_limit` bounds what a reset
/// leaves in between. Does nothing on PostgreSQL.
pub fn spawn_wal_checkpointer(db: Db) -> Option<tokio::task::JoinHandle<()>> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(WAL_CHECKPOINT_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let pools: Vec<_> = db.pools().map(|p| p.get_sqlite_connection_pool()).collect();
            if pools.iter().any(|pool| pool.is_closed()) {
                return;
            }
            // Busy: a checkpoint now would wait for the requests' readers and delay writers.
            if pools
                .iter()
                .any(|pool| (pool.num_idle() as u32) < pool.size())
            {
                continue;
            }
            match checkpoint_truncate(db.writer()).await {
                Ok(true) => {}
                Ok(false) => tracing::debug!("WAL checkpoint could not finish; will retry"),
                Err(err) => tracing::warn!(error = %err, "WAL checkpoint failed; will retry"),
            }
        }
    }))
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`, to be run on the writer; true when it finished (no reader or writer was in
/// the way) and the WAL is now empty.
///
/// # Errors
/// On a database failure.
pub async fn checkpoint_truncate(db: &DatabaseConnection) -> Result<bool, DbErr> {
    use sea_orm::{RuntimeErr, sqlx};
    let failed = |err: sqlx::Error| DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(err)));
    // On a connection of its own, without the busy timeout: a reader in another process (a
    // backup, a `sqlite3` shell) would otherwise hold the one writer for the whole timeout
    // while the checkpoint waits for it. Busy now means: try again at the next idle tick.
    let mut conn = db
        .get_sqlite_connection_pool()
        .acquire()
        .await
        .map_err(failed)?;
    sqlx::query("PRAGMA busy_timeout = 0")
        .execute(&mut *conn)
        .await
        .map_err(failed)?;
    let checkpoint: Result<(i64, i64, i64), sqlx::Error> =
        sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await;
    // The pool's own busy timeout, as set when it connected.
    const _: () = assert!(crate::db::SQLITE_BUSY_TIMEOUT.as_millis() == 5000);
    let restored = sqlx::query("PRAGMA busy_timeout = 5000")
        .execute(&mut *conn)
        .await;
    if restored.is_err() {
        // Never hand the writers a connection that gives up at once.
        conn.close_on_drop();
    }
    let (busy, _, _) = checkpoint.map_err(failed)?;
    Ok(busy == 0)
}
