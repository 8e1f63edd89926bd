//! Accounts: registration, sign-in, listing and roles.

use std::{net::IpAddr, sync::Arc};

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QuerySelect, SqlErr, Statement,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::{
    audit::{self, Action, Change, Entry},
    auth::{PasswordHasher, Revocations, revocation::Revoked, throttle},
    authz::SharedAuthorizer,
    db::{self, Db},
    entities::account,
    error::{AppError, AppResult, AuthFailure},
    pagination::{Page, PageRequest, read_page},
    role::Role,
    validation,
};

/// The one answer to every failed sign-in, whatever the reason.
pub const INVALID_CREDENTIALS: &str = "invalid username or password";

/// The answer to a signed-in caller whose account was deleted or deactivated since its token
/// was issued (the token is revoked; this covers requests already past that check).
pub const GONE: &str = crate::error::ACCOUNT_GONE;

/// What a new account is made of, as the client sent it.
pub struct NewAccount<'a> {
    pub username: &'a str,
    pub password: String,
    pub email: Option<&'a str>,
    /// The role to give; none gives the default role (`DEFAULT_ROLE`).
    pub role: Option<Role>,
}

/// Accounts: registration, sign-in, password checks, roles and activation. Owns the database,
/// the password hasher and this replica's revocation list.
#[derive(Clone)]
pub struct Accounts {
    db: Db,
    passwords: PasswordHasher,
    revocations: Arc<Revocations>,
    authz: Arc<SharedAuthorizer>,
    default_role: Role,
}

impl Accounts {
    /// The accounts in `db`, with the roles `authz`'s policy defines; `register` gives
    /// `default_role` (which the caller checked the policy defines).
    pub fn new(
        db: Db,
        passwords: PasswordHasher,
        revocations: Arc<Revocations>,
        authz: Arc<SharedAuthorizer>,
        default_role: Role,
    ) -> Self {
        Self {
            db,
            passwords,
            revocations,
            authz,
            default_role,
        }
    }

    /// The roles whose last active account keeps its role, per the policy in force, read in
    /// `txn` (which holds the role-change lock): with the policy in the database, the stored
    /// policy as it is now, even when this replica has not polled it yet.
    pub(crate) async fn managers(&self, txn: &impl ConnectionTrait) -> AppResult<Managers> {
        Ok(Managers(self.authz.current_in(txn).await?.managers()))
    }

    /// The database the accounts live in.
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// This replica's revocation list, which every change that ends tokens updates.
    pub(crate) fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// The account with this id, if any (read on a reader).
    ///
    /// # Errors
    /// Internal, on a database failure.
    pub async fn find(&self, id: Uuid) -> AppResult<Option<account::Model>> {
        find(self.db.reader(), id).await
    }

