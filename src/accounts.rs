//! Accounts: registration, sign-in, listing and roles.

use std::net::IpAddr;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, SqlErr, Statement, TransactionTrait,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::{
    auth::{PasswordHasher, Revocations, throttle},
    entities::account,
    error::{AppError, AppResult},
    pagination::{Page, PageRequest, read_page},
    role::Role,
    validation,
};

/// The one answer to every failed sign-in, whatever the reason.
pub const INVALID_CREDENTIALS: &str = "invalid username or password";

/// What a new account is made of, as the client sent it.
pub struct NewAccount<'a> {
    pub username: &'a str,
    pub password: String,
    pub email: Option<&'a str>,
    pub role: Role,
}

/// Validates and stores a new account.
///
/// The password is hashed before the insert, so a taken username costs the same time as a free
/// one; the database's unique indexes decide who wins a race.
///
/// # Errors
/// `BAD_USER_INPUT` for a rule the input breaks, `CONFLICT` for a taken username or email.
pub async fn register(
    db: &DatabaseConnection,
    hasher: &PasswordHasher,
    new: NewAccount<'_>,
) -> AppResult<account::Model> {
    let username_normalized = validation::username(new.username)?;
    let email = new.email.map(validation::email).transpose()?;
    let user_inputs = validation::user_inputs(new.username, new.email);
    validation::new_password(&new.password, "password", user_inputs).await?;
    let password_hash = hasher.hash(new.password).await?;
    let now = Utc::now();
    let (email, email_normalized) = email.unzip();
    let account = account::ActiveModel {
        id: Set(Uuid::now_v7()),
        username: Set(new.username.to_owned()),
        username_normalized: Set(username_normalized),
        email: Set(email),
        email_normalized: Set(email_normalized),
        password_hash: Set(password_hash),
        role: Set(new.role.as_str().to_owned()),
        token_version: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    };
    account
        .insert(db)
        .await
        .map_err(unique_violation_to_conflict)
}

/// Checks a username and password typed from `client`, throttled per (username, client
/// address) and per username: the attempt is counted before the password is verified.
///
/// # Errors
/// `UNAUTHENTICATED` with the same message for an unknown user and a wrong password, after the
/// same argon2 work in both cases; `TOO_MANY_REQUESTS` while the username is locked for this
/// address or for every address (known or not, so the lock reveals nothing), or when the
/// hashing queue is full.
pub async fn authenticate(
    db: &DatabaseConnection,
    hasher: &PasswordHasher,
    username: &str,
    password: String,
    client: IpAddr,
) -> AppResult<account::Model> {
    let attempt = throttle::reserve(
        db,
        vec![
            (
                throttle::address_key(username, client),
                throttle::PER_ADDRESS,
            ),
            (throttle::username_key(username), throttle::PER_USERNAME),
        ],
    )
    .await?;
    let account = match validation::username(username) {
        Ok(normalized) => find_by_username(db, &normalized).await?,
        Err(_) => None,
    };
    let stored_hash = account.as_ref().map(|a| a.password_hash.clone());
    let verified = match hasher.verify(password, stored_hash).await {
        Ok(verified) => verified,
        Err(err) => {
            attempt.release().await?;
            return Err(err);
        }
    };
    match account {
        Some(account) if verified => {
            attempt.succeeded().await?;
            Ok(account)
        }
        _ => {
            attempt.failed().await?;
            Err(AppError::Unauthenticated(INVALID_CREDENTIALS))
        }
    }
}

