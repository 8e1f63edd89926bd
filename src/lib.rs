//! Storefront: a GraphQL API for accounts and a product catalog, with every permission
//! decided by a Casbin policy.

pub mod accounts;
pub mod app;
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
pub mod maintenance;
pub mod metrics;
pub mod pagination;
pub mod role;
pub mod server;
pub mod sessions;
pub mod signals;
pub mod state;
pub mod validation;

/// mimalloc: the default allocator spent a fifth of each request's CPU in malloc and free
/// (see BENCHMARKS.md). Set here so the binary, the tests and the benchmarks all use it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_arena_eager_commit` (the same index in mimalloc 2 and 3; the sys crate
/// names no constant for it).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Tunes the allocator; the binary calls this before `main`, before the first allocation.
///
/// On Linux mimalloc commits its arenas eagerly by default, and memory freed in an eagerly
/// committed arena is not returned to the OS. After start-up (whose dummy argon2 hash takes
/// 19 MiB) that left ≈ 11 MiB of an idle server resident; with lazy commit, freed memory is
/// purged and an idle server holds ≈ 3 MiB of heap (BENCHMARKS.md, idle RSS).
pub fn configure_allocator() {
    // SAFETY: `mi_option_set` only stores an option value; it has no preconditions.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) }
}
