//! The HTTP surface, following the GraphQL-over-HTTP spec: GraphQL at `POST /graphql` (JSON
//! bodies only) and `GET /graphql?query=…` (queries only; mutations get 405), subscriptions over
//! WebSocket when `GET /graphql` asks for an upgrade (`ws.rs`), the GraphiQL playground at
//! `GET /` and `GET /graphql` for browsers, and the specification of the `Decimal` scalar at
//! `GET /docs/money.md`.
//!
//! Written here rather than with async-graphql-axum's extractor and response: they take any
//! content type as JSON, always answer `application/graphql-response+json`, and keep the raw
//! body from the `Idempotency-Key` fingerprint.

mod layers;
mod metrics;
mod negotiate;
mod operation;
mod playground;
mod probes;
mod ws;

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use async_graphql::{
    Name, PathSegment, Request as GqlRequest, Response as GqlResponse, Value,
    parser::types::ExecutableDocument,
};
use axum::{
    Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use tower::util::MapRequestLayer;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::{
    auth::{ClientIp, Viewer},
    config::{CorsOrigins, Limits, MetricsToken},
    error::{AppError, RateLimited},
    graphql::{
        self, AppSchema, Cost, CostModel, DECIMAL_SPECIFIED_BY, Documents, MAX_ERRORS,
        MAX_MESSAGE_CHARS, VALIDATION_FAILED, argument_uses_variable, is_mutation, is_subscription,
        truncated,
    },
    idempotency,
    metrics::Outcome,
    state::AppState,
};
use negotiate::Format;
use operation::{Operation, Operations};

/// What the HTTP layer needs to know beyond the schema.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub limits: Limits,
    /// `WS_INIT_TIMEOUT_SECS`.
    pub ws_init_timeout: Duration,
    /// `WS_PING_INTERVAL_SECS`.
    pub ws_ping_interval: Duration,
    /// `WS_IDLE_TIMEOUT_SECS`.
    pub ws_idle_timeout: Duration,
    /// `WS_MAX_CONNECTIONS_PER_ADDRESS`.
    pub ws_max_per_address: usize,
    pub graphiql: bool,
    pub trust_proxy_headers: bool,
    pub cors_allowed_origins: CorsOrigins,
    /// `CORS_ALLOWED_HEADERS`, lower case.
    pub cors_allowed_headers: Vec<String>,
    /// Serve `/metrics` here (false when `METRICS_ADDR` names another address, and in
    /// production without `METRICS_TOKEN`).
    pub metrics_on_main_router: bool,
    /// The bearer token `/metrics` requires, when `METRICS_TOKEN` is set.
    pub metrics_token: Option<MetricsToken>,
}

#[derive(Clone)]
struct HttpState {
    schema: AppSchema,
    documents: Arc<Documents>,
    app: Arc<AppState>,
    settings: Arc<HttpSettings>,
    /// The WebSockets open from each client address.
    sockets: Arc<ws::Addresses>,
}

/// The router with every route and layer.
pub fn router(schema: AppSchema, app: Arc<AppState>, settings: HttpSettings) -> Router {
    let cors = layers::cors_layer(
        &settings.cors_allowed_origins,
        &settings.cors_allowed_headers,
    );
    let metrics_here = settings.metrics_on_main_router;
    let mut router = Router::new()
        .route("/", get(playground_page))
        .route(
            &format!("{}/{{hash}}/{{name}}", playground::ASSETS_PATH),
            get(playground_asset),
        )
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route(&format!("/{DECIMAL_SPECIFIED_BY}"), get(money_format));
    if metrics_here {
        router = router.route("/metrics", get(metrics::metrics));
    }
    let documents = Arc::new(graphql::documents(&schema, &settings.limits));
    router
        .with_state(HttpState {
            schema,
            documents,
            app,
            settings: Arc::new(settings),
            sockets: Arc::default(),
        })
        .layer(CatchPanicLayer::custom(|_| {
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                "internal server error",
            )
        }))
        .layer(cors)
        .layer(TraceLayer::new_for_http().make_span_with(layers::request_span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(MapRequestLayer::new(layers::keep_usable_request_id))
}

/// A router serving only `/metrics`, for `METRICS_ADDR`.
pub fn metrics_router(app: Arc<AppState>, token: Option<MetricsToken>) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics_only))
        .with_state((app, token))
}

/// `GET /docs/money.md`: the specification of the `Decimal` scalar, where its `@specifiedBy`
/// URL (relative) leads from the API's URL. Plain text, so a browser shows it.
async fn money_format() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        include_str!("../docs/money.md"),
    )
}

