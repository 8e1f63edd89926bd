//! Revocation that bites at once, on every replica, without a database query per request.
//!
//! Logout, logout-all, a password change and a role change append a row to `revocations`.
//! Each replica keeps the recent rows in memory and reads new ones every `REVOCATION_POLL_MS`
//! (250 ms by default), and at once when it hears that one was stored (PostgreSQL: a trigger
//! sends a notification, see `replicas`); an access token is checked against that memory only. A replica applies
//! its own revocations at once. Rows older than an access token's lifetime no longer matter
//! (every token they could reject has expired) and are forgotten.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use chrono::Utc;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QueryOrder,
};
use uuid::Uuid;

use super::jwt::{ACCESS_TOKEN_TTL_SECS, CLOCK_SKEW_SECS};
use crate::entities::revocation;

/// How long a revocation matters: an access token's lifetime, the skew, and a margin.
pub const RETENTION_MS: i64 = (ACCESS_TOKEN_TTL_SECS + CLOCK_SKEW_SECS as i64 + 60) * 1000;
/// Each poll re-reads this much of the past, so a row committed late (or stamped by a replica
/// whose clock is a little behind) is still seen. Applying a row twice changes nothing.
const POLL_OVERLAP_MS: i64 = 5_000;

#[derive(Default)]
struct State {
    /// Account → (lowest token version still valid, when the rule was made).
    min_versions: HashMap<Uuid, (i32, i64)>,
    /// Ended session → when it was ended.
    sessions: HashMap<Uuid, i64>,
    /// The start of the last poll.
    polled_at_ms: i64,
    /// The highest row id read so far.
    max_id: i64,
}

/// The revocations of the last hour, as this replica knows them.
#[derive(Default)]
pub struct Revocations {
    state: RwLock<State>,
}

impl Revocations {
    /// Reads the revocations that can still matter.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn load(db: &DatabaseConnection) -> Result<Arc<Self>, DbErr> {
        let revocations = Arc::new(Self::default());
        let newest = revocation::Entity::find()
            .order_by_desc(revocation::Column::Id)
            .one(db)
            .await?;
        revocations
            .state
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .max_id = newest.map_or(0, |row| row.id);
        revocations.read_since(db, now_ms() - RETENTION_MS).await?;
        Ok(revocations)
    }

    /// Whether an access token for this account, session and token version was revoked.
    pub fn is_revoked(&self, account_id: Uuid, session_id: Uuid, version: i32) -> bool {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.sessions.contains_key(&session_id)
            || state
                .min_versions
                .get(&account_id)
                .is_some_and(|(min, _)| version < *min)
    }

    /// Stores, in the caller's transaction, that every access token of one session is ended.
    /// Once the transaction has committed, hand the result to [`Revocations::apply_committed`].
    ///
    /// # Errors
    /// On a database failure.
    pub async fn revoke_session(
        db: &impl ConnectionTrait,
        account_id: Uuid,
        session_id: Uuid,
    ) -> Result<Revoked, DbErr> {
        record(db, account_id, Some(session_id), None).await
    }

    /// Stores, in the caller's transaction, that every access token of an account issued below
    /// `min_version` is ended. Once committed, hand it to [`Revocations::apply_committed`].
    ///
    /// # Errors
    /// On a database failure.
    pub async fn revoke_account_tokens(
        db: &impl ConnectionTrait,
        account_id: Uuid,
        min_version: i32,
    ) -> Result<Revoked, DbErr> {
        record(db, account_id, None, Some(min_version)).await
    }

    /// Makes committed revocations bite on this replica at once (the others read them from the
    /// database at their next poll).
    pub fn apply_committed(&self, revoked: &[Revoked]) {
        let rows: Vec<revocation::Model> = revoked.iter().map(|r| r.0.clone()).collect();
        self.apply(&rows);
    }

    /// Reads the rows other replicas added since the last poll.
    ///
    /// # Errors
    /// On a database failure; the next poll tries again from the same point.
    pub async fn poll(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        let since = self
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .polled_at_ms;
        self.read_since(db, since - POLL_OVERLAP_MS).await
    }

    /// Reads the rows stamped after `since_ms`, and every row added after the last one read.
    ///
    /// A row is stamped when it is written, which can be long before its transaction commits
    /// (an account deleted by hand in a transaction left open): the ids catch those. SQLite has
    /// one writer, so its ids grow in commit order; PostgreSQL's trigger for deleted accounts
    /// writes its row as the transaction commits, and rows the server writes commit within
    /// moments of their stamp, which the time overlap covers.
    async fn read_since(&self, db: &DatabaseConnection, since_ms: i64) -> Result<(), DbErr> {
        let started = now_ms();
        let max_id = self.state.read().unwrap_or_else(|e| e.into_inner()).max_id;
        let rows = revocation::Entity::find()
            .filter(
                Condition::any()
                    .add(revocation::Column::CreatedAtMs.gt(since_ms))
                    .add(revocation::Column::Id.gt(max_id)),
            )
            .all(db)
            .await?;
        self.apply(&rows);
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.polled_at_ms = started;
        state.max_id = rows.iter().map(|row| row.id).fold(state.max_id, i64::max);
        let horizon = started - RETENTION_MS;
        state.sessions.retain(|_, at| *at > horizon);
        state.min_versions.retain(|_, (_, at)| *at > horizon);
        Ok(())
    }

    fn apply(&self, rows: &[revocation::Model]) {
        if rows.is_empty() {
            return;
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        for row in rows {
            if let Some(session_id) = row.session_id {
                state.sessions.insert(session_id, row.created_at_ms);
            }
            if let Some(min) = row.min_token_version {
                let entry = state
                    .min_versions
                    .entry(row.account_id)
                    .or_insert((min, row.created_at_ms));
                if min >= entry.0 {
                    *entry = (min, row.created_at_ms.max(entry.1));
                }
            }
        }
    }

    /// Polls every `interval`, and when `wake` is woken (a revocation was heard of), for as
    /// long as the process runs.
    pub fn spawn_poller(
        self: &Arc<Self>,
        db: DatabaseConnection,
        interval: Duration,
        wake: crate::db::Wake,
    ) -> tokio::task::JoinHandle<()> {
        crate::db::poll_every(
            self,
            db,
            interval,
            wake,
            "revocations",
            async |revocations, db| revocations.poll(&db).await,
        )
    }
}

