//! argon2id password hashing on a small pool of dedicated threads (one per core), so a burst of
//! sign-ins never stalls the async executor and memory stays bounded: each hash needs 19 MiB,
//! and with a fixed set of threads at most that many hashes' worth is ever held (the blocking
//! pool's many short-lived threads would each keep a malloc arena of their own).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
    mpsc,
};
use std::time::Duration;

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use rand::RngCore;
use tokio::sync::oneshot;

use crate::error::{AppError, AppResult};

/// Hashes and verifies passwords with argon2id at OWASP's parameters (m=19456 KiB, t=2, p=1).
#[derive(Clone)]
pub struct PasswordHasher {
    pool: Arc<HashPool>,
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
    /// Waiting for a worker.
    queued: AtomicU64,
    /// Running on a worker.
    running: AtomicU64,
}

impl PasswordHasher {
    /// A hasher allowing `concurrency` hashes at once (at least one). Computes the dummy hash.
    ///
    /// # Errors
    /// Only if argon2 fails, which would be a bug.
    pub async fn new(concurrency: usize) -> AppResult<Self> {
        let counters = Arc::<Counters>::default();
        let pool = Arc::new(HashPool::start(concurrency.max(1), counters.clone())?);
        let mut random = [0u8; 32];
        rand::rng().fill_bytes(&mut random);
        let dummy_hash = pool.run(move || hash_blocking(&random)).await??;
        Ok(Self {
            pool,
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
        self.pool
            .run(move || hash_blocking(password.as_bytes()))
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
        let matches = self
            .pool
            .run(move || {
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

type Job = Box<dyn FnOnce() + Send>;

/// How long a hashing thread keeps argon2's freed 19 MiB after its last hash. Handing it back
/// after every hash (or whenever the queue was empty) made the next hash fault it all in
/// again: 37–39 ms of CPU per sequential sign-in against 27.6 ms for the same hash with its
/// memory warm (BENCHMARKS.md). Sign-ins a few milliseconds apart now reuse it.
const RELEASE_AFTER_IDLE: Duration = Duration::from_millis(500);

/// Returns freed memory to the OS: on a hashing thread idle for [`RELEASE_AFTER_IDLE`], the
/// 19 MiB argon2 last used, so memory stays at "hashes running × 19 MiB" (mimalloc would
/// otherwise keep freed segments for later); after start-up, what migrations and policy
/// loading left.
pub fn release_freed_memory() {
    // SAFETY: `mi_collect` has no preconditions; it only frees memory nothing refers to.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Runs this thread at nice 10: a sign-in's 15 ms hash then yields the core to the request
/// handlers as soon as they have work (on one core, a products request waited behind hash time
/// slices: p99 1.4 → 5.8 ms during a login flood), while an idle server still hashes at full
/// speed. Linux nice values are per thread.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only changes this thread's scheduling weight.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// A fixed set of threads running argon2, fed through a queue.
struct HashPool {
    jobs: Mutex<mpsc::Sender<Job>>,
    counters: Arc<Counters>,
}

impl HashPool {
    fn start(threads: usize, counters: Arc<Counters>) -> AppResult<Self> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    lower_priority();
                    let mut holds_freed_memory = false;
                    loop {
                        // Waits are bounded even with nothing to release, so threads take
                        // turns at the queue and each idle one gets to release its memory.
                        let job = match receiver.lock() {
                            Ok(queue) => queue.recv_timeout(RELEASE_AFTER_IDLE),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => {
                                job();
                                holds_freed_memory = true;
                            }
                            Err(mpsc::RecvTimeoutError::Timeout) => {
                                if holds_freed_memory {
                                    release_freed_memory();
                                    holds_freed_memory = false;
                                }
                            }
                            // The queue closes when the last hasher is dropped.
                            Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                })
                .map_err(AppError::internal)?;
        }
        Ok(Self {
            jobs: Mutex::new(sender),
            counters,
        })
    }

    /// Runs `work` on a worker. A caller that gives up (a request timeout) leaves the work to
    /// finish on its worker, so no more than the pool's threads ever hash at once.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> AppResult<T> {
        let (done, result) = oneshot::channel();
        let counters = self.counters.clone();
        counters.queued.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move || {
            counters.queued.fetch_sub(1, Ordering::Relaxed);
            counters.running.fetch_add(1, Ordering::Relaxed);
            let output = work();
            counters.running.fetch_sub(1, Ordering::Relaxed);
            let _ = done.send(output);
        });
        self.jobs
            .lock()
            .map_err(|_| AppError::internal("hash pool lock poisoned"))?
            .send(job)
            .map_err(|_| AppError::internal("hash pool stopped"))?;
        result
            .await
            .map_err(|_| AppError::internal("hash worker panicked"))
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
