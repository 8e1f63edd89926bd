//! Live catalog changes for GraphQL subscriptions: the [`Hub`] that hands each committed change
//! to the subscribers that asked for it, and the [`Channel`] one WebSocket connection shares
//! with the subscriptions it runs (who is on it, its limits, and how it is closed).
//!
//! A change is published only once its transaction has committed, so a change that rolled back
//! is never seen. On SQLite the catalog publishes in process ([`Hub::publish`]) once the commit
//! succeeded; on PostgreSQL it sends the change with `NOTIFY` in its transaction, and every
//! replica's listener (this one's too) hands what it hears to [`Hub::deliver`], in commit
//! order (see `catalog::relay`).
//!
//! Each subscriber has a queue of its own, bounded by `WS_MAX_QUEUED_EVENTS`: a subscriber
//! whose queue is full when an event arrives (its client reads more slowly than the catalog
//! changes) has its connection closed ([`Close::SlowConsumer`]) instead of being buffered
//! without end.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::{
    auth::{Revocations, Viewer, jwt::VerifiedToken},
    authz::{Permission, SharedAuthorizer, Subject},
    entities::product,
};

/// What happened to a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

/// A committed change to one product.
#[derive(Clone, Debug)]
pub struct CatalogEvent {
    pub kind: ChangeKind,
    pub id: Uuid,
    /// The product's version after the change; for a deletion, the version it had when it was
    /// deleted (so a client can tell that an update at that version or below came before it).
    pub version: i32,
    /// The product as committed; `None` once deleted.
    pub product: Option<Arc<product::Model>>,
    /// Whether its stock changed (an `adjustStock`, or an update that set the stock).
    pub stock_changed: bool,
    /// PostgreSQL: the id of the transaction that made the change, as relayed (see
    /// [`Snapshot`]).
    pub xid: Option<u64>,
}

impl CatalogEvent {
    /// `product` as it was committed by a change of `kind`.
    pub fn of(kind: ChangeKind, product: &product::Model, stock_changed: bool) -> Self {
        Self {
            kind,
            id: product.id,
            version: product.version,
            product: Some(Arc::new(product.clone())),
            stock_changed,
            xid: None,
        }
    }

    /// The deletion of `product`, which was at its version.
    pub fn deleted(product: &product::Model) -> Self {
        Self {
            kind: ChangeKind::Deleted,
            id: product.id,
            version: product.version,
            product: None,
            stock_changed: false,
            xid: None,
        }
    }
}

/// The transactions that had ended when a subscription began (PostgreSQL's
/// `pg_current_snapshot()`): a change relayed through the database can be heard after a
/// subscription began though it committed before; its transaction is in the snapshot, and
/// the subscription skips it. So a subscription receives exactly the changes that commit after
/// it began, on every replica, as on SQLite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    xmin: u64,
    xmax: u64,
    running: Vec<u64>,
}

impl Snapshot {
    /// Reads `pg_snapshot`'s text form, `xmin:xmax:xip,…`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().splitn(3, ':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let running = match parts.next()? {
            "" => Vec::new(),
            list => list
                .split(',')
                .map(|xid| xid.parse().ok())
                .collect::<Option<_>>()?,
        };
        Some(Self {
            xmin,
            xmax,
            running,
        })
    }

    /// Whether transaction `xid` had ended when the snapshot was taken.
    pub fn ended(&self, xid: u64) -> bool {
        xid < self.xmin || (xid < self.xmax && !self.running.contains(&xid))
    }
}

/// Which events a subscriber wants.
#[derive(Clone, Debug)]
pub enum Interest {
    /// Every change to these products (`None`: to any product).
    Products(Option<HashSet<Uuid>>),
    /// Stock changes of these products.
    Stock(HashSet<Uuid>),
}

impl Interest {
    fn wants(&self, event: &CatalogEvent) -> bool {
        match self {
            Interest::Products(None) => true,
            Interest::Products(Some(ids)) => ids.contains(&event.id),
            Interest::Stock(ids) => event.stock_changed && ids.contains(&event.id),
        }
    }
}

