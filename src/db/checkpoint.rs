//! SQLite's write-ahead log, kept small: truncated whenever the server is idle.

use std::time::Duration;

use sea_orm::{DatabaseConnection, DbBackend, DbErr};

use super::Db;

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
    const _: () = assert!(super::SQLITE_BUSY_TIMEOUT.as_millis() == 5000);
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
