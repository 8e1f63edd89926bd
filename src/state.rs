//! What every request shares: the services, each owning what it uses, and the handles the
//! HTTP layer reads (health, tokens, metrics). A leaf of the request path: it names the services
//! and none of the layers (`http`, `graphql`) that read it; `app` builds it.

use std::sync::Arc;

use axum::http::HeaderMap;

use crate::{
    accounts::Accounts,
    audit::Audit,
    auth::{PasswordHasher, Revocations, TokenService, Viewer},
    authz::SharedAuthorizer,
    catalog::Catalog,
    db::{Db, DbHealth},
    metrics::Metrics,
    persisted::PersistedDocuments,
    sessions::Sessions,
    subscriptions::Hub,
};

/// What every request shares.
pub struct AppState {
    /// Reads through the reader pool; writes only through [`crate::db::write`].
    pub db: Db,
    /// Whether the database can take a write now (readiness; fast failure while unreachable).
    pub health: Arc<DbHealth>,
    pub tokens: Arc<TokenService>,
    pub revocations: Arc<Revocations>,
    /// The argon2 threads (their queue is reported in `/metrics`).
    pub passwords: PasswordHasher,
    pub authz: Arc<SharedAuthorizer>,
    pub accounts: Accounts,
    pub sessions: Sessions,
    pub catalog: Catalog,
    /// The audit trail's reads (records are written by the services that change things).
    pub audit: Audit,
    pub metrics: Arc<Metrics>,
    /// The documents requests may name by id: this replica's APQ store, or the trusted
    /// manifest.
    pub persisted: PersistedDocuments,
    /// Committed catalog changes, for subscriptions (the catalog publishes to it).
    pub events: Arc<Hub>,
}

impl AppState {
    /// Who is calling, from a request's `Authorization` header.
    pub fn viewer(&self, headers: &HeaderMap) -> Viewer {
        Viewer::from_headers(headers, &self.tokens, &self.revocations)
    }
}
