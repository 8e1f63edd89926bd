//! The test kit. A test starts a server of its own ([`TestApp`], configured through
//! [`TestApp::builder`] with typed overrides), and calls it as actors ([`TestApp::anonymous`],
//! [`TestApp::user`], [`TestApp::admin`]) that send the GraphQL documents of
//! [`documents`], each written once, and get typed answers ([`Response`], with the payloads of
//! [`types`] and typed errors). Whatever the tests need from inside the `storefront` crate
//! goes through [`internals`] (and the `Config` fields through `config.rs`) and nowhere else.

mod actor;
mod app;
mod config;
mod db;
pub mod documents;
pub mod internals;
mod jwt;
mod node;
mod process;
mod response;
pub mod types;
mod wait;
mod ws;

pub use actor::{Actor, Server};
pub use app::{ADMIN_PASSWORD, JWT_SECRET, Replica, TestApp, password_of};
pub use config::{
    TestAppBuilder, policy_dir, policy_folder, policy_folder_with, shipped_policy, shop_policy,
};
pub use db::TestDb;
pub use jwt::{claims_of, forge_jwt, header_of};
pub use node::{
    NPM_TIMEOUT, clients_dir, install_client_packages, node_version, read_log, run_in_clients,
    run_npm,
};
pub use process::{
    ChildGuard, ServerProcess, Storefront, bare_storefront, free_port, run_storefront, storefront,
};
pub use response::Response;
pub use types::{
    AuditChange, AuditEvent, AuthPayload, ListArgs, NewAccount, NewProduct, Node, Page, Product,
    ProductChanges, Role,
};
pub use wait::{join_all, join_tasks, within};
pub use ws::{PATIENCE, Received, WsClient};
