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
pub mod maintenance;
pub mod metrics;
pub mod pagination;
pub mod products;
pub mod role;
pub mod sessions;
pub mod validation;

/// mimalloc: the default allocator spent a fifth of each request's CPU in malloc and free
/// (see BENCHMARKS.md). Set here so the binary, the tests and the benchmarks all use it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
