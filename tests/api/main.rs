//! Integration tests: each drives a real server over HTTP, on its own fresh database
//! (a temp-file SQLite by default, a new PostgreSQL database when TEST_DATABASE_URL is set).

mod kit;

mod account_lifecycle;
mod audit;
mod authorization;
mod browser_sessions;
mod catalog;
mod catalog_reads;
mod catalog_writes;
mod cli;
mod clients;
mod connections;
mod cost;
mod durability;
mod envelopes;
mod idempotency;
mod journey;
mod jwt;
mod layout;
mod limits;
mod login;
mod methods;
mod nginx;
mod ops;
mod persisted;
mod playground;
mod policy;
mod policy_adapter;
mod policy_store;
mod readme;
mod replicas;
mod revocation_races;
mod roles;
mod scalars;
mod schema;
mod sessions;
mod sign_in_lock;
mod sqlite;
mod subscriptions;
mod throttling;
mod validation;
mod visibility;
