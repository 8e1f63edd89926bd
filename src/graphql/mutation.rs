use async_graphql::{Context, ID, MaybeUndefined, Object};

use super::{
    ContextExt, parse_id,
    types::{
        Account, AuthPayload, CreateProductInput, LoginInput, Product, RegisterInput,
        UpdateProductInput,
    },
};
use crate::{
    accounts::{self, NewAccount},
    authz::{Can, Permission, visible},
    error::{AppError, AppResult},
    metrics::LoginOutcome,
    products::{self, NewProduct, ProductChanges},
    role::Role,
    sessions,
};

pub struct Mutation;

#[Object]
impl Mutation {
    /// Creates an account with the USER role and signs it in.
    async fn register(
        &self,
        ctx: &Context<'_>,
        input: RegisterInput,
    ) -> async_graphql::Result<AuthPayload> {
        ctx.count_auth_attempt()?;
        let state = ctx.state();
        let new = NewAccount {
            username: &input.username,
            password: input.password,
            email: input.email.as_deref(),
            role: Role::User,
        };
        let account = accounts::register(&state.db, &state.passwords, new).await?;
        tracing::info!(audit = "register", account_id = %account.id, "account registered");
        Ok(sessions::start(state, account).await?.into())
    }

    /// Signs in with a username and password, starting a new session.
    async fn login(
        &self,
        ctx: &Context<'_>,
        input: LoginInput,
    ) -> async_graphql::Result<AuthPayload> {
        let state = ctx.state();
        if let Err(err) = ctx.count_auth_attempt() {
            state.metrics.record_login(LoginOutcome::Throttled);
            return Err(err.into());
        }
        let result = accounts::authenticate(
            &state.db,
            &state.passwords,
            &input.username,
            input.password,
            ctx.client_ip(),
        )
        .await;
        let account = match result {
            Ok(account) => account,
            Err(err) => {
                let outcome = match err {
                    AppError::TooManyRequests { .. } => LoginOutcome::Throttled,
                    _ => LoginOutcome::Failure,
                };
                state.metrics.record_login(outcome);
                tracing::info!(audit = "login", outcome = err.code(), "sign-in refused");
                return Err(err.into());
            }
        };
        // Signed in once the session is stored, not before.
        let signed_in = sessions::start(state, account).await?;
        state.metrics.record_login(LoginOutcome::Success);
        tracing::info!(audit = "login", outcome = "ok", account_id = %signed_in.account.id, "signed in");
        Ok(signed_in.into())
    }

