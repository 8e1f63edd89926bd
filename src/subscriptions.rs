//! Live catalog changes for GraphQL subscriptions: the [`Hub`] that hands each committed change
//! to the subscribers that asked for it, and the [`Channel`] one WebSocket connection shares
//! with the subscriptions it runs (who is on it, its limits, and how it is closed).
//!
//! A change is published only once its transaction has committed (the catalog publishes after
//! [`crate::db::write`] returned), so a change that rolled back is never seen. Publishing goes
//! through [`Hub::publish`] alone: delivery to other replicas (PostgreSQL `LISTEN`/`NOTIFY`)
//! can take its place there, each replica's listener then handing what it hears to
//! [`Hub::deliver`].
//!
//! Each subscriber has a queue of its own, bounded by `WS_MAX_QUEUED_EVENTS`: a subscriber
//! whose queue is full when an event arrives (its client reads more slowly than the catalog
//! changes) has its connection closed ([`Close::SlowConsumer`]) instead of being buffered
//! without end.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

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
    /// The product as committed; `None` once deleted.
    pub product: Option<Arc<product::Model>>,
    /// Whether its stock changed (an `adjustStock`, or an update that set the stock).
    pub stock_changed: bool,
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
}

struct Entry {
    interest: Interest,
    queue: mpsc::Sender<Arc<CatalogEvent>>,
    closer: Closer,
}

impl Hub {
    pub fn new(
        limits: SubscriptionLimits,
        revocations: Arc<Revocations>,
        authz: Arc<SharedAuthorizer>,
    ) -> Arc<Self> {
        Arc::new(Self {
            subscribers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            limits,
            per_account: Mutex::new(HashMap::new()),
            revocations,
            authz,
        })
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

    /// A new subscriber to the events `interest` names, on the connection `closer` closes.
    pub fn subscribe(self: &Arc<Self>, interest: Interest, closer: Closer) -> Subscriber {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, events) = mpsc::channel(self.limits.queued_events.max(1));
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                id,
                Entry {
                    interest,
                    queue,
                    closer,
                },
            );
        Subscriber {
            id,
            hub: self.clone(),
            events,
        }
    }

    /// The number of subscribers (for tests and metrics).
    pub fn subscriber_count(&self) -> usize {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
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
}

impl Subscriber {
    /// The next event, in publishing order.
    pub async fn next(&mut self) -> Option<Arc<CatalogEvent>> {
        self.events.recv().await
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
    pub fn subscribe(self: &Arc<Self>, interest: Interest) -> LiveSubscription {
        self.live.fetch_add(1, Ordering::Relaxed);
        LiveSubscription {
            subscriber: self.hub.subscribe(interest, self.closer.clone()),
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
