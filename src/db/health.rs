//! What the server knows about its database: whether a write can be committed now.
//!
//! The probe really writes (a one-row upsert in `app_meta`, committed, on the writer), because
//! only a commit finds a full disk or a read-only database, and then reads on the reader pool. Its result is kept for [`PROBE_CACHE`], so
//! readiness probes stay cheap. While the database cannot be reached at all, every request is
//! refused at once (see [`DbHealth::gate`]) instead of each waiting out the pool's timeout, and
//! a background task probes every [`RECOVERY_PROBE_EVERY`] until it answers again.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::{Db, write};
use crate::error::{AppError, AppResult, POOL_TIMED_OUT, Unavailable, sqlx_cause};

/// How long a probe's answer is reused.
pub const PROBE_CACHE: Duration = Duration::from_secs(1);
/// How often the database is probed while it cannot be reached.
pub const RECOVERY_PROBE_EVERY: Duration = Duration::from_millis(500);
/// The longest a probe waits for its write to commit.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The `app_meta` key the probe writes.
const PROBE_KEY: &str = "readiness_probed_at";

struct Status {
    checked: Option<Instant>,
    result: Result<(), Unavailable>,
}

/// The health of one replica's database.
pub struct DbHealth {
    db: Db,
    url: String,
    status: Mutex<Status>,
    /// Set while the last probe could not reach the database: requests fail fast.
    unreachable: AtomicBool,
    /// One probe at a time.
    probing: tokio::sync::Mutex<()>,
    /// Whether a background probe (after a failure, or until recovery) is running.
    watching: AtomicBool,
}

impl DbHealth {
    /// Health for the pools of `db`, opened from `url` (used to name the cause when a pool
    /// cannot connect).
    pub fn new(db: Db, url: &str) -> Arc<Self> {
        Arc::new(Self {
            db,
            url: url.to_owned(),
            status: Mutex::new(Status {
                checked: None,
                result: Ok(()),
            }),
            unreachable: AtomicBool::new(false),
            probing: tokio::sync::Mutex::new(()),
            watching: AtomicBool::new(false),
        })
    }

    /// Refuses a request at once while the database is known to be unreachable.
    ///
    /// # Errors
    /// `SERVICE_UNAVAILABLE` while the last probe could not reach the database.
    pub fn gate(self: &Arc<Self>) -> AppResult<()> {
        if !self.unreachable.load(Ordering::Acquire) {
            return Ok(());
        }
        self.watch();
        let cause = match self.lock().result {
            Err(unavailable) => unavailable,
            Ok(()) => Unavailable::Unreachable("the database is unreachable"),
        };
        Err(AppError::ServiceUnavailable {
            cause,
            detail: None,
        })
    }

    /// Takes note that a request just failed because of the database: pings pooled
    /// connections before use for a while, and probes the database in the background (once),
    /// so readiness and [`DbHealth::gate`] learn of it without waiting.
    pub fn suspect(self: &Arc<Self>) {
        // The failure may have been a connection the database cut: the probe, and the
        // requests after it, should not each take another such connection.
        self.db.distrust_connections();
        self.watch();
    }

    /// Whether a write can be committed now: the cached answer if it is fresh, or a new probe.
    ///
    /// # Errors
    /// Why the database cannot take a write.
    pub async fn readiness(self: &Arc<Self>) -> Result<(), Unavailable> {
        if let Some(result) = self.fresh() {
            return result;
        }
        let _one_at_a_time = self.probing.lock().await;
        // Another probe may have answered while this one waited.
        if let Some(result) = self.fresh() {
            return result;
        }
        let result = self.probe().await;
        let was_unreachable = self.unreachable.load(Ordering::Acquire);
        let previous = std::mem::replace(
            &mut *self.lock(),
            Status {
                checked: Some(Instant::now()),
                result,
            },
        );
        let unreachable = matches!(result, Err(Unavailable::Unreachable(_)));
        self.unreachable.store(unreachable, Ordering::Release);
        match (previous.result, result) {
            (_, Err(now)) if previous.result != result => {
                tracing::error!(cause = now.cause(), "database unavailable");
            }
            (Err(_), Ok(())) => tracing::info!("database available again"),
            _ => {}
        }
        if unreachable && !was_unreachable {
            self.watch();
        }
        result
    }

    fn fresh(&self) -> Option<Result<(), Unavailable>> {
        let status = self.lock();
        status
            .checked
            .filter(|at| at.elapsed() < PROBE_CACHE)
            .map(|_| status.result)
    }

    /// Probes in the background until the database can be written again (at least once).
    fn watch(self: &Arc<Self>) {
        if self.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let health = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(health) = health.upgrade() else {
                    return;
                };
                let result = health.readiness().await;
                if result.is_ok() {
                    health.watching.store(false, Ordering::Release);
                    return;
                }
                drop(health);
                tokio::time::sleep(RECOVERY_PROBE_EVERY).await;
            }
        });
    }

    /// Commits a one-row write on the writer, then reads on the reader pool; on failure, says
    /// why as precisely as it can.
    async fn probe(&self) -> Result<(), Unavailable> {
        let written = tokio::time::timeout(PROBE_TIMEOUT, async {
            write_probe(&self.db).await?;
            read_probe(&self.db).await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(AppError::ServiceUnavailable { cause, .. })) => {
                if cause.cause() == POOL_TIMED_OUT {
                    Err(self.diagnose().await.unwrap_or(cause))
                } else {
                    Err(cause)
                }
            }
            Ok(Err(other)) => {
                tracing::error!(error = ?other, "the readiness probe failed");
                Err(Unavailable::Unwritable("the readiness probe failed"))
            }
            Err(_) => Err(self.diagnose().await.unwrap_or(Unavailable::Unwritable(
                "the database did not commit a write and answer a read within 2 s",
            ))),
        }
    }

    /// Why a new PostgreSQL connection fails, if it does: a pool that cannot connect only
    /// says that it timed out.
    async fn diagnose(&self) -> Option<Unavailable> {
        use sea_orm::sqlx::Connection;
        if self.db.get_database_backend() != DbBackend::Postgres {
            return None;
        }
        let connect = sea_orm::sqlx::PgConnection::connect(&self.url);
        match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                None
            }
            Ok(Err(err)) => Some(
                sqlx_cause(&err)
                    .unwrap_or(Unavailable::Unreachable("cannot connect to the database")),
            ),
            Err(_) => Some(Unavailable::Unreachable(
                "the database did not accept a connection within 2 s",
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn write_probe(db: &Db) -> AppResult<()> {
    write(db, async |txn| {
        txn.execute_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            // `$N` placeholders mean the same on SQLite and PostgreSQL.
            "INSERT INTO app_meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [PROBE_KEY.into(), Utc::now().to_rfc3339().into()],
        ))
        .await?;
        Ok(())
    })
    .await
}

async fn read_probe(db: &Db) -> AppResult<()> {
    db.reader()
        .query_one_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT value FROM app_meta WHERE key = $1",
            [PROBE_KEY.into()],
        ))
        .await?;
    Ok(())
}