/// Checks the signed-in account's current password, then ends every access token issued
/// before and stores the new password. Returns the updated account.
///
/// Throttled per account, never by sign-in failures (strangers cannot lock a signed-in user
/// out of changing their password): one change at a time, and wrong current passwords lock
/// the change like failed sign-ins lock a sign-in.
///
/// Revocation comes first: if storing the password then fails, the worst outcome is a caller
/// who must sign in again, never an old token that outlives a password change.
///
/// # Errors
/// `BAD_USER_INPUT` on `currentPassword` when it is wrong (counted) or on `newPassword` when it
/// breaks a rule; `TOO_MANY_REQUESTS` while locked, while another change of this account is
/// running, or when the hashing queue is full.
pub async fn change_password(
    db: &DatabaseConnection,
    hasher: &PasswordHasher,
    revocations: &Revocations,
    id: Uuid,
    current: String,
    new: String,
) -> AppResult<account::Model> {
    // Reserved before anything else: a flood of changes is refused without a query each.
    let attempt = throttle::reserve(
        db,
        vec![(throttle::password_change_key(id), throttle::PASSWORD_CHANGE)],
    )
    .await?;
    let Some(account) = find(db, id).await? else {
        attempt.release().await?;
        return Err(AppError::Unauthenticated("this account no longer exists"));
    };
    let verified = match hasher
        .verify(current, Some(account.password_hash.clone()))
        .await
    {
        Ok(verified) => verified,
        Err(err) => {
            attempt.release().await?;
            return Err(err);
        }
    };
    if !verified {
        attempt.failed().await?;
        return Err(AppError::BadUserInput {
            field: "currentPassword",
            message: "the current password is wrong".to_owned(),
        });
    }
    // The reservation is held until the new hash is stored: one change at a time.
    let changed = store_new_password(db, hasher, revocations, account, new).await;
    attempt.succeeded().await?;
    changed
}

async fn store_new_password(
    db: &DatabaseConnection,
    hasher: &PasswordHasher,
    revocations: &Revocations,
    account: account::Model,
    new: String,
) -> AppResult<account::Model> {
    let user_inputs = validation::user_inputs(&account.username, account.email.as_deref());
    validation::new_password(&new, "newPassword", user_inputs).await?;
    let password_hash = hasher.hash(new).await?;
    let account = revoke_access_tokens(db, revocations, account.id).await?;
    let mut active: account::ActiveModel = account.into();
    active.password_hash = Set(password_hash);
    active.updated_at = Set(Utc::now());
    Ok(active.update(db).await?)
}

/// Raises an account's token version (every access token issued before stops working) and
/// tells every replica. Returns the account.
///
/// # Errors
/// `NOT_FOUND` when there is no such account; internal on a database failure.
pub async fn revoke_access_tokens(
    db: &DatabaseConnection,
    revocations: &Revocations,
    id: Uuid,
) -> AppResult<account::Model> {
    account::Entity::update_many()
        .col_expr(
            account::Column::TokenVersion,
            Expr::col(account::Column::TokenVersion).add(1),
        )
        .filter(account::Column::Id.eq(id))
        .exec(db)
        .await?;
    let account = find(db, id).await?.ok_or(AppError::NotFound("account"))?;
    revocations
        .revoke_account_tokens(db, id, account.token_version)
        .await?;
    Ok(account)
}

/// The account with this id, if any.
///
/// # Errors
/// Internal, on a database failure.
pub async fn find(db: &DatabaseConnection, id: Uuid) -> AppResult<Option<account::Model>> {
    Ok(account::Entity::find_by_id(id).one(db).await?)
}

