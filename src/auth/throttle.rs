//! Abuse limits on signing in: locks after repeated failures per (username, client address),
//! a higher ceiling per username and a lock per account's password changes, all counted in
//! the database before a password is verified (so every replica agrees and concurrent guesses
//! cannot slip past), and a per-client-address rate kept in memory per replica.
//!
//! The locks are written by hand rather than with `governor`: they must be shared by every
//! replica and counted atomically with the attempt, which an in-memory limiter cannot do.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::keyed::HashMapStateStore,
};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, Statement};

use crate::{
    db::{self, Db},
    entities::login_throttle,
    error::{AppError, AppResult, RateLimitPolicy},
};

/// Failures forgotten after this long without another: "consecutive" means within this window.
pub const FAILURE_MEMORY_MS: i64 = 60 * 60 * 1000;
/// A reservation whose request never settled it (cancelled, timed out, replica gone) stops
/// counting after this long; longer than any request may run.
pub const RESERVATION_TTL_MS: i64 = 2 * 60 * 1000;

/// How many attempts a throttle key allows before it locks, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Its name in `extensions.policy` and the HTTP `RateLimit` headers.
    pub name: &'static str,
    /// Consecutive failures allowed before the key is locked.
    pub free_failures: i32,
    /// Attempts that may be in flight at once (never more than `free_failures`).
    pub max_in_flight: i32,
    /// The first lock; each further failure doubles it, up to `max_lock`.
    pub first_lock: Duration,
    pub max_lock: Duration,
    /// Whether a success clears the failures (a ceiling over many clients counts failures
    /// only: one client's success says nothing about the others' guesses).
    pub success_clears: bool,
}

/// Sign-in failures per (username, client address): the lock a stranger at another address
/// cannot trigger for the victim's address.
pub const PER_ADDRESS: Policy = Policy {
    name: "sign-in-failures",
    free_failures: 5,
    max_in_flight: 5,
    first_lock: Duration::from_secs(30),
    max_lock: Duration::from_secs(15 * 60),
    success_clears: true,
};

/// Sign-in failures per username from every address: the ceiling on distributed guessing.
pub const PER_USERNAME: Policy = Policy {
    name: "sign-in-failures-per-username",
    free_failures: 50,
    max_in_flight: 50,
    first_lock: Duration::from_secs(30),
    max_lock: Duration::from_secs(15 * 60),
    success_clears: false,
};

/// Wrong current passwords in `changePassword`, per account, one change at a time. Only the
/// signed-in account reaches it, so strangers' sign-in failures never touch it.
pub const PASSWORD_CHANGE: Policy = Policy {
    name: "password-change-failures",
    free_failures: 5,
    max_in_flight: 1,
    first_lock: Duration::from_secs(30),
    max_lock: Duration::from_secs(15 * 60),
    success_clears: true,
};

impl Policy {
    /// The policy as the `RateLimit-Policy` header describes it: failures per the window in
    /// which they count as consecutive.
    pub fn rate_limit(&self) -> RateLimitPolicy {
        RateLimitPolicy {
            name: self.name,
            quota: u64::try_from(self.free_failures).unwrap_or(0),
            window_secs: Some(u64::try_from(FAILURE_MEMORY_MS / 1000).unwrap_or(0)),
        }
    }

    /// How long the key is locked after `failures` consecutive failures.
    pub fn lock_duration(&self, failures: i32) -> Option<Duration> {
        if failures < self.free_failures {
            return None;
        }
        let doublings = u32::try_from(failures - self.free_failures)
            .unwrap_or(u32::MAX)
            .min(16);
        Some((self.first_lock * 2u32.pow(doublings)).min(self.max_lock))
    }

    /// SQL for the lock in milliseconds after `failures` (an SQL expression) failures, `NULL`
    /// below the threshold: the doublings spelled out, as SQLite has no `POWER`.
    fn lock_ms_sql(&self, failures: &str) -> String {
        let mut sql = format!("CASE WHEN {failures} < {} THEN NULL", self.free_failures);
        let mut n = self.free_failures;
        while let Some(lock) = self.lock_duration(n) {
            if lock >= self.max_lock {
                break;
            }
            sql.push_str(&format!(" WHEN {failures} = {n} THEN {}", lock.as_millis()));
            n += 1;
        }
        sql.push_str(&format!(" ELSE {} END", self.max_lock.as_millis()));
        sql
    }
}