/// A revocation stored in a transaction that has not necessarily committed yet.
#[must_use = "apply it with `Revocations::apply_committed` once the transaction has committed"]
pub struct Revoked(revocation::Model);

async fn record(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    session_id: Option<Uuid>,
    min_token_version: Option<i32>,
) -> Result<Revoked, DbErr> {
    let created_at_ms = now_ms();
    let row = revocation::ActiveModel {
        id: NotSet,
        account_id: Set(account_id),
        session_id: Set(session_id),
        min_token_version: Set(min_token_version),
        created_at_ms: Set(created_at_ms),
    };
    revocation::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    // Applying needs only what was stored; the row's id does not matter.
    Ok(Revoked(revocation::Model {
        id: 0,
        account_id,
        session_id,
        min_token_version,
        created_at_ms,
    }))
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(account: Uuid, session: Option<Uuid>, version: Option<i32>) -> revocation::Model {
        revocation::Model {
            id: 1,
            account_id: account,
            session_id: session,
            min_token_version: version,
            created_at_ms: now_ms(),
        }
    }

    #[test]
    fn sessions_and_versions_are_revoked_and_nothing_else() {
        let revocations = Revocations::default();
        let (account, other, session) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        assert!(!revocations.is_revoked(account, session, 0));
        revocations.apply(&[row(account, Some(session), None)]);
        assert!(revocations.is_revoked(account, session, 5));
        assert!(!revocations.is_revoked(account, Uuid::now_v7(), 0));
        revocations.apply(&[row(other, None, Some(3))]);
        assert!(revocations.is_revoked(other, Uuid::now_v7(), 2));
        assert!(!revocations.is_revoked(other, Uuid::now_v7(), 3));
        // An older, lower version arriving late does not lower the bar.
        revocations.apply(&[row(other, None, Some(1))]);
        assert!(revocations.is_revoked(other, Uuid::now_v7(), 2));
    }
}
