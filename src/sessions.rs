//! Sessions: each sign-in starts one, holding a rotating refresh token. Spending a refresh
//! token twice ends its whole session (the thief's copy and the victim's alike).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use rand::RngCore;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    accounts,
    app::AppState,
    auth::{AccessToken, Revocations, sha256_hex},
    db,
    entities::{account, refresh_token, session},
    error::{AppError, AppResult},
    role::Role,
};

/// The answer to every refused refresh token, whatever the reason.
const INVALID_REFRESH: &str =
    "the refresh token is invalid, expired or already used; sign in again";

/// A signed-in session's tokens.
pub struct SignedIn {
    pub account: account::Model,
    pub access: AccessToken,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
}

/// Starts a new session for an authenticated account, as it was when its password was checked.
///
/// The session is stored only if the password checked is still the account's and the account
/// is still active: a password change or deactivation committed since the check refuses the
/// sign-in instead of outliving it. The tokens carry the role and token version read in the
/// same transaction.
///
/// # Errors
/// `UNAUTHENTICATED` when the password changed (or the account went or was deactivated) since
/// it was checked;
/// `SERVICE_UNAVAILABLE` when the session could not be stored.
pub async fn start(state: &AppState, account: account::Model) -> AppResult<SignedIn> {
    db::write(&state.db, async |txn| {
        let current = accounts::find_for_update(txn, account.id)
            .await?
            .filter(|current| {
                current.password_hash == account.password_hash && current.deactivated_at.is_none()
            })
            .ok_or(AppError::Unauthenticated(accounts::INVALID_CREDENTIALS))?;
        start_in(txn, state, current).await
    })
    .await
}

/// Stores a new session and its first tokens in the caller's transaction.
async fn start_in(
    txn: &impl ConnectionTrait,
    state: &AppState,
    account: account::Model,
) -> AppResult<SignedIn> {
    let session_id = Uuid::now_v7();
    session::Entity::insert(session::ActiveModel {
        id: Set(session_id),
        account_id: Set(account.id),
        created_at: Set(Utc::now()),
        revoked_at: Set(None),
        revoked_reason: Set(None),
    })
    .exec_without_returning(txn)
    .await?;
    issue(txn, state, account, session_id).await
}

/// Why a refresh was refused.
enum Refused {
    Invalid,
    /// A spent token came back: the whole session must end.
    Reused(session::Model),
}

/// Spends a refresh token and returns a new pair in the same session.
///
/// The token is spent, the session and account read and the new token stored in one
/// transaction holding the session's row, so a `logout` or `logoutAll` running at the same time
/// either comes first (and the refresh is refused) or after (and ends the new tokens too).
///
/// # Errors
/// `UNAUTHENTICATED` for an unknown, expired or spent token, or an ended session. A spent token
/// presented again ends its session and is logged as a security event.
pub async fn refresh(state: &AppState, presented: &str) -> AppResult<SignedIn> {
    let token_hash = hash_token(presented);
    let outcome = db::write(&state.db, async |txn| {
        let Some(token) = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(token_hash.as_str()))
            .one(txn)
            .await?
        else {
            return Ok(Err(Refused::Invalid));
        };
        let Some(session) = session::Entity::find_by_id(token.session_id)
            .lock_exclusive()
            .one(txn)
            .await?
        else {
            return Ok(Err(Refused::Invalid));
        };
        if session.revoked_at.is_some() {
            return Ok(Err(Refused::Invalid));
        }
        if token.used_at.is_some() {
            return Ok(Err(Refused::Reused(session)));
        }
        if token.expires_at <= Utc::now() {
            return Ok(Err(Refused::Invalid));
        }
        // Spend it; if another request spent it first, that is reuse too.
        let spent = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(Utc::now()))
            .filter(refresh_token::Column::Id.eq(token.id))
            .filter(refresh_token::Column::UsedAt.is_null())
            .exec(txn)
            .await?;
        if spent.rows_affected != 1 {
            return Ok(Err(Refused::Reused(session)));
        }
        let Some(account) = accounts::find(txn, session.account_id)
            .await?
            .filter(|account| account.deactivated_at.is_none())
        else {
            return Ok(Err(Refused::Invalid));
        };
        Ok(Ok(issue(txn, state, account, session.id).await?))
    })
    .await?;
    match outcome {
        Ok(signed_in) => Ok(signed_in),
        Err(Refused::Invalid) => Err(AppError::Unauthenticated(INVALID_REFRESH)),
        Err(Refused::Reused(session)) => Err(reuse_detected(state, &session).await),
    }
}

async fn reuse_detected(state: &AppState, session: &session::Model) -> AppError {
    tracing::warn!(
        security_event = "refresh_token_reuse",
        account_id = %session.account_id,
        session_id = %session.id,
        "a spent refresh token was presented again; the whole session is ended"
    );
    match end(state, session.account_id, session.id, "refresh token reuse").await {
        Ok(()) => AppError::Unauthenticated(INVALID_REFRESH),
        Err(err) => err,
    }
}

/// Ends one session: its refresh tokens stop working, and its access tokens too, at once.
///
/// # Errors
/// `SERVICE_UNAVAILABLE` when the end could not be stored (the session goes on then).
pub async fn end(
    state: &AppState,
    account_id: Uuid,
    session_id: Uuid,
    reason: &str,
) -> AppResult<()> {
    let revoked = db::write(&state.db, async |txn| {
        let revoked = Revocations::revoke_session(txn, account_id, session_id).await?;
        session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
            .col_expr(session::Column::RevokedReason, Expr::value(reason))
            .filter(session::Column::Id.eq(session_id))
            .filter(session::Column::RevokedAt.is_null())
            .exec(txn)
            .await?;
        Ok(revoked)
    })
    .await?;
    state.revocations.apply_committed(&[revoked]);
    Ok(())
}

