//! Authorization cost: one decision per guarded field, and the policy load done at start-up.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use storefront::{
    authz::{Authorizer, Permission, PolicySource, Subject},
    role::Role,
};

const MODEL: &str = include_str!("../policies/model.conf");
const POLICY: &str = include_str!("../policies/policy.csv");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}

fn authz_allows(c: &mut Criterion) {
    let rt = runtime();
    let authz = rt
        .block_on(Authorizer::from_texts(MODEL, POLICY, PolicySource::BuiltIn))
        .expect("the shipped policy loads");
    c.bench_function("authz_allows", |b| {
        b.iter(|| {
            authz.allows(
                black_box(Subject::Role(Role::User)),
                black_box(Permission::ProductRead),
            )
        })
    });
    c.bench_function("authz_policy_load", |b| {
        b.iter(|| {
            rt.block_on(Authorizer::from_texts(
                black_box(MODEL),
                black_box(POLICY),
                PolicySource::BuiltIn,
            ))
            .expect("the shipped policy loads")
        })
    });
}

criterion_group!(benches, authz_allows);
criterion_main!(benches);
