//! argon2id password hashing, run on the blocking pool behind a semaphore sized to the cores,
//! so a burst of sign-ins never stalls the async executor.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use rand::RngCore;
use tokio::sync::Semaphore;

use crate::error::{AppError, AppResult};

/// Hashes and verifies passwords with argon2id at OWASP's parameters (m=19456 KiB, t=2, p=1).
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when an account does not exist so that
    /// "no such user" costs the same time as "wrong password".
    dummy_hash: Arc<str>,
    counters: Arc<Counters>,
}

/// How much argon2 work was done: what timing attacks could observe, made countable.
#[derive(Default)]
struct Counters {
    hashes: AtomicU64,
    verifications: AtomicU64,
    /// Waiting for a permit.
    queued: AtomicU64,
    /// Running on the blocking pool.
    running: AtomicU64,
}

impl PasswordHasher {
    /// A hasher allowing `concurrency` hashes at once (at least one). Computes the dummy hash.
    ///
    /// # Errors
    /// Only if argon2 fails, which would be a bug.
    pub async fn new(concurrency: usize) -> AppResult<Self> {
        let permits = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut random = [0u8; 32];
        rand::rng().fill_bytes(&mut random);
        let counters = Arc::<Counters>::default();
        let dummy_hash = run_limited(&permits, &counters, move || hash_blocking(&random)).await??;
        Ok(Self {
            permits,
            dummy_hash: dummy_hash.into(),
            counters,
        })
    }

    /// A hasher sized to the machine's cores.
    ///
    /// # Errors
    /// As [`PasswordHasher::new`].
    pub async fn for_this_machine() -> AppResult<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(cores).await
    }

    /// The PHC string of a new argon2id hash of `password`, with a random salt.
    ///
    /// # Errors
    /// Internal, if the blocking pool or argon2 fails.
    pub async fn hash(&self, password: String) -> AppResult<String> {
        self.counters.hashes.fetch_add(1, Ordering::Relaxed);
        run_limited(&self.permits, &self.counters, move || {
            hash_blocking(password.as_bytes())
        })
        .await?
    }

    /// Whether `password` matches `stored`. With no stored hash (no such account) the password
    /// is checked against a dummy hash, taking the same time, and the answer is `false`.
    ///
    /// # Errors
    /// Internal, if the blocking pool fails.
    pub async fn verify(&self, password: String, stored: Option<String>) -> AppResult<bool> {
        self.counters.verifications.fetch_add(1, Ordering::Relaxed);
        let exists = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = run_limited(&self.permits, &self.counters, move || {
            Argon2::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await?;
        Ok(exists && matches)
    }
}

impl PasswordHasher {
    /// Hashes computed so far (the dummy hash not included).
    pub fn hashes(&self) -> u64 {
        self.counters.hashes.load(Ordering::Relaxed)
    }

    /// Verifications run so far, against real or dummy hashes.
    pub fn verifications(&self) -> u64 {
        self.counters.verifications.load(Ordering::Relaxed)
    }

    /// Hashes and verifications waiting for a worker now.
    pub fn queued(&self) -> u64 {
        self.counters.queued.load(Ordering::Relaxed)
    }

    /// Hashes and verifications running now.
    pub fn running(&self) -> u64 {
        self.counters.running.load(Ordering::Relaxed)
    }
}

fn hash_blocking(password: &[u8]) -> AppResult<String> {
    Argon2::default()
        .hash_password(password)
        .map(|hash| hash.to_string())
        .map_err(AppError::internal)
}

/// Runs `work` on the blocking pool once a permit is free. The permit moves into the blocking
/// task, so a caller that gives up (a request timeout) does not free a slot while argon2 still
/// runs: at most `concurrency` hashes ever run at once.
async fn run_limited<T: Send + 'static>(
    permits: &Arc<Semaphore>,
    counters: &Arc<Counters>,
    work: impl FnOnce() -> T + Send + 'static,
) -> AppResult<T> {
    let permit = {
        let _queued = Gauge::enter(counters.clone(), |c| &c.queued);
        permits.clone().acquire_owned().await
    }
    .map_err(AppError::internal)?;
    let running = Gauge::enter(counters.clone(), |c| &c.running);
    tokio::task::spawn_blocking(move || {
        let result = work();
        drop((permit, running));
        result
    })
    .await
    .map_err(AppError::internal)
}

/// Counts one unit into a gauge for as long as it lives.
struct Gauge {
    counters: Arc<Counters>,
    pick: fn(&Counters) -> &AtomicU64,
}

impl Gauge {
    fn enter(counters: Arc<Counters>, pick: fn(&Counters) -> &AtomicU64) -> Self {
        pick(&counters).fetch_add(1, Ordering::Relaxed);
        Self { counters, pick }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        (self.pick)(&self.counters).fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_with_argon2id_at_owasp_parameters_and_verifies() {
        let hasher = PasswordHasher::new(1).await.unwrap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            hasher
                .verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("correct horsE".into(), Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn unknown_account_never_verifies() {
        let hasher = PasswordHasher::new(1).await.unwrap();
        assert!(!hasher.verify("anything at all".into(), None).await.unwrap());
    }
}
