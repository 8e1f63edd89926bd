use async_graphql::{Context, ID, Object};

use super::{
    ContextExt,
    guard::{Can, rows, visible},
    id_of,
    types::{
        Account, AuthPayload, CreateProductInput, LoginInput, PermissionInput, PolicyView, Product,
        RegisterInput, UpdateProductInput,
    },
};
use crate::authz::{Permission, PolicyChange};

pub struct Mutation;

#[Object]
impl Mutation {
    /// Creates an account with the default role (`DEFAULT_ROLE`, `user`) and signs it in.
    async fn register(
        &self,
        ctx: &Context<'_>,
        mut input: RegisterInput,
    ) -> async_graphql::Result<AuthPayload> {
        let sessions = &ctx.state().sessions;
        Ok(sessions
            .register(ctx.client_ip(), input.new_account())
            .await?
            .into())
    }

    /// Signs in with a username and password, starting a new session.
    async fn login(
        &self,
        ctx: &Context<'_>,
        input: LoginInput,
    ) -> async_graphql::Result<AuthPayload> {
        let sessions = &ctx.state().sessions;
        let signed_in = sessions
            .login(ctx.client_ip(), &input.username, input.password)
            .await?;
        Ok(signed_in.into())
    }

    /// Trades a refresh token for a new access token and refresh token. Each refresh token
    /// works once; presenting a spent one ends its session, except the one just spent, presented
    /// again within `REFRESH_REUSE_INTERVAL_SECS` (two tabs, a retry): that answers the same pair
    /// again.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<AuthPayload> {
        let sessions = &ctx.state().sessions;
        Ok(sessions
            .refresh(ctx.client_ip(), &refresh_token)
            .await?
            .into())
    }

    /// Ends a session: its access and refresh tokens stop working at once. With
    /// `refreshToken` (the session's refresh token, or one it spent), that session ends and no
    /// access token is needed, so a client whose access token expired can still sign out.
    /// Without it, the session of the access token sent ends.
    async fn logout(
        &self,
        ctx: &Context<'_>,
        refresh_token: Option<String>,
    ) -> async_graphql::Result<bool> {
        let sessions = &ctx.state().sessions;
        match refresh_token {
            Some(token) => {
                sessions
                    .logout_with_refresh_token(ctx.client_ip(), &token)
                    .await?;
            }
            None => {
                // What the guard on the other session fields checks.
                rows(ctx, Permission::SessionManage)?;
                let (account_id, session_id) = ctx.session()?;
                sessions.logout(account_id, session_id).await?;
            }
        }
        Ok(true)
    }

    /// Ends every session of the signed-in account, on every device.
    #[graphql(
        guard = "Can(Permission::SessionManage)",
        visible = "visible::session_manage"
    )]
    async fn logout_all(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        ctx.state().sessions.logout_all(ctx.account_id()?).await?;
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
        let sessions = &ctx.state().sessions;
        let signed_in = sessions
            .change_password(ctx.client_ip(), account_id, current_password, new_password)
            .await?;
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
        let sessions = &ctx.state().sessions;
        sessions
            .delete_account(ctx.client_ip(), account_id, current_password)
            .await?;
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
        let catalog = &ctx.state().catalog;
        Ok(catalog
            .create(ctx.actor(), input.new_product())
            .await?
            .into())
    }

    /// Changes the given fields of a product; returns it with its new `version` and
    /// `updatedAt`. With `expectedVersion`, only if the product is still at that version:
    /// otherwise `CONFLICT` (with `currentVersion`) and nothing is changed.
    #[graphql(
        guard = "Can(Permission::ProductUpdate)",
        visible = "visible::product_update"
    )]
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateProductInput,
        expected_version: Option<i32>,
    ) -> async_graphql::Result<Product> {
        let changes = input.changes()?;
        let (id, rows) = (
            id_of("product", &id)?,
            rows(ctx, Permission::ProductUpdate)?,
        );
        let catalog = &ctx.state().catalog;
        let updated = catalog.update(ctx.actor(), rows, id, changes, expected_version);
        Ok(updated.await?.into())
    }

    /// Removes a product; returns its id. With `expectedVersion`, only if the product is still
    /// at that version: otherwise `CONFLICT` (with `currentVersion`) and nothing is deleted.
    #[graphql(
        guard = "Can(Permission::ProductDelete)",
        visible = "visible::product_delete"
    )]
    async fn delete_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: Option<i32>,
    ) -> async_graphql::Result<ID> {
        let (uuid, rows) = (
            id_of("product", &id)?,
            rows(ctx, Permission::ProductDelete)?,
        );
        let catalog = &ctx.state().catalog;
        catalog
            .delete(ctx.actor(), rows, uuid, expected_version)
            .await?;
        Ok(id)
    }

    /// Adds `delta` to a product's stock (a negative `delta` takes away), atomically: concurrent
    /// adjustments all count. Refused (`BAD_USER_INPUT` on `delta`) when it is 0 or would take
    /// the stock below 0. Returns the product with its new `stock`, `version` and `updatedAt`.
    #[graphql(
        guard = "Can(Permission::ProductAdjustStock)",
        visible = "visible::product_adjust_stock"
    )]
    async fn adjust_stock(
        &self,
        ctx: &Context<'_>,
        id: ID,
        delta: i32,
    ) -> async_graphql::Result<Product> {
        let (id, rows) = (
            id_of("product", &id)?,
            rows(ctx, Permission::ProductAdjustStock)?,
        );
        let catalog = &ctx.state().catalog;
        Ok(catalog
            .adjust_stock(ctx.actor(), rows, id, delta)
            .await?
            .into())
    }

    /// Gives an account a new role, one of those the `roles` query lists (`BAD_USER_INPUT`
    /// otherwise). Its access tokens stop working at once; a refresh brings one with the new
    /// role. The last active account whose role may manage roles keeps it (`CONFLICT`).
    #[graphql(
        guard = "Can(Permission::UserSetRole)",
        visible = "visible::user_set_role"
    )]
    async fn set_user_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: String,
    ) -> async_graphql::Result<Account> {
        let id = id_of("account", &user_id)?;
        let accounts = &ctx.state().accounts;
        Ok(accounts.set_role(ctx.actor(), id, &role).await?.into())
    }

    /// Stops an account from signing in: every session and access token of it ends at once
    /// (on every replica within a second). The last active account whose role may manage roles
    /// cannot be deactivated.
    #[graphql(
        guard = "Can(Permission::UserDeactivate)",
        visible = "visible::user_deactivate"
    )]
    async fn deactivate_account(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
    ) -> async_graphql::Result<Account> {
        let id = id_of("account", &user_id)?;
        let sessions = &ctx.state().sessions;
        Ok(sessions.deactivate(ctx.actor(), id).await?.into())
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
        let id = id_of("account", &user_id)?;
        let accounts = &ctx.state().accounts;
        Ok(accounts.reactivate(ctx.actor(), id).await?.into())
    }

    /// Grants a role (or `anonymous`) a permission, on every row or only on the rows the caller
    /// owns. Only for a policy kept in the database (`POLICY_SOURCE=database`); every replica
    /// applies it within `POLICY_POLL_MS`. Granting what is granted changes nothing.
    #[graphql(
        guard = "Can(Permission::PolicyManage)",
        visible = "visible::policy_manage"
    )]
    async fn grant_permission(
        &self,
        ctx: &Context<'_>,
        role: String,
        permission: PermissionInput,
    ) -> async_graphql::Result<PolicyView> {
        let (permission, reach) = permission.parse()?;
        let change = PolicyChange::Grant {
            role,
            permission,
            reach,
        };
        change_policy(ctx, change).await
    }

    /// Takes a granted permission away from a role (`NOT_FOUND` when it is not granted so).
    #[graphql(
        guard = "Can(Permission::PolicyManage)",
        visible = "visible::policy_manage"
    )]
    async fn revoke_permission(
        &self,
        ctx: &Context<'_>,
        role: String,
        permission: PermissionInput,
    ) -> async_graphql::Result<PolicyView> {
        let (permission, reach) = permission.parse()?;
        let change = PolicyChange::Revoke {
            role,
            permission,
            reach,
        };
        change_policy(ctx, change).await
    }

    /// Lets `role` inherit every permission of `inherits`.
    #[graphql(
        guard = "Can(Permission::PolicyManage)",
        visible = "visible::policy_manage"
    )]
    async fn add_role_inheritance(
        &self,
        ctx: &Context<'_>,
        role: String,
        inherits: String,
    ) -> async_graphql::Result<PolicyView> {
        change_policy(
            ctx,
            PolicyChange::Inherit {
                role,
                parent: inherits,
            },
        )
        .await
    }

    /// Ends an inheritance `addRoleInheritance` made (`NOT_FOUND` when there is none).
    #[graphql(
        guard = "Can(Permission::PolicyManage)",
        visible = "visible::policy_manage"
    )]
    async fn remove_role_inheritance(
        &self,
        ctx: &Context<'_>,
        role: String,
        inherits: String,
    ) -> async_graphql::Result<PolicyView> {
        change_policy(
            ctx,
            PolicyChange::Uninherit {
                role,
                parent: inherits,
            },
        )
        .await
    }

    /// Defines a new role with the roles it inherits from and its own permissions (at least one
    /// of the two).
    #[graphql(
        guard = "Can(Permission::PolicyManage)",
        visible = "visible::policy_manage"
    )]
    async fn create_role(
        &self,
        ctx: &Context<'_>,
        name: String,
        #[graphql(default)] inherits: Vec<String>,
        #[graphql(default)] permissions: Vec<PermissionInput>,
    ) -> async_graphql::Result<PolicyView> {
        let grants = permissions
            .iter()
            .map(PermissionInput::parse)
            .collect::<Result<_, _>>()?;
        let change = PolicyChange::CreateRole {
            role: name,
            inherits,
            grants,
        };
        change_policy(ctx, change).await
    }

    /// Removes a role and every rule naming it; refused (`CONFLICT`) while an account has it.
    #[graphql(
        guard = "Can(Permission::PolicyManage)",
        visible = "visible::policy_manage"
    )]
    async fn delete_role(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<PolicyView> {
        change_policy(ctx, PolicyChange::DeleteRole { role: name }).await
    }
}

/// Makes a change to the stored policy for the caller and answers with the policy in force.
async fn change_policy(
    ctx: &Context<'_>,
    change: PolicyChange,
) -> async_graphql::Result<PolicyView> {
    let authz = &ctx.state().authz;
    let policy = authz.change(ctx.actor(), change).await?;
    Ok(PolicyView::new(&policy, authz.is_stored()))
}
