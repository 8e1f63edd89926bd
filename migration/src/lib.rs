//! Database migrations for Storefront (sea-orm-migration).
//!
//! Every command that touches the database runs [`Migrator::up`] first, so a new database is
//! ready as soon as the binary connects to it.

pub use sea_orm_migration::prelude::*;

mod fold;
pub use fold::{is_mark, search_fold};

mod m20261123_000001_create_accounts;
mod m20261123_000002_create_products;
mod m20261123_000003_create_app_meta;
mod m20261123_000004_create_sessions;
mod m20261123_000005_create_catalog_version;
mod m20261201_000001_add_login_reservations;
mod m20261202_000001_account_lifecycle;
mod m20261202_000002_create_idempotency_keys;
mod m20261203_000001_create_audit_events;
mod m20261203_000002_create_casbin_rules;
mod m20261204_000010_index_product_reads;
mod m20261205_000001_add_product_version;
mod m20261206_000001_add_refresh_successors;
mod m20261207_000001_fold_search_text;
mod m20261208_000001_notify_changes;

/// The ordered list of Storefront's migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_create_accounts::Migration),
            Box::new(m20261123_000002_create_products::Migration),
            Box::new(m20261123_000003_create_app_meta::Migration),
            Box::new(m20261123_000004_create_sessions::Migration),
            Box::new(m20261123_000005_create_catalog_version::Migration),
            Box::new(m20261201_000001_add_login_reservations::Migration),
            Box::new(m20261202_000001_account_lifecycle::Migration),
            Box::new(m20261202_000002_create_idempotency_keys::Migration),
            Box::new(m20261203_000001_create_audit_events::Migration),
            Box::new(m20261203_000002_create_casbin_rules::Migration),
            Box::new(m20261204_000010_index_product_reads::Migration),
            Box::new(m20261205_000001_add_product_version::Migration),
            Box::new(m20261206_000001_add_refresh_successors::Migration),
            Box::new(m20261207_000001_fold_search_text::Migration),
            Box::new(m20261208_000001_notify_changes::Migration),
        ]
    }
}