/// The address a per-address limit counts: an IPv4 address as it is (IPv4-mapped IPv6 counts as
/// IPv4), an IPv6 address by its /64, which one subscriber usually holds whole.
pub fn address_group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !(u128::MAX >> 64);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

/// The throttle key of a username typed at sign-in: a SHA-256 of its trimmed, lower-cased
/// form, so the table holds no usernames and unknown names are throttled like known ones.
/// Each kind of key hashes a different prefix, so no typed text can collide with another kind.
pub fn username_key(username: &str) -> String {
    super::sha256_hex(format!("user\0{}", normalize(username)).as_bytes())
}

/// The throttle key of a username typed from one client address (grouped).
pub fn address_key(username: &str, client: IpAddr) -> String {
    super::sha256_hex(
        format!("addr\0{}\0{}", address_group(client), normalize(username)).as_bytes(),
    )
}

/// The throttle key of an account's changes that need its current password (a new password,
/// deleting the account): they share one lock and one change at a time.
pub fn password_change_key(account_id: uuid::Uuid) -> String {
    super::sha256_hex(format!("pwch\0{account_id}").as_bytes())
}

fn normalize(username: &str) -> String {
    username.trim().to_lowercase()
}

/// An attempt reserved under one or more throttle keys before its password is verified.
/// Settle it with [`Attempt::succeeded`] or [`Attempt::failed`]; dropped unsettled (an error,
/// a cancelled request) it is released without counting, and if even that never runs, the
/// reservation lapses after [`RESERVATION_TTL_MS`].
pub struct Attempt {
    db: Db,
    keys: Vec<(String, Policy)>,
    settled: bool,
    _claims: LocalClaims,
}

/// What settling does to each key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The password matched: the key's failures are cleared (except the per-username ceiling,
    /// which counts failures only and just gives the reservation back).
    Success,
    Failure,
    /// Nothing was verified (the hashing queue was full, a new password broke a rule).
    Release,
}

/// Reserves one attempt under every key (all or none, in one transaction whose commit is
/// checked before the reservation counts): refused while a key is locked, while its failures
/// plus the attempts in flight reach its allowance, or (once locked before) while another
/// attempt is in flight. However many attempts arrive at once, at most the allowed number
/// are ever verified, on every replica.
///
/// # Errors
/// `TOO_MANY_REQUESTS` with the seconds left on the longest lock (1 when attempts in flight
/// fill the allowance); internal on a database failure.
pub async fn reserve(db: &Db, keys: Vec<(String, Policy)>) -> AppResult<Attempt> {
    // Keys that allow one attempt at a time are first claimed in this process, so a flood
    // from one client is refused without a database round trip each.
    let claims = LocalClaims::take(&keys)?;
    let now = Utc::now().timestamp_millis();
    // Bookkeeping, not the request's change: a retry under the same `Idempotency-Key` may
    // count again.
    db::observe::unobserved(db::write(db, async |txn| {
        relax_durability(txn).await?;
        for (key, policy) in &keys {
            if !reserve_one(txn, key, policy, now).await? {
                // An error rolls back what the earlier keys reserved.
                return Err(refusal(txn, &keys, now).await?);
            }
        }
        Ok(())
    }))
    .await?;
    Ok(Attempt {
        db: db.clone(),
        keys,
        settled: false,
        _claims: claims,
    })
}

/// Makes a throttle transaction (through [`db::write`], so its commit is checked) not wait for
/// its commit to reach the disk on PostgreSQL: the counters are checked and changed atomically
/// all the same, and a database crash (which a client cannot cause) would lose at most the last
/// fraction of a second of them. Waiting for the disk serialized every guess against one
/// username behind a flush.
async fn relax_durability(txn: &DatabaseTransaction) -> AppResult<()> {
    if txn.get_database_backend() == DbBackend::Postgres {
        txn.execute_unprepared("SET LOCAL synchronous_commit = off")
            .await?;
    }
    Ok(())
}

