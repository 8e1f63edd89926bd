//! What one replica hears of the others' changes: on PostgreSQL, `LISTEN` on a connection of
//! its own for the notifications that changes send with `NOTIFY` in their transactions (so
//! only what committed is heard, in commit order); on SQLite, one process alone serves a
//! database file's subscribers and nothing is sent.
//!
//! The polls that kept replicas in step before (revocations, the catalog version, the stored
//! policy) stay, as the fallback: a notification [`Wake`]s its poll at once instead of at its
//! next tick, and a notification missed (the listening connection was lost) is repaired by the
//! next tick. While the connection is lost, what was sent is lost with it: the listener says so
//! ([`Heard::Lost`]) once it is listening again, so that what depended on hearing every change
//! (subscribers) can start over.

use std::{sync::Arc, time::Duration};

use sea_orm::sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use tokio::sync::Notify;

/// Wakes a poll before its next tick; wakes that come while it runs make one more run, not
/// one each.
#[derive(Clone, Debug, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for a poll now.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Resolves when [`Wake::wake`] was called since the last time this resolved.
    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

/// The channels changes are announced on.
pub mod channel {
    /// A product was created, changed or deleted: the payload is the event (see
    /// `subscriptions::CatalogEvent::to_payload`).
    pub const CATALOG: &str = "storefront_catalog";
    /// A revocation was stored (a database trigger sends it).
    pub const REVOCATIONS: &str = "storefront_revocations";
    /// The stored policy changed (a database trigger sends it).
    pub const POLICY: &str = "storefront_policy";
    /// The catalog's version changed: products changed, by the server or otherwise (a
    /// database trigger sends it).
    pub const CATALOG_VERSION: &str = "storefront_catalog_version";
    /// What the listener sends itself to know that it still hears.
    pub const HEARTBEAT: &str = "storefront_heartbeat";
}

/// The largest payload PostgreSQL takes is 8000 bytes; a longer one fails the transaction.
pub const MAX_PAYLOAD: usize = 7900;

/// Sends `payload` on `channel` when the caller's transaction commits (PostgreSQL); nothing on
/// SQLite.
///
/// # Errors
/// On a database failure; a payload longer than [`MAX_PAYLOAD`] is the caller's to avoid.
pub async fn notify(db: &impl ConnectionTrait, channel: &str, payload: &str) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [channel.into(), payload.into()],
    ))
    .await?;
    Ok(())
}

/// The most [`notify_from_transaction`] puts before a payload: a transaction id (20 digits at
/// most) and a colon.
pub const XID_PREFIX: usize = 21;

/// As [`notify`], with the id of the sending transaction before the payload
/// (`<xid>:<payload>`, see [`from_transaction`]), which a listener can compare with a
/// snapshot (`pg_current_snapshot()`) to tell whether the change had committed before it.
///
/// # Errors
/// On a database failure.
pub async fn notify_from_transaction(
    db: &impl ConnectionTrait,
    channel: &str,
    payload: &str,
) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, pg_current_xact_id()::text || ':' || $2)",
        [channel.into(), payload.into()],
    ))
    .await?;
    Ok(())
}

/// The transaction id and the payload of a notification sent by [`notify_from_transaction`].
pub fn from_transaction(payload: &str) -> Option<(u64, &str)> {
    let (xid, rest) = payload.split_once(':')?;
    Some((xid.parse().ok()?, rest))
}

/// What the listener hands on.
#[derive(Debug)]
pub enum Heard {
    /// A notification on one of the channels listened to.
    Notification { channel: String, payload: String },
    /// The connection was lost and is back: notifications sent meanwhile are gone.
    Lost,
}

/// What is done with what the listener hears, one at a time, in commit order.
pub trait Hearer: Send + 'static {
    fn heard(&mut self, heard: Heard) -> impl Future<Output = ()> + Send;

    /// Whether anyone still needs what it hears: once not, the listener stops (checked at
    /// each heartbeat and before each attempt to connect again).
    fn needed(&self) -> bool;
}