/// How and why the server closes a WebSocket connection (graphql-transport-ws close codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// 4403 with the reason (`token expired`, `session ended`): the connection's token expired,
    /// or its session or account's tokens were revoked (logout, a password or role change).
    /// Not 4401: graphql-ws (Apollo Client's and urql's socket client) takes 4401 as fatal and
    /// never reconnects, while after 4403 it reconnects, asking `connectionParams` again, and
    /// resubscribes; a client that refreshed its token meanwhile (in `on.closed`) carries on.
    Unauthorized(&'static str),
    /// 4403: the `connection_init` token was not valid, or the policy in force no longer lets
    /// the connection's caller read what it subscribed to.
    Forbidden,
    /// 4408: no `connection_init` within `WS_INIT_TIMEOUT_SECS`.
    InitTimeout,
    /// 1008: a subscriber's queue of events was full (`WS_MAX_QUEUED_EVENTS`): its client
    /// reads more slowly than events come.
    SlowConsumer,
    /// 1001: the server is shutting down.
    GoingAway,
    /// 1012: this replica lost its connection to the database's notifications, so events may
    /// have been missed: the client reconnects (to a replica that hears), subscribes again and
    /// reads afresh what it shows (graphql-ws reconnects after 1012).
    EventsMissed,
    /// 1001: nothing was read from the client (not even a pong) in the `WS_PING_INTERVAL_SECS`
    /// since the previous ping: the peer is gone or stuck. graphql-ws reconnects after it.
    PingTimeout,
    /// 1000: no subscription was open for `WS_IDLE_TIMEOUT_SECS`. graphql-ws reconnects after
    /// it only if it has something to subscribe to (a lazy client) or is not lazy.
    Idle,
}

impl Close {
    /// The close code.
    pub fn code(self) -> u16 {
        match self {
            Close::Unauthorized(_) => 4403,
            Close::Forbidden => 4403,
            Close::InitTimeout => 4408,
            Close::SlowConsumer => 1008,
            Close::GoingAway | Close::PingTimeout => 1001,
            Close::EventsMissed => 1012,
            Close::Idle => 1000,
        }
    }

    /// The close frame's reason.
    pub fn reason(self) -> &'static str {
        match self {
            Close::Unauthorized(reason) => reason,
            Close::Forbidden => "Forbidden",
            Close::InitTimeout => "Connection initialisation timeout",
            Close::SlowConsumer => "too slow: more events queued than WS_MAX_QUEUED_EVENTS",
            Close::GoingAway => "the server is shutting down",
            Close::EventsMissed => "events may have been missed: subscribe again",
            Close::PingTimeout => "no answer to pings (WS_PING_INTERVAL_SECS)",
            Close::Idle => "idle: no subscription open for WS_IDLE_TIMEOUT_SECS",
        }
    }
}

/// Closes one connection: the first reason given wins.
#[derive(Clone, Debug)]
pub struct Closer(Arc<watch::Sender<Option<Close>>>);

impl Closer {
    /// A closer and the receiver its connection watches.
    pub fn new() -> (Self, watch::Receiver<Option<Close>>) {
        let (tx, rx) = watch::channel(None);
        (Self(Arc::new(tx)), rx)
    }

    /// Asks the connection to close for `reason` (ignored when it is already closing).
    pub fn close(&self, reason: Close) {
        self.0.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

/// Limits on subscriptions, from `WS_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionLimits {
    pub per_connection: usize,
    pub per_account: usize,
    /// Events queued for one subscriber.
    pub queued_events: usize,
}

/// The in-process fan-out of catalog events, with the per-account count of open subscriptions
/// and what a connection is checked against (revocations, the policy in force).
pub struct Hub {
    subscribers: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    limits: SubscriptionLimits,
    per_account: Mutex<HashMap<Uuid, usize>>,
    revocations: Arc<Revocations>,
    authz: Arc<SharedAuthorizer>,
    /// PostgreSQL: where a subscription reads its [`Snapshot`].
    snapshots: Option<DatabaseConnection>,
    /// Whether this replica has lost its connection to the database's notifications (and so
    /// cannot deliver what others change): no subscription starts meanwhile.
    deaf: AtomicBool,
}

struct Entry {
    interest: Interest,
    queue: mpsc::Sender<Arc<CatalogEvent>>,
    closer: Closer,
    /// Whether its snapshot has been taken (events queue for it before that too).
    begun: bool,
}

impl Hub {
    /// The hub; `db`, on PostgreSQL, is where subscriptions read their [`Snapshot`].
    pub fn new(
        limits: SubscriptionLimits,
        revocations: Arc<Revocations>,
        authz: Arc<SharedAuthorizer>,
        db: &DatabaseConnection,
    ) -> Arc<Self> {
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        Arc::new(Self {
            subscribers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            limits,
            per_account: Mutex::new(HashMap::new()),
            revocations,
            authz,
            snapshots: postgres.then(|| db.clone()),
            deaf: AtomicBool::new(false),
        })
    }

