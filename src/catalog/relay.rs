//! Catalog changes between replicas (PostgreSQL): a change sends its event with `NOTIFY` in
//! its own transaction ([`stage`]), so it is sent if and only if the change committed, and in
//! commit order; every replica, the one that made the change included, hears it
//! ([`Relay::heard`]) and hands it to its subscribers. On SQLite nothing is sent: the one
//! process serving the file publishes in process once the commit succeeded.
//!
//! The event carries the product as committed, so a replica delivers it without a query. A
//! product whose text makes the event longer than a notification may be (8000 bytes) is sent
//! by id and version only, and each replica reads it: when a later change has committed
//! meanwhile, that later state is delivered at once and the later change's own event, when it
//! comes, is not delivered again (no subscriber sees a version twice, or an older one after a
//! newer).

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{PageCache, products};
use crate::{
    db::listen::{self, MAX_PAYLOAD, channel},
    entities::product,
    subscriptions::{CatalogEvent, ChangeKind, Hub},
};

/// An event as a notification carries it.
#[derive(Serialize, Deserialize)]
struct Wire {
    kind: Kind,
    id: Uuid,
    version: i32,
    stock_changed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    product: Option<WireProduct>,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Created,
    Updated,
    Deleted,
}

#[derive(Serialize, Deserialize)]
struct WireProduct {
    name: String,
    name_search: String,
    description: String,
    price_cents: i64,
    stock: i32,
    created_by: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ChangeKind> for Kind {
    fn from(kind: ChangeKind) -> Self {
        match kind {
            ChangeKind::Created => Kind::Created,
            ChangeKind::Updated => Kind::Updated,
            ChangeKind::Deleted => Kind::Deleted,
        }
    }
}

impl From<Kind> for ChangeKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Created => ChangeKind::Created,
            Kind::Updated => ChangeKind::Updated,
            Kind::Deleted => ChangeKind::Deleted,
        }
    }
}

/// `event` as a notification's payload: with the product when that fits, else without.
fn payload(event: &CatalogEvent) -> String {
    let mut wire = Wire {
        kind: event.kind.into(),
        id: event.id,
        version: event.version,
        stock_changed: event.stock_changed,
        product: event.product.as_deref().map(|p| WireProduct {
            name: p.name.clone(),
            name_search: p.name_search.clone(),
            description: p.description.clone(),
            price_cents: p.price_cents,
            stock: p.stock,
            created_by: p.created_by,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }),
    };
    let full = serde_json::to_string(&wire).expect("an event serializes");
    if full.len() <= MAX_PAYLOAD - listen::XID_PREFIX {
        return full;
    }
    wire.product = None;
    serde_json::to_string(&wire).expect("an event serializes")
}

/// Sends `event` in the change's transaction `txn`: it is heard once, and only if, it commits.
/// Nothing on SQLite.
///
/// # Errors
/// On a database failure (the change is rolled back with it).
pub async fn stage(txn: &impl ConnectionTrait, event: &CatalogEvent) -> Result<(), DbErr> {
    listen::notify_from_transaction(txn, channel::CATALOG, &payload(event)).await
}

/// What one replica does with the catalog events it hears.
pub struct Relay {
    db: DatabaseConnection,
    pages: Arc<PageCache>,
    /// Weak: a relay does not keep its server's hub alive (see `db::listen::Hearer::needed`).
    hub: Weak<Hub>,
    /// Products delivered at a later version than their event named (read because the event
    /// was too long to carry them): their events up to that version are not delivered again.
    ahead: HashMap<Uuid, i32>,
}

/// Entries of [`Relay::ahead`] kept at most (each is one product read ahead; a change to it
/// removes it): beyond, the oldest are forgotten, which at worst delivers a version twice.
const MAX_AHEAD: usize = 10_000;

