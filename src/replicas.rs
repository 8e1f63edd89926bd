//! What a replica hears of the others (PostgreSQL): the catalog's events for its subscribers,
//! and word that revocations, the stored policy or the catalog's version changed, which wakes
//! the poll that reads them at once instead of at its next tick (see `db::listen`). On SQLite there is one
//! process per database file and nothing to hear.

use std::sync::{Arc, Weak};

use sea_orm::{DbBackend, DbErr};

use crate::{
    catalog::{Catalog, relay::Relay},
    db::{
        Db, Wake,
        listen::{self, Hearer, Notification, channel},
    },
    subscriptions::Hub,
};

/// The polls a notification wakes.
#[derive(Clone, Debug, Default)]
pub struct Wakes {
    pub revocations: Wake,
    pub catalog: Wake,
    pub policy: Wake,
}

impl Wakes {
    fn all(&self) {
        self.revocations.wake();
        self.catalog.wake();
        self.policy.wake();
    }
}

struct Replica {
    relay: Relay,
    /// Weak: the listener stops once the server that owns the hub is gone.
    hub: Weak<Hub>,
    wakes: Wakes,
}

impl Hearer for Replica {
    async fn heard(&mut self, batch: Vec<Notification>) {
        let mut events = Vec::new();
        let mut catalog_version = false;
        for notification in &batch {
            match notification.channel.as_str() {
                channel::CATALOG => events.push(notification.payload.as_str()),
                channel::REVOCATIONS => self.wakes.revocations.wake(),
                channel::POLICY => self.wakes.policy.wake(),
                channel::CATALOG_VERSION => catalog_version = true,
                _ => {}
            }
        }
        if events.is_empty() {
            // A change made otherwise (seed, SQL): the catalog poll reads the version.
            if catalog_version {
                self.wakes.catalog.wake();
            }
        } else {
            // The relay reads the catalog version once for the batch (a product change's
            // transaction also announces the new version: no second read for it).
            self.relay.heard(events).await;
        }
    }

    fn lost(&mut self) {
        // Events sent from now on are missed: subscribers go elsewhere at once.
        self.relay.lost();
        if let Some(hub) = self.hub.upgrade() {
            hub.deaf();
        }
    }

    fn listening(&mut self) {
        // What changed meanwhile is read again by every poll.
        self.wakes.all();
        if let Some(hub) = self.hub.upgrade() {
            hub.hearing();
        }
    }

    fn needed(&self) -> bool {
        self.hub.strong_count() > 0
    }
}

/// On PostgreSQL, starts listening (on `listen_url`, or the database's own URL) before it
/// returns; nothing on SQLite.
///
/// # Errors
/// When the first `LISTEN` fails.
pub async fn listen(
    db: &Db,
    url: &str,
    catalog: &Catalog,
    hub: Arc<Hub>,
    wakes: Wakes,
) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let replica = Replica {
        relay: catalog.relay(),
        hub: Arc::downgrade(&hub),
        wakes,
    };
    let channels = &[
        channel::CATALOG,
        channel::REVOCATIONS,
        channel::POLICY,
        channel::CATALOG_VERSION,
    ];
    listen::spawn_listener(url, channels, db.writer().clone(), replica).await?;
    Ok(())
}