    /// This replica lost its connection to the database's notifications: events are missed
    /// until it listens again, so every subscriber is closed ([`Close::EventsMissed`]: clients
    /// reconnect, to a replica that hears, and refetch) and no subscription starts until
    /// [`Hub::hearing`].
    pub fn deaf(&self) {
        self.deaf.store(true, Ordering::Release);
        self.close_subscribers(Close::EventsMissed);
    }

    /// Listening again: subscriptions start again.
    pub fn hearing(&self) {
        self.deaf.store(false, Ordering::Release);
    }

    /// Whether subscriptions can start (see [`Hub::deaf`]).
    pub fn is_hearing(&self) -> bool {
        !self.deaf.load(Ordering::Acquire)
    }

    /// The transactions that have ended now (PostgreSQL); `None` on SQLite, where events are
    /// published in process as their transaction commits, or when it cannot be read (then a
    /// change committed just before the subscription began may be delivered to it).
    async fn snapshot(&self) -> Option<Snapshot> {
        let db = self.snapshots.as_ref()?;
        let statement = Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_current_snapshot()::text AS snapshot",
        );
        let row = match db.query_one_raw(statement).await {
            Ok(row) => row?,
            Err(err) => {
                tracing::warn!(error = %err, "could not read a snapshot for a subscription");
                return None;
            }
        };
        let text: String = row.try_get("", "snapshot").ok()?;
        Snapshot::parse(&text)
    }

    /// The limits it was made with.
    pub fn limits(&self) -> SubscriptionLimits {
        self.limits
    }

    /// Publishes a change whose transaction has committed.
    pub fn publish(&self, event: CatalogEvent) {
        self.deliver(Arc::new(event));
    }

    /// Hands `event` to every subscriber that wants it, without waiting: a subscriber whose
    /// queue is full is dropped and its connection closed ([`Close::SlowConsumer`]).
    pub fn deliver(&self, event: Arc<CatalogEvent>) {
        let mut subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        subscribers.retain(|_, entry| {
            if !entry.interest.wants(&event) {
                return !entry.queue.is_closed();
            }
            match entry.queue.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!(
                        "closing a subscriber's connection: its queue of events is full"
                    );
                    entry.closer.close(Close::SlowConsumer);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// A new subscriber to the events `interest` names, on the connection `closer` closes: it
    /// receives the changes that commit from the moment it has begun (see [`Snapshot`]).
    pub async fn subscribe(self: &Arc<Self>, interest: Interest, closer: Closer) -> Subscriber {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, events) = mpsc::channel(self.limits.queued_events.max(1));
        let entry = Entry {
            interest,
            queue,
            closer: closer.clone(),
            begun: false,
        };
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, entry);
        // Gone deaf between the caller's check and now: `deaf` may have closed the others
        // before this one was in the map.
        if !self.is_hearing() {
            closer.close(Close::EventsMissed);
        }
        // Listening first, then the snapshot: a change that commits after the snapshot was
        // taken is heard after the subscriber listens, and one heard before is skipped.
        // Made before the wait, so that a subscribe cancelled meanwhile leaves the hub.
        let mut subscriber = Subscriber {
            id,
            hub: self.clone(),
            events,
            before: None,
        };
        subscriber.before = self.snapshot().await;
        if let Some(entry) = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&id)
        {
            entry.begun = true;
        }
        subscriber
    }

