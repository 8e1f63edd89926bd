//! `Idempotency-Key` (the IETF draft "The Idempotency-Key HTTP Header Field", with Stripe's
//! semantics): a signed-in client that sends a request again with the same key within
//! [`RETENTION_MS`] gets the first answer back, and the request does not run twice.
//!
//! The key lives in the database, so every replica honours it:
//! 1. [`begin`] claims (account, key) by inserting a row; the primary key decides which of
//!    several concurrent duplicates runs. A duplicate finds the row: the stored answer when
//!    there is one, `CONFLICT` while the first is still running or when its body differs.
//! 2. The request runs inside [`scope`]. Every [`crate::db::write`] in it calls
//!    [`Claim::before_commit`] (through [`db::observe`]), which marks the row "committed" in the same transaction as the change,
//!    and refuses the write if this attempt no longer holds the key.
//! 3. [`finish`] stores the answer, or gives the key back when the attempt failed in a way
//!    worth retrying and committed nothing.
//!
//! A server killed between a commit and [`finish`] leaves a row that is neither answered nor
//! running. Once its lease (the request timeout plus [`LEASE_MARGIN`]) is over, a retry runs
//! the request again if nothing was committed, and otherwise is told the answer was lost: the
//! change is never made twice.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::http::HeaderMap;
use chrono::Utc;
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set, TryInsertResult,
    sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    db::{self, Db, observe::WriteObserver},
    entities::idempotency_key::{self, Column},
    error::{AppError, AppResult},
};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The response header that marks a stored answer sent again.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// The name errors about the key give in `extensions.field`.
pub const FIELD: &str = "Idempotency-Key";
/// The largest answer kept for a key; a larger one is kept as a `CONFLICT` saying so (a retry
/// then reads the current state instead). Bounds what one request can make the database keep.
pub const MAX_STORED_BYTES: usize = 16 * 1024;
/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 255;
/// How long a key counts from its first use; the pruner deletes older rows.
pub const RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
/// Added to the request timeout before an unanswered claim counts as abandoned: room for
/// claiming and storing around the request, and for clocks of replicas that disagree a little.
pub const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// A well-formed key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// The key in `headers`, if there is one. Both the draft's form (a structured-field
    /// string, `"abc"`) and Stripe's (the bare token, `abc`) are accepted.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` (field `Idempotency-Key`) when the header is repeated, or the key is
    /// empty, longer than [`MAX_KEY_BYTES`] or not printable ASCII.
    pub fn from_headers(headers: &HeaderMap) -> AppResult<Option<Self>> {
        let mut values = headers.get_all(HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(invalid("send one Idempotency-Key header, not several"));
        }
        Self::parse(value.as_bytes()).map(Some)
    }

    fn parse(value: &[u8]) -> AppResult<Self> {
        let printable = |b: &u8| (0x20..=0x7e).contains(b);
        let key = match value {
            [b'"', inner @ .., b'"'] => unquote(inner)
                .ok_or_else(|| invalid("the quoted Idempotency-Key has a stray quote or escape"))?,
            _ => value.to_vec(),
        };
        if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.iter().all(printable) {
            return Err(invalid(&format!(
                "an Idempotency-Key is 1 to {MAX_KEY_BYTES} printable ASCII characters"
            )));
        }
        Ok(Self(
            String::from_utf8(key).expect("printable ASCII is UTF-8"),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The content of a structured-field string between its quotes: `\"` and `\\` are the only
/// escapes, and a bare quote is not allowed.
fn unquote(inner: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(&escaped @ (b'"' | b'\\')) => out.push(escaped),
                _ => return None,
            },
            b'"' => return None,
            _ => out.push(b),
        }
    }
    Some(out)
}

fn invalid(message: &str) -> AppError {
    AppError::bad_input(FIELD, message)
}

/// This attempt's hold on a key: writes and the answer are accepted only from it.
#[derive(Clone, Debug)]
pub struct Claim {
    account_id: Uuid,
    key: String,
    claim_id: Uuid,
    /// Set when the request issued tokens (see [`db::observe::note_credentials_issued`]).
    credentials: Arc<AtomicBool>,
}

impl Claim {
    /// The condition that matches this attempt's row while it still holds the key.
    fn held(&self) -> sea_orm::Condition {
        sea_orm::Condition::all()
            .add(Column::AccountId.eq(self.account_id))
            .add(Column::Key.eq(self.key.clone()))
            .add(Column::ClaimId.eq(self.claim_id))
    }

    /// Whether the request issued tokens: its answer holds credentials, which are never
    /// stored (refresh tokens are kept only as hashes).
    pub fn issued_credentials(&self) -> bool {
        self.credentials.load(Ordering::Acquire)
    }
}

/// A stored answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// What [`begin`] decided.
#[derive(Debug)]
pub enum Begin {
    /// This attempt holds the key: run the request, then [`finish`].
    Run(Claim),
    /// The key was answered before: send this again.
    Replay(Stored),
}