    /// The accounts with these ids that exist, in one query.
    ///
    /// # Errors
    /// Internal, on a database failure.
    pub async fn find_all(&self, ids: &[Uuid]) -> AppResult<Vec<account::Model>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(find_many(self.db.reader(), ids).await?)
    }

    /// Validates and stores a new account.
    ///
    /// The password is hashed before the insert, so a taken username costs the same time as a free
    /// one; the database's unique indexes decide who wins a race.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` for a rule the input breaks, `CONFLICT` for a taken username or email,
    /// `SERVICE_UNAVAILABLE` when it could not be stored.
    pub async fn register(&self, new: NewAccount<'_>) -> AppResult<account::Model> {
        let username_normalized = validation::username(new.username)?;
        let email = new.email.map(validation::email).transpose()?;
        let user_inputs = validation::user_inputs(new.username, new.email);
        validation::new_password(&new.password, "password", user_inputs).await?;
        let password_hash = self.passwords.hash(new.password).await?;
        let now = Utc::now();
        let (email, email_normalized) = email.unzip();
        let id = Uuid::now_v7();
        // A role chosen by an operator (`create-admin`) is a grant of power: on record.
        let granted = new.role.as_ref().map(|role| Entry {
            actor: None,
            action: Action::AccountCreate,
            entity_id: id.to_string(),
            changes: vec![Change::new("role", None, Some(role.to_string()))],
        });
        let account = account::ActiveModel {
            id: Set(id),
            username: Set(new.username.to_owned()),
            username_normalized: Set(username_normalized),
            email: Set(email),
            email_normalized: Set(email_normalized),
            password_hash: Set(password_hash),
            role: Set(new
                .role
                .unwrap_or_else(|| self.default_role.clone())
                .to_string()),
            token_version: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
            deactivated_at: Set(None),
        };
        db::write(&self.db, async |txn| {
            account::Entity::insert(account)
                .exec_without_returning(txn)
                .await
                .map_err(unique_violation_to_conflict)?;
            if let Some(entry) = granted {
                audit::record(txn, entry).await?;
            }
            find(txn, id)
                .await?
                .ok_or_else(|| AppError::internal("an inserted account was not found"))
        })
        .await
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
        &self,
        username: &str,
        password: String,
        client: IpAddr,
    ) -> AppResult<account::Model> {
        let attempt = throttle::reserve(
            &self.db,
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
            Ok(normalized) => find_by_username(&self.db, &normalized).await?,
            Err(_) => None,
        };
        let stored_hash = account.as_ref().map(|a| a.password_hash.clone());
        let verified = match self.passwords.verify(password, stored_hash).await {
            Ok(verified) => verified,
            Err(err) => {
                attempt.release().await?;
                return Err(err);
            }
        };
        match account {
            // A deactivated account is refused exactly like a wrong password, after the same work.
            Some(account) if verified && account.deactivated_at.is_none() => {
                attempt.succeeded().await?;
                Ok(account)
            }
            _ => {
                attempt.failed().await?;
                Err(AppError::Unauthenticated(
                    AuthFailure::InvalidCredentials,
                    INVALID_CREDENTIALS,
                ))
            }
        }
    }

    /// Checks the signed-in account's current password and hashes the new one. Storing it is
    /// [`store_password_change`]'s work, in the caller's transaction; the caller settles the
    /// returned attempt once that is done, so one change of an account runs at a time.
    ///
    /// Throttled as [`check_current_password`].
    ///
    /// # Errors
    /// As [`check_current_password`]; `BAD_USER_INPUT` on `newPassword` when it breaks a rule.
    pub async fn change_password(
        &self,
        id: Uuid,
        current: String,
        new: String,
    ) -> AppResult<(PasswordChange, throttle::Attempt)> {
        let (account, attempt) = self.check_current_password(id, current).await?;
        let user_inputs = validation::user_inputs(&account.username, account.email.as_deref());
        let new_hash = match hash_new_password(&self.passwords, new, user_inputs).await {
            Ok(new_hash) => new_hash,
            Err(err) => {
                // The current password was right: nothing counts against the account.
                attempt.succeeded().await?;
                return Err(err);
            }
        };
        Ok((PasswordChange { account, new_hash }, attempt))
    }

    /// Checks the signed-in account's current password before a change that needs it (a new
    /// password, deleting the account). Returns the account as it was when checked and the
    /// reserved attempt, which the caller settles once its change is stored or refused: one such
    /// change of an account runs at a time.
    ///
    /// Throttled per account, never by sign-in failures (strangers cannot lock a signed-in user
    /// out of changing their password): one change at a time, and wrong current passwords lock
    /// the change like failed sign-ins lock a sign-in.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` on `currentPassword` when it is wrong (counted); `TOO_MANY_REQUESTS` while
    /// locked, while another change of this account is running, or when the hashing queue is full;
    /// `UNAUTHENTICATED` when the account is gone.
    pub async fn check_current_password(
        &self,
        id: Uuid,
        current: String,
    ) -> AppResult<(account::Model, throttle::Attempt)> {
        // Reserved before anything else: a flood of changes is refused without a query each.
        let attempt = throttle::reserve(
            &self.db,
            vec![(throttle::password_change_key(id), throttle::PASSWORD_CHANGE)],
        )
        .await?;
        let Some(account) = find(self.db.reader(), id).await? else {
            attempt.release().await?;
            return Err(AppError::Unauthenticated(AuthFailure::SessionEnded, GONE));
        };
        let verified = match self
            .passwords
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
        Ok((account, attempt))
    }

    /// One page of accounts in creation order.
    ///
    /// # Errors
    /// Internal, on a database failure.
    pub async fn page(
        &self,
        request: PageRequest,
        with_total: bool,
    ) -> AppResult<Page<account::Model>> {
        read_page(
            self.db.reader(),
            account::Entity::find(),
            account::Column::Id,
            request,
            with_total,
        )
        .await
    }

    /// Gives an account a new role. Its access tokens issued before stop working at once (on
    /// every replica), so a demoted admin's old token can no longer do admin things; its sessions
    /// stay, and a refresh brings a token with the new role. The role and the token version change
    /// in one transaction, so no refresh can pair the new version with the old role.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` on `role` when the policy defines no such role; `NOT_FOUND` when there
    /// is no such account; `CONFLICT` when it would leave no active account that may manage
    /// roles; `SERVICE_UNAVAILABLE` when the change could not be stored.
    pub async fn set_role(
        &self,
        actor: Option<Uuid>,
        id: Uuid,
        role: &str,
    ) -> AppResult<account::Model> {
        let account = self.change_role(actor, id, role).await?;
        tracing::info!(target: crate::AUDIT_TARGET, audit = "set_user_role", ?actor, account_id = %id, role, "role changed");
        Ok(account)
    }

    /// [`Accounts::set_role`] without its audit line (the API's, not the CLI's); the audit
    /// record is written either way (with no actor for the CLI).
    async fn change_role(
        &self,
        actor: Option<Uuid>,
        id: Uuid,
        role: &str,
    ) -> AppResult<account::Model> {
        let (account, revoked) = db::write(&self.db, async |txn| {
            db::lock_role_changes(txn).await?;
            // Read under the lock, so a policy put in force meanwhile is the one applied.
            let role = defined_role(&self.authz, role)?;
            let account = find_for_update(txn, id)
                .await?
                .ok_or(AppError::NotFound("account"))?;
            if account.role == role.as_str() {
                return Ok((account, None));
            }
            if !self
                .managers(txn)
                .await?
                .update_role(txn, id, &role)
                .await?
            {
                return Err(last_admin("role"));
            }
            let change = Change::new("role", Some(account.role), Some(role.as_str().to_owned()));
            let entry = Entry {
                actor,
                action: Action::AccountSetRole,
                entity_id: id.to_string(),
                changes: vec![change],
            };
            audit::record(txn, entry).await?;
            let (account, revoked) = revoke_access_tokens(txn, id).await?;
            Ok((account, Some(revoked)))
        })
        .await?;
        if let Some(revoked) = revoked {
            self.revocations.apply_committed(&[revoked]);
        }
        Ok(account)
    }

    /// Lets a deactivated account sign in again. Its old tokens stay revoked; it signs in anew.
    ///
    /// # Errors
    /// `NOT_FOUND` when there is no such account; `SERVICE_UNAVAILABLE` when it could not be
    /// stored.
    pub async fn reactivate(&self, actor: Option<Uuid>, id: Uuid) -> AppResult<account::Model> {
        let account = self.clear_deactivation(actor, id).await?;
        tracing::info!(target: crate::AUDIT_TARGET, audit = "reactivate_account", ?actor, account_id = %id, "account reactivated");
        Ok(account)
    }

    /// [`Accounts::reactivate`] without its audit line (the API's, not the CLI's); the audit
    /// record is written either way (with no actor for the CLI). Reactivating an active
    /// account changes nothing and records nothing.
    async fn clear_deactivation(&self, actor: Option<Uuid>, id: Uuid) -> AppResult<account::Model> {
        db::write(&self.db, async |txn| {
            let existing = find_for_update(txn, id)
                .await?
                .ok_or(AppError::NotFound("account"))?;
            let Some(deactivated_at) = existing.deactivated_at else {
                return Ok(existing);
            };
            account::Entity::update_many()
                .col_expr(
                    account::Column::DeactivatedAt,
                    Expr::value(Option::<chrono::DateTime<Utc>>::None),
                )
                .col_expr(account::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(account::Column::Id.eq(id))
                .filter(account::Column::DeactivatedAt.is_not_null())
                .exec(txn)
                .await?;
            let change = Change::new(
                "deactivatedAt",
                Some(audit::timestamp(deactivated_at)),
                None,
            );
            let entry = Entry {
                actor,
                action: Action::AccountReactivate,
                entity_id: id.to_string(),
                changes: vec![change],
            };
            audit::record(txn, entry).await?;
            find(txn, id).await?.ok_or(AppError::NotFound("account"))
        })
        .await
    }

    /// Gives the account with this username `role`, if there is such an account, and
    /// reactivates it if it was deactivated.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` for a malformed username or a role the policy does not define.
    pub async fn promote(&self, username: &str, role: &str) -> AppResult<Option<account::Model>> {
        let normalized = validation::username(username)?;
        defined_role(&self.authz, role)?;
        let Some(existing) = find_by_username(&self.db, &normalized).await? else {
            return Ok(None);
        };
        // The CLI has no replica to tell; the revocation row reaches the running servers. The
        // CLI says what it did in its own words, so no audit lines.
        let promoted = self.change_role(None, existing.id, role).await?;
        if promoted.deactivated_at.is_none() {
            return Ok(Some(promoted));
        }
        // The operator's way back in: an admin who cannot sign in would be no admin.
        Ok(Some(self.clear_deactivation(None, existing.id).await?))
    }

    /// Creates an account with `role`, or gives it to the existing account with this username
    /// (its password unchanged). Returns the account and whether it was created.
    ///
    /// # Errors
    /// As [`register`] for a new account; `BAD_USER_INPUT` for a malformed username or a role
    /// the policy does not define.
    pub async fn create_or_promote(
        &self,
        username: &str,
        password: String,
        role: &str,
    ) -> AppResult<(account::Model, bool)> {
        if let Some(promoted) = self.promote(username, role).await? {
            return Ok((promoted, false));
        }
        let new = NewAccount {
            username,
            password,
            email: None,
            role: Some(defined_role(&self.authz, role)?),
        };
        Ok((self.register(new).await?, true))
    }
}