    /// Trades a refresh token for a new access token and refresh token. Each refresh token
    /// works once; presenting a spent one ends its session.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<AuthPayload> {
        ctx.count_auth_attempt()?;
        Ok(sessions::refresh(ctx.state(), &refresh_token).await?.into())
    }

    /// Ends the current session: its access and refresh tokens stop working at once.
    #[graphql(
        guard = "Can(Permission::SessionManage)",
        visible = "visible::session_manage"
    )]
    async fn logout(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let (account_id, session_id) = ctx.session()?;
        sessions::end(ctx.state(), account_id, session_id, "logout").await?;
        tracing::info!(audit = "logout", %account_id, "session ended");
        Ok(true)
    }

    /// Ends every session of the signed-in account, on every device.
    #[graphql(
        guard = "Can(Permission::SessionManage)",
        visible = "visible::session_manage"
    )]
    async fn logout_all(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        let account_id = ctx.account_id()?;
        sessions::end_all(ctx.state(), account_id, "logout all").await?;
        tracing::info!(audit = "logout_all", %account_id, "every session ended");
        Ok(true)
    }

    /// Changes the signed-in account's password. Every session ends (other devices are signed
    /// out); the new session's tokens come back.
    #[graphql(
        guard = "Can(Permission::AccountUpdate)",
        visible = "visible::account_update"
    )]
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> async_graphql::Result<AuthPayload> {
        let account_id = ctx.account_id()?;
        ctx.count_auth_attempt()?;
        let signed_in =
            sessions::change_password(ctx.state(), account_id, current_password, new_password)
                .await?;
        tracing::info!(audit = "change_password", %account_id, "password changed; sessions ended");
        Ok(signed_in.into())
    }

    /// Deletes the signed-in account, after checking its current password: every session and
    /// token of it ends at once, and the products it created keep no creator. The last active
    /// admin cannot delete itself.
    #[graphql(
        guard = "Can(Permission::AccountDelete)",
        visible = "visible::account_delete"
    )]
    async fn delete_account(
        &self,
        ctx: &Context<'_>,
        current_password: String,
    ) -> async_graphql::Result<bool> {
        let account_id = ctx.account_id()?;
        ctx.count_auth_attempt()?;
        sessions::delete_account(ctx.state(), account_id, current_password).await?;
        tracing::info!(audit = "delete_account", %account_id, "account deleted");
        Ok(true)
    }

    /// Adds a product to the catalog.
    #[graphql(
        guard = "Can(Permission::ProductCreate)",
        visible = "visible::product_create"
    )]
    async fn create_product(
        &self,
        ctx: &Context<'_>,
        input: CreateProductInput,
    ) -> async_graphql::Result<Product> {
        let new = NewProduct {
            name: &input.name,
            description: &input.description,
            price: &input.price.0,
            stock: input.stock,
        };
        let creator = ctx.account_id().ok();
        let state = ctx.state();
        let product = products::create(&state.db, new, creator).await?;
        state.catalog.note_change(&state.db).await;
        tracing::info!(audit = "create_product", actor = ?creator, product_id = %product.id, "product created");
        Ok(product.into())
    }

    /// Changes the given fields of a product.
    #[graphql(
        guard = "Can(Permission::ProductUpdate)",
        visible = "visible::product_update"
    )]
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateProductInput,
    ) -> async_graphql::Result<Product> {
        let changes = ProductChanges {
            name: not_null(&input.name, "name")?.map(String::as_str),
            description: not_null(&input.description, "description")?.map(String::as_str),
            price: not_null(&input.price, "price")?.map(|price| price.0.as_str()),
            stock: not_null(&input.stock, "stock")?.copied(),
        };
        let id = parse_id(&id).ok_or(AppError::NotFound("product"))?;
        let state = ctx.state();
        let product = products::update(&state.db, id, changes).await?;
        state.catalog.note_change(&state.db).await;
        tracing::info!(audit = "update_product", actor = ?ctx.account_id().ok(), product_id = %product.id, "product updated");
        Ok(product.into())
    }

    /// Removes a product; returns its id.
    #[graphql(
        guard = "Can(Permission::ProductDelete)",
        visible = "visible::product_delete"
    )]
    async fn delete_product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ID> {
        let uuid = parse_id(&id).ok_or(AppError::NotFound("product"))?;
        let state = ctx.state();
        products::delete(&state.db, uuid).await?;
        state.catalog.note_change(&state.db).await;
        tracing::info!(audit = "delete_product", actor = ?ctx.account_id().ok(), product_id = %uuid, "product deleted");
        Ok(id)
    }

    /// Gives an account a new role. Its access tokens stop working at once; a refresh brings
    /// one with the new role. The last admin cannot be demoted.
    #[graphql(
        guard = "Can(Permission::UserSetRole)",
        visible = "visible::user_set_role"
    )]
    async fn set_user_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: Role,
    ) -> async_graphql::Result<Account> {
        let id = parse_id(&user_id).ok_or(AppError::NotFound("account"))?;
        let state = ctx.state();
        let account = accounts::set_role(&state.db, &state.revocations, id, role).await?;
        tracing::info!(audit = "set_user_role", actor = ?ctx.account_id().ok(), account_id = %id, role = role.as_str(), "role changed");
        Ok(account.into())
    }

    /// Stops an account from signing in: every session and access token of it ends at once
    /// (on every replica within a second). The last active admin cannot be deactivated.
    #[graphql(
        guard = "Can(Permission::UserDeactivate)",
        visible = "visible::user_deactivate"
    )]
    async fn deactivate_account(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
    ) -> async_graphql::Result<Account> {
        let id = parse_id(&user_id).ok_or(AppError::NotFound("account"))?;
        let account = sessions::deactivate(ctx.state(), id).await?;
        tracing::info!(audit = "deactivate_account", actor = ?ctx.account_id().ok(), account_id = %id, "account deactivated");
        Ok(account.into())
    }

    /// Lets a deactivated account sign in again (its old tokens stay ended).
    #[graphql(
        guard = "Can(Permission::UserReactivate)",
        visible = "visible::user_reactivate"
    )]
    async fn reactivate_account(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
    ) -> async_graphql::Result<Account> {
        let id = parse_id(&user_id).ok_or(AppError::NotFound("account"))?;
        let account = accounts::reactivate(&ctx.state().db, id).await?;
        tracing::info!(audit = "reactivate_account", actor = ?ctx.account_id().ok(), account_id = %id, "account reactivated");
        Ok(account.into())
    }
}

/// The value of an optional input field that, when given, must not be null.
fn not_null<'a, T>(value: &'a MaybeUndefined<T>, field: &'static str) -> AppResult<Option<&'a T>> {
    match value {
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Null => Err(AppError::bad_input(
            field,
            format!("{field} cannot be null"),
        )),
        MaybeUndefined::Value(value) => Ok(Some(value)),
    }
}