async fn playground_page(State(state): State<HttpState>) -> Response {
    if state.settings.graphiql {
        playground::page()
    } else {
        not_found()
    }
}

/// `GET /playground/<hash>/<name>`: a file of the GraphiQL page.
async fn playground_asset(
    State(state): State<HttpState>,
    axum::extract::Path((hash, name)): axum::extract::Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !state.settings.graphiql {
        return not_found();
    }
    playground::asset_response(&hash, &name, &headers)
        .await
        .unwrap_or_else(not_found)
}

fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "NOT_FOUND", "not found")
}

/// `POST /graphql`: one operation, or a batch of up to `GRAPHQL_MAX_BATCH` as a JSON array.
async fn graphql_post(State(state): State<HttpState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(format) = negotiate::response_format(&parts.headers) else {
        return not_acceptable();
    };
    if !negotiate::is_json_content_type(&parts.headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "POST bodies must be JSON, sent with `Content-Type: application/json`",
        );
    }
    let key = match idempotency::Key::from_headers(&parts.headers) {
        Ok(key) => key,
        Err(err) => return app_error_response(StatusCode::BAD_REQUEST, err),
    };
    let body = match read_body(body, state.settings.limits.max_body_bytes).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let json: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(json) => json,
        Err(_) => return bad_request("the body is not valid JSON"),
    };
    // Kept for the fingerprint, which may need the body as the operations were resolved.
    let sent = key.as_ref().map(|_| json.clone());
    let persisted = &state.app.persisted;
    let batch = match json {
        serde_json::Value::Object(params) => match Operation::from_params(params, persisted) {
            Ok(operation) => Operations::Single(operation),
            Err(message) => return bad_request(&message),
        },
        serde_json::Value::Array(items) => {
            let max = state.settings.limits.max_batch;
            if max == 0 {
                return bad_request("batching is turned off: send one operation per request");
            }
            if items.is_empty() || items.len() > max {
                return bad_request(&format!(
                    "a batch must hold 1 to {max} operations (got {})",
                    items.len()
                ));
            }
            let mut operations = Vec::with_capacity(items.len());
            for item in items {
                let serde_json::Value::Object(params) = item else {
                    return bad_request("each operation in a batch must be a JSON object");
                };
                match Operation::from_params(params, persisted) {
                    Ok(operation) => operations.push(operation),
                    Err(message) => return bad_request(&message),
                }
            }
            Operations::Batch(operations)
        }
        _ => return bad_request("the body must be a JSON object (or an array of them)"),
    };
    let viewer = state.app.viewer(&parts.headers);
    let client_ip = client_ip(
        &parts.headers,
        &parts.extensions,
        state.settings.trust_proxy_headers,
    );
    let request_id = layers::request_id(&parts.headers);
    match key {
        None => execute(&state, viewer, client_ip, request_id, batch, format, None).await,
        Some(key) => {
            let request = Keyed {
                key,
                fingerprint: operation::fingerprint(&body, sent, &batch),
                viewer,
                client_ip,
                request_id,
                batch,
                format,
            };
            execute_once(state, request).await
        }
    }
}

/// A `POST /graphql` sent with an `Idempotency-Key`.
struct Keyed {
    key: idempotency::Key,
    fingerprint: String,
    viewer: Viewer,
    client_ip: ClientIp,
    request_id: Option<String>,
    batch: Operations,
    format: Format,
}

