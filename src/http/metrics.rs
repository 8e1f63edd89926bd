//! `GET /metrics`: the Prometheus exposition, on the API's address or its own, behind an
//! optional bearer token.

use std::sync::Arc;

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use sea_orm::{DatabaseConnection, DbBackend};

use super::HttpState;
use crate::{config::MetricsToken, db::Db, metrics::Gauges, state::AppState};

/// `GET /metrics` on the API's address.
pub async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    if !metrics_allowed(&headers, state.settings.metrics_token.as_ref()) {
        return metrics_unauthorized();
    }
    render_metrics(&state.app)
}

/// `GET /metrics` on `METRICS_ADDR`.
pub async fn metrics_only(
    State((app, token)): State<(Arc<AppState>, Option<MetricsToken>)>,
    headers: HeaderMap,
) -> Response {
    if !metrics_allowed(&headers, token.as_ref()) {
        return metrics_unauthorized();
    }
    render_metrics(&app)
}

/// Whether the request may read `/metrics`: always without a token configured, otherwise
/// only with `Authorization: Bearer <METRICS_TOKEN>`.
fn metrics_allowed(headers: &HeaderMap, token: Option<&MetricsToken>) -> bool {
    let Some(token) = token else {
        return true;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .is_some_and(|(scheme, presented)| {
            scheme.eq_ignore_ascii_case("bearer") && token.matches(presented.trim().as_bytes())
        })
}

fn metrics_unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "unauthorized",
    )
        .into_response()
}

fn render_metrics(app: &AppState) -> Response {
    let (db_pool_size, db_pool_idle) = pool_use(&app.db);
    let (apq_documents, apq_bytes) = app.persisted.stored();
    let gauges = Gauges {
        hash_queue: app.passwords.queued(),
        hashes_in_flight: app.passwords.running(),
        db_pool_size,
        db_pool_idle,
        policy_version: app.authz.version().to_owned(),
        policy_source: app.authz.source().to_string(),
        apq_documents,
        apq_bytes,
    };
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        app.metrics.render(&gauges),
    )
        .into_response()
}

/// Connections in every pool (reader and writer) and how many of them are idle.
fn pool_use(db: &Db) -> (u32, u32) {
    db.pools()
        .map(one_pool_use)
        .fold((0, 0), |(size, idle), (s, i)| (size + s, idle + i))
}

fn one_pool_use(db: &DatabaseConnection) -> (u32, u32) {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle() as u32)
        }
        DbBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle() as u32)
        }
        _ => (0, 0),
    }
}
