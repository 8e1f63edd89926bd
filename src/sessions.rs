//! Sessions: each sign-in starts one, holding a rotating refresh token. Spending a refresh
//! token twice ends its whole session (the thief's copy and the victim's alike).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    accounts,
    app::AppState,
    auth::{AccessToken, sha256_hex},
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

/// Starts a new session for an authenticated account.
///
/// # Errors
/// Internal, on a database failure.
pub async fn start(state: &AppState, account: account::Model) -> AppResult<SignedIn> {
    let session_id = Uuid::now_v7();
    session::ActiveModel {
        id: Set(session_id),
        account_id: Set(account.id),
        created_at: Set(Utc::now()),
        revoked_at: Set(None),
        revoked_reason: Set(None),
    }
    .insert(&state.db)
    .await?;
    issue(state, account, session_id).await
}

/// Spends a refresh token and returns a new pair in the same session.
///
/// # Errors
/// `UNAUTHENTICATED` for an unknown, expired or spent token, or an ended session. A spent token
/// presented again ends its session and is logged as a security event.
pub async fn refresh(state: &AppState, presented: &str) -> AppResult<SignedIn> {
    let db = &state.db;
    let invalid = || AppError::Unauthenticated(INVALID_REFRESH);
    let token = refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(hash_token(presented)))
        .one(db)
        .await?
        .ok_or_else(invalid)?;
    let session = session::Entity::find_by_id(token.session_id)
        .one(db)
        .await?
        .ok_or_else(invalid)?;
    if session.revoked_at.is_some() {
        return Err(invalid());
    }
    if token.used_at.is_some() {
        return Err(reuse_detected(state, &session).await);
    }
    if token.expires_at <= Utc::now() {
        return Err(invalid());
    }
    // Spend it; if another request spent it first, that is reuse too.
    let spent = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(Utc::now()))
        .filter(refresh_token::Column::Id.eq(token.id))
        .filter(refresh_token::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    if spent.rows_affected != 1 {
        return Err(reuse_detected(state, &session).await);
    }
    let account = accounts::find(db, session.account_id)
        .await?
        .ok_or_else(invalid)?;
    issue(state, account, session.id).await
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
/// Internal, on a database failure.
pub async fn end(
    state: &AppState,
    account_id: Uuid,
    session_id: Uuid,
    reason: &str,
) -> AppResult<()> {
    state
        .revocations
        .revoke_session(&state.db, account_id, session_id)
        .await?;
    session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
        .col_expr(session::Column::RevokedReason, Expr::value(reason))
        .filter(session::Column::Id.eq(session_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(&state.db)
        .await?;
    Ok(())
}

/// Ends every session of an account and every access token issued to it before now.
///
/// # Errors
/// Internal, on a database failure.
pub async fn end_all(state: &AppState, account_id: Uuid, reason: &str) -> AppResult<()> {
    accounts::revoke_access_tokens(&state.db, &state.revocations, account_id).await?;
    end_sessions_of(&state.db, account_id, reason).await
}

/// Changes the account's password, ends every session and every access token issued before,
/// and starts a new session for the caller.
///
/// # Errors
/// As [`accounts::change_password`].
pub async fn change_password(
    state: &AppState,
    account_id: Uuid,
    current: String,
    new: String,
) -> AppResult<SignedIn> {
    let account = accounts::change_password(
        &state.db,
        &state.passwords,
        &state.revocations,
        account_id,
        current,
        new,
    )
    .await?;
    end_sessions_of(&state.db, account.id, "password change").await?;
    start(state, account).await
}

/// Marks every open session of the account ended (their refresh tokens die with them).
///
/// # Errors
/// Internal, on a database failure.
pub async fn end_sessions_of(
    db: &DatabaseConnection,
    account_id: Uuid,
    reason: &str,
) -> AppResult<()> {
    session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
        .col_expr(session::Column::RevokedReason, Expr::value(reason))
        .filter(session::Column::AccountId.eq(account_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(())
}

/// A new access token and refresh token for the session.
async fn issue(state: &AppState, account: account::Model, session_id: Uuid) -> AppResult<SignedIn> {
    let role = Role::from_name(&account.role).unwrap_or(Role::User);
    let access =
        state
            .tokens
            .issue_access_token(account.id, role, session_id, account.token_version)?;
    let refresh_token = new_refresh_token();
    let ttl = chrono::Duration::from_std(state.refresh_token_ttl).map_err(AppError::internal)?;
    let now = Utc::now();
    refresh_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        session_id: Set(session_id),
        token_hash: Set(hash_token(&refresh_token)),
        created_at: Set(now),
        expires_at: Set(now + ttl),
        used_at: Set(None),
    }
    .insert(&state.db)
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
