//! Password cost: one argon2id hash at the configured parameters (m=19456 KiB, t=2, p=1), as
//! `register` pays it, and one verification, as `login` pays it. This bounds sign-ins per core.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use storefront::auth::PasswordHasher;

fn password_hash(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("tokio runtime");
    let hasher = rt.block_on(PasswordHasher::new(1)).expect("argon2 works");
    let stored = rt
        .block_on(hasher.hash("bench passphrase 1".to_owned()))
        .expect("argon2 works");
    let mut group = c.benchmark_group("password");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("password_hash", |b| {
        b.iter(|| {
            rt.block_on(hasher.hash("bench passphrase 1".to_owned()))
                .expect("argon2 works")
        })
    });
    group.bench_function("password_verify", |b| {
        b.iter(|| {
            rt.block_on(hasher.verify("bench passphrase 1".to_owned(), Some(stored.clone())))
                .expect("argon2 works")
        })
    });
    group.finish();
}

criterion_group!(benches, password_hash);
criterion_main!(benches);
