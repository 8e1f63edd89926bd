//! argon2id password hashing on a small pool of dedicated threads (one per core), so a burst of
//! sign-ins never stalls the async executor and memory stays bounded: each hash needs 19 MiB,
//! and with a fixed set of threads at most that many hashes' worth is ever held (the blocking
//! pool's many short-lived threads would each keep a malloc arena of their own).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, AtomicUsize, Ordering},
    mpsc,
};
use std::time::Duration;

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use rand::RngCore;
use tokio::sync::oneshot;

use crate::error::{AppError, AppResult, RateLimitPolicy};

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
    /// Refused at once because the queue was full.
    refused: AtomicU64,
}

/// Hashes that may wait or run at once, per hashing thread, unless configured: a full queue
/// is 16 hashes' time of waiting, enough for bursts of honest sign-ins, and no more
/// (docs/benchmarks.md#the-hashing-queue-16-per-core).
pub const QUEUE_PER_THREAD: usize = 16;

impl PasswordHasher {
    /// A hasher allowing `concurrency` hashes at once (at least one), and
    /// [`QUEUE_PER_THREAD`] × that many waiting or running. Computes the dummy hash.
    ///
    /// # Errors
    /// Only if argon2 fails, which would be a bug.
    pub async fn new(concurrency: usize) -> AppResult<Self> {
        Self::with_queue(concurrency, 0).await
    }

    /// A hasher with `concurrency` threads (at least one) that refuses new work while
    /// `queue_max` hashes wait or run (0: [`QUEUE_PER_THREAD`] × the threads).
    ///
    /// # Errors
    /// Only if argon2 fails, which would be a bug.
    pub async fn with_queue(concurrency: usize, queue_max: usize) -> AppResult<Self> {
        let counters = Arc::<Counters>::default();
        let threads = concurrency.max(1);
        let queue_max = if queue_max == 0 {
            QUEUE_PER_THREAD * threads
        } else {
            queue_max
        };
        let pool = Arc::new(HashPool::start(threads, queue_max, counters.clone())?);
        let mut random = [0u8; 32];
        rand::rng().fill_bytes(&mut random);
        let dummy_hash = pool
            .run(&AtomicU64::default(), move || hash_blocking(&random))
            .await??;
        Ok(Self {
            pool,
            dummy_hash: dummy_hash.into(),
            counters,
        })
    }

    /// A hasher with a thread per core and a queue of `queue_max` (0: the default).
    ///
    /// # Errors
    /// As [`PasswordHasher::new`].
    pub async fn for_this_machine(queue_max: usize) -> AppResult<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::with_queue(cores, queue_max).await
    }

    /// The PHC string of a new argon2id hash of `password`, with a random salt.
    ///
    /// # Errors
    /// `TOO_MANY_REQUESTS` when the queue is full; internal, if the pool or argon2 fails.
    pub async fn hash(&self, password: String) -> AppResult<String> {
        self.pool
            .run(&self.counters.hashes, move || {
                hash_blocking(password.as_bytes())
            })
            .await?
    }

    /// Whether `password` matches `stored`. With no stored hash (no such account) the password
    /// is checked against a dummy hash, taking the same time, and the answer is `false`.
    ///
    /// # Errors
    /// `TOO_MANY_REQUESTS` when the queue is full; internal, if the pool fails.
    pub async fn verify(&self, password: String, stored: Option<String>) -> AppResult<bool> {
        let exists = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = self
            .pool
            .run(&self.counters.verifications, move || {
                Argon2::default()
                    .verify_password(password.as_bytes(), hash.as_str())
                    .is_ok()
            })
            .await?;
        Ok(exists && matches)
    }
}

impl PasswordHasher {
    /// Hashes computed (or queued to be) so far, the dummy hash and refused ones not included.
    pub fn hashes(&self) -> u64 {
        self.counters.hashes.load(Ordering::Relaxed)
    }

    /// Verifications run (or queued to) so far, against real or dummy hashes; refused ones
    /// not included.
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

    /// Hashes and verifications refused because the queue was full.
    pub fn refused(&self) -> u64 {
        self.counters.refused.load(Ordering::Relaxed)
    }

    /// How many hashes may wait or run at once.
    pub fn queue_max(&self) -> usize {
        self.pool.queue_max
    }
}

fn hash_blocking(password: &[u8]) -> AppResult<String> {
    Argon2::default()
        .hash_password(password)
        .map(|hash| hash.to_string())
        .map_err(AppError::internal)
}

type Job = Box<dyn FnOnce() + Send>;

/// How long a hashing thread keeps argon2's freed memory after its last hash. Handing it back
/// after every hash (or whenever the queue was empty) made the next hash fault it all in
/// again, which cost far more CPU than the hash itself
/// (docs/benchmarks.md#hashing-threads-keep-argon2s-memory-for-500-ms). Sign-ins a few
/// milliseconds apart now reuse it.
const RELEASE_AFTER_IDLE: Duration = Duration::from_millis(500);

