//! The product catalog: products in the database, and the pages each replica keeps of them.

mod pages;
pub mod products;
pub mod query;

use std::{sync::Arc, time::Duration};

use sea_orm::DbErr;
use uuid::Uuid;

use crate::{
    authz::Rows,
    db::Db,
    entities::product,
    error::AppResult,
    pagination::Window,
    subscriptions::{CatalogEvent, ChangeKind, Hub},
};
pub use pages::{CatalogPage, PageCache};
pub use products::{NewProduct, ProductChanges};
pub use query::{Filter, Listed, ProductQuery, Search, SortDirection, SortField, SortKey};

/// The catalog service: product reads and writes (each with its audit record), the page cache
/// kept in step with every change, the audit log lines of admins' changes, and the events
/// subscriptions receive (published once a change has committed).
pub struct Catalog {
    db: Db,
    pages: Arc<PageCache>,
    events: Arc<Hub>,
}

impl Catalog {
    /// Reads the catalog version and starts polling it every `poll` (see [`PageCache`]), with
    /// `cache_bytes` of memory for pages (0: no cache); committed changes are published to
    /// `events`.
    ///
    /// # Errors
    /// On a database failure.
    pub async fn load(
        db: Db,
        cache_bytes: usize,
        poll: Duration,
        events: Arc<Hub>,
    ) -> Result<Self, DbErr> {
        let pages = PageCache::load(&db, cache_bytes, poll).await?;
        pages.spawn_poller(db.reader().clone(), poll);
        Ok(Self { db, pages, events })
    }

    /// What follows a committed change, in the task that committed it (see
    /// [`crate::db::write_then`]): so a request cancelled once its commit began still
    /// announces its change.
    fn announcer(&self) -> Announcer {
        Announcer {
            db: self.db.clone(),
            pages: self.pages.clone(),
            events: self.events.clone(),
        }
    }

    /// Adds a product, created by `actor`.
    ///
    /// # Errors
    /// As [`products::create`].
    pub async fn create(
        &self,
        actor: Option<Uuid>,
        new: NewProduct<'_>,
    ) -> AppResult<product::Model> {
        let announcer = self.announcer();
        let product = products::create(&self.db, new, actor, move |product| {
            announcer.announce(ChangeKind::Created, product.id, Some(product), true)
        })
        .await?;
        tracing::info!(target: crate::AUDIT_TARGET, audit = "create_product", ?actor, product_id = %product.id, "product created");
        Ok(product)
    }

    /// Changes the given fields of a product, for `actor`, if it is at `expected_version`
    /// (when given).
    ///
    /// # Errors
    /// As [`products::update`].
    pub async fn update(
        &self,
        actor: Option<Uuid>,
        rows: Rows,
        id: Uuid,
        changes: ProductChanges<'_>,
        expected_version: Option<i32>,
    ) -> AppResult<product::Model> {
        let announcer = self.announcer();
        let announce = move |(before, product): (product::Model, product::Model)| async move {
            // An update that changed nothing wrote nothing (its version stayed): no event.
            if before.version != product.version {
                let stock_changed = before.stock != product.stock;
                announcer
                    .announce(
                        ChangeKind::Updated,
                        product.id,
                        Some(product),
                        stock_changed,
                    )
                    .await;
            }
        };
        let (_, product) = products::update(
            &self.db,
            actor,
            rows,
            id,
            changes,
            expected_version,
            announce,
        )
        .await?;
        tracing::info!(target: crate::AUDIT_TARGET, audit = "update_product", ?actor, product_id = %product.id, "product updated");
        Ok(product)
    }

    /// Removes a product, for `actor`, if it is at `expected_version` (when given).
    ///
    /// # Errors
    /// As [`products::delete`].
    pub async fn delete(
        &self,
        actor: Option<Uuid>,
        rows: Rows,
        id: Uuid,
        expected_version: Option<i32>,
    ) -> AppResult<()> {
        let announcer = self.announcer();
        products::delete(&self.db, actor, rows, id, expected_version, move |()| {
            announcer.announce(ChangeKind::Deleted, id, None, false)
        })
        .await?;
        tracing::info!(target: crate::AUDIT_TARGET, audit = "delete_product", ?actor, product_id = %id, "product deleted");
        Ok(())
    }

    /// Adds `delta` (negative: takes away) to a product's stock, for `actor`, atomically.
    ///
    /// # Errors
    /// As [`products::adjust_stock`].
    pub async fn adjust_stock(
        &self,
        actor: Option<Uuid>,
        rows: Rows,
        id: Uuid,
        delta: i32,
    ) -> AppResult<product::Model> {
        let announcer = self.announcer();
        let product = products::adjust_stock(&self.db, actor, rows, id, delta, move |product| {
            announcer.announce(ChangeKind::Updated, product.id, Some(product), true)
        })
        .await?;
        tracing::info!(target: crate::AUDIT_TARGET, audit = "adjust_stock", ?actor, product_id = %id, delta, stock = product.stock, "product stock adjusted");
        Ok(product)
    }

    /// The products with these ids that exist, in one query.
    ///
    /// # Errors
    /// Internal, on a database failure.
    pub async fn find_many(&self, ids: &[Uuid]) -> AppResult<Vec<product::Model>> {
        products::find_many(self.db.reader(), ids).await
    }

    /// The product with this id, if any.
    ///
    /// # Errors
    /// Internal, on a database failure.
    pub async fn find(&self, id: Uuid) -> AppResult<Option<product::Model>> {
        products::find(self.db.reader(), id).await
    }

    /// One page of `query`'s list in `window`, with the number of products its filter keeps
    /// when `with_total`.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` on a cursor made for another list; internal, on a database failure.
    pub async fn page(
        &self,
        query: &Arc<ProductQuery>,
        window: &Window,
        with_total: bool,
    ) -> AppResult<CatalogPage> {
        self.pages.page(&self.db, query, window, with_total).await
    }
}

/// Announces a committed change: to the page cache first (so a subscriber that reads the list
/// on an event sees the change), then to subscribers.
#[derive(Clone)]
struct Announcer {
    db: Db,
    pages: Arc<PageCache>,
    events: Arc<Hub>,
}

impl Announcer {
    async fn announce(
        self,
        kind: ChangeKind,
        id: Uuid,
        product: Option<product::Model>,
        stock_changed: bool,
    ) {
        self.pages.note_change(&self.db).await;
        self.events.publish(CatalogEvent {
            kind,
            id,
            product: product.map(Arc::new),
            stock_changed,
        });
    }
}