/// The accounts with these ids (missing ones are skipped).
///
/// # Errors
/// Internal, on a database failure.
pub async fn find_many(
    db: &DatabaseConnection,
    ids: &[Uuid],
) -> Result<Vec<account::Model>, DbErr> {
    account::Entity::find()
        .filter(account::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await
}

async fn find_by_username(
    db: &DatabaseConnection,
    normalized: &str,
) -> AppResult<Option<account::Model>> {
    Ok(account::Entity::find()
        .filter(account::Column::UsernameNormalized.eq(normalized))
        .one(db)
        .await?)
}

/// One page of accounts in creation order.
///
/// # Errors
/// Internal, on a database failure.
pub async fn page(
    db: &DatabaseConnection,
    request: PageRequest,
    with_total: bool,
) -> AppResult<Page<account::Model>> {
    read_page(
        db,
        account::Entity::find(),
        account::Column::Id,
        request,
        with_total,
    )
    .await
}

/// Gives an account a new role. Its access tokens issued before stop working at once (on
/// every replica), so a demoted admin's old token can no longer do admin things; its sessions
/// stay, and a refresh brings a token with the new role.
///
/// # Errors
/// `NOT_FOUND` when there is no such account; `CONFLICT` when it would leave no admin.
pub async fn set_role(
    db: &DatabaseConnection,
    revocations: &Revocations,
    id: Uuid,
    role: Role,
) -> AppResult<account::Model> {
    let account = find(db, id).await?.ok_or(AppError::NotFound("account"))?;
    if account.role == role.as_str() {
        return Ok(account);
    }
    if Role::from_name(&account.role) == Some(Role::Admin) {
        let admins = account::Entity::find()
            .filter(account::Column::Role.eq(Role::Admin.as_str()))
            .count(db)
            .await?;
        if admins <= 1 {
            return Err(AppError::Conflict {
                field: "role",
                message: "cannot remove the last admin",
            });
        }
    }
    // Revoke first: if the role update then fails, old tokens are dead anyway (safe), rather
    // than a demoted admin's token outliving the change.
    revoke_access_tokens(db, revocations, id).await?;
    if !update_role_keeping_an_admin(db, id, role).await? {
        return Err(AppError::Conflict {
            field: "role",
            message: "cannot remove the last admin",
        });
    }
    find(db, id).await?.ok_or(AppError::NotFound("account"))
}

/// An arbitrary constant naming the role-change lock in `pg_advisory_xact_lock`.
const ROLE_CHANGE_LOCK_KEY: i64 = 0x5354_4f52_524f_4c45; // "STORROLE"

/// Sets the role in one statement that refuses to demote the last admin, so two demotions
/// racing each other cannot both pass the check. On PostgreSQL role changes also take an
/// advisory lock, as its statement snapshots would otherwise let both see two admins; SQLite
/// runs one writer at a time. Returns false when the change would leave no admin.
async fn update_role_keeping_an_admin(
    db: &DatabaseConnection,
    id: Uuid,
    role: Role,
) -> AppResult<bool> {
    let backend = db.get_database_backend();
    let txn = db.begin().await?;
    if backend == DbBackend::Postgres {
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            "SELECT pg_advisory_xact_lock($1)",
            [ROLE_CHANGE_LOCK_KEY.into()],
        ))
        .await?;
    }
    let updated = txn
        .execute_raw(Statement::from_sql_and_values(
            backend,
            "UPDATE accounts SET role = $1, updated_at = $2
             WHERE id = $3
               AND ($1 = 'admin' OR role <> 'admin'
                    OR (SELECT COUNT(*) FROM accounts WHERE role = 'admin') > 1)",
            [role.as_str().into(), Utc::now().into(), id.into()],
        ))
        .await?;
    txn.commit().await?;
    Ok(updated.rows_affected() == 1)
}

/// Promotes the account with this username to admin, if there is one.
///
/// # Errors
/// `BAD_USER_INPUT` for a malformed username.
pub async fn promote_to_admin(
    db: &DatabaseConnection,
    username: &str,
) -> AppResult<Option<account::Model>> {
    let normalized = validation::username(username)?;
    match find_by_username(db, &normalized).await? {
        // The CLI has no replica to tell; the revocation row reaches the running servers.
        Some(existing) => Ok(Some(
            set_role(db, &Revocations::default(), existing.id, Role::Admin).await?,
        )),
        None => Ok(None),
    }
}

/// Creates an admin account, or promotes the existing account with this username to admin
/// (its password unchanged). Returns the account and whether it was created.
///
/// # Errors
/// As [`register`] for a new account; `BAD_USER_INPUT` for a malformed username.
pub async fn create_or_promote_admin(
    db: &DatabaseConnection,
    hasher: &PasswordHasher,
    username: &str,
    password: String,
) -> AppResult<(account::Model, bool)> {
    if let Some(promoted) = promote_to_admin(db, username).await? {
        return Ok((promoted, false));
    }
    let new = NewAccount {
        username,
        password,
        email: None,
        role: Role::Admin,
    };
    Ok((register(db, hasher, new).await?, true))
}

/// Maps a unique-index violation to `CONFLICT` on the field whose index it was; the database's
/// own text is never shown.
fn unique_violation_to_conflict(err: DbErr) -> AppError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(detail)) if detail.contains("email") => {
            AppError::Conflict {
                field: "email",
                message: "this email is already registered",
            }
        }
        Some(SqlErr::UniqueConstraintViolation(_)) => AppError::Conflict {
            field: "username",
            message: "this username is taken",
        },
        _ => err.into(),
    }
}
