//! Sessions: each sign-in starts one, holding a rotating refresh token. Spending a refresh
//! token twice ends its whole session (the thief's copy and the victim's alike), except the
//! token just spent, presented again within `REFRESH_REUSE_INTERVAL_SECS`: that answers the
//! same new pair (see [`Sessions::refresh`]).

mod successor;

use std::{net::IpAddr, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use rand::RngCore;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::Expr,
};
use uuid::Uuid;

pub use successor::SuccessorKeys;

use crate::{
    accounts::{self, Accounts, NewAccount},
    auth::{AccessToken, IpRateLimiter, Revocations, TokenService, sha256_hex},
    db,
    entities::{account, refresh_token, session},
    error::{AppError, AppResult, AuthFailure},
    metrics::{LoginOutcome, Metrics},
    role::Role,
};

/// The answer to every refused refresh token, whatever the reason.
const INVALID_REFRESH: &str =
    "the refresh token is invalid, expired or already used; sign in again";

/// How refresh tokens live: their lifetime, the interval in which the one just spent answers
/// again, and the keys their successors are derived with.
#[derive(Clone, Debug)]
pub struct RefreshPolicy {
    pub ttl: Duration,
    /// `REFRESH_REUSE_INTERVAL_SECS`; zero turns it off.
    pub reuse_interval: Duration,
    pub successor_keys: SuccessorKeys,
}

impl RefreshPolicy {
    /// The policy `config` sets.
    pub fn from_config(config: &crate::config::Auth) -> Self {
        Self {
            ttl: config.refresh_token_ttl,
            reuse_interval: config.refresh_reuse_interval,
            successor_keys: SuccessorKeys::new(&config.jwt_secret, &config.jwt_previous_secrets),
        }
    }
}

/// A signed-in session's tokens.
pub struct SignedIn {
    pub account: account::Model,
    pub access: AccessToken,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
}

/// Sessions: sign-in, refresh, sign-out, and the account changes that end sessions. Built on
/// [`Accounts`] (and its database and revocation list); owns the token issuer, the per-address
/// limit on credential checks and the sign-in metrics; writes the audit log lines.
pub struct Sessions {
    accounts: Accounts,
    tokens: Arc<TokenService>,
    refresh: RefreshPolicy,
    ip_limiter: IpRateLimiter,
    metrics: Arc<Metrics>,
}