/// Runs a request sent with an `Idempotency-Key` at most once per account and key: the first
/// answer is stored and sent again to every retry (see [`crate::idempotency`]).
///
/// Keys belong to accounts: anonymous requests with one are refused rather than run without
/// the guarantee the client asked for. From the claim on, the request runs in a task of its
/// own, so a client that goes away does not cancel it: its retry gets the answer.
async fn execute_once(state: HttpState, request: Keyed) -> Response {
    let account_id = match request.viewer {
        Viewer::Account { id, .. } => id,
        Viewer::Anonymous => {
            return app_error_response(
                StatusCode::BAD_REQUEST,
                AppError::bad_input(
                    idempotency::FIELD,
                    "an Idempotency-Key belongs to an account: sign in, or send the request \
                     without one",
                ),
            );
        }
        Viewer::InvalidToken(reason) => {
            return app_error_response(StatusCode::UNAUTHORIZED, AppError::access_refused(reason));
        }
    };
    if let Err(err) = state.app.health.gate() {
        return unavailable_response(err);
    }
    let work = async move {
        let lease = state.settings.limits.request_timeout + idempotency::LEASE_MARGIN;
        let begun = idempotency::begin(
            &state.app.db,
            account_id,
            &request.key,
            &request.fingerprint,
            lease,
        )
        .await;
        let claim = match begun {
            Ok(idempotency::Begin::Run(claim)) => claim,
            Ok(idempotency::Begin::Replay(stored)) => {
                tracing::debug!("answered an Idempotency-Key again");
                return replay(stored);
            }
            Err(refusal) => return refusal_response(&state, refusal),
        };
        let response = execute(
            &state,
            request.viewer,
            request.client_ip,
            request.request_id,
            request.batch,
            request.format,
            Some(claim.clone()),
        )
        .await;
        let (parts, body) = response.into_parts();
        let body = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(error = %err, "reading a response to store it failed");
                Bytes::new()
            }
        };
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(Format::Json.content_type())
            .to_owned();
        let stored = idempotency::Stored {
            status: parts.status.as_u16(),
            content_type,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        // What a retry gets if this attempt committed a change (one that committed nothing
        // gives its key back, whatever its answer: see `idempotency::finish`).
        let refused = |refusal: idempotency::Refusal| {
            stored_error(StatusCode::CONFLICT, refusal.into_error())
        };
        let answer = if worth_retrying(parts.status, &body) {
            refused(idempotency::Refusal::AnswerLost)
        } else if claim.issued_credentials() {
            refused(idempotency::Refusal::Withheld)
        } else if stored.body.len() > idempotency::MAX_STORED_BYTES {
            refused(idempotency::Refusal::TooLarge)
        } else {
            stored
        };
        if let Err(err) = idempotency::finish(&state.app.db, &claim, answer).await {
            // The answer is true all the same; the key's lease decides what a retry gets.
            let err = async_graphql::Error::from(err);
            tracing::error!(error = %err.message, "could not store an Idempotency-Key's answer");
        }
        Response::from_parts(parts, Body::from(body))
    };
    let task = tokio::spawn(tracing::Instrument::in_current_span(work));
    match task.await {
        Ok(response) => response,
        Err(err) => {
            tracing::error!(error = %err, "a GraphQL request's task failed");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                "internal server error",
            )
        }
    }
}

/// Codes of errors a retry may get past: an attempt that ends with one gives its key back.
const RETRYABLE_CODES: [&str; 4] = [
    "SERVICE_UNAVAILABLE",
    "TOO_MANY_REQUESTS",
    "TIMEOUT",
    "INTERNAL_SERVER_ERROR",
];

/// Whether an answer says the request failed for a passing reason (the database, a limit, the
/// timeout, a bug), in any of its operations.
fn worth_retrying(status: StatusCode, body: &[u8]) -> bool {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return true;
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return true;
    };
    let bodies = match &json {
        serde_json::Value::Array(bodies) => bodies.iter().collect(),
        one => vec![one],
    };
    bodies.iter().any(|body| {
        body["errors"].as_array().is_some_and(|errors| {
            errors.iter().any(|error| {
                error["extensions"]["code"]
                    .as_str()
                    .is_some_and(|code| RETRYABLE_CODES.contains(&code))
            })
        })
    })
}

/// A stored answer sent again, marked as such.
fn replay(stored: idempotency::Stored) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    if let Ok(content_type) = HeaderValue::from_str(&stored.content_type) {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    headers.insert(
        idempotency::REPLAYED_HEADER,
        HeaderValue::from_static("true"),
    );
    response
}