/// Why a request with a key was not run (`AnswerLost` and `Withheld` are also stored as a key's
/// answer).
#[derive(Debug)]
pub enum Refusal {
    /// The key was used with a different body.
    Mismatch,
    /// Another attempt with this key is running.
    InProgress,
    /// An earlier attempt committed changes but its answer was never stored.
    AnswerLost,
    /// An earlier attempt ran, and its answer held credentials, which are not stored.
    Withheld,
    /// An earlier attempt changed data, and its answer was larger than [`MAX_STORED_BYTES`].
    TooLarge,
    /// The database could not be asked.
    Failed(AppError),
}

impl From<AppError> for Refusal {
    fn from(err: AppError) -> Self {
        Self::Failed(err)
    }
}

impl Refusal {
    /// The error a client is sent.
    pub fn into_error(self) -> AppError {
        let message = match self {
            Self::Mismatch => {
                "this Idempotency-Key was already used with a different request; \
                 use a new key for a new request"
            }
            Self::InProgress => "a request with this Idempotency-Key is in progress; retry later",
            Self::AnswerLost => {
                "a request with this Idempotency-Key changed data, but its answer was lost; \
                 it will not run again: read the current state, or use a new key"
            }
            Self::TooLarge => {
                "a request with this Idempotency-Key changed data; its answer was larger than \
                 16 KiB and was not kept; it will not run again: read the current state, or \
                 use a new key"
            }
            Self::Withheld => {
                "a request with this Idempotency-Key ran, and its answer held new tokens, which \
                 are never stored; it will not run again: sign in to get new tokens"
            }
            Self::Failed(err) => return err,
        };
        AppError::Conflict {
            field: FIELD,
            message,
        }
    }
}

/// Claims `key` for `account_id`, or finds what an earlier request with it left.
///
/// Rows older than [`RETENTION_MS`] do not count. An unanswered row whose `lease` is over was
/// abandoned (the server stopped): it is taken over when its attempt committed nothing.
///
/// # Errors
/// A [`Refusal`]: the body differs from the first request's, the first is still running (or
/// another duplicate took the key over at the same moment), or its answer was lost.
pub async fn begin(
    db: &Db,
    account_id: Uuid,
    key: &Key,
    fingerprint: &str,
    lease: Duration,
) -> Result<Begin, Refusal> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    // A row can vanish between the insert that found it and the read (its attempt gave the
    // key back): then claim again.
    for _ in 0..3 {
        let now = Utc::now().timestamp_millis();
        let claim = Claim {
            account_id,
            key: key.0.clone(),
            claim_id: Uuid::new_v4(),
            credentials: Arc::default(),
        };
        let decided = db::write(db, async |txn| {
            let row = idempotency_key::ActiveModel {
                account_id: Set(account_id),
                key: Set(claim.key.clone()),
                fingerprint: Set(fingerprint.to_owned()),
                claim_id: Set(claim.claim_id),
                created_at_ms: Set(now),
                committed: Set(false),
                response_status: Set(None),
                response_content_type: Set(None),
                response_body: Set(None),
            };
            let inserted = idempotency_key::Entity::insert(row)
                .on_conflict_do_nothing_on([Column::AccountId, Column::Key])
                .exec_without_returning(txn)
                .await?;
            if matches!(inserted, TryInsertResult::Inserted(1)) {
                return Ok(Some(Ok(Begin::Run(claim.clone()))));
            }
            let Some(found) = idempotency_key::Entity::find_by_id((account_id, claim.key.clone()))
                .one(txn)
                .await?
            else {
                return Ok(None);
            };
            let expired = found.created_at_ms < now - RETENTION_MS;
            if !expired {
                if found.fingerprint != fingerprint {
                    return Ok(Some(Err(Refusal::Mismatch)));
                }
                if let (Some(status), Some(content_type), Some(body)) = (
                    found.response_status,
                    found.response_content_type,
                    found.response_body,
                ) {
                    return Ok(Some(Ok(Begin::Replay(Stored {
                        status: u16::try_from(status).unwrap_or(500),
                        content_type,
                        body,
                    }))));
                }
                if found.created_at_ms >= now - lease_ms {
                    return Ok(Some(Err(Refusal::InProgress)));
                }
                if found.committed {
                    return Ok(Some(Err(Refusal::AnswerLost)));
                }
            }
            // Expired, or abandoned without a change: this attempt takes the key over, unless
            // another did so first.
            let taken = idempotency_key::Entity::update_many()
                .col_expr(Column::Fingerprint, Expr::value(fingerprint))
                .col_expr(Column::ClaimId, Expr::value(claim.claim_id))
                .col_expr(Column::CreatedAtMs, Expr::value(now))
                .col_expr(Column::Committed, Expr::value(false))
                .col_expr(Column::ResponseStatus, Expr::value(Option::<i32>::None))
                .col_expr(
                    Column::ResponseContentType,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(Column::ResponseBody, Expr::value(Option::<String>::None))
                .filter(Column::AccountId.eq(account_id))
                .filter(Column::Key.eq(claim.key.clone()))
                .filter(Column::ClaimId.eq(found.claim_id))
                .exec(txn)
                .await?
                .rows_affected;
            Ok(Some(if taken == 1 {
                Ok(Begin::Run(claim.clone()))
            } else {
                Err(Refusal::InProgress)
            }))
        })
        .await?;
        if let Some(decided) = decided {
            return decided;
        }
    }
    Err(Refusal::InProgress)
}

