//! Housekeeping: rows that can no longer matter are deleted, so the security tables do not grow
//! without bound, and audit records past their retention. Every replica may run it; each delete
//! is idempotent.

use std::time::Duration;

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::ExprTrait};

use crate::{
    audit,
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
    pub audit_events: u64,
}

/// Deletes revocations older than an access token's lifetime, expired refresh tokens, sessions
/// ended more than a week ago (their refresh tokens go with them), and throttle rows whose
/// failures are forgotten and whose lock has run out, `Idempotency-Key`s older than 24 h, and
/// audit records older than `audit_retention` (none when it is `None`).
///
/// # Errors
/// On a database failure (nothing is deleted then).
pub async fn prune(db: &Db, audit_retention: Option<Duration>) -> AppResult<Pruned> {
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
            audit_events: match audit_retention {
                Some(retention) => audit::prune(db, now, retention).await?,
                None => 0,
            },
        })
    })
    .await
}

/// How long start-up waits for its prune; a longer one (a lock held elsewhere) goes on in the
/// background while the server starts answering.
const FIRST_PRUNE_WAIT: Duration = Duration::from_secs(10);

/// Prunes once, before the server answers anything, then every [`PRUNE_EVERY`] for as long as
/// the process runs (audit records older than `audit_retention`, when it is set). The first
/// prune is awaited (up to [`FIRST_PRUNE_WAIT`]) so that it cannot land in the middle of what
/// the server does next (a test that ages a record by hand saw a start-up prune delayed by
/// load delete it first).
pub async fn start_pruner(
    db: Db,
    audit_retention: Option<Duration>,
) -> tokio::task::JoinHandle<()> {
    let first = tokio::spawn(prune_and_log(db.clone(), audit_retention));
    if tokio::time::timeout(FIRST_PRUNE_WAIT, first).await.is_err() {
        tracing::warn!("the start-up prune is still running; it goes on in the background");
    }
    tokio::spawn(async move {
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + PRUNE_EVERY, PRUNE_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            prune_and_log(db.clone(), audit_retention).await;
        }
    })
}

async fn prune_and_log(db: Db, audit_retention: Option<Duration>) {
    match prune(&db, audit_retention).await {
        Ok(pruned) => tracing::debug!(?pruned, "pruned expired security rows"),
        Err(err) => tracing::warn!(error = ?err, "pruning failed; will retry"),
    }
}
