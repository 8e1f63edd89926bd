//! Abuse limits on signing in: a per-username lock after repeated failures (kept in the
//! database, so every replica sees it) and a per-client-IP rate (kept in memory, per replica).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Statement};

use crate::{
    entities::login_throttle,
    error::{AppError, AppResult},
};

/// Consecutive failures allowed before a username is locked.
pub const FREE_FAILURES: i32 = 5;
/// The first lock; each further failure doubles it, up to [`MAX_LOCK`].
pub const FIRST_LOCK: Duration = Duration::from_secs(30);
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Failures older than this are forgotten: "consecutive" means within this window.
pub const FAILURE_MEMORY_MS: i64 = 60 * 60 * 1000;

/// The throttle key of a username typed at sign-in: the SHA-256 of its lower-cased form, so the
/// table holds no usernames and unknown names are throttled exactly like known ones.
pub fn username_key(username: &str) -> String {
    super::sha256_hex(username.trim().to_lowercase().as_bytes())
}

/// How long a username is locked after `failures` consecutive failures.
pub fn lock_duration(failures: i32) -> Option<Duration> {
    if failures < FREE_FAILURES {
        return None;
    }
    let doublings = u32::try_from(failures - FREE_FAILURES)
        .unwrap_or(u32::MAX)
        .min(16);
    Some((FIRST_LOCK * 2u32.pow(doublings)).min(MAX_LOCK))
}

/// Refuses a sign-in while its username is locked. Returns whether the username has failures
/// on record (only then does a success need to clear them).
///
/// # Errors
/// `TOO_MANY_REQUESTS` with the seconds left; internal on a database failure.
pub async fn check_username(db: &DatabaseConnection, key: &str) -> AppResult<bool> {
    let Some(row) = login_throttle::Entity::find_by_id(key.to_owned())
        .one(db)
        .await?
    else {
        return Ok(false);
    };
    let now = Utc::now().timestamp_millis();
    match row.locked_until_ms {
        Some(until) if until > now => Err(AppError::TooManyRequests {
            retry_after_secs: ((until - now) as u64).div_ceil(1000),
        }),
        _ => Ok(true),
    }
}

/// Counts a failed sign-in (atomically, so concurrent attempts all count) and locks the
/// username once it has failed [`FREE_FAILURES`] times in a row.
///
/// # Errors
/// Internal, on a database failure.
pub async fn record_failure(db: &DatabaseConnection, key: &str) -> AppResult<()> {
    let now = Utc::now().timestamp_millis();
    let backend = db.get_database_backend();
    // `$N` placeholders and `ON CONFLICT … RETURNING` mean the same on SQLite and PostgreSQL.
    let sql = "INSERT INTO login_throttles (key, failures, locked_until_ms, updated_at_ms)
         VALUES ($1, 1, NULL, $2)
         ON CONFLICT (key) DO UPDATE SET
           failures = CASE WHEN login_throttles.updated_at_ms < $3 THEN 1
                           ELSE login_throttles.failures + 1 END,
           updated_at_ms = $2
         RETURNING failures";
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [key.into(), now.into(), (now - FAILURE_MEMORY_MS).into()],
        ))
        .await?
        .ok_or_else(|| AppError::internal("upsert returned no row"))?;
    let failures: i32 = row.try_get("", "failures")?;
    if let Some(lock) = lock_duration(failures) {
        let until = now + lock.as_millis() as i64;
        let sql = "UPDATE login_throttles SET locked_until_ms = $1 WHERE key = $2";
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [until.into(), key.into()],
        ))
        .await?;
        tracing::warn!(
            failures,
            lock_secs = lock.as_secs(),
            "sign-in locked for a username after repeated failures"
        );
    }
    Ok(())
}

/// A successful sign-in clears the count.
///
/// # Errors
/// Internal, on a database failure.
pub async fn record_success(db: &DatabaseConnection, key: &str) -> AppResult<()> {
    login_throttle::Entity::delete_by_id(key.to_owned())
        .exec(db)
        .await?;
    Ok(())
}

/// A per-IP token bucket: `per_minute` attempts, refilled evenly over a minute.
pub struct IpRateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Buckets kept before idle ones are swept.
const MAX_BUCKETS: usize = 10_000;

impl IpRateLimiter {
    /// A limiter allowing `per_minute` attempts per IP; 0 turns it off.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt for `ip`.
    ///
    /// # Errors
    /// `TOO_MANY_REQUESTS` with the seconds until the next attempt is allowed.
    pub fn check(&self, ip: IpAddr) -> AppResult<()> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            // A bucket idle for a minute is full again: forgetting it changes nothing.
            buckets.retain(|_, b| now.duration_since(b.updated) < Duration::from_secs(60));
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) / per_second).ceil().max(1.0);
            Err(AppError::TooManyRequests {
                retry_after_secs: wait as u64,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_grows_from_the_fifth_failure_and_is_capped() {
        assert_eq!(lock_duration(4), None);
        assert_eq!(lock_duration(5), Some(Duration::from_secs(30)));
        assert_eq!(lock_duration(6), Some(Duration::from_secs(60)));
        assert_eq!(lock_duration(7), Some(Duration::from_secs(120)));
        assert_eq!(lock_duration(50), Some(MAX_LOCK));
    }

    #[test]
    fn usernames_are_keyed_ignoring_case_and_never_stored_as_typed() {
        assert_eq!(username_key("Dana"), username_key("dana"));
        assert_ne!(username_key("dana"), username_key("dan"));
        assert_eq!(username_key("dana").len(), 64);
        assert!(!username_key("dana").contains("dana"));
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
            Err(AppError::TooManyRequests { retry_after_secs }) if retry_after_secs >= 1
        ));
        limiter.check("203.0.113.8".parse().unwrap()).unwrap();
        let off = IpRateLimiter::new(0);
        for _ in 0..1000 {
            off.check(ip).unwrap();
        }
    }
}