impl WriteObserver for Claim {
    /// Marks this claim as committed, inside `txn`, so a change and the record that it
    /// happened commit together.
    ///
    /// # Errors
    /// `CONFLICT` when this attempt no longer holds the key (it gave it back after a timeout,
    /// or a retry took it over): the write must not commit then. A database failure otherwise.
    fn before_commit<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
    ) -> Pin<Box<dyn Future<Output = AppResult<()>> + Send + 'a>> {
        Box::pin(async move {
            let marked = idempotency_key::Entity::update_many()
                .col_expr(Column::Committed, Expr::value(true))
                .filter(self.held())
                .exec(txn)
                .await?
                .rows_affected;
            if marked == 1 {
                Ok(())
            } else {
                tracing::warn!(
                    "a write was refused: its request no longer holds its Idempotency-Key"
                );
                Err(AppError::Conflict {
                    field: FIELD,
                    message: "this request no longer holds its Idempotency-Key; nothing was changed",
                })
            }
        })
    }

    fn credentials_issued(&self) {
        self.credentials.store(true, Ordering::Release);
    }
}

/// Runs `work` (a request) under `claim`: its writes mark the claim committed (see
/// [`Claim::before_commit`]).
pub async fn scope<F: Future>(claim: Option<Claim>, work: F) -> F::Output {
    let observer = claim.map(|claim| Arc::new(claim) as Arc<dyn WriteObserver>);
    db::observe::observed(observer, work).await
}

/// Ends `claim`. An attempt that committed nothing gives the key back: running it again changes
/// nothing either, so a retry simply runs (and the database keeps no answer for requests that
/// only read or were refused). An attempt that committed something stores `answer` as the
/// key's answer from now on. Does nothing if the claim was taken over meanwhile.
///
/// # Errors
/// On a database failure; the row then stays unanswered and its lease decides (see [`begin`]).
pub async fn finish(db: &Db, claim: &Claim, answer: Stored) -> AppResult<()> {
    let stored = db::write(db, async |txn| {
        let released = idempotency_key::Entity::delete_many()
            .filter(claim.held())
            .filter(Column::Committed.eq(false))
            .exec(txn)
            .await?
            .rows_affected;
        if released == 1 {
            return Ok(true);
        }
        let rows = idempotency_key::Entity::update_many()
            .col_expr(
                Column::ResponseStatus,
                Expr::value(i32::from(answer.status)),
            )
            .col_expr(
                Column::ResponseContentType,
                Expr::value(answer.content_type),
            )
            .col_expr(Column::ResponseBody, Expr::value(answer.body))
            .filter(claim.held())
            .exec(txn)
            .await?
            .rows_affected;
        Ok(rows == 1)
    })
    .await?;
    if !stored {
        tracing::warn!("an answer was not stored: its Idempotency-Key was taken over");
    }
    Ok(())
}

/// Deletes keys older than [`RETENTION_MS`], in `txn`; returns how many.
///
/// # Errors
/// On a database failure.
pub async fn prune(txn: &DatabaseTransaction, now_ms: i64) -> AppResult<u64> {
    Ok(idempotency_key::Entity::delete_many()
        .filter(Column::CreatedAtMs.lt(now_ms - RETENTION_MS))
        .exec(txn)
        .await?
        .rows_affected)
}

/// The fingerprint of a request body: SHA-256, hex.
pub fn fingerprint(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii_bare_or_quoted() {
        let parse = |v: &[u8]| Key::parse(v).map(|k| k.0);
        assert_eq!(parse(b"abc-123").unwrap(), "abc-123");
        assert_eq!(parse(b"\"abc 123\"").unwrap(), "abc 123");
        assert_eq!(parse(br#""a\"b\\c""#).unwrap(), r#"a"b\c"#);
        assert_eq!(parse(&[b'k'; 255]).unwrap().len(), 255);
        for bad in [
            &b""[..],
            b"\"\"",
            &[b'k'; 256],
            b"tab\there",
            "caf\u{e9}".as_bytes(),
            br#""a"b""#,
            br#""a\nb""#,
        ] {
            let err = Key::parse(bad).unwrap_err();
            assert!(
                matches!(err, AppError::BadUserInput { field: FIELD, .. }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn fingerprints_are_sha256_hex() {
        assert_eq!(
            fingerprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