impl Sessions {
    pub fn new(
        accounts: Accounts,
        tokens: Arc<TokenService>,
        refresh: RefreshPolicy,
        ip_limiter: IpRateLimiter,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            accounts,
            tokens,
            refresh,
            ip_limiter,
            metrics,
        }
    }

    /// Registers an account from `client` and signs it in.
    ///
    /// # Errors
    /// `TOO_MANY_REQUESTS` beyond the per-address limit; as [`Accounts::register`] and
    /// [`Sessions::start`].
    pub async fn register(&self, client: IpAddr, new: NewAccount<'_>) -> AppResult<SignedIn> {
        self.ip_limiter.check(client)?;
        let account = self.accounts.register(new).await?;
        tracing::info!(target: crate::AUDIT_TARGET, audit = "register", account_id = %account.id, "account registered");
        self.start(account).await
    }

    /// Signs in with a username and password typed from `client`, starting a new session.
    ///
    /// # Errors
    /// `TOO_MANY_REQUESTS` beyond the per-address limit or while the username is locked; as
    /// [`Accounts::authenticate`] and [`Sessions::start`].
    pub async fn login(
        &self,
        client: IpAddr,
        username: &str,
        password: String,
    ) -> AppResult<SignedIn> {
        if let Err(err) = self.ip_limiter.check(client) {
            self.metrics.record_login(LoginOutcome::Throttled);
            return Err(err);
        }
        let account = match self.accounts.authenticate(username, password, client).await {
            Ok(account) => account,
            Err(err) => {
                let outcome = match err {
                    AppError::TooManyRequests { .. } => LoginOutcome::Throttled,
                    _ => LoginOutcome::Failure,
                };
                self.metrics.record_login(outcome);
                tracing::info!(target: crate::AUDIT_TARGET, audit = "login", outcome = err.code(), "sign-in refused");
                return Err(err);
            }
        };
        // Signed in once the session is stored, not before.
        let signed_in = self.start(account).await?;
        self.metrics.record_login(LoginOutcome::Success);
        tracing::info!(target: crate::AUDIT_TARGET, audit = "login", outcome = "ok", account_id = %signed_in.account.id, "signed in");
        Ok(signed_in)
    }

    /// Ends the caller's session (see [`Sessions::end`]).
    ///
    /// # Errors
    /// As [`Sessions::end`].
    pub async fn logout(&self, account_id: Uuid, session_id: Uuid) -> AppResult<()> {
        self.end(account_id, session_id, "logout").await?;
        tracing::info!(target: crate::AUDIT_TARGET, audit = "logout", %account_id, "session ended");
        Ok(())
    }

    /// Ends the session `presented` (one of its refresh tokens, current or spent, expired or
    /// not) belongs to: a client can sign out without a working access token. Ending an ended
    /// session again changes nothing.
    ///
    /// # Errors
    /// `TOO_MANY_REQUESTS` beyond the per-address limit (for `client`); `UNAUTHENTICATED`
    /// (`TOKEN_INVALID`) for a token that names no session; as [`Sessions::end`].
    pub async fn logout_with_refresh_token(
        &self,
        client: IpAddr,
        presented: &str,
    ) -> AppResult<()> {
        self.ip_limiter.check(client)?;
        let db = self.accounts.db().writer();
        let session = match find_refresh_token(db, &hash_token(presented)).await? {
            Some(token) => {
                session::Entity::find_by_id(token.session_id)
                    .one(db)
                    .await?
            }
            None => None,
        };
        let Some(session) = session else {
            return Err(AppError::Unauthenticated(
                AuthFailure::TokenInvalid,
                INVALID_REFRESH,
            ));
        };
        if session.revoked_at.is_none() {
            self.logout(session.account_id, session.id).await?;
        }
        Ok(())
    }

    /// Ends every session of the caller's account (see [`Sessions::end_all`]).
    ///
    /// # Errors
    /// As [`Sessions::end_all`].
    pub async fn logout_all(&self, account_id: Uuid) -> AppResult<()> {
        self.end_all(account_id, "logout all").await?;
        tracing::info!(target: crate::AUDIT_TARGET, audit = "logout_all", %account_id, "every session ended");
        Ok(())
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
    pub async fn start(&self, account: account::Model) -> AppResult<SignedIn> {
        db::write(self.accounts.db(), async |txn| {
            let current = accounts::find_for_update(txn, account.id)
                .await?
                .filter(|current| {
                    current.password_hash == account.password_hash
                        && current.deactivated_at.is_none()
                })
                .ok_or(AppError::Unauthenticated(
                    AuthFailure::InvalidCredentials,
                    accounts::INVALID_CREDENTIALS,
                ))?;
            self.start_in(txn, current).await
        })
        .await
    }

    /// Stores a new session and its first tokens in the caller's transaction.
    async fn start_in(
        &self,
        txn: &impl ConnectionTrait,
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
        self.issue(txn, account, session_id).await
    }

    /// Spends a refresh token and returns a new pair in the same session.
    ///
    /// The session's row is held, then the token read, checked, spent and its successor stored,
    /// all in one transaction: a `logout` or `logoutAll` running at the same time either comes
    /// first (and the refresh is refused) or after (and ends the new tokens too), and concurrent
    /// refreshes with one token take turns, each seeing what the one before it committed.
    ///
    /// Within the reuse interval after a token was spent, presenting it again answers the pair
    /// its refresh answered (see [`Sessions::answer_again`]), so two tabs, a retry or a double
    /// effect do not end the session.
    ///
    /// # Errors
    /// `TOO_MANY_REQUESTS` beyond the per-address limit (for `client`); `UNAUTHENTICATED` for an
    /// unknown token (`TOKEN_INVALID`) or an expired or spent one, or an ended session
    /// (`SESSION_ENDED`). A spent token presented again otherwise ends its session and is logged
    /// as a security event.
    pub async fn refresh(&self, client: IpAddr, presented: &str) -> AppResult<SignedIn> {
        self.ip_limiter.check(client)?;
        let token_hash = hash_token(presented);
        let outcome = db::write(self.accounts.db(), async |txn| {
            let Some(found) = find_refresh_token(txn, &token_hash).await? else {
                return Ok(Err(Refused::Unknown));
            };
            let Some(session) = session::Entity::find_by_id(found.session_id)
                .lock_exclusive()
                .one(txn)
                .await?
            else {
                return Ok(Err(Refused::Unknown));
            };
            // Read again once the session is held: a refresh that held it before has committed.
            let Some(token) = refresh_token::Entity::find_by_id(found.id).one(txn).await? else {
                return Ok(Err(Refused::Unknown));
            };
            if session.revoked_at.is_some() {
                return Ok(Err(Refused::Ended));
            }
            let now = Utc::now();
            if let Some(used_at) = token.used_at {
                return self
                    .answer_again(txn, &session, &token, presented, used_at)
                    .await;
            }
            if token.expires_at <= now {
                return Ok(Err(Refused::Ended));
            }
            let Some(account) = accounts::find(txn, session.account_id)
                .await?
                .filter(|account| account.deactivated_at.is_none())
            else {
                return Ok(Err(Refused::Ended));
            };
            let successor_id = Uuid::now_v7();
            let spent = refresh_token::Entity::update_many()
                .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
                .col_expr(refresh_token::Column::ReplacedBy, Expr::value(successor_id))
                .filter(refresh_token::Column::Id.eq(token.id))
                .filter(refresh_token::Column::UsedAt.is_null())
                .exec(txn)
                .await?;
            if spent.rows_affected != 1 {
                return Ok(Err(Refused::Reused(session)));
            }
            let successor = Successor {
                id: successor_id,
                token: self
                    .refresh
                    .successor_keys
                    .successor(presented, successor_id),
            };
            Ok(Ok(self
                .issue_with(txn, account, session.id, Some(successor))
                .await?))
        })
        .await?;
        match outcome {
            Ok(signed_in) => Ok(signed_in),
            Err(Refused::Unknown) => Err(AppError::Unauthenticated(
                AuthFailure::TokenInvalid,
                INVALID_REFRESH,
            )),
            Err(Refused::Ended) => Err(AppError::Unauthenticated(
                AuthFailure::SessionEnded,
                INVALID_REFRESH,
            )),
            Err(Refused::Reused(session)) => Err(self.reuse_detected(&session).await),
        }
    }

    /// The answer to a spent refresh token presented again: the pair its refresh answered, when
    /// it was spent less than the reuse interval ago and its successor is the session's live
    /// token (unspent, unexpired); otherwise reuse, which ends the session.
    ///
    /// The pair is made again rather than kept: the refresh token from the presented one (see
    /// [`SuccessorKeys`]), checked against the stored hash; the access token signed again from
    /// the claims stored with it, which gives the identical token.
    async fn answer_again(
        &self,
        txn: &impl ConnectionTrait,
        session: &session::Model,
        spent: &refresh_token::Model,
        presented: &str,
        used_at: chrono::DateTime<Utc>,
    ) -> AppResult<Result<SignedIn, Refused>> {
        let reused = || Ok(Err(Refused::Reused(session.clone())));
        let now = Utc::now();
        let interval =
            chrono::Duration::from_std(self.refresh.reuse_interval).map_err(AppError::internal)?;
        if interval.is_zero() || now >= used_at + interval {
            return reused();
        }
        let Some(successor_id) = spent.replaced_by else {
            return reused();
        };
        let Some(successor) = refresh_token::Entity::find_by_id(successor_id)
            .one(txn)
            .await?
            .filter(|successor| successor.used_at.is_none() && successor.expires_at > now)
        else {
            // Spent too: the presented token is two generations old.
            return reused();
        };
        let Some(token) = self
            .refresh
            .successor_keys
            .candidates(presented, successor_id)
            .find(|candidate| hash_token(candidate) == successor.token_hash)
        else {
            return reused();
        };
        let access = match &successor.access_claims {
            Some(claims) => self.tokens.reissue_access_token(claims)?,
            None => None,
        };
        let Some(access) = access else {
            return reused();
        };
        let Some(account) = accounts::find(txn, session.account_id)
            .await?
            .filter(|account| account.deactivated_at.is_none())
        else {
            return Ok(Err(Refused::Ended));
        };
        tracing::info!(
            security_event = "refresh_token_retry",
            account_id = %session.account_id,
            session_id = %session.id,
            "a refresh token spent moments ago was presented again; answered the same pair"
        );
        db::observe::note_credentials_issued();
        Ok(Ok(SignedIn {
            account,
            access,
            refresh_token: token,
            refresh_expires_in: (successor.expires_at - now).num_seconds(),
        }))
    }

    async fn reuse_detected(&self, session: &session::Model) -> AppError {
        tracing::warn!(
            security_event = "refresh_token_reuse",
            account_id = %session.account_id,
            session_id = %session.id,
            "a spent refresh token was presented again; the whole session is ended"
        );
        match self
            .end(session.account_id, session.id, "refresh token reuse")
            .await
        {
            Ok(()) => AppError::Unauthenticated(AuthFailure::SessionEnded, INVALID_REFRESH),
            Err(err) => err,
        }
    }

    /// Ends one session: its refresh tokens stop working, and its access tokens too, at once.
    ///
    /// # Errors
    /// `SERVICE_UNAVAILABLE` when the end could not be stored (the session goes on then).
    pub async fn end(&self, account_id: Uuid, session_id: Uuid, reason: &str) -> AppResult<()> {
        let revoked = db::write(self.accounts.db(), async |txn| {
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
        self.accounts.revocations().apply_committed(&[revoked]);
        Ok(())
    }

    /// Ends every session of an account and every access token issued to it before now, in one
    /// transaction.
    ///
    /// # Errors
    /// `SERVICE_UNAVAILABLE` when it could not be stored (nothing ends then).
    pub async fn end_all(&self, account_id: Uuid, reason: &str) -> AppResult<()> {
        let revoked = db::write(self.accounts.db(), async |txn| {
            let (_, revoked) = accounts::revoke_access_tokens(txn, account_id)
                .await
                .map_err(|err| match err {
                    AppError::NotFound(_) => {
                        AppError::Unauthenticated(AuthFailure::SessionEnded, accounts::GONE)
                    }
                    err => err,
                })?;
            end_sessions_of(txn, account_id, reason).await?;
            Ok(revoked)
        })
        .await?;
        self.accounts.revocations().apply_committed(&[revoked]);
        Ok(())
    }

    /// Changes the account's password, ends every session and every access token issued before,
    /// and starts a new session for the caller: all in one transaction, after the current password
    /// was checked.
    ///
    /// # Errors
    /// `TOO_MANY_REQUESTS` beyond the per-address limit (for `client`); as
    /// [`Accounts::change_password`] and [`accounts::store_password_change`];
    /// `SERVICE_UNAVAILABLE` when it could not be stored (the old password stays then).
    pub async fn change_password(
        &self,
        client: IpAddr,
        account_id: Uuid,
        current: String,
        new: String,
    ) -> AppResult<SignedIn> {
        self.ip_limiter.check(client)?;
        let (change, attempt) = self
            .accounts
            .change_password(account_id, current, new)
            .await?;
        let stored = db::write(self.accounts.db(), async |txn| {
            let (account, revoked) = accounts::store_password_change(txn, change).await?;
            end_sessions_of(txn, account.id, "password change").await?;
            Ok((self.start_in(txn, account).await?, revoked))
        })
        .await;
        // Held until the change is stored (or refused): one change of an account at a time.
        attempt.succeeded().await?;
        let (signed_in, revoked) = stored?;
        self.accounts.revocations().apply_committed(&[revoked]);
        tracing::info!(target: crate::AUDIT_TARGET, audit = "change_password", %account_id, "password changed; sessions ended");
        Ok(signed_in)
    }

    /// Deactivates an account (see [`accounts::deactivate`]) and ends its sessions, in one
    /// transaction: once this returns, none of its tokens works on this replica, and on the others
    /// after their next revocation poll.
    ///
    /// # Errors
    /// As [`accounts::deactivate`]; `SERVICE_UNAVAILABLE` when it could not be stored (nothing
    /// changes then).
    pub async fn deactivate(
        &self,
        actor: Option<Uuid>,
        account_id: Uuid,
    ) -> AppResult<account::Model> {
        let (account, revoked) = db::write(self.accounts.db(), async |txn| {
            let (account, revoked) =
                accounts::deactivate(txn, &self.accounts, actor, account_id).await?;
            end_sessions_of(txn, account_id, "account deactivated").await?;
            Ok((account, revoked))
        })
        .await?;
        if let Some(revoked) = revoked {
            self.accounts.revocations().apply_committed(&[revoked]);
        }
        tracing::info!(target: crate::AUDIT_TARGET, audit = "deactivate_account", ?actor, %account_id, "account deactivated");
        Ok(account)
    }

    /// Deletes the signed-in account once its current password is checked: its sessions, refresh
    /// tokens and access tokens end with it, in one transaction.
    ///
    /// # Errors
    /// `TOO_MANY_REQUESTS` beyond the per-address limit (for `client`); as
    /// [`Accounts::check_current_password`] and [`accounts::delete`]; `SERVICE_UNAVAILABLE`
    /// when it could not be stored (the account stays then).
    pub async fn delete_account(
        &self,
        client: IpAddr,
        account_id: Uuid,
        current: String,
    ) -> AppResult<()> {
        self.ip_limiter.check(client)?;
        let (checked, attempt) = self
            .accounts
            .check_current_password(account_id, current)
            .await?;
        let deleted = db::write(self.accounts.db(), async |txn| {
            accounts::delete(txn, &self.accounts, &checked).await
        })
        .await;
        // Held until the deletion is stored (or refused): one such change of an account at a time.
        attempt.succeeded().await?;
        self.accounts.revocations().apply_committed(&[deleted?]);
        tracing::info!(target: crate::AUDIT_TARGET, audit = "delete_account", %account_id, "account deleted");
        Ok(())
    }

    /// A new access token and refresh token for the session, the refresh token stored in the
    /// caller's transaction.
    async fn issue(
        &self,
        txn: &impl ConnectionTrait,
        account: account::Model,
        session_id: Uuid,
    ) -> AppResult<SignedIn> {
        self.issue_with(txn, account, session_id, None).await
    }

    /// As [`Sessions::issue`], with the refresh token `successor` when it replaces a spent one
    /// (a new random one otherwise).
    async fn issue_with(
        &self,
        txn: &impl ConnectionTrait,
        account: account::Model,
        session_id: Uuid,
        successor: Option<Successor>,
    ) -> AppResult<SignedIn> {
        // Every token is issued here: none for an account deactivated in the meantime (callers
        // read `account` in the transaction that stores the tokens, so this is current).
        if account.deactivated_at.is_some() {
            return Err(AppError::Unauthenticated(
                AuthFailure::SessionEnded,
                accounts::GONE,
            ));
        }
        // Stored roles were well-formed when stored; one that is not (an edit by hand) signs
        // nobody in.
        let role = Role::parse(&account.role)
            .ok_or_else(|| AppError::internal("an account has a malformed role"))?;
        let access =
            self.tokens
                .issue_access_token(account.id, &role, session_id, account.token_version)?;
        let Successor {
            id,
            token: refresh_token,
        } = successor.unwrap_or_else(|| Successor {
            id: Uuid::now_v7(),
            token: new_refresh_token(),
        });
        // Tokens are not kept as an `Idempotency-Key`'s answer.
        db::observe::note_credentials_issued();
        let ttl = chrono::Duration::from_std(self.refresh.ttl).map_err(AppError::internal)?;
        let now = Utc::now();
        refresh_token::Entity::insert(refresh_token::ActiveModel {
            id: Set(id),
            session_id: Set(session_id),
            token_hash: Set(hash_token(&refresh_token)),
            created_at: Set(now),
            expires_at: Set(now + ttl),
            used_at: Set(None),
            replaced_by: Set(None),
            access_claims: Set(Some(access.claims.clone())),
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
}

/// Why a refresh was refused.
enum Refused {
    /// No such token (`TOKEN_INVALID`).
    Unknown,
    /// The token expired, or its session or account ended (`SESSION_ENDED`).
    Ended,
    /// A spent token came back: the whole session must end.
    Reused(session::Model),
}

/// The refresh token that replaces a spent one, and the id it is stored under.
struct Successor {
    id: Uuid,
    token: String,
}

/// The refresh token stored under `token_hash`.
async fn find_refresh_token(
    db: &impl ConnectionTrait,
    token_hash: &str,
) -> AppResult<Option<refresh_token::Model>> {
    Ok(refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(token_hash))
        .one(db)
        .await?)
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