/// A verified password change, not yet stored: the account as it was when its current password
/// was checked, and the hash of the new password.
pub struct PasswordChange {
    pub account: account::Model,
    pub new_hash: String,
}

async fn hash_new_password(
    hasher: &PasswordHasher,
    new: String,
    user_inputs: Vec<String>,
) -> AppResult<String> {
    validation::new_password(&new, "newPassword", user_inputs).await?;
    hasher.hash(new).await
}

/// Stores a verified password change in the caller's transaction: the new hash, and a new
/// token version so that every access token issued before stops working. Returns the account
/// as it now is and the revocation to apply once the transaction has committed.
///
/// # Errors
/// `BAD_USER_INPUT` on `currentPassword` when the password was changed by someone else since it
/// was checked; `UNAUTHENTICATED` when the account is gone or was deactivated meanwhile.
pub async fn store_password_change(
    txn: &impl ConnectionTrait,
    change: PasswordChange,
) -> AppResult<(account::Model, Revoked)> {
    let id = change.account.id;
    let current = find_for_update(txn, id)
        .await?
        .filter(|current| current.deactivated_at.is_none())
        .ok_or(AppError::Unauthenticated(AuthFailure::SessionEnded, GONE))?;
    if current.password_hash != change.account.password_hash {
        return Err(AppError::BadUserInput {
            field: "currentPassword",
            message: "the password was changed meanwhile; sign in again".to_owned(),
        });
    }
    account::Entity::update_many()
        .col_expr(account::Column::PasswordHash, Expr::value(change.new_hash))
        .col_expr(account::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(account::Column::Id.eq(id))
        .exec(txn)
        .await?;
    revoke_access_tokens(txn, id).await
}

/// Raises an account's token version in the caller's transaction (every access token issued
/// before stops working once it commits). Returns the account and the revocation to apply
/// after the commit.
///
/// # Errors
/// `NOT_FOUND` when there is no such account; internal on a database failure.
pub async fn revoke_access_tokens(
    txn: &impl ConnectionTrait,
    id: Uuid,
) -> AppResult<(account::Model, Revoked)> {
    account::Entity::update_many()
        .col_expr(
            account::Column::TokenVersion,
            Expr::col(account::Column::TokenVersion).add(1),
        )
        .filter(account::Column::Id.eq(id))
        .exec(txn)
        .await?;
    let account = find(txn, id).await?.ok_or(AppError::NotFound("account"))?;
    let revoked = Revocations::revoke_account_tokens(txn, id, account.token_version).await?;
    Ok((account, revoked))
}

/// The account with this id, locked until the caller's transaction ends (`FOR UPDATE` on
/// PostgreSQL; SQLite's write transaction already excludes other writers).
///
/// # Errors
/// Internal, on a database failure.
pub async fn find_for_update(
    txn: &impl ConnectionTrait,
    id: Uuid,
) -> AppResult<Option<account::Model>> {
    Ok(account::Entity::find_by_id(id)
        .lock_exclusive()
        .one(txn)
        .await?)
}

/// The account with this id, if any.
///
/// # Errors
/// Internal, on a database failure.
pub async fn find(db: &impl ConnectionTrait, id: Uuid) -> AppResult<Option<account::Model>> {
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

/// The role with this name, when the policy in force defines it.
fn defined_role(authz: &SharedAuthorizer, name: &str) -> AppResult<Role> {
    authz
        .current()
        .role(name)
        .cloned()
        .ok_or_else(|| AppError::BadUserInput {
            field: "role",
            message: format!(
                "no role `{}` is defined (the `roles` query lists them)",
                name.chars()
                    .take(crate::role::MAX_ROLE_NAME + 1)
                    .collect::<String>()
            ),
        })
}

/// The roles that may manage roles, per the policy in force: the changes that could leave no
/// active account with one of them (role changes, deactivations, deletions) are refused.
pub struct Managers(Vec<Role>);

impl Managers {
    /// The condition, in SQL, that an account is not the last active one with a managing
    /// role: its role manages nothing, it is deactivated, or another such account is active.
    /// The role names are the statement's parameters from `$first` on.
    fn not_the_last(&self, first: usize) -> (String, Vec<sea_orm::Value>) {
        let list = (first..first + self.0.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let condition = format!(
            "(role NOT IN ({list}) OR deactivated_at IS NOT NULL
              OR (SELECT COUNT(*) FROM accounts WHERE role IN ({list}) AND deactivated_at IS NULL) > 1)"
        );
        let values = self.0.iter().map(|role| role.to_string().into()).collect();
        (condition, values)
    }

    /// Whether `role` is one of the managing roles.
    fn includes(&self, role: &Role) -> bool {
        self.0.contains(role)
    }

    /// Sets the role in one statement that refuses to take a managing role from the last
    /// active account that has one. Returns false when the change would leave none.
    async fn update_role(
        &self,
        txn: &impl ConnectionTrait,
        id: Uuid,
        role: &Role,
    ) -> AppResult<bool> {
        let (keeps_one, managers) = if self.includes(role) {
            ("TRUE".to_owned(), Vec::new())
        } else {
            self.not_the_last(4)
        };
        let mut values = vec![role.to_string().into(), Utc::now().into(), id.into()];
        values.extend(managers);
        let updated = txn
            .execute_raw(Statement::from_sql_and_values(
                txn.get_database_backend(),
                format!(
                    "UPDATE accounts SET role = $1, updated_at = $2 WHERE id = $3 AND {keeps_one}"
                ),
                values,
            ))
            .await?;
        Ok(updated.rows_affected() == 1)
    }
}

/// The error for a change that would leave no active account that may manage roles.
fn last_admin(field: &'static str) -> AppError {
    AppError::Conflict {
        field,
        message: "cannot remove the last active account that may manage roles",
    }
}

/// Deactivates an account, for `actor`, in the caller's transaction, with its audit record: it
/// can no longer sign in or refresh, and every access token issued to it stops working once the
/// transaction commits (the caller ends its sessions in the same transaction). Deactivating a
/// deactivated account changes nothing and records nothing. Returns the account as it now is,
/// and the revocation to apply after the commit.
///
/// # Errors
/// `NOT_FOUND` when there is no such account; `CONFLICT` on `userId` when it is the last
/// active admin.
pub async fn deactivate(
    txn: &DatabaseTransaction,
    accounts: &Accounts,
    actor: Option<Uuid>,
    id: Uuid,
) -> AppResult<(account::Model, Option<Revoked>)> {
    db::lock_role_changes(txn).await?;
    let managers = accounts.managers(txn).await?;
    let account = find_for_update(txn, id)
        .await?
        .ok_or(AppError::NotFound("account"))?;
    if account.deactivated_at.is_some() {
        return Ok((account, None));
    }
    let (keeps_one, mut values) = managers.not_the_last(3);
    values.splice(0..0, [Utc::now().into(), id.into()]);
    let updated = txn
        .execute_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            format!(
                "UPDATE accounts SET deactivated_at = $1, updated_at = $1
                 WHERE id = $2 AND {keeps_one}"
            ),
            values,
        ))
        .await?;
    if updated.rows_affected() != 1 {
        return Err(last_admin("userId"));
    }
    let (account, revoked) = revoke_access_tokens(txn, id).await?;
    let change = Change::new(
        "deactivatedAt",
        None,
        account.deactivated_at.map(audit::timestamp),
    );
    let entry = Entry {
        actor,
        action: Action::AccountDeactivate,
        entity_id: id.to_string(),
        changes: vec![change],
    };
    audit::record(txn, entry).await?;
    Ok((account, Some(revoked)))
}