    /// Closes the connection of every subscriber, for `reason` (events were missed: they
    /// subscribe again, and read afresh what they show).
    pub fn close_subscribers(&self, reason: Close) {
        let subscribers = self
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for entry in subscribers.values() {
            entry.closer.close(reason);
        }
    }

    /// The number of subscribers (for tests and metrics).
    /// Subscribers that have begun: each receives every change that commits from now on.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|entry| entry.begun)
            .count()
    }

    /// Takes one of `account`'s `WS_MAX_SUBSCRIPTIONS_PER_ACCOUNT` places, if one is free;
    /// it is given back when the returned slot is dropped.
    fn account_slot(self: &Arc<Self>, account: Uuid) -> Option<AccountSlot> {
        let mut counts = self
            .per_account
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(account).or_insert(0);
        if *count >= self.limits.per_account {
            return None;
        }
        *count += 1;
        Some(AccountSlot {
            hub: self.clone(),
            account,
        })
    }
}

/// One subscriber's queue; leaves the hub when dropped.
pub struct Subscriber {
    id: u64,
    hub: Arc<Hub>,
    events: mpsc::Receiver<Arc<CatalogEvent>>,
    /// The transactions that had ended when it began: their changes are not its to receive.
    before: Option<Snapshot>,
}

impl Subscriber {
    /// The next event, in publishing order, of a change that committed after it began.
    pub async fn next(&mut self) -> Option<Arc<CatalogEvent>> {
        loop {
            let event = self.events.recv().await?;
            let before_it_began = event
                .xid
                .zip(self.before.as_ref())
                .is_some_and(|(xid, before)| before.ended(xid));
            if !before_it_began {
                return Some(event);
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.hub
            .subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// One open subscription's place among its account's.
struct AccountSlot {
    hub: Arc<Hub>,
    account: Uuid,
}

impl Drop for AccountSlot {
    fn drop(&mut self) {
        let mut counts = self
            .hub
            .per_account
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.account) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.account);
            }
        }
    }
}

/// Why a `subscribe` was not opened.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An operation with this id is already running on the connection (close 4409).
    Duplicate,
    /// `WS_MAX_SUBSCRIPTIONS_PER_CONNECTION` are open on this connection.
    TooManyOnConnection(usize),
    /// `WS_MAX_SUBSCRIPTIONS_PER_ACCOUNT` are open for this account, on any connection.
    TooManyForAccount(usize),
}

/// What one initialised WebSocket connection shares with the subscriptions it runs.
pub struct Channel {
    viewer: Viewer,
    token: Option<VerifiedToken>,
    closer: Closer,
    hub: Arc<Hub>,
    /// The operations open on the connection, by id, each holding its account's place.
    open: Mutex<HashMap<String, Option<AccountSlot>>>,
    /// Subscriptions receiving events now.
    live: AtomicUsize,
    /// Since when no operation has been open (`None` while one is).
    idle_since: Mutex<Option<tokio::time::Instant>>,
}

impl Channel {
    /// The channel of a connection initialised by `viewer` (with `token`, when signed in).
    pub fn new(
        viewer: Viewer,
        token: Option<VerifiedToken>,
        closer: Closer,
        hub: Arc<Hub>,
    ) -> Self {
        Self {
            viewer,
            token,
            closer,
            hub,
            open: Mutex::new(HashMap::new()),
            live: AtomicUsize::new(0),
            idle_since: Mutex::new(Some(tokio::time::Instant::now())),
        }
    }

    /// Who initialised the connection.
    pub fn viewer(&self) -> &Viewer {
        &self.viewer
    }

    /// Whether this replica hears every change now (see [`Hub::deaf`]).
    pub fn hearing(&self) -> bool {
        self.hub.is_hearing()
    }

    /// Closes the connection for `reason`.
    pub fn close(&self, reason: Close) {
        self.closer.close(reason);
    }

