//! Times one argon2id computation with the parameters Storefront uses (the `argon2` crate's
//! defaults: m=19456 KiB, t=2, p=1), on the calling thread, so a login's CPU cost is known.
//!
//! Usage: `argon2-time [ROUNDS]` (default 10). Prints one JSON object with the median and
//! minimum wall time of a hash and of a verification, and the median CPU time of each (this
//! thread's time on a CPU, `CLOCK_THREAD_CPUTIME_ID`, so time lost to other processes on a busy
//! machine is not counted):
//! `{"rounds":N,"hash_ms_median":..,"verify_ms_median":..,"hash_ms_min":..,"verify_ms_min":..,
//! "hash_cpu_ms_median":..,"verify_cpu_ms_median":..,"params":".."}`.

use std::time::Instant;

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// This thread's time on a CPU so far, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if rc != 0 {
        return 0;
    }
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Runs `work`, returning its result with its wall time and CPU time in milliseconds.
fn timed<T>(work: impl FnOnce() -> T) -> (T, f64, f64) {
    let cpu = thread_cpu_ns();
    let start = Instant::now();
    let result = work();
    let wall = start.elapsed().as_secs_f64() * 1e3;
    let cpu = thread_cpu_ns().saturating_sub(cpu) as f64 / 1e6;
    (result, wall, cpu)
}

fn main() -> std::process::ExitCode {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(10);
    let argon2 = Argon2::default();
    let password = b"bench passphrase 1";
    // One untimed hash warms the allocator and the page tables for the 19 MiB block.
    let stored = match argon2.hash_password(password) {
        Ok(hash) => hash.to_string(),
        Err(e) => {
            eprintln!("argon2-time: hashing failed: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let params = stored.split('$').nth(3).unwrap_or_default().to_owned();
    let mut hash_ms = Vec::with_capacity(rounds);
    let mut verify_ms = Vec::with_capacity(rounds);
    let mut hash_cpu_ms = Vec::with_capacity(rounds);
    let mut verify_cpu_ms = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let (hash, wall, cpu) = timed(|| argon2.hash_password(password).map(|h| h.to_string()));
        hash_ms.push(wall);
        hash_cpu_ms.push(cpu);
        if hash.is_err() {
            eprintln!("argon2-time: hashing failed");
            return std::process::ExitCode::FAILURE;
        }
        let (ok, wall, cpu) = timed(|| argon2.verify_password(password, stored.as_str()).is_ok());
        verify_ms.push(wall);
        verify_cpu_ms.push(cpu);
        if !ok {
            eprintln!("argon2-time: verification failed");
            return std::process::ExitCode::FAILURE;
        }
    }
    let hash_min = hash_ms.iter().copied().fold(f64::INFINITY, f64::min);
    let verify_min = verify_ms.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{{\"rounds\":{rounds},\"hash_ms_median\":{:.3},\"verify_ms_median\":{:.3},\
         \"hash_ms_min\":{hash_min:.3},\"verify_ms_min\":{verify_min:.3},\
         \"hash_cpu_ms_median\":{:.3},\"verify_cpu_ms_median\":{:.3},\"params\":\"{params}\"}}",
        median(&mut hash_ms),
        median(&mut verify_ms),
        median(&mut hash_cpu_ms),
        median(&mut verify_cpu_ms),
    );
    std::process::ExitCode::SUCCESS
}