/// Deletes an account whose current password was checked (as `checked`), in the caller's
/// transaction. Its sessions and refresh tokens go with it, the products it created keep no
/// creator, and every access token issued to it stops working once the transaction commits.
/// Returns the revocation to apply after the commit.
///
/// # Errors
/// `BAD_USER_INPUT` on `currentPassword` when the password changed since it was checked;
/// `UNAUTHENTICATED` when the account is gone; `CONFLICT` when it is the last active account that may manage roles.
pub async fn delete(
    txn: &impl ConnectionTrait,
    accounts: &Accounts,
    checked: &account::Model,
) -> AppResult<Revoked> {
    db::lock_role_changes(txn).await?;
    let managers = accounts.managers(txn).await?;
    let current = find_for_update(txn, checked.id)
        .await?
        .ok_or(AppError::Unauthenticated(AuthFailure::SessionEnded, GONE))?;
    if current.password_hash != checked.password_hash {
        return Err(AppError::BadUserInput {
            field: "currentPassword",
            message: "the password was changed meanwhile; sign in again".to_owned(),
        });
    }
    // Every version, past and future: nothing this account was issued works again.
    let revoked = Revocations::revoke_account_tokens(txn, current.id, i32::MAX).await?;
    let (keeps_one, mut values) = managers.not_the_last(2);
    values.insert(0, current.id.into());
    let deleted = txn
        .execute_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            format!("DELETE FROM accounts WHERE id = $1 AND {keeps_one}"),
            values,
        ))
        .await?;
    if deleted.rows_affected() != 1 {
        return Err(last_admin("account"));
    }
    Ok(revoked)
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
