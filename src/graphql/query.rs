use async_graphql::{Context, ID, Object};

use super::{
    ContextExt, parse_id,
    types::{Account, AccountConnection, Product, ProductConnection},
};
use crate::{
    accounts,
    authz::{Can, Permission},
    error::AppError,
    pagination::{DEFAULT_PAGE_SIZE, PageRequest},
    products,
};

pub struct Query;

#[Object]
impl Query {
    /// The signed-in caller's account.
    #[graphql(guard = "Can(Permission::AccountRead)")]
    async fn account(&self, ctx: &Context<'_>) -> async_graphql::Result<Account> {
        let id = ctx.account_id()?;
        let account = accounts::find(&ctx.state().db, id)
            .await?
            .ok_or(AppError::Unauthenticated("this account no longer exists"))?;
        Ok(account.into())
    }

    /// Products in creation order, `first` (1–100, default 20) at a time after the cursor
    /// `after`.
    /// `search` keeps only products whose name contains it, ignoring case.
    #[graphql(guard = "Can(Permission::ProductRead)")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
    ) -> async_graphql::Result<ProductConnection> {
        let request = PageRequest::new(first.unwrap_or(DEFAULT_PAGE_SIZE), after.as_deref())?;
        let with_total = ctx.look_ahead().field("totalCount").exists();
        let page = products::page(&ctx.state().db, request, search.as_deref(), with_total).await?;
        Ok(ProductConnection::from_page(page, |row| row.id))
    }

    /// The product with this id, or null when there is none.
    #[graphql(guard = "Can(Permission::ProductRead)")]
    async fn product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Product>> {
        let Some(id) = parse_id(&id) else {
            return Ok(None);
        };
        Ok(products::find(&ctx.state().db, id)
            .await?
            .map(Product::from))
    }

    /// Every account, in creation order, `first` (1–100, default 20) at a time.
    #[graphql(guard = "Can(Permission::UserList)")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<AccountConnection> {
        let request = PageRequest::new(first.unwrap_or(DEFAULT_PAGE_SIZE), after.as_deref())?;
        let with_total = ctx.look_ahead().field("totalCount").exists();
        let page = accounts::page(&ctx.state().db, request, with_total).await?;
        Ok(AccountConnection::from_page(page, |row| row.id))
    }
}