/// The answer to a key that was not run: 409 while another attempt runs (with `Retry-After`)
/// or its answer was lost, 422 when the body differs (both as the draft suggests).
fn refusal_response(state: &HttpState, refusal: idempotency::Refusal) -> Response {
    use idempotency::Refusal;
    let status = match &refusal {
        Refusal::Mismatch => StatusCode::UNPROCESSABLE_ENTITY,
        Refusal::InProgress | Refusal::AnswerLost | Refusal::Withheld | Refusal::TooLarge => {
            StatusCode::CONFLICT
        }
        Refusal::Failed(AppError::ServiceUnavailable { .. }) => {
            state.app.health.suspect();
            return unavailable_response(refusal.into_error());
        }
        Refusal::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let in_progress = matches!(refusal, Refusal::InProgress);
    let mut response = app_error_response(status, refusal.into_error());
    if in_progress {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn unavailable_response(err: AppError) -> Response {
    let mut response = app_error_response(StatusCode::SERVICE_UNAVAILABLE, err);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, probes::retry_after());
    response
}

/// An [`AppError`] as a response refused before GraphQL runs.
fn app_error_response(status: StatusCode, err: AppError) -> Response {
    let body = app_error_body(err);
    json_response(status, Format::Json, &body)
}

/// An [`AppError`] as a stored answer.
fn stored_error(status: StatusCode, err: AppError) -> idempotency::Stored {
    idempotency::Stored {
        status: status.as_u16(),
        content_type: Format::Json.content_type().to_owned(),
        body: app_error_body(err).to_string(),
    }
}

fn app_error_body(err: AppError) -> serde_json::Value {
    let error = async_graphql::Error::from(err);
    let extensions = error
        .extensions
        .as_ref()
        .and_then(|e| serde_json::to_value(e).ok())
        .unwrap_or(serde_json::Value::Null);
    serde_json::json!({ "errors": [{ "message": error.message, "extensions": extensions }] })
}

/// `GET /graphql`: subscriptions over WebSocket (an upgrade), the playground for browsers, or
/// a query from the URL's parameters.
async fn graphql_get(State(state): State<HttpState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    if ws::is_upgrade(&parts.headers) {
        return ws::upgrade(state, parts).await;
    }
    let signed_in = parts.headers.contains_key(header::AUTHORIZATION);
    let mut response = graphql_get_answer(state, parts).await;
    get_caching(response.headers_mut(), signed_in);
    response
}

/// What caches may do with an answer to a GET of `/graphql`. The URL of a query (an APQ hash
/// above all) is the same for every caller, so a shared cache keyed on the URL alone could hand
/// one account's answer to another: every GET answer varies with the caller and the format asked
/// for, and one given to a signed-in caller is never stored (`private, no-store`).
fn get_caching(headers: &mut HeaderMap, signed_in: bool) {
    headers.append(
        header::VARY,
        HeaderValue::from_static("authorization, accept"),
    );
    if signed_in {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
    }
}

/// A query (or the playground) from a GET's URL parameters.
async fn graphql_get_answer(state: HttpState, parts: axum::http::request::Parts) -> Response {
    let params: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| {
            url_params(q)
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    // A document, or an id for one (`documentId`, APQ's `extensions`).
    if ["query", "documentId", "extensions"]
        .iter()
        .all(|name| param(name).is_none())
    {
        if state.settings.graphiql && negotiate::accepts_html(&parts.headers) {
            return playground::page();
        }
        return bad_request("GET /graphql needs a `query` parameter");
    }
    let Some(format) = negotiate::response_format(&parts.headers) else {
        return not_acceptable();
    };
    let mut object = serde_json::Map::new();
    for (name, value) in [
        (
            "query",
            param("query").map(|q| serde_json::Value::String(q.to_owned())),
        ),
        (
            "operationName",
            param("operationName").map(|n| serde_json::Value::String(n.to_owned())),
        ),
        (
            "documentId",
            param("documentId").map(|id| serde_json::Value::String(id.to_owned())),
        ),
        ("variables", param("variables").map(parse_json_param)),
        ("extensions", param("extensions").map(parse_json_param)),
    ] {
        if let Some(value) = value {
            object.insert(name.to_owned(), value);
        }
    }
    let operation = match Operation::from_params(object, &state.app.persisted) {
        Ok(operation) => operation,
        Err(message) => return bad_request(&message),
    };
    // A document that does not parse, or could not be found, is left for `execute` to report,
    // like any other; one found by its id is a mutation or not as if it had been sent.
    let request = &operation.request;
    if operation.document.is_ok()
        && let Ok(document) = state.documents.parse(&request.query)
        && is_mutation(&document, request.operation_name.as_deref())
    {
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "mutations must be sent with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let viewer = state.app.viewer(&parts.headers);
    let client_ip = client_ip(
        &parts.headers,
        &parts.extensions,
        state.settings.trust_proxy_headers,
    );
    let request_id = layers::request_id(&parts.headers);
    execute(
        &state,
        viewer,
        client_ip,
        request_id,
        Operations::Single(operation),
        format,
        None,
    )
    .await
}

/// Runs a request as the caller its headers name, within the request timeout.
///
/// The work runs in its own task: the answer comes at the timeout even if the work is in the
/// middle of a long poll, and the task is aborted then (or when the client goes away). What a
/// request may cost is bounded before it runs (see `graphql::cost`), so no poll runs long.
///
/// With an `Idempotency-Key` claim, the request's writes run under it (see
/// [`idempotency::scope`]); the audit records of its changes carry `request_id` (see
/// [`crate::audit::in_request`]).
async fn execute(
    state: &HttpState,
    viewer: Viewer,
    client_ip: ClientIp,
    request_id: Option<String>,
    batch: Operations,
    format: Format,
    claim: Option<idempotency::Claim>,
) -> Response {
    let timeout: Duration = state.settings.limits.request_timeout;
    let task_state = state.clone();
    // In the request's span, so that what it logs carries the request id. The request's future
    // is large (async-graphql's execution); boxed here, the wrappers and the spawn below move a
    // pointer instead of copying it each time (callgrind: 78,000 instructions per request).
    let work = idempotency::scope(
        claim,
        Box::pin(async move { run(&task_state, batch, viewer, client_ip, format).await }),
    );
    let work = crate::audit::in_request(request_id, work);
    let mut task = AbortOnDrop(tokio::spawn(tracing::Instrument::in_current_span(work)));
    match tokio::time::timeout(timeout, &mut task.0).await {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => {
            tracing::error!(error = %err, "a GraphQL request's task failed");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                "internal server error",
            )
        }
        Err(_) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "TIMEOUT",
            "the request took too long and was cancelled",
        ),
    }
}

/// Aborts the task when dropped: on a timeout, or when the client disconnects.
struct AbortOnDrop(tokio::task::JoinHandle<Response>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Measures every operation against one budget, then runs those within it, in order.
async fn run(
    state: &HttpState,
    batch: Operations,
    viewer: Viewer,
    client_ip: ClientIp,
    format: Format,
) -> Response {
    let max_bytes = state.settings.limits.max_response_bytes;
    match batch {
        Operations::Single(operation) => {
            let started = std::time::Instant::now();
            let (request, prepared) = prepare(state, operation).await;
            let body = match prepared {
                Ok((_, document)) => {
                    run_one(state, request, &document, viewer, client_ip, started).await
                }
                Err(error) => refuse(state, &request, error, started),
            };
            let unavailable = probes::note_unavailable(&state.app, &body.errors);
            // Without `data`, application/graphql-response+json may say why in the status.
            if body.is_request_error() && format == Format::GraphqlResponseJson {
                if unavailable {
                    let mut response = capped_json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format,
                        &body,
                        max_bytes,
                    );
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, probes::retry_after());
                    return response;
                }
                return capped_json_response(StatusCode::BAD_REQUEST, format, &body, max_bytes);
            }
            let mut response = capped_json_response(StatusCode::OK, format, &body, max_bytes);
            rate_limit_headers(&mut response, &body.errors);
            response
        }
        Operations::Batch(operations) => {
            let started = std::time::Instant::now();
            let mut prepared = Vec::with_capacity(operations.len());
            for operation in operations {
                prepared.push(prepare(state, operation).await);
            }
            let total = Cost::sum(
                prepared
                    .iter()
                    .filter_map(|(_, prepared)| prepared.as_ref().ok().map(|(cost, _)| *cost)),
            );
            // The operations share one budget and one `__schema`; the other limits hold for each on
            // its own.
            let shared = Cost {
                cost: total.cost,
                fields: total.fields,
                schema_fields: total.schema_fields,
                ..Cost::default()
            };
            let over_budget = state.documents.check(&shared, "the batch").err();
            let mut bodies = Vec::with_capacity(prepared.len());
            for (request, cost) in prepared {
                let body = match (cost, &over_budget) {
                    (Err(error), _) => refuse(state, &request, error, started),
                    (Ok(_), Some(error)) => refuse(state, &request, error.clone(), started),
                    (Ok((_, document)), None) => {
                        let started = std::time::Instant::now();
                        let viewer = viewer.clone();
                        run_one(state, request, &document, viewer, client_ip, started).await
                    }
                };
                probes::note_unavailable(&state.app, &body.errors);
                bodies.push(body);
            }
            let mut response = capped_json_response(StatusCode::OK, format, &bodies, max_bytes);
            rate_limit_headers(&mut response, bodies.iter().flat_map(|body| &body.errors));
            response
        }
    }
}

/// `Retry-After`, `RateLimit` and `RateLimit-Policy` for the limit that refused an operation
/// of the request (the longest wait's), when one did: a client that does not read GraphQL
/// errors (a proxy, a generic HTTP retry policy) still learns to wait.
fn rate_limit_headers<'a>(
    response: &mut Response,
    errors: impl IntoIterator<Item = &'a async_graphql::ServerError>,
) {
    let limited = errors
        .into_iter()
        .filter_map(|error| error.source::<RateLimited>().copied())
        .max_by_key(|limited| limited.retry_after_secs);
    if let Some(limited) = limited {
        layers::rate_limit_headers(response.headers_mut(), limited);
    }
}