/// How often the listener checks that it still hears, and how long it waits for its own
/// heartbeat before it takes the connection for lost.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long to wait before connecting again after a failure.
const RETRY: Duration = Duration::from_secs(1);
/// The `application_name` of the listening connection (`pg_stat_activity` shows it).
pub const APPLICATION_NAME: &str = "storefront-listener";

/// Listens on `channels` of the PostgreSQL database at `url` and hands what it hears to
/// `hearer`, in the order the transactions committed, for as long as it is needed. The first
/// connection is made before this returns, so a change committed once it has returned is
/// heard.
///
/// # Errors
/// When the first connection or `LISTEN` fails.
pub async fn spawn_listener(
    url: &str,
    channels: &'static [&'static str],
    pool: sea_orm::DatabaseConnection,
    hearer: impl Hearer,
) -> Result<tokio::task::JoinHandle<()>, DbErr> {
    let options: PgConnectOptions = url
        .parse::<PgConnectOptions>()
        .map_err(|err| DbErr::Custom(format!("the listener's database URL: {err}")))?
        .application_name(APPLICATION_NAME);
    let listener = connect(&options, channels).await?;
    Ok(tokio::spawn(run(listener, options, channels, pool, hearer)))
}

async fn connect(
    options: &PgConnectOptions,
    channels: &'static [&'static str],
) -> Result<PgListener, DbErr> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.clone())
        .await
        .map_err(|err| DbErr::Custom(format!("could not connect to listen: {err}")))?;
    let mut listener = PgListener::connect_with(&pool)
        .await
        .map_err(|err| DbErr::Custom(format!("could not connect to listen: {err}")))?;
    listener
        .listen_all(channels.iter().copied().chain([channel::HEARTBEAT]))
        .await
        .map_err(|err| DbErr::Custom(format!("LISTEN failed: {err}")))?;
    Ok(listener)
}

async fn run(
    mut listener: PgListener,
    options: PgConnectOptions,
    channels: &'static [&'static str],
    pool: sea_orm::DatabaseConnection,
    mut hearer: impl Hearer,
) {
    // A heartbeat names itself, so one sent by another replica is not taken for this one's.
    let me = uuid::Uuid::new_v4().to_string();
    let mut ticker = tokio::time::interval(HEARTBEAT);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When this listener's last heartbeat was sent and not yet heard.
    let mut awaiting: Option<tokio::time::Instant> = None;
    loop {
        let lost = tokio::select! {
            received = listener.try_recv() => match received {
                Ok(Some(notification)) => {
                    if notification.channel() == channel::HEARTBEAT {
                        if notification.payload() == me {
                            awaiting = None;
                        }
                        continue;
                    }
                    hearer
                        .heard(Heard::Notification {
                            channel: notification.channel().to_owned(),
                            payload: notification.payload().to_owned(),
                        })
                        .await;
                    continue;
                }
                // The connection was lost (sqlx connects again on the next call).
                Ok(None) => true,
                Err(err) => {
                    tracing::warn!(error = %err, "the listening connection failed");
                    true
                }
            },
            _ = ticker.tick() => {
                if !hearer.needed() {
                    return;
                }
                if awaiting.is_some_and(|sent| sent.elapsed() >= HEARTBEAT) {
                    tracing::warn!("the listening connection stopped hearing its own heartbeat");
                    true
                } else {
                    if awaiting.is_none() {
                        awaiting = Some(tokio::time::Instant::now());
                    }
                    if let Err(err) = notify(&pool, channel::HEARTBEAT, &me).await {
                        tracing::debug!(error = %err, "could not send the listener's heartbeat");
                    }
                    false
                }
            }
        };
        if !lost {
            continue;
        }
        // Start from a new connection (the old one may be half-open), then say what was lost.
        listener = loop {
            if !hearer.needed() {
                return;
            }
            match connect(&options, channels).await {
                Ok(listener) => break listener,
                Err(err) => {
                    tracing::warn!(error = %err, "could not listen again; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        };
        awaiting = None;
        tracing::info!("listening again; changes sent meanwhile were missed");
        hearer.heard(Heard::Lost).await;
    }
}
