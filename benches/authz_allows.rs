//! Authorization cost: one decision per guarded field, an ownership rule's check once the row is
//! loaded, the same decision asked of Casbin per request (what the table saves), and the policy
//! load done at start-up and on every change.

use std::hint::black_box;

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};
use criterion::{Criterion, criterion_group, criterion_main};
use storefront::{
    authz::{Authorizer, Permission, PolicySource, Reach, Rows, Subject},
    role::Role,
};
use uuid::Uuid;

const MODEL: &str = include_str!("../policies/model.conf");
const POLICY: &str = include_str!("../policies/policy.csv");
/// The example shop policy: five roles, ownership rules.
const SHOP: &str = include_str!("../tests/fixtures/shop/policy.csv");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}

fn authz_allows(c: &mut Criterion) {
    let rt = runtime();
    let authz = rt
        .block_on(Authorizer::from_texts(MODEL, SHOP, PolicySource::BuiltIn))
        .expect("the shop policy loads");
    let user = Role::parse("user").unwrap();
    c.bench_function("authz_allows", |b| {
        b.iter(|| {
            authz.allows(
                black_box(Subject::Role(&user)),
                black_box(Permission::ProductRead),
            )
        })
    });
    // A seller updating a product: the table says `own`, and the loaded row's creator decides.
    let seller = Role::parse("seller").unwrap();
    let (caller, owner) = (Uuid::now_v7(), Some(Uuid::now_v7()));
    c.bench_function("authz_own_row", |b| {
        b.iter(|| {
            let rows = match authz.reach(Subject::Role(&seller), Permission::ProductUpdate) {
                Some(Reach::Own) => Rows::OwnedBy(black_box(caller)),
                Some(Reach::Any) => Rows::Any,
                None => return false,
            };
            rows.cover(black_box(owner))
        })
    });
    // What the table saves: the same ownership decision asked of Casbin on each request.
    let text = SHOP
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split(',').count() {
            4 if l.starts_with('p') => format!("{l}, any"),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let enforcer = rt.block_on(async {
        let model = DefaultModel::from_str(MODEL).await.unwrap();
        Enforcer::new(model, StringAdapter::new(text))
            .await
            .unwrap()
    });
    let (caller, owner) = (caller.to_string(), owner.unwrap().to_string());
    c.bench_function("casbin_enforce_own_row", |b| {
        b.iter(|| {
            enforcer
                .enforce(black_box((
                    "role:seller",
                    "product",
                    "update",
                    &caller,
                    &owner,
                )))
                .unwrap()
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
    c.bench_function("authz_policy_load_shop", |b| {
        b.iter(|| {
            rt.block_on(Authorizer::from_texts(
                black_box(MODEL),
                black_box(SHOP),
                PolicySource::BuiltIn,
            ))
            .expect("the shop policy loads")
        })
    });
}

criterion_group!(benches, authz_allows);
criterion_main!(benches);