/// Documents longer than this are parsed and measured on a blocking thread: parsing a long
/// document would hold an async worker, and every request queued on it, for that long
/// (docs/benchmarks.md#long-documents-parsed-on-a-blocking-thread).
const PARSE_INLINE_BYTES: usize = 4 * 1024;

/// Parses and measures `operation`'s document (see [`Documents::prepare`]), a long one on a
/// blocking thread; a document sent with an APQ hash is remembered once it has passed.
async fn prepare(
    state: &HttpState,
    operation: Operation,
) -> (
    GqlRequest,
    Result<(Cost, Arc<ExecutableDocument>), async_graphql::ServerError>,
) {
    let Operation {
        request, document, ..
    } = operation;
    let remember = match document {
        Ok(remember) => remember,
        Err(error) => return (request, Err(error)),
    };
    let (request, prepared) = measure(state, request).await;
    if let (Some(hash), Ok(_)) = (remember, &prepared) {
        state.app.persisted.remember(hash, &request.query);
    }
    (request, prepared)
}

/// Parses and measures `request` (see [`Documents::prepare`]), a long document on a blocking
/// thread.
async fn measure(
    state: &HttpState,
    mut request: GqlRequest,
) -> (
    GqlRequest,
    Result<(Cost, Arc<ExecutableDocument>), async_graphql::ServerError>,
) {
    if request.query.len() <= PARSE_INLINE_BYTES {
        let prepared = state.documents.prepare(&mut request);
        return (request, prepared);
    }
    let documents = state.documents.clone();
    let query = request.query.clone();
    let work = tokio::task::spawn_blocking(move || {
        let prepared = documents.prepare(&mut request);
        (request, prepared)
    });
    match work.await {
        Ok(done) => done,
        Err(err) => {
            tracing::error!(error = %err, "parsing a document failed");
            let mut error = async_graphql::ServerError::new("internal server error", None);
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", "INTERNAL_SERVER_ERROR");
            (GqlRequest::new(query), Err(error))
        }
    }
}

