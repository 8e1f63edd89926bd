//! Health and readiness: `/healthz`, `/readyz`, and the database gate that answers requests
//! at once while the database cannot serve.

use axum::{
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use migration::{Migrator, MigratorTrait};

use super::HttpState;
use crate::state::AppState;

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database takes a write (a committed one on the writer, probed at most
/// once a second), answers a read on the readers, and every migration is applied; 503 otherwise, naming why.
/// A ready answer names the version of the policy in force on its second line.
pub async fn readyz(State(state): State<HttpState>) -> Response {
    match readiness(&state.app).await {
        Ok(()) => {
            let body = format!("ready\npolicy {}\n", state.app.authz.version());
            (StatusCode::OK, body).into_response()
        }
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
