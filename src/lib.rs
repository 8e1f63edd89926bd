//! Storefront: a GraphQL API for accounts and a product catalog, with every permission
//! decided by a Casbin policy.

pub mod accounts;
pub mod app;
pub mod auth;
pub mod authz;
pub mod cli;
pub mod config;
pub mod db;
pub mod entities;
pub mod error;
pub mod graphql;
pub mod http;
pub mod metrics;
pub mod pagination;
pub mod products;
pub mod role;
pub mod sessions;
pub mod validation;