/// Executes one measured operation and records it.
async fn run_one(
    state: &HttpState,
    request: GqlRequest,
    document: &ExecutableDocument,
    viewer: Viewer,
    client_ip: ClientIp,
    started: std::time::Instant,
) -> ResponseBody {
    let name = request.operation_name.clone();
    if is_subscription(document, name.as_deref()) {
        let mut error = async_graphql::ServerError::new(
            "subscriptions run over WebSocket: open /graphql with the graphql-transport-ws \
             subprotocol",
            None,
        );
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", "BAD_REQUEST");
        return refuse(state, &request, error, started);
    }
    let response = match probes::database_gate(&state.app) {
        Ok(()) => {
            state
                .schema
                .execute(request.data(viewer).data(client_ip))
                .await
        }
        Err(error) => GqlResponse::from_errors(vec![error]),
    };
    let body = ResponseBody::from_response(response, Some(document), state.documents.model());
    state
        .app
        .metrics
        .record_operation(name.as_deref(), body.outcome(), started.elapsed());
    body
}

/// The answer to an operation refused before it ran, recorded like any other.
fn refuse(
    state: &HttpState,
    request: &GqlRequest,
    error: async_graphql::ServerError,
    started: std::time::Instant,
) -> ResponseBody {
    let body = ResponseBody::from_response(
        GqlResponse::from_errors(vec![error]),
        None,
        state.documents.model(),
    );
    state.app.metrics.record_operation(
        request.operation_name.as_deref(),
        body.outcome(),
        started.elapsed(),
    );
    body
}

/// The JSON body of one executed operation. A request error (the document could not be parsed
/// or validated, or its variables were wrong) has no `data` entry and, in
/// `application/graphql-response+json`, gets status 400.
#[derive(serde::Serialize)]
struct ResponseBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<async_graphql::ServerError>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: std::collections::BTreeMap<String, Value>,
}