/// Ends every session of an account and every access token issued to it before now, in one
/// transaction.
///
/// # Errors
/// `SERVICE_UNAVAILABLE` when it could not be stored (nothing ends then).
pub async fn end_all(state: &AppState, account_id: Uuid, reason: &str) -> AppResult<()> {
    let revoked = db::write(&state.db, async |txn| {
        let (_, revoked) = accounts::revoke_access_tokens(txn, account_id)
            .await
            .map_err(|err| match err {
                AppError::NotFound(_) => AppError::Unauthenticated(accounts::GONE),
                err => err,
            })?;
        end_sessions_of(txn, account_id, reason).await?;
        Ok(revoked)
    })
    .await?;
    state.revocations.apply_committed(&[revoked]);
    Ok(())
}

/// Changes the account's password, ends every session and every access token issued before,
/// and starts a new session for the caller: all in one transaction, after the current password
/// was checked.
///
/// # Errors
/// As [`accounts::change_password`] and [`accounts::store_password_change`];
/// `SERVICE_UNAVAILABLE` when it could not be stored (the old password stays then).
pub async fn change_password(
    state: &AppState,
    account_id: Uuid,
    current: String,
    new: String,
) -> AppResult<SignedIn> {
    let (change, attempt) =
        accounts::change_password(&state.db, &state.passwords, account_id, current, new).await?;
    let stored = db::write(&state.db, async |txn| {
        let (account, revoked) = accounts::store_password_change(txn, change).await?;
        end_sessions_of(txn, account.id, "password change").await?;
        Ok((start_in(txn, state, account).await?, revoked))
    })
    .await;
    // Held until the change is stored (or refused): one change of an account at a time.
    attempt.succeeded().await?;
    let (signed_in, revoked) = stored?;
    state.revocations.apply_committed(&[revoked]);
    Ok(signed_in)
}

/// Deactivates an account (see [`accounts::deactivate`]) and ends its sessions, in one
/// transaction: once this returns, none of its tokens works on this replica, and on the others
/// after their next revocation poll.
///
/// # Errors
/// As [`accounts::deactivate`]; `SERVICE_UNAVAILABLE` when it could not be stored (nothing
/// changes then).
pub async fn deactivate(state: &AppState, account_id: Uuid) -> AppResult<account::Model> {
    let (account, revoked) = db::write(&state.db, async |txn| {
        let (account, revoked) = accounts::deactivate(txn, account_id).await?;
        end_sessions_of(txn, account_id, "account deactivated").await?;
        Ok((account, revoked))
    })
    .await?;
    if let Some(revoked) = revoked {
        state.revocations.apply_committed(&[revoked]);
    }
    Ok(account)
}

/// Deletes the signed-in account once its current password is checked: its sessions, refresh
/// tokens and access tokens end with it, in one transaction.
///
/// # Errors
/// As [`accounts::check_current_password`] and [`accounts::delete`]; `SERVICE_UNAVAILABLE`
/// when it could not be stored (the account stays then).
pub async fn delete_account(state: &AppState, account_id: Uuid, current: String) -> AppResult<()> {
    let (checked, attempt) =
        accounts::check_current_password(&state.db, &state.passwords, account_id, current).await?;
    let deleted = db::write(&state.db, async |txn| accounts::delete(txn, &checked).await).await;
    // Held until the deletion is stored (or refused): one such change of an account at a time.
    attempt.succeeded().await?;
    state.revocations.apply_committed(&[deleted?]);
    Ok(())
}

/// Marks every open session of the account ended (their refresh tokens die with them), in the
/// caller's transaction.
///
/// # Errors
/// Internal, on a database failure.
pub async fn end_sessions_of(
    txn: &impl ConnectionTrait,
    account_id: Uuid,
    reason: &str,
) -> AppResult<()> {
    session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
        .col_expr(session::Column::RevokedReason, Expr::value(reason))
        .filter(session::Column::AccountId.eq(account_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(txn)
        .await?;
    Ok(())
}

/// A new access token and refresh token for the session, the refresh token stored in the
/// caller's transaction.
async fn issue(
    txn: &impl ConnectionTrait,
    state: &AppState,
    account: account::Model,
    session_id: Uuid,
) -> AppResult<SignedIn> {
    // Every token is issued here: none for an account deactivated in the meantime (callers
    // read `account` in the transaction that stores the tokens, so this is current).
    if account.deactivated_at.is_some() {
        return Err(AppError::Unauthenticated(accounts::GONE));
    }
    let role = Role::from_name(&account.role).unwrap_or(Role::User);
    let access =
        state
            .tokens
            .issue_access_token(account.id, role, session_id, account.token_version)?;
    let refresh_token = new_refresh_token();
    // Tokens are not kept as an `Idempotency-Key`'s answer.
    db::observe::note_credentials_issued();
    let ttl = chrono::Duration::from_std(state.refresh_token_ttl).map_err(AppError::internal)?;
    let now = Utc::now();
    refresh_token::Entity::insert(refresh_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        session_id: Set(session_id),
        token_hash: Set(hash_token(&refresh_token)),
        created_at: Set(now),
        expires_at: Set(now + ttl),
        used_at: Set(None),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(SignedIn {
        account,
        access,
        refresh_token,
        refresh_expires_in: ttl.num_seconds(),
    })
}

/// 256 random bits, base64url: opaque, and never a JWT.
fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Refresh tokens are stored only as their SHA-256 (256 random bits need no slow hash).
fn hash_token(token: &str) -> String {
    sha256_hex(token.as_bytes())
}
