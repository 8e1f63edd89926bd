//! Catalog changes between replicas (PostgreSQL): a change sends its event with `NOTIFY` in
//! its own transaction ([`stage`]), so it is sent if and only if the change committed, and in
//! commit order; every replica, the one that made the change included, hears it
//! ([`Relay::heard`]) and hands it to its subscribers. On SQLite nothing is sent: the one
//! process serving the file publishes in process once the commit succeeded.
//!
//! The event carries the product as committed, so a replica delivers it without a query; one
//! whose text makes it longer than a notification may be (8000 bytes) is sent in pieces, in the
//! same transaction, and put together again (a transaction's notifications are heard together,
//! in the order sent). So each committed change is delivered as it was committed, once.

use std::sync::{Arc, Weak};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::PageCache;
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

/// The most a piece of an event may take in one notification: the limit, less the sending
/// transaction's id and the piece's number (`<i>/<n>:`).
const MAX_PIECE: usize = MAX_PAYLOAD - listen::XID_PREFIX - 12;

/// `event` as the payloads of its notifications: one, the event's JSON, when it fits; else
/// `<i>/<n>:` and the i-th of n pieces of it (a product's text can be longer than one
/// notification takes). A transaction's notifications are heard one after the other, in the
/// order sent, so the pieces are put together again without reading anything.
fn payloads(event: &CatalogEvent) -> Vec<String> {
    let wire = Wire {
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
    let json = serde_json::to_string(&wire).expect("an event serializes");
    if json.len() <= MAX_PIECE {
        return vec![json];
    }
    let mut pieces = Vec::new();
    let mut rest = json.as_str();
    while !rest.is_empty() {
        let mut end = rest.len().min(MAX_PIECE);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        pieces.push(&rest[..end]);
        rest = &rest[end..];
    }
    let n = pieces.len();
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| format!("{}/{n}:{piece}", i + 1))
        .collect()
}

/// Sends `event` in the change's transaction `txn`: it is heard once, and only if, it commits.
/// Nothing on SQLite.
///
/// # Errors
/// On a database failure (the change is rolled back with it).
pub async fn stage(txn: &impl ConnectionTrait, event: &CatalogEvent) -> Result<(), DbErr> {
    for payload in payloads(event) {
        listen::notify_from_transaction(txn, channel::CATALOG, &payload).await?;
    }
    Ok(())
}

/// What one replica does with the catalog events it hears.
pub struct Relay {
    db: DatabaseConnection,
    pages: Arc<PageCache>,
    /// Weak: a relay does not keep its server's hub alive (see `db::listen::Hearer::needed`).
    hub: Weak<Hub>,
    events: Assembler,
}

impl Relay {
    pub(super) fn new(db: DatabaseConnection, pages: Arc<PageCache>, hub: &Arc<Hub>) -> Self {
        Self {
            db,
            pages,
            hub: Arc::downgrade(hub),
            events: Assembler::default(),
        }
    }

    /// Delivers the events of a batch of notifications, in order, once the catalog version has
    /// been re-read (so a subscriber that reads the list on hearing of a change is not served a
    /// cached page from before it).
    pub async fn heard<'a>(&mut self, payloads: impl IntoIterator<Item = &'a str>) {
        let events: Vec<CatalogEvent> = payloads
            .into_iter()
            .filter_map(|payload| self.events.event(payload))
            .collect();
        if events.is_empty() {
            return;
        }
        self.pages.note_change(&self.db).await;
        if let Some(hub) = self.hub.upgrade() {
            for event in events {
                hub.deliver(Arc::new(event));
            }
        }
    }

    /// Notifications were missed: a partly heard event is gone with them.
    pub fn lost(&mut self) {
        self.events = Assembler::default();
    }
}

/// Puts events together from the notifications that carry them.
#[derive(Default)]
struct Assembler {
    /// The pieces heard so far of an event sent in several: its transaction, how many pieces,
    /// and their text.
    pieces: Option<(u64, usize, String)>,
}

impl Assembler {
    /// The event `payload` completes, if any.
    fn event(&mut self, payload: &str) -> Option<CatalogEvent> {
        let Some((xid, rest)) = listen::from_transaction(payload) else {
            tracing::warn!("a catalog notification could not be read; ignored");
            return None;
        };
        let json = if rest.starts_with('{') {
            self.pieces = None;
            rest.to_owned()
        } else {
            let (i, n, piece) = rest.split_once(':').and_then(|(numbers, piece)| {
                let (i, n) = numbers.split_once('/')?;
                Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?, piece))
            })?;
            let mut heard = match self.pieces.take() {
                Some((same, count, text)) if same == xid && count == n => text,
                _ if i == 1 => String::new(),
                // A piece without those before it (they were missed): the event is lost.
                _ => {
                    tracing::warn!("a catalog event came without its first pieces; ignored");
                    return None;
                }
            };
            heard.push_str(piece);
            if i < n {
                self.pieces = Some((xid, n, heard));
                return None;
            }
            heard
        };
        let Ok(wire) = serde_json::from_str::<Wire>(&json) else {
            tracing::warn!("a catalog notification could not be read; ignored");
            return None;
        };
        let product = wire.product.map(|p| {
            Arc::new(product::Model {
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
            })
        });
        Some(CatalogEvent {
            kind: wire.kind.into(),
            id: wire.id,
            version: wire.version,
            product,
            stock_changed: wire.stock_changed,
            xid: Some(xid),
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

    /// What a listener hears of `event`, sent by transaction `xid`.
    fn heard(xid: u64, event: &CatalogEvent) -> Vec<String> {
        payloads(event)
            .into_iter()
            .map(|payload| format!("{xid}:{payload}"))
            .collect()
    }

    #[test]
    fn an_event_is_heard_whole_whether_it_fits_one_notification_or_several() {
        let mut events = Assembler::default();
        let small = CatalogEvent::of(ChangeKind::Updated, &product("short"), true);
        let sent = heard(7, &small);
        assert_eq!(sent.len(), 1);
        let got = events.event(&sent[0]).expect("one notification, one event");
        assert_eq!(got.product.as_deref(), small.product.as_deref());
        assert_eq!(
            (got.version, got.stock_changed, got.xid),
            (4, true, Some(7))
        );

        // 5000 characters of 4 bytes each (and a name of 200): far beyond one notification.
        let mut long = product(&"𝄞".repeat(5000));
        long.name = "é".repeat(200);
        let large = CatalogEvent::of(ChangeKind::Updated, &long, false);
        let sent = heard(u64::MAX, &large);
        assert!(sent.len() > 2, "{} pieces", sent.len());
        assert!(sent.iter().all(|payload| payload.len() <= MAX_PAYLOAD));
        for piece in &sent[..sent.len() - 1] {
            assert!(
                events.event(piece).is_none(),
                "an event before its last piece"
            );
        }
        let got = events
            .event(sent.last().unwrap())
            .expect("the last piece completes it");
        assert_eq!(got.product.as_deref(), Some(&long));
        assert_eq!(got.xid, Some(u64::MAX));

        // Pieces whose first ones were missed make nothing; the next event is heard whole.
        let mut events = Assembler::default();
        assert!(events.event(&sent[1]).is_none());
        assert!(events.event(sent.last().unwrap()).is_none());
        assert!(events.event(&heard(8, &small)[0]).is_some());
    }
}