/// Keys with an attempt in flight in this process, for the policies that allow one at a time.
static IN_FLIGHT_HERE: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// This process's claim on one-at-a-time keys, given back when dropped.
struct LocalClaims(Vec<String>);

impl LocalClaims {
    fn take(keys: &[(String, Policy)]) -> AppResult<Self> {
        let exclusive: Vec<String> = keys
            .iter()
            .filter(|(_, policy)| policy.max_in_flight == 1)
            .map(|(key, _)| key.clone())
            .collect();
        if exclusive.is_empty() {
            return Ok(Self(exclusive));
        }
        let mut held = IN_FLIGHT_HERE.lock().unwrap_or_else(|e| e.into_inner());
        let held = held.get_or_insert_with(HashSet::new);
        if let Some((_, policy)) = keys.iter().find(|(key, _)| held.contains(key)) {
            return Err(AppError::TooManyRequests {
                retry_after_secs: 1,
                policy: policy.rate_limit(),
            });
        }
        held.extend(exclusive.iter().cloned());
        Ok(Self(exclusive))
    }
}

impl Drop for LocalClaims {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let mut held = IN_FLIGHT_HERE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = held.as_mut() {
            for key in &self.0 {
                held.remove(key);
            }
        }
    }
}

const STALE: &str = "login_throttles.updated_at_ms < $3";
const EFFECTIVE_FAILURES: &str =
    "(CASE WHEN login_throttles.updated_at_ms < $3 THEN 0 ELSE login_throttles.failures END)";
const EFFECTIVE_IN_FLIGHT: &str =
    "(CASE WHEN login_throttles.in_flight_since_ms < $4 THEN 0 ELSE login_throttles.in_flight END)";

/// One conditional upsert: counts the attempt in flight only if the key allows it. Returns
/// whether it did.
async fn reserve_one(
    txn: &DatabaseTransaction,
    key: &str,
    policy: &Policy,
    now: i64,
) -> AppResult<bool> {
    let free = policy.free_failures;
    let max_in_flight = policy.max_in_flight.min(free).max(1);
    // `$N` placeholders and `ON CONFLICT … DO UPDATE … WHERE` mean the same on SQLite and
    // PostgreSQL; PostgreSQL re-checks the WHERE against the latest row after taking its lock.
    let sql = format!(
        "INSERT INTO login_throttles
           (key, failures, in_flight, in_flight_since_ms, locked_until_ms, updated_at_ms)
         VALUES ($1, 0, 1, $2, NULL, $2)
         ON CONFLICT (key) DO UPDATE SET
           failures = {EFFECTIVE_FAILURES},
           in_flight = {EFFECTIVE_IN_FLIGHT} + 1,
           in_flight_since_ms = $2,
           locked_until_ms = CASE WHEN {STALE} THEN NULL ELSE login_throttles.locked_until_ms END,
           updated_at_ms = CASE WHEN {STALE} THEN $2 ELSE login_throttles.updated_at_ms END
         WHERE (login_throttles.locked_until_ms IS NULL
                OR login_throttles.locked_until_ms <= $2 OR {STALE})
           AND {EFFECTIVE_IN_FLIGHT} < {max_in_flight}
           AND ({EFFECTIVE_FAILURES} + {EFFECTIVE_IN_FLIGHT} < {free}
                OR ({EFFECTIVE_FAILURES} >= {free} AND {EFFECTIVE_IN_FLIGHT} = 0))"
    );
    let result = txn
        .execute_raw(Statement::from_sql_and_values(
            txn.get_database_backend(),
            sql,
            [
                key.into(),
                now.into(),
                (now - FAILURE_MEMORY_MS).into(),
                (now - RESERVATION_TTL_MS).into(),
            ],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// The refusal for keys that did not allow an attempt: the longest lock left, or 1 s while
/// other attempts are in flight.
async fn refusal(
    db: &impl ConnectionTrait,
    keys: &[(String, Policy)],
    now: i64,
) -> AppResult<AppError> {
    let mut wait_ms = 0;
    // The policy that holds the caller back longest (the first, while attempts are in flight).
    let mut policy = keys.first().map_or(PER_ADDRESS, |(_, policy)| *policy);
    for (key, key_policy) in keys {
        if let Some(row) = login_throttle::Entity::find_by_id(key.clone())
            .one(db)
            .await?
            && let Some(until) = row.locked_until_ms
            && until - now > wait_ms
        {
            wait_ms = until - now;
            policy = *key_policy;
        }
    }
    Ok(AppError::TooManyRequests {
        retry_after_secs: u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000).max(1),
        policy: policy.rate_limit(),
    })
}

impl Attempt {
    /// The password matched.
    ///
    /// # Errors
    /// Internal, on a database failure.
    pub async fn succeeded(self) -> AppResult<()> {
        self.settle(Outcome::Success).await
    }

    /// The password did not match: the failure counts, and locks the key once it reaches the
    /// key's allowance.
    ///
    /// # Errors
    /// Internal, on a database failure.
    pub async fn failed(self) -> AppResult<()> {
        self.settle(Outcome::Failure).await
    }

    /// Nothing was verified; the reservation is given back without counting.
    ///
    /// # Errors
    /// Internal, on a database failure.
    pub async fn release(self) -> AppResult<()> {
        self.settle(Outcome::Release).await
    }

    async fn settle(mut self, outcome: Outcome) -> AppResult<()> {
        self.settled = true;
        let keys = std::mem::take(&mut self.keys);
        settle(&self.db, &keys, outcome).await
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let keys = std::mem::take(&mut self.keys);
        let db = self.db.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(err) = settle(&db, &keys, Outcome::Release).await {
                    tracing::warn!(error = ?err, "could not release a sign-in reservation");
                }
            });
        }
    }
}

