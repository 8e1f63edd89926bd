//! Storefront: a GraphQL API for accounts and a product catalog, with every permission
//! decided by a Casbin policy.

pub mod accounts;
pub mod app;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod db;
pub mod entities;
pub mod error;
pub mod graphql;
pub mod http;
pub mod idempotency;
pub mod metrics;
pub mod pagination;
pub mod persisted;
pub mod pruning;
pub mod replicas;
pub mod role;
pub mod server;
pub mod sessions;
pub mod signals;
pub mod state;
pub mod subscriptions;
pub mod timestamp;
pub mod validation;

/// The target of every audit log line (`audit=…`), whichever service writes it: the module
/// that wrote them before the services existed, by which log filters (`RUST_LOG`) and
/// pipelines select them.
pub const AUDIT_TARGET: &str = "storefront::graphql::mutation";

/// mimalloc: with the default allocator, malloc and free were a large share of each request's
/// CPU (docs/benchmarks.md#allocator-mimalloc). Set here so the binary, the tests and the
/// benchmarks all use it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_arena_eager_commit` (the same index in mimalloc 2 and 3; the sys crate
/// names no constant for it).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Tunes the allocator; the binary calls this before `main`, before the first allocation.
///
/// On Linux mimalloc commits its arenas eagerly by default, and memory freed in an eagerly
/// committed arena is not returned to the OS, so what start-up's dummy argon2 hash used stayed
/// resident in an idle server. With lazy commit, freed memory is purged
/// (docs/benchmarks.md#allocator-arenas-committed-lazily).
pub fn configure_allocator() {
    // SAFETY: `mi_option_set` only stores an option value; it has no preconditions.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) }
}