    /// Counts operation `id` as open, within the limits.
    ///
    /// # Errors
    /// A [`Refusal`]: a duplicate id, or a limit reached.
    pub fn open(&self, id: &str) -> Result<(), Refusal> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.contains_key(id) {
            return Err(Refusal::Duplicate);
        }
        let limits = self.hub.limits;
        if open.len() >= limits.per_connection {
            return Err(Refusal::TooManyOnConnection(limits.per_connection));
        }
        let slot = match &self.viewer {
            Viewer::Account { id, .. } => Some(
                self.hub
                    .account_slot(*id)
                    .ok_or(Refusal::TooManyForAccount(limits.per_account))?,
            ),
            _ => None,
        };
        open.insert(id.to_owned(), slot);
        *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        Ok(())
    }

    /// Operation `id` ended (completed by either side): its places are free again.
    pub fn finish(&self, id: &str) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.remove(id).is_some() && open.is_empty() {
            *self
                .idle_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(tokio::time::Instant::now());
        }
    }

    /// Since when no operation has been open on the connection; `None` while one is.
    pub fn idle_since(&self) -> Option<tokio::time::Instant> {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A subscriber to `interest` for a subscription on this connection; counted as live
    /// (subject to the policy checks of [`Channel::verdict`]) while the returned value lives.
    /// It receives the changes that commit from now on (see [`Snapshot`]).
    pub async fn subscribe(self: &Arc<Self>, interest: Interest) -> LiveSubscription {
        let subscriber = self.hub.subscribe(interest, self.closer.clone()).await;
        self.live.fetch_add(1, Ordering::Relaxed);
        LiveSubscription {
            subscriber,
            channel: self.clone(),
        }
    }

    /// Why the connection must close now, if it must: its token expired or was revoked
    /// (4403, `token expired` or `session ended`), or, while a subscription is live, the policy in force no longer grants its
    /// caller `product read` (4403). Checked every [`CHECK_INTERVAL`] and before each event.
    pub fn verdict(&self) -> Option<Close> {
        if let Some(token) = &self.token {
            if chrono::Utc::now().timestamp() >= token.expires_at {
                return Some(Close::Unauthorized("token expired"));
            }
            if self
                .hub
                .revocations
                .is_revoked(token.account_id, token.session_id, token.version)
            {
                return Some(Close::Unauthorized("session ended"));
            }
        }
        if self.live.load(Ordering::Relaxed) > 0
            && !self
                .hub
                .authz
                .allows(Subject::of(&self.viewer), Permission::ProductRead)
        {
            return Some(Close::Forbidden);
        }
        None
    }
}

/// How often each connection checks [`Channel::verdict`]: with the revocation poll
/// (`REVOCATION_POLL_MS`, 250 ms by default) a logout on another replica ends a subscription
/// within about half a second, and one on this replica within this interval (the revocation
/// applies here at once).
pub const CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// A subscription's queue of events on its connection.
pub struct LiveSubscription {
    subscriber: Subscriber,
    channel: Arc<Channel>,
}

impl LiveSubscription {
    /// The next event the caller may still receive: before each, the connection is checked
    /// ([`Channel::verdict`]); when it must close, it is told to, and no event comes.
    pub async fn next(&mut self) -> Option<Arc<CatalogEvent>> {
        let event = self.subscriber.next().await?;
        if let Some(reason) = self.channel.verdict() {
            self.channel.close(reason);
            // The connection drops this subscription as it closes.
            std::future::pending::<()>().await;
        }
        Some(event)
    }
}

impl Drop for LiveSubscription {
    fn drop(&mut self) {
        self.channel.live.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::Snapshot;

    #[test]
    fn a_snapshot_tells_the_transactions_that_had_ended() {
        let snapshot = Snapshot::parse("100:105:101,103").unwrap();
        for ended in [1, 99, 100, 102, 104] {
            assert!(snapshot.ended(ended), "{ended}");
        }
        for running_or_later in [101, 103, 105, 200] {
            assert!(!snapshot.ended(running_or_later), "{running_or_later}");
        }
        let none_running = Snapshot::parse("7:7:").unwrap();
        assert!(none_running.ended(6) && !none_running.ended(7));
        for bad in ["", "7", "7:x:", "7:8:a"] {
            assert_eq!(Snapshot::parse(bad), None, "{bad:?}");
        }
    }
}