impl Relay {
    pub(super) fn new(db: DatabaseConnection, pages: Arc<PageCache>, hub: &Arc<Hub>) -> Self {
        Self {
            db,
            pages,
            hub: Arc::downgrade(hub),
            ahead: HashMap::new(),
        }
    }

    /// Delivers the event a notification carried, once the catalog version has been re-read
    /// (so a subscriber that reads the list on hearing of a change is not served a cached
    /// page from before it).
    pub async fn heard(&mut self, payload: &str) {
        let Some((xid, wire)) = listen::from_transaction(payload)
            .and_then(|(xid, json)| Some((xid, serde_json::from_str::<Wire>(json).ok()?)))
        else {
            tracing::warn!("a catalog notification could not be read; ignored");
            return;
        };
        self.pages.note_change(&self.db).await;
        if let Some(mut event) = self.event(wire).await
            && let Some(hub) = self.hub.upgrade()
        {
            event.xid = Some(xid);
            hub.deliver(Arc::new(event));
        }
    }

    async fn event(&mut self, wire: Wire) -> Option<CatalogEvent> {
        let kind = ChangeKind::from(wire.kind);
        if kind == ChangeKind::Deleted {
            self.ahead.remove(&wire.id);
            return Some(CatalogEvent {
                kind,
                id: wire.id,
                version: wire.version,
                product: None,
                stock_changed: false,
                xid: None,
            });
        }
        if let Some(&ahead) = self.ahead.get(&wire.id) {
            if wire.version <= ahead {
                if wire.version == ahead {
                    self.ahead.remove(&wire.id);
                }
                return None;
            }
            self.ahead.remove(&wire.id);
        }
        let product = match wire.product {
            Some(p) => product::Model {
                id: wire.id,
                name: p.name,
                name_search: p.name_search,
                description: p.description,
                price_cents: p.price_cents,
                stock: p.stock,
                created_by: p.created_by,
                created_at: p.created_at,
                updated_at: p.updated_at,
                version: wire.version,
            },
            None => match products::find(&self.db, wire.id).await {
                // Deleted since: its deletion's event follows.
                Ok(None) => return None,
                Ok(Some(product)) => {
                    if product.version > wire.version {
                        if self.ahead.len() >= MAX_AHEAD {
                            self.ahead.clear();
                        }
                        self.ahead.insert(wire.id, product.version);
                    }
                    product
                }
                Err(err) => {
                    tracing::warn!(error = ?err, product_id = %wire.id, "could not read a changed product; its event is not delivered");
                    return None;
                }
            },
        };
        Some(CatalogEvent {
            kind,
            id: wire.id,
            version: product.version,
            product: Some(Arc::new(product)),
            stock_changed: wire.stock_changed,
            xid: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(description: &str) -> product::Model {
        product::Model {
            id: Uuid::now_v7(),
            name: "Kettle".into(),
            name_search: "kettle".into(),
            description: description.into(),
            price_cents: 1999,
            stock: 3,
            created_by: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version: 4,
        }
    }

    #[test]
    fn an_event_carries_its_product_when_it_fits_and_its_id_alone_when_not() {
        let small = CatalogEvent::of(ChangeKind::Updated, &product("short"), true);
        let wire: Wire = serde_json::from_str(&payload(&small)).unwrap();
        let carried = wire.product.expect("the product fits");
        assert_eq!(carried.description, "short");
        assert_eq!((wire.version, wire.stock_changed), (4, true));

        // 5000 characters of 4 bytes each: far beyond what a notification takes.
        let large = CatalogEvent::of(ChangeKind::Updated, &product(&"𝄞".repeat(5000)), false);
        let text = payload(&large);
        assert!(
            text.len() + listen::XID_PREFIX <= MAX_PAYLOAD,
            "{} bytes",
            text.len()
        );
        let wire: Wire = serde_json::from_str(&text).unwrap();
        assert!(wire.product.is_none());
        assert_eq!((wire.id, wire.version), (large.id, 4));
    }
}
