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
    authz::{Can, Permission},
    entities::account,
    error::{AppError, AppResult},
    products::{self, NewProduct, ProductChanges},
    role::Role,
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
        let state = ctx.state();
        let new = NewAccount {
            username: &input.username,
            password: input.password,
            email: input.email.as_deref(),
            role: Role::User,
        };
        let account = accounts::register(&state.db, &state.passwords, new).await?;
        Ok(sign_in(ctx, account)?)
    }

    /// Signs in with a username and password.
    async fn login(
        &self,
        ctx: &Context<'_>,
        input: LoginInput,
    ) -> async_graphql::Result<AuthPayload> {
        let state = ctx.state();
        let account =
            accounts::authenticate(&state.db, &state.passwords, &input.username, input.password)
                .await?;
        Ok(sign_in(ctx, account)?)
    }

    /// Adds a product to the catalog.
    #[graphql(guard = "Can(Permission::ProductCreate)")]
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
        Ok(products::create(&ctx.state().db, new, creator)
            .await?
            .into())
    }

    /// Changes the given fields of a product.
    #[graphql(guard = "Can(Permission::ProductUpdate)")]
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
        Ok(products::update(&ctx.state().db, id, changes).await?.into())
    }

    /// Removes a product; returns its id.
    #[graphql(guard = "Can(Permission::ProductDelete)")]
    async fn delete_product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ID> {
        let uuid = parse_id(&id).ok_or(AppError::NotFound("product"))?;
        products::delete(&ctx.state().db, uuid).await?;
        Ok(id)
    }

    /// Gives an account a new role. The last admin cannot be demoted.
    #[graphql(guard = "Can(Permission::UserSetRole)")]
    async fn set_user_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: Role,
    ) -> async_graphql::Result<Account> {
        let id = parse_id(&user_id).ok_or(AppError::NotFound("account"))?;
        Ok(accounts::set_role(&ctx.state().db, id, role).await?.into())
    }
}

/// A new access token for the account.
fn sign_in(ctx: &Context<'_>, account: account::Model) -> AppResult<AuthPayload> {
    let role = Role::from_name(&account.role).unwrap_or(Role::User);
    let token = ctx.state().tokens.issue_access_token(account.id, role)?;
    Ok(AuthPayload {
        access_token: token.token,
        token_type: "Bearer".to_owned(),
        expires_in: token.expires_in as i32,
        account: account.into(),
    })
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