impl ResponseBody {
    /// `document` is the one that ran, to tell errors in its variables from errors in it.
    fn from_response(
        mut response: GqlResponse,
        document: Option<&ExecutableDocument>,
        model: &CostModel,
    ) -> Self {
        let request_error = shape_response(&mut response, document, model);
        Self {
            data: (!request_error).then_some(response.data),
            errors: response.errors,
            extensions: response.extensions,
        }
    }

    fn is_request_error(&self) -> bool {
        self.data.is_none()
    }

    fn outcome(&self) -> Outcome {
        match (self.is_request_error(), self.errors.is_empty()) {
            (true, _) => Outcome::Rejected,
            (false, false) => Outcome::Error,
            (false, true) => Outcome::Ok,
        }
    }
}

/// Shapes an executed operation's answer as every answer leaves the server, over HTTP and as
/// a subscription's events: each error has a code, a failed field is `null` (see
/// [`null_at_error_path`]), messages and the number of errors are capped. Returns whether it
/// is a request error (nothing ran: no `data` to send).
///
/// `document` is the one that ran, to tell errors in its variables from errors in it, and
/// which failed fields may be null (`model` says).
fn shape_response(
    response: &mut GqlResponse,
    document: Option<&ExecutableDocument>,
    model: &CostModel,
) -> bool {
    let request_error = response.data == Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let failed: Vec<Failed> = match document {
        Some(document) => response
            .errors
            .iter()
            .filter(|error| !error.path.is_empty())
            .map(|error| Failed {
                path: error.path.clone(),
                nullable: error
                    .locations
                    .first()
                    .and_then(|pos| model.nullable_at(document, *pos))
                    .unwrap_or(false),
            })
            .collect(),
        None => Vec::new(),
    };
    for error in &mut response.errors {
        // Errors raised by the engine itself carry no code. Before execution (no data, no
        // path) they are validation errors, except a variable whose value does not fit its
        // type, which is bad input like a wrong argument during execution. Parse and limit
        // errors come coded from `Documents`.
        let about_variables = error.message.starts_with("Invalid value for argument")
            && document.is_some_and(|document| {
                error
                    .locations
                    .first()
                    .is_some_and(|pos| argument_uses_variable(document, *pos))
            });
        let code = if request_error && !about_variables {
            VALIDATION_FAILED
        } else {
            "BAD_USER_INPUT"
        };
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", code);
        }
        null_at_error_path(&mut response.data, &error.path, &failed);
        // The last line against messages that repeat what the client sent.
        error.message = truncated(std::mem::take(&mut error.message), MAX_MESSAGE_CHARS);
    }
    if response.errors.len() > MAX_ERRORS {
        let left_out = response.errors.split_off(MAX_ERRORS - 1);
        let mut summary = async_graphql::ServerError::new(
            format!("{} more errors left out", left_out.len()),
            None,
        );
        let code = left_out[0]
            .extensions
            .as_ref()
            .and_then(|extensions| extensions.get("code"))
            .cloned()
            .unwrap_or(Value::Null);
        summary
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
        response.errors.push(summary);
    }
    request_error
}

/// A field that failed: where, and whether the schema lets it be null.
struct Failed {
    path: Vec<PathSegment>,
    nullable: bool,
}

/// Puts the `null` that the GraphQL spec requires where a field failed.
///
/// async-graphql 7 leaves a failed nullable field out of its parent object instead of setting
/// it to null; the first missing key along the error's path is where the null belongs (the
/// nearest nullable ancestor, since non-null failures remove their parents too). An object
/// all of whose selected fields failed comes as `null` itself: when every field that failed
/// inside it may be null (`failed`), it is an object again, holding those nulls.
fn null_at_error_path(data: &mut Value, path: &[PathSegment], failed: &[Failed]) {
    let mut current = data;
    for (depth, segment) in path.iter().enumerate() {
        let next = match (current, segment) {
            (Value::Object(fields), PathSegment::Field(name)) => {
                let key = Name::new(name);
                if !fields.contains_key(&key) {
                    fields.insert(key, Value::Null);
                    return;
                }
                match fields.get_mut(&key) {
                    Some(next) => next,
                    None => return,
                }
            }
            (Value::List(items), PathSegment::Index(index)) => match items.get_mut(*index) {
                Some(next) => next,
                None => return,
            },
            _ => return,
        };
        let within = &path[..=depth];
        if *next == Value::Null
            && matches!(path.get(depth + 1), Some(PathSegment::Field(_)))
            && failed.iter().any(|f| f.path == path)
            && failed
                .iter()
                .filter(|f| f.path.starts_with(within))
                .all(|f| f.nullable)
        {
            *next = Value::Object(Default::default());
        }
        current = next;
    }
}

