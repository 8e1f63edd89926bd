//! What one replica hears of the others' changes: on PostgreSQL, `LISTEN` on a connection of
//! its own for the notifications that changes send with `NOTIFY` in their transactions (so
//! only what committed is heard, in commit order); on SQLite, one process alone serves a
//! database file's subscribers and nothing is sent.
//!
//! The polls that kept replicas in step before (revocations, the catalog version, the stored
//! policy) stay, as the fallback: a notification [`Wake`]s its poll at once instead of at its
//! next tick, and a notification missed (the listening connection was lost) is repaired by the
//! next tick. While the connection is lost, what was sent is lost with it: the listener says so
//! at once ([`Hearer::lost`]), so that what depended on hearing every change (subscribers) can
//! start over elsewhere, and again once it listens ([`Hearer::listening`]).

use std::{sync::Arc, time::Duration};

use futures_util::FutureExt;
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
    /// A product was created, changed or deleted: the payload is the event, whole or in
    /// pieces (see `catalog::relay`).
    pub const CATALOG: &str = "storefront_catalog";
    /// A revocation was stored (a database trigger sends it).
    pub const REVOCATIONS: &str = "storefront_revocations";
    /// The stored policy changed (a database trigger sends it).
    pub const POLICY: &str = "storefront_policy";
    /// The catalog's version changed: products changed, by the server or otherwise (a
    /// database trigger sends it).
    pub const CATALOG_VERSION: &str = "storefront_catalog_version";
    /// What the listener sends to know that it still hears.
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
    send(db, "SELECT pg_notify($1, $2)", channel, payload).await
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
    let sql = "SELECT pg_notify($1, pg_current_xact_id()::text || ':' || $2)";
    send(db, sql, channel, payload).await
}

/// Runs `sql` (a `pg_notify` of `$1`, `$2`) on PostgreSQL; nothing on SQLite.
async fn send(
    db: &impl ConnectionTrait,
    sql: &str,
    channel: &str,
    payload: &str,
) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
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

/// One notification heard.
#[derive(Debug)]
pub struct Notification {
    pub channel: String,
    pub payload: String,
}

/// What is done with what the listener hears, in commit order.
pub trait Hearer: Send + 'static {
    /// The notifications that had arrived, in commit order (as a batch, so that work common to
    /// all of them is done once).
    fn heard(&mut self, batch: Vec<Notification>) -> impl Future<Output = ()> + Send;

    /// The connection was lost: notifications sent from now until [`Hearer::listening`] are
    /// gone.
    fn lost(&mut self);

    /// Listening again after a loss.
    fn listening(&mut self);

    /// Whether anyone still needs what it hears: once not, the listener stops (checked at
    /// each heartbeat and before each attempt to connect again).
    fn needed(&self) -> bool;
}

/// How often the listener checks that it still hears: when nothing at all was heard since the
/// heartbeat it sent at the previous check, it takes the connection for lost. (Anything heard
/// will do: under a flood of notifications its own heartbeat waits behind them.)
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Notifications handed on at most in one batch.
const MAX_BATCH: usize = 256;
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
    // A lost connection is reported at once (`Ok(None)`), not after sqlx connected again inside
    // the call, where a `select!` that drops the call would lose the report; a new connection
    // is made here instead.
    listener.eager_reconnect(false);
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
    let mut ticker = tokio::time::interval(HEARTBEAT);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When the heartbeat not yet followed by anything heard was sent.
    let mut awaiting: Option<tokio::time::Instant> = None;
    loop {
        let lost = tokio::select! {
            received = listener.try_recv() => match received {
                Ok(Some(first)) => {
                    awaiting = None;
                    // What else has arrived already joins the batch.
                    let mut batch = vec![first];
                    let mut lost = false;
                    while batch.len() < MAX_BATCH {
                        match listener.try_recv().now_or_never() {
                            Some(Ok(Some(more))) => batch.push(more),
                            Some(Ok(None) | Err(_)) => {
                                lost = true;
                                break;
                            }
                            None => break,
                        }
                    }
                    let batch: Vec<Notification> = batch
                        .iter()
                        .filter(|n| n.channel() != channel::HEARTBEAT)
                        .map(|n| Notification {
                            channel: n.channel().to_owned(),
                            payload: n.payload().to_owned(),
                        })
                        .collect();
                    if !batch.is_empty() {
                        hearer.heard(batch).await;
                    }
                    lost
                }
                // The connection was lost.
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
                    tracing::warn!("the listening connection heard nothing, not even its own heartbeat");
                    true
                } else {
                    if awaiting.is_none() {
                        // Only a heartbeat that was sent is waited for: a busy pool is no sign
                        // of a lost listening connection.
                        match notify(&pool, channel::HEARTBEAT, "").await {
                            Ok(()) => awaiting = Some(tokio::time::Instant::now()),
                            Err(err) => tracing::debug!(error = %err, "could not send the listener's heartbeat"),
                        }
                    }
                    false
                }
            }
        };
        if !lost {
            continue;
        }
        hearer.lost();
        // Start from a new connection (the old one may be half-open).
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
        hearer.listening();
    }
}
