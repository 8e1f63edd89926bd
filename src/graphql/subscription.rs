//! The `Subscription` root: committed catalog changes, pushed over WebSocket (see
//! `http::ws`). Each event's fields resolve through the same guards as in a query.

use std::{collections::HashSet, sync::Arc};

use async_graphql::{
    Context, Enum, ID, Object, Subscription as SubscriptionRoot, futures_util::Stream,
};
use uuid::Uuid;

use super::{
    ContextExt,
    guard::{Can, visible},
    node::MAX_NODES,
    parse_id,
    scalars::Timestamp,
    types::Product,
};
use crate::{
    authz::Permission,
    error::{AppError, AppResult, Unavailable},
    subscriptions::{CatalogEvent, ChangeKind, Interest, LiveSubscription},
};

pub struct Subscription;

/// Changes to the catalog, as they are committed, over WebSocket (graphql-transport-ws at
/// `/graphql`). Hidden from callers who may not read products: every field needs that, and a
/// type without fields is not valid GraphQL (GraphiQL refuses such a schema).
#[SubscriptionRoot(visible = "visible::product_read")]
impl Subscription {
    /// Every product created, updated (`updateProduct`, `adjustStock`) or deleted from now on;
    /// with `ids` (at most 100), only those products' changes. Needs the permission that
    /// reading products needs, checked again before each event.
    #[graphql(
        guard = "Can(Permission::ProductRead)",
        visible = "visible::product_read"
    )]
    async fn product_changed(
        &self,
        ctx: &Context<'_>,
        ids: Option<Vec<ID>>,
    ) -> async_graphql::Result<impl Stream<Item = ProductChange> + use<>> {
        let ids = ids.map(|ids| ids_of("ids", &ids)).transpose()?;
        let live = live(ctx, Interest::Products(ids)).await?;
        Ok(events(live).map_events(ProductChange))
    }

    /// The stock of these products (1 to 100) each time it changes (`adjustStock`, or an
    /// `updateProduct` that sets it). Needs the permission that reading products needs.
    #[graphql(
        guard = "Can(Permission::ProductRead)",
        visible = "visible::product_read"
    )]
    async fn stock_changed(
        &self,
        ctx: &Context<'_>,
        product_ids: Vec<ID>,
    ) -> async_graphql::Result<impl Stream<Item = StockChange> + use<>> {
        if product_ids.is_empty() {
            return Err(AppError::bad_input("productIds", "name at least one product").into());
        }
        let ids = ids_of("productIds", &product_ids)?;
        let live = live(ctx, Interest::Stock(ids)).await?;
        Ok(events(live).map_events(StockChange))
    }
}

/// The products `ids` names, as the queries read ids.
///
/// # Errors
/// `BAD_USER_INPUT` on `field` for more than [`MAX_NODES`] ids, or one that is not an id.
fn ids_of(field: &'static str, ids: &[ID]) -> AppResult<HashSet<Uuid>> {
    if ids.len() > MAX_NODES {
        return Err(AppError::bad_input(
            field,
            format!("at most {MAX_NODES} ids at a time"),
        ));
    }
    ids.iter()
        .map(|id| parse_id(id).ok_or_else(|| AppError::bad_input(field, "not a product id")))
        .collect()
}

/// A subscriber to `interest` on the caller's connection.
async fn live(ctx: &Context<'_>, interest: Interest) -> AppResult<LiveSubscription> {
    let channel = ctx
        .channel()
        .ok_or_else(|| AppError::internal("a subscription ran without its WebSocket"))?;
    if !channel.hearing() {
        return Err(AppError::ServiceUnavailable {
            cause: Unavailable::Unreachable("not listening to the database's notifications"),
            detail: None,
        });
    }
    Ok(channel.subscribe(interest).await)
}

/// The events of a subscriber, checked before each (see [`LiveSubscription::next`]).
fn events(live: LiveSubscription) -> impl Stream<Item = Arc<CatalogEvent>> + Send + 'static {
    async_graphql::futures_util::stream::unfold(live, |mut live| async move {
        let event = live.next().await?;
        Some((event, live))
    })
}

trait MapEvents: Stream<Item = Arc<CatalogEvent>> + Sized {
    fn map_events<T>(self, f: fn(Arc<CatalogEvent>) -> T) -> impl Stream<Item = T> {
        async_graphql::futures_util::StreamExt::map(self, f)
    }
}

impl<S: Stream<Item = Arc<CatalogEvent>>> MapEvents for S {}

/// What happened to a product.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ProductChangeKind {
    Created,
    Updated,
    Deleted,
}

pub struct ProductChange(Arc<CatalogEvent>);

/// A committed change to a product.
#[Object]
impl ProductChange {
    async fn kind(&self) -> ProductChangeKind {
        match self.0.kind {
            ChangeKind::Created => ProductChangeKind::Created,
            ChangeKind::Updated => ProductChangeKind::Updated,
            ChangeKind::Deleted => ProductChangeKind::Deleted,
        }
    }

    /// The product's id, as `product(id:)` and `node(id:)` take it.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// The product's version after the change (see `Product.version`); for `DELETED`, the
    /// version it had when it was deleted. Events of one product can arrive out of order
    /// (on SQLite, changes committed at nearly the same moment): keep the highest version, and
    /// take a `DELETED` at version v as coming after every change up to v.
    async fn version(&self) -> i32 {
        self.0.version
    }

    /// The product as committed; null when it was deleted. Its fields are guarded as in a
    /// query (`createdBy` only for roles the policy lets read it).
    async fn product(&self) -> Option<Product> {
        self.0.product.clone().map(Product::from)
    }
}

pub struct StockChange(Arc<CatalogEvent>);

/// A product's stock after a change.
#[Object]
impl StockChange {
    /// The product's id.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn stock(&self) -> i32 {
        self.0.product.as_ref().map_or(0, |p| p.stock)
    }

    /// The product's version after the change (see `Product.version`).
    async fn version(&self) -> i32 {
        self.0.version
    }

    async fn updated_at(&self) -> Timestamp {
        Timestamp(
            self.0
                .product
                .as_ref()
                .map_or_else(chrono::Utc::now, |p| p.updated_at),
        )
    }
}
