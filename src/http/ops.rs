//! What operators need: health and readiness probes, metrics, request ids and CORS.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use migration::{Migrator, MigratorTrait};
use sea_orm::{DatabaseConnection, DbBackend};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::HttpState;
use crate::{
    config::{CorsOrigins, MetricsToken},
    db::Db,
    metrics::Gauges,
    state::AppState,
};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database takes a write (a committed one on the writer, probed at most
/// once a second), answers a read on the readers, and every migration is applied; 503 otherwise, naming why.
pub async fn readyz(State(state): State<HttpState>) -> Response {
    match readiness(&state.app).await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(reason) => {
            tracing::warn!(reason, "not ready");
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, reason).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after());
            response
        }
    }
}

async fn readiness(app: &AppState) -> Result<(), &'static str> {
    app.health
        .readiness()
        .await
        .map_err(crate::error::Unavailable::cause)?;
    let pending = Migrator::get_pending_migrations(app.db.reader())
        .await
        .map_err(|_| "cannot read migrations")?;
    if pending.is_empty() {
        Ok(())
    } else {
        Err("migrations pending")
    }
}

/// Refuses an operation at once while the database is known to be unreachable, rather than
/// letting it wait out the pool's timeout.
///
/// # Errors
/// `SERVICE_UNAVAILABLE`, as a request error (no `data`).
pub fn database_gate(app: &AppState) -> Result<(), async_graphql::ServerError> {
    app.health.gate().map_err(|err| {
        let error = async_graphql::Error::from(err);
        // Refused before the document was read: no location in it is to blame.
        async_graphql::ServerError {
            message: error.message,
            source: None,
            locations: Vec::new(),
            path: Vec::new(),
            extensions: error.extensions,
        }
    })
}

/// Whether any of these errors says the database is unavailable; if so, the health probe is
/// told, so readiness and the gate learn of it at once.
pub fn note_unavailable(app: &AppState, errors: &[async_graphql::ServerError]) -> bool {
    let unavailable = errors.iter().any(|error| {
        error.extensions.as_ref().and_then(|e| e.get("code"))
            == Some(&async_graphql::Value::from("SERVICE_UNAVAILABLE"))
    });
    if unavailable {
        app.health.suspect();
    }
    unavailable
}

/// The `Retry-After` of a response refused because the database is unavailable.
pub fn retry_after() -> HeaderValue {
    HeaderValue::from(crate::error::UNAVAILABLE_RETRY_AFTER_SECS)
}

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
    let gauges = Gauges {
        hash_queue: app.passwords.queued(),
        hashes_in_flight: app.passwords.running(),
        db_pool_size,
        db_pool_idle,
        policy_version: app.authz.version().to_owned(),
        policy_source: app.authz.source().to_string(),
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

/// Keeps a client's `x-request-id` only when it is 1 to 128 printable ASCII bytes (a log line
/// must not carry anything else) and drops it otherwise, so that `SetRequestIdLayer` makes a
/// new one.
pub fn keep_usable_request_id(mut request: Request) -> Request {
    let usable = request
        .headers()
        .get(&REQUEST_ID)
        .filter(|v| {
            let bytes = v.as_bytes();
            !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .cloned();
    match usable {
        // One id, even if the client sent several.
        Some(id) => request.headers_mut().insert(REQUEST_ID, id),
        None => request.headers_mut().remove(REQUEST_ID),
    };
    request
}

/// The span every request's logs are recorded in, carrying its request id.
pub fn request_span(request: &Request) -> tracing::Span {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// CORS for the configured origins; without any, no CORS headers are sent (same-origin only).
/// Credentials are never allowed: the API uses Bearer tokens, not cookies.
pub fn cors_layer(origins: &CorsOrigins) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            REQUEST_ID,
            HeaderName::from_static(crate::idempotency::HEADER),
        ])
        .expose_headers([
            REQUEST_ID,
            HeaderName::from_static(crate::idempotency::REPLAYED_HEADER),
        ])
        .max_age(std::time::Duration::from_secs(600));
    match origins {
        CorsOrigins::None => CorsLayer::new(),
        CorsOrigins::Any => base.allow_origin(AllowOrigin::any()),
        CorsOrigins::List(list) => base.allow_origin(AllowOrigin::list(
            list.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_request_id_is_kept_only_when_short_printable_ascii() {
        let kept = |id: &[u8]| {
            let request = Request::builder()
                .header(REQUEST_ID, HeaderValue::from_bytes(id).unwrap())
                .body(axum::body::Body::empty())
                .unwrap();
            keep_usable_request_id(request)
                .headers()
                .get(&REQUEST_ID)
                .map(|v| v.as_bytes().to_vec())
        };
        assert_eq!(kept(b"trace-me-42"), Some(b"trace-me-42".to_vec()));
        assert!(kept(&[b'x'; 128]).is_some());
        assert_eq!(kept(&[b'x'; 129]), None);
        assert_eq!(kept(b""), None);
        assert_eq!(kept(b"has space"), None);
        assert_eq!(kept("caf\u{e9}".as_bytes()), None);
    }
}