/// A JSON-encoded URL parameter; text that is not JSON stays a string (and is refused as
/// a map by [`Operation::from_params`]).
fn parse_json_param(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

fn url_params(query: &str) -> Vec<(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> {
    form_urlencoded::parse(query.as_bytes()).collect()
}

fn client_ip(
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    trust_proxy_headers: bool,
) -> ClientIp {
    if trust_proxy_headers
        && let Some(ip) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            // Only the hop the trusted proxy appended counts; if it is not an address, fall
            // back to the peer rather than to an entry the client may have written.
            .and_then(|hop| hop.trim().parse::<IpAddr>().ok())
    {
        return ClientIp(ip);
    }
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
    ClientIp(peer)
}

/// Reads a body of at most `limit` bytes. Kept by hand rather than tower-http's
/// `RequestBodyLimitLayer`, which answers an oversized `Content-Length` itself with a plain-text
/// 413, where clients get the JSON error envelope (`PAYLOAD_TOO_LARGE`) from here.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        if crate::server::is_body_timeout(&err) {
            let mut response = error_response(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                "the request body did not arrive in time",
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            &format!("the request body is larger than {limit} bytes"),
        )
    })
}

/// The initial size of a response buffer: a first page of products fits, so the common answer
/// is written without growing it (docs/benchmarks.md#the-response-buffer-4-kib).
const RESPONSE_BUFFER_BYTES: usize = 4096;

/// A JSON response, or `RESPONSE_TOO_LARGE` when it would be longer than `max_bytes`:
/// serialization stops at the ceiling and the partial buffer is dropped.
fn capped_json_response(
    status: StatusCode,
    format: Format,
    body: &impl serde::Serialize,
    max_bytes: usize,
) -> Response {
    let mut writer = CappedWriter {
        bytes: Vec::with_capacity(RESPONSE_BUFFER_BYTES.min(max_bytes)),
        max_bytes,
    };
    match serde_json::to_writer(&mut writer, body) {
        Ok(()) => bytes_response(status, format, writer.bytes),
        Err(err) if err.is_io() => {
            drop(writer);
            let status = if format == Format::GraphqlResponseJson {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::OK
            };
            let body = serde_json::json!({"errors": [{
                "message": format!(
                    "the response would be larger than {max_bytes} bytes; ask for fewer items \
                     or fields"
                ),
                "extensions": { "code": "RESPONSE_TOO_LARGE", "limit": max_bytes },
            }]});
            json_response(status, format, &body)
        }
        Err(_) => json_response(StatusCode::INTERNAL_SERVER_ERROR, format, &internal_error()),
    }
}

/// A buffer that refuses to grow past `max_bytes`.
struct CappedWriter {
    bytes: Vec<u8>,
    max_bytes: usize,
}

impl std::io::Write for CappedWriter {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    // serde_json writes each token and string piece with `write_all`: inlined, the check and
    // the copy are a few instructions, not a call through `write` and its loop.
    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.bytes.len() + buf.len() > self.max_bytes {
            return Err(over_the_cap());
        }
        self.bytes.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cold]
fn over_the_cap() -> std::io::Error {
    std::io::Error::other("the response is over MAX_RESPONSE_BYTES")
}

fn internal_error() -> serde_json::Value {
    serde_json::json!({"errors": [{
        "message": "internal server error",
        "extensions": { "code": "INTERNAL_SERVER_ERROR" },
    }]})
}

fn bytes_response(status: StatusCode, format: Format, bytes: Vec<u8>) -> Response {
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

fn json_response(status: StatusCode, format: Format, body: &impl serde::Serialize) -> Response {
    // Room for a typical page of results up front, rather than growing (and copying) the
    // buffer from empty several times per response.
    let mut bytes = Vec::with_capacity(RESPONSE_BUFFER_BYTES);
    if serde_json::to_writer(&mut bytes, body).is_err() {
        bytes = br#"{"errors":[{"message":"internal server error","extensions":{"code":"INTERNAL_SERVER_ERROR"}}]}"#.to_vec();
    }
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

/// A response for a request the server refuses before GraphQL runs.
fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "errors": [{ "message": message, "extensions": { "code": code } }]
    });
    json_response(status, Format::Json, &body)
}

fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
}

fn not_acceptable() -> Response {
    error_response(
        StatusCode::NOT_ACCEPTABLE,
        "NOT_ACCEPTABLE",
        "responses are application/graphql-response+json or application/json",
    )
}