/// Settles every key in one transaction.
async fn settle(db: &Db, keys: &[(String, Policy)], outcome: Outcome) -> AppResult<()> {
    let now = Utc::now().timestamp_millis();
    db::observe::unobserved(db::write(db, async |txn| {
        relax_durability(txn).await?;
        for (key, policy) in keys {
            let in_flight = "in_flight = CASE WHEN in_flight > 0 THEN in_flight - 1 ELSE 0 END";
            let sql = match outcome {
                Outcome::Success if !policy.success_clears => {
                    format!("UPDATE login_throttles SET {in_flight} WHERE key = $1")
                }
                Outcome::Success => format!(
                    "UPDATE login_throttles SET {in_flight}, failures = 0, locked_until_ms = NULL,
                       updated_at_ms = $2
                     WHERE key = $1"
                ),
                // An upsert, in case the row was pruned while the attempt was in flight.
                Outcome::Failure => format!(
                    "INSERT INTO login_throttles
                       (key, failures, in_flight, in_flight_since_ms, locked_until_ms, updated_at_ms)
                     VALUES ($1, 1, 0, 0, $2 + ({first_lock}), $2)
                     ON CONFLICT (key) DO UPDATE SET
                       in_flight = CASE WHEN login_throttles.in_flight > 0
                         THEN login_throttles.in_flight - 1 ELSE 0 END,
                       failures = login_throttles.failures + 1,
                       updated_at_ms = $2,
                       locked_until_ms = CASE WHEN login_throttles.failures + 1 >= {free}
                         THEN $2 + ({lock}) ELSE login_throttles.locked_until_ms END",
                    free = policy.free_failures,
                    first_lock = policy.lock_ms_sql("1"),
                    lock = policy.lock_ms_sql("login_throttles.failures + 1"),
                ),
                Outcome::Release => format!("UPDATE login_throttles SET {in_flight} WHERE key = $1"),
            };
            txn.execute_raw(Statement::from_sql_and_values(
                txn.get_database_backend(),
                sql,
                [key.as_str().into(), now.into()],
            ))
            .await?;
        }
        Ok(())
    }))
    .await
}

/// Sign-in attempts per client address group (see [`address_group`]): `per_minute` at once,
/// refilled evenly over a minute, counted by `governor` (GCRA) in this process.
///
/// Its keys live in governor's own map rather than a cache that evicts: forgetting an address
/// that is still limited would let it in again. Addresses whose allowance is whole again are
/// indistinguishable from new ones, and are swept out as the map grows.
pub struct IpRateLimiter<C: Clock = DefaultClock> {
    /// `None` when the limit is off.
    limiter: Option<KeyedLimiter<C>>,
    /// Attempts per minute.
    per_minute: u32,
    /// The number of addresses at which the next sweep runs.
    sweep_at: AtomicUsize,
}