/// Returns freed memory to the OS: on a hashing thread idle for [`RELEASE_AFTER_IDLE`], the
/// 19 MiB argon2 last used, so memory stays at "hashes running × 19 MiB" (mimalloc would
/// otherwise keep freed segments for later); after start-up, what migrations and policy
/// loading left.
pub fn release_freed_memory() {
    // SAFETY: `mi_collect` has no preconditions; it only frees memory nothing refers to.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Runs this thread at nice 10: a sign-in's hash then yields the core to the request handlers
/// as soon as they have work (on one core, a products request otherwise waits behind hash time
/// slices: docs/benchmarks.md#hashing-threads-at-nice-10), while an idle server still hashes
/// at full speed. Linux nice values are per thread.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only changes this thread's scheduling weight.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// A fixed set of threads running argon2, fed through a bounded queue.
struct HashPool {
    jobs: Mutex<mpsc::Sender<Job>>,
    counters: Arc<Counters>,
    /// Jobs waiting or running now, never above `queue_max`.
    pending: Arc<AtomicUsize>,
    queue_max: usize,
}

/// One place in the queue, given back when its job has run (or was dropped unrun).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashPool {
    fn start(threads: usize, queue_max: usize, counters: Arc<Counters>) -> AppResult<Self> {
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
            pending: Arc::default(),
            queue_max: queue_max.max(1),
        })
    }

    /// Takes a place in the queue, or refuses at once when it is full: waiting behind a
    /// flood would only hold memory and connections, and every caller would time out anyway.
    fn take_slot(&self) -> AppResult<Slot> {
        let taken = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |pending| {
                (pending < self.queue_max).then_some(pending + 1)
            });
        match taken {
            Ok(_) => Ok(Slot(self.pending.clone())),
            Err(_) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                Err(AppError::TooManyRequests {
                    retry_after_secs: 1,
                    policy: RateLimitPolicy {
                        name: "password-hashing",
                        quota: self.queue_max as u64,
                        window_secs: None,
                    },
                })
            }
        }
    }

    /// Runs `work` on a worker. A caller that gives up (a request timeout) leaves the work to
    /// finish on its worker, so no more than the pool's threads ever hash at once, and its
    /// place in the queue stays taken until then.
    ///
    /// # Errors
    /// `TOO_MANY_REQUESTS` when the queue is full (then `counted` is not counted).
    async fn run<T: Send + 'static>(
        &self,
        counted: &AtomicU64,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> AppResult<T> {
        let slot = self.take_slot()?;
        counted.fetch_add(1, Ordering::Relaxed);
        let (done, result) = oneshot::channel();
        let counters = self.counters.clone();
        counters.queued.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move || {
            let slot = slot;
            counters.queued.fetch_sub(1, Ordering::Relaxed);
            counters.running.fetch_add(1, Ordering::Relaxed);
            let output = work();
            counters.running.fetch_sub(1, Ordering::Relaxed);
            // The place is free before the caller hears the result (and if `work` panics, it
            // is given back as the job unwinds).
            drop(slot);
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
    async fn a_full_queue_refuses_at_once_and_frees_its_places_after() {
        let pool = Arc::new(HashPool::start(1, 2, Arc::default()).unwrap());
        // Two jobs that hold their places (one running, one waiting) until released.
        let mut gates = Vec::new();
        let mut holders = Vec::new();
        for _ in 0..2 {
            let (open, gate) = mpsc::channel::<()>();
            gates.push(open);
            let pool = pool.clone();
            holders.push(tokio::spawn(async move {
                pool.run(&AtomicU64::default(), move || gate.recv().is_ok())
                    .await
            }));
        }
        while pool.pending.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        for _ in 0..50 {
            assert!(matches!(
                pool.run(&AtomicU64::default(), || ()).await,
                Err(AppError::TooManyRequests {
                    retry_after_secs: 1,
                    ..
                })
            ));
        }
        assert_eq!(pool.counters.refused.load(Ordering::Relaxed), 50);
        for open in gates {
            open.send(()).unwrap();
        }
        for holder in holders {
            assert!(holder.await.unwrap().unwrap());
        }
        // Every place was given back.
        assert_eq!(pool.pending.load(Ordering::Acquire), 0);
        let n = AtomicU64::default();
        let (a, b) = tokio::join!(pool.run(&n, || 1), pool.run(&n, || 2));
        assert_eq!(n.load(Ordering::Relaxed), 2);
        assert_eq!((a.unwrap(), b.unwrap()), (1, 2));
    }

    #[tokio::test]
    async fn unknown_account_never_verifies() {
        let hasher = PasswordHasher::new(1).await.unwrap();
        assert!(!hasher.verify("anything at all".into(), None).await.unwrap());
    }
}
