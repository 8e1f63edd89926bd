use std::sync::Arc;

use async_graphql::{Context, ID, Object};

use super::{
    ContextExt,
    guard::{Can, node_reach, visible},
    node::{self, Node},
    parse_id,
    types::{
        Account, AccountConnection, AuditEventConnection, AuditFilter, PermissionGrant, PolicyView,
        Product, ProductConnection, ProductFilter, ProductOrder, RoleView, product_list,
    },
};
use crate::{
    accounts,
    auth::Viewer,
    authz::{Permission, Subject},
    error::{AppError, AuthFailure},
    pagination::{DEFAULT_PAGE_SIZE, PageRequest, Window},
};

pub struct Query;

#[Object]
impl Query {
    /// What the caller may do, per the policy: a frontend can hide what it would be refused.
    async fn my_permissions(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<PermissionGrant>> {
        if let Viewer::InvalidToken(reason) = ctx.viewer() {
            return Err(AppError::access_refused(*reason).into());
        }
        let granted = ctx
            .state()
            .authz
            .current()
            .granted(Subject::of(ctx.viewer()));
        Ok(granted.into_iter().map(PermissionGrant::from).collect())
    }

    /// The policy in force: where it is kept, its version, its rules and roles.
    #[graphql(
        guard = "Can(Permission::PolicyRead)",
        visible = "visible::policy_read"
    )]
    async fn policy(&self, ctx: &Context<'_>) -> async_graphql::Result<PolicyView> {
        let state = ctx.state();
        // As stored now (one look at its version), not as this replica last loaded it: a
        // change just made through another replica shows at once.
        let policy = state.authz.current_in(state.db.reader()).await?;
        Ok(PolicyView::new(&policy, state.authz.is_stored()))
    }

    /// The roles the policy defines, in the order it first names them, each with what it
    /// inherits and may do.
    #[graphql(guard = "Can(Permission::RoleList)", visible = "visible::role_list")]
    async fn roles(&self, ctx: &Context<'_>) -> Vec<RoleView> {
        let policy = ctx.state().authz.current();
        policy.roles().map(RoleView::from).collect()
    }

    /// The signed-in caller's account.
    #[graphql(
        guard = "Can(Permission::AccountRead)",
        visible = "visible::account_read"
    )]
    async fn account(&self, ctx: &Context<'_>) -> async_graphql::Result<Account> {
        let account = ctx.state().accounts.find(ctx.account_id()?).await?;
        Ok(account
            .ok_or(AppError::Unauthenticated(
                AuthFailure::SessionEnded,
                accounts::GONE,
            ))?
            .into())
    }

    /// Products in the order `orderBy` gives (default: `CREATED_AT ASC`, creation order), only
    /// those `filter` keeps. Paged as Relay does: `first` (1–100) after the cursor `after`, or
    /// `last` (1–100) before the cursor `before`; neither means `first: 20`. A cursor works
    /// only with the `orderBy` and `filter` it was read with.
    #[graphql(
        guard = "Can(Permission::ProductRead)",
        visible = "visible::product_read"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        order_by: Option<Vec<ProductOrder>>,
        filter: Option<ProductFilter>,
        #[graphql(deprecation = "use filter: { nameContains: ... }, which it is the same as")]
        search: Option<String>,
    ) -> async_graphql::Result<ProductConnection> {
        let window = Window::new(first, after.as_deref(), last, before.as_deref())?;
        let list = Arc::new(product_list(order_by, filter, search.as_deref())?);
        let with_total = ctx.look_ahead().field("totalCount").exists();
        let page = ctx.state().catalog.page(&list, &window, with_total).await?;
        Ok(ProductConnection::of_list(page, &list))
    }

    /// The product with this id, or null when there is none.
    #[graphql(
        guard = "Can(Permission::ProductRead)",
        visible = "visible::product_read"
    )]
    async fn product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Product>> {
        let Some(id) = parse_id(&id) else {
            return Ok(None);
        };
        Ok(ctx.state().catalog.find(id).await?.map(Product::from))
    }

    /// The product or account with this id, or null when there is none or the caller may not
    /// see it (a product: `product read`; an account: the caller's own, or any with `user
    /// list`), the two answers being the same.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        let reach = node_reach(ctx)?;
        let mut found = node::resolve(ctx.state(), reach, std::slice::from_ref(&id)).await?;
        Ok(found.pop().flatten())
    }

    /// The node behind each id (at most 100), in the same order, each as `node` answers it.
    /// Any number of ids costs two queries at most.
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
    ) -> async_graphql::Result<Vec<Option<Node>>> {
        let reach = node_reach(ctx)?;
        Ok(node::resolve(ctx.state(), reach, &ids).await?)
    }

    /// Every account, in creation order, `first` (1–100, default 20) at a time.
    #[graphql(guard = "Can(Permission::UserList)", visible = "visible::user_list")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<AccountConnection> {
        let request = PageRequest::new(first.unwrap_or(DEFAULT_PAGE_SIZE), after.as_deref())?;
        let with_total = ctx.look_ahead().field("totalCount").exists();
        let page = ctx.state().accounts.page(request, with_total).await?;
        Ok(AccountConnection::from_page(page, |row| row.id))
    }

    /// The audit trail: every change made with admin power, newest first, `first` (1–100,
    /// default 20) at a time after the cursor `after`, only those `filter` keeps.
    #[graphql(guard = "Can(Permission::AuditRead)", visible = "visible::audit_read")]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        filter: Option<AuditFilter>,
    ) -> async_graphql::Result<AuditEventConnection> {
        let request = PageRequest::new(first.unwrap_or(DEFAULT_PAGE_SIZE), after.as_deref())?;
        let filter = filter.unwrap_or_default().filter()?;
        let with_total = ctx.look_ahead().field("totalCount").exists();
        let page = ctx.state().audit.page(&filter, request, with_total).await?;
        Ok(AuditEventConnection::from_page(page, |event| event.id))
    }
}