type KeyedLimiter<C> =
    RateLimiter<IpAddr, HashMapStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The name of [`IpRateLimiter`]'s policy.
pub const AUTH_PER_ADDRESS: &str = "auth-per-address";

/// Addresses kept before a sweep forgets the ones with a full allowance again.
const SWEEP_AT: usize = 10_000;

impl IpRateLimiter {
    /// A limiter allowing `per_minute` attempts per address group; 0 turns it off.
    pub fn new(per_minute: u32) -> Self {
        Self::with_clock(per_minute, DefaultClock::default())
    }
}

impl<C: Clock> IpRateLimiter<C> {
    fn with_clock(per_minute: u32, clock: C) -> Self {
        let limiter = NonZeroU32::new(per_minute)
            .map(|n| RateLimiter::hashmap_with_clock(Quota::per_minute(n), clock));
        Self {
            limiter,
            per_minute,
            sweep_at: AtomicUsize::new(SWEEP_AT),
        }
    }

    /// Takes one attempt for `ip`'s address group (see [`address_group`]).
    ///
    /// # Errors
    /// `TOO_MANY_REQUESTS` with the seconds until the next attempt is allowed.
    pub fn check(&self, ip: IpAddr) -> AppResult<()> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if limiter.len() >= self.sweep_at.load(Ordering::Relaxed) {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            // While most addresses are still limited, sweep again only once they double.
            self.sweep_at
                .store(SWEEP_AT.max(limiter.len() * 2), Ordering::Relaxed);
        }
        limiter.check_key(&address_group(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(limiter.clock().now());
            AppError::TooManyRequests {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                policy: RateLimitPolicy {
                    name: AUTH_PER_ADDRESS,
                    quota: u64::from(self.per_minute),
                    window_secs: Some(60),
                },
            }
        })
    }

    #[cfg(test)]
    fn addresses_kept(&self) -> usize {
        self.limiter.as_ref().map_or(0, RateLimiter::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_grows_from_the_fifth_failure_and_is_capped() {
        let p = PER_ADDRESS;
        assert_eq!(p.lock_duration(4), None);
        assert_eq!(p.lock_duration(5), Some(Duration::from_secs(30)));
        assert_eq!(p.lock_duration(6), Some(Duration::from_secs(60)));
        assert_eq!(p.lock_duration(7), Some(Duration::from_secs(120)));
        assert_eq!(p.lock_duration(50), Some(p.max_lock));
        assert_eq!(PER_USERNAME.lock_duration(49), None);
        assert_eq!(
            PER_USERNAME.lock_duration(50),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            p.lock_ms_sql("f"),
            "CASE WHEN f < 5 THEN NULL WHEN f = 5 THEN 30000 WHEN f = 6 THEN 60000 \
             WHEN f = 7 THEN 120000 WHEN f = 8 THEN 240000 WHEN f = 9 THEN 480000 \
             ELSE 900000 END"
        );
    }

    #[test]
    fn keys_ignore_case_never_hold_the_username_and_never_collide_across_kinds() {
        assert_eq!(username_key("Dana"), username_key("dana"));
        assert_ne!(username_key("dana"), username_key("dan"));
        assert_eq!(username_key("dana").len(), 64);
        assert!(!username_key("dana").contains("dana"));
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(address_key("Dana", ip), address_key("dana", ip));
        assert_ne!(
            address_key("dana", ip),
            address_key("dana", "203.0.113.8".parse().unwrap())
        );
        // A typed username spelling out another kind's preimage still gets a key of its own.
        assert_ne!(
            username_key(&format!("addr\0{ip}\0dana")),
            address_key("dana", ip)
        );
        assert_ne!(username_key("dana"), address_key("dana", ip));
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_64_and_ipv4_mapped_counts_as_ipv4() {
        let group = |s: &str| address_group(s.parse().unwrap()).to_string();
        assert_eq!(group("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(group("2001:db8:1:2::1"), group("2001:db8:1:2:ffff::9"));
        assert_ne!(group("2001:db8:1:2::1"), group("2001:db8:1:3::1"));
        assert_eq!(group("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(group("203.0.113.7"), "203.0.113.7");
        assert_eq!(
            address_key("dana", "::ffff:203.0.113.7".parse().unwrap()),
            address_key("dana", "203.0.113.7".parse().unwrap())
        );
        assert_eq!(
            address_key("dana", "2001:db8::1".parse().unwrap()),
            address_key("dana", "2001:db8::abcd:1".parse().unwrap())
        );
    }

    fn refused_for(result: AppResult<()>) -> Option<u64> {
        match result {
            Ok(()) => None,
            Err(AppError::TooManyRequests {
                retry_after_secs, ..
            }) => Some(retry_after_secs),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_ip_limiter_refills_evenly_over_a_minute_and_says_when() {
        let clock = governor::clock::FakeRelativeClock::default();
        let limiter = IpRateLimiter::with_clock(3, clock.clone());
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(refused_for(limiter.check(ip)), None);
        }
        // One attempt comes back every 20 s.
        assert_eq!(refused_for(limiter.check(ip)), Some(20));
        clock.advance(Duration::from_millis(19_500));
        assert_eq!(refused_for(limiter.check(ip)), Some(1));
        clock.advance(Duration::from_millis(500));
        assert_eq!(refused_for(limiter.check(ip)), None);
        assert_eq!(refused_for(limiter.check(ip)), Some(20));
        // A whole minute gives the whole allowance back, and no more.
        clock.advance(Duration::from_secs(600));
        for _ in 0..3 {
            assert_eq!(refused_for(limiter.check(ip)), None);
        }
        assert!(refused_for(limiter.check(ip)).is_some());
    }

    #[test]
    fn the_ip_limiter_forgets_only_addresses_with_their_allowance_back() {
        let many: Vec<IpAddr> = (0..SWEEP_AT as u32)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)))
            .collect();
        let newcomer: IpAddr = "198.51.100.1".parse().unwrap();
        let filled = |clock: &governor::clock::FakeRelativeClock| {
            let limiter = IpRateLimiter::with_clock(1, clock.clone());
            for ip in &many {
                limiter.check(*ip).unwrap();
            }
            assert_eq!(limiter.addresses_kept(), SWEEP_AT);
            limiter
        };

        // Half a minute on, every address is still limited: the sweep keeps them all.
        let clock = governor::clock::FakeRelativeClock::default();
        let limiter = filled(&clock);
        clock.advance(Duration::from_secs(30));
        limiter.check(newcomer).unwrap();
        assert_eq!(limiter.addresses_kept(), SWEEP_AT + 1);
        assert!(limiter.check(many[0]).is_err());

        // Once their allowance is back they are forgotten, which changes nothing for them.
        let clock = governor::clock::FakeRelativeClock::default();
        let limiter = filled(&clock);
        clock.advance(Duration::from_secs(121));
        limiter.check(newcomer).unwrap();
        assert_eq!(limiter.addresses_kept(), 1);
        limiter.check(many[0]).unwrap();
        assert!(limiter.check(many[0]).is_err());
    }

    #[test]
    fn the_ip_limiter_allows_the_rate_and_then_refuses() {
        let limiter = IpRateLimiter::new(3);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            limiter.check(ip).unwrap();
        }
        assert!(matches!(
            limiter.check(ip),
            Err(AppError::TooManyRequests { retry_after_secs, .. }) if retry_after_secs >= 1
        ));
        limiter.check("203.0.113.8".parse().unwrap()).unwrap();
        // One IPv6 /64 is one client; its IPv4-mapped form is the IPv4 address.
        let limiter = IpRateLimiter::new(2);
        limiter.check("2001:db8::1".parse().unwrap()).unwrap();
        limiter.check("2001:db8::ffff:2".parse().unwrap()).unwrap();
        assert!(limiter.check("2001:db8::3".parse().unwrap()).is_err());
        limiter.check("2001:db8:0:1::1".parse().unwrap()).unwrap();
        limiter.check(ip).unwrap();
        limiter.check(ip).unwrap();
        assert!(
            limiter
                .check("::ffff:203.0.113.7".parse().unwrap())
                .is_err()
        );
        let off = IpRateLimiter::new(0);
        for _ in 0..1000 {
            off.check(ip).unwrap();
        }
    }
}
