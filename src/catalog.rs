//! The product catalog: products in the database, and the pages each replica keeps of them.

mod pages;
pub mod products;
pub mod query;
pub mod relay;

use std::{sync::Arc, time::Duration};

use sea_orm::{DatabaseTransaction, DbBackend, DbErr};
use uuid::Uuid;

use crate::{
    authz::Rows,
    db::{Db, Wake},
    entities::product,
    error::AppResult,
    pagination::Window,
    subscriptions::{CatalogEvent, Hub},
};
pub use pages::{CatalogPage, PageCache};
pub use products::{NewProduct, ProductChanges};
pub use query::{Filter, Listed, ProductQuery, Search, SortDirection, SortField, SortKey};

/// The catalog service: product reads and writes (each with its audit record), the page cache
/// kept in step with every change, the audit log lines of admins' changes, and the events
/// subscriptions receive (published once a change has committed: see [`relay`]).
pub struct Catalog {
    db: Db,
    pages: Arc<PageCache>,
    events: Arc<Hub>,
    /// Whether changes are announced through the database's notifications (PostgreSQL), which
    /// every replica's [`relay::Relay`] hears, rather than in process.
    relayed: bool,
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
        wake: Wake,
        events: Arc<Hub>,
    ) -> Result<Self, DbErr> {
        let pages = PageCache::load(&db, cache_bytes, poll).await?;
        pages.spawn_poller(db.reader().clone(), poll, wake);
        let relayed = db.get_database_backend() == DbBackend::Postgres;
        Ok(Self {
            db,
            pages,
            events,
            relayed,
        })
    }

    /// What hands the changes this replica hears of to its subscribers (PostgreSQL).
    pub fn relay(&self) -> relay::Relay {
        relay::Relay::new(self.db.reader().clone(), self.pages.clone(), &self.events)
    }

    fn announcer(&self) -> Announcer {
        Announcer {
            db: self.db.clone(),
            pages: self.pages.clone(),
            events: self.events.clone(),
            relayed: self.relayed,
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
        let product = products::create(&self.db, new, actor, self.announcer()).await?;
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
        let (_, product) = products::update(
            &self.db,
            actor,
            rows,
            id,
            changes,
            expected_version,
            self.announcer(),
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
        products::delete(
            &self.db,
            actor,
            rows,
            id,
            expected_version,
            self.announcer(),
        )
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
        let product =
            products::adjust_stock(&self.db, actor, rows, id, delta, self.announcer()).await?;
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

/// Announces a committed change: to the page cache first (so this replica's next reads see
/// it, and a subscriber that reads the list on an event sees the change), then to
/// subscribers: in process on SQLite; on PostgreSQL through the notification staged in the
/// change's transaction, which every replica's relay hears (this one's too).
#[derive(Clone)]
struct Announcer {
    db: Db,
    pages: Arc<PageCache>,
    events: Arc<Hub>,
    relayed: bool,
}

impl products::Announce for Announcer {
    async fn stage(&self, txn: &DatabaseTransaction, event: &CatalogEvent) -> AppResult<()> {
        if self.relayed {
            relay::stage(txn, event).await?;
        }
        Ok(())
    }

    async fn announce(self, event: CatalogEvent) {
        self.pages.note_change(&self.db).await;
        if !self.relayed {
            self.events.publish(event);
        }
    }
}
