//! Access-token cost per request: every authenticated GraphQL request verifies one HS256 token.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use storefront::{auth::TokenService, config::Config, role::Role};
use uuid::Uuid;

fn config() -> Config {
    Config::from_lookup(|name| match name {
        "JWT_SECRET" => Some("criterion-bench-secret-of-at-least-32-bytes".to_owned()),
        "DATABASE_URL" => Some("sqlite::memory:".to_owned()),
        _ => None,
    })
    .expect("bench configuration is valid")
}

fn token_verify(c: &mut Criterion) {
    let tokens = TokenService::new(&config());
    let user = Role::parse("user").expect("a role name");
    let issue = || {
        tokens
            .issue_access_token(Uuid::now_v7(), &user, Uuid::now_v7(), 1)
            .expect("token is issued")
            .token
    };
    // The first request with a token: every check (base64, JSON, HMAC, claims).
    c.bench_function("token_verify", |b| {
        b.iter_batched(
            issue,
            |token| {
                tokens
                    .verify_access_token(black_box(&token))
                    .expect("token verifies")
            },
            BatchSize::SmallInput,
        )
    });
    // Every later request with it: the process remembers tokens that passed.
    let token = issue();
    c.bench_function("token_verify_seen", |b| {
        b.iter(|| {
            tokens
                .verify_access_token(black_box(&token))
                .expect("token verifies")
        })
    });
    c.bench_function("token_issue", |b| {
        b.iter(|| {
            tokens
                .issue_access_token(black_box(Uuid::nil()), &user, Uuid::nil(), 1)
                .expect("token is issued")
        })
    });
}

criterion_group!(benches, token_verify);
criterion_main!(benches);
