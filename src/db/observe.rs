//! What the request running in a task learns about its writes. [`write`](super::write) calls
//! the task's observer inside every transaction, just before it commits, so a record of the
//! change commits with it (the `Idempotency-Key` of the request, see `crate::idempotency`).
//! Defined here, and set by the layer above, so the database layer imports no request handling.

use std::{future::Future, pin::Pin, sync::Arc};

use sea_orm::DatabaseTransaction;

use crate::error::AppResult;

/// What one request wants to know about the writes it makes.
pub trait WriteObserver: Send + Sync {
    /// Runs inside a write transaction that is about to commit; an error rolls it back.
    fn before_commit<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
    ) -> Pin<Box<dyn Future<Output = AppResult<()>> + Send + 'a>>;

    /// The request issued credentials (tokens): its answer must not be kept anywhere.
    fn credentials_issued(&self);
}

tokio::task_local! {
    static OBSERVER: Option<Arc<dyn WriteObserver>>;
}

/// Runs `work` (a request) with `observer` told of its writes.
pub async fn observed<F: Future>(observer: Option<Arc<dyn WriteObserver>>, work: F) -> F::Output {
    OBSERVER.scope(observer, work).await
}

/// Runs `work` as no part of the request's change: bookkeeping (such as the sign-in
/// throttle's) that a retry may repeat without harm and that must not make a request final.
pub async fn unobserved<F: Future>(work: F) -> F::Output {
    OBSERVER.scope(None, work).await
}

/// Notes that the request running in this task issued credentials.
pub fn note_credentials_issued() {
    if let Ok(Some(observer)) = OBSERVER.try_with(Clone::clone) {
        observer.credentials_issued();
    }
}

/// Tells the task's observer, if any, that `txn` is about to commit.
pub(super) async fn before_commit(txn: &DatabaseTransaction) -> AppResult<()> {
    match OBSERVER.try_with(Clone::clone) {
        Ok(Some(observer)) => observer.before_commit(txn).await,
        _ => Ok(()),
    }
}
