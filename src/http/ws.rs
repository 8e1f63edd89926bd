//! GraphQL subscriptions over WebSocket at `GET /graphql`, with the `graphql-transport-ws`
//! protocol (the `graphql-ws` library's, which Apollo Client and urql use), run by
//! async-graphql-axum's connection over a gate of our own:
//!
//! - the upgrade is refused unless the client offers `graphql-transport-ws` (spelled so), and a
//!   browser's upgrade from an origin that `CORS_ALLOWED_ORIGINS` does not allow (or, with none
//!   allowed, from another origin than the server's) is refused (cross-site WebSocket
//!   hijacking);
//! - `connection_init` carries the access token in its payload (`Authorization`, in any case),
//!   checked as the header is: a bad, expired or revoked token closes the socket with 4403,
//!   none makes an anonymous caller, a payload that is not an object or names the key twice
//!   closes it with 4400; no `connection_init` within `WS_INIT_TIMEOUT_SECS` closes it with
//!   4408; a message over `MAX_BODY_BYTES` closes it with 1009;
//! - each `subscribe` is parsed and measured as an HTTP request is (depth, cost, aliases,
//!   directives; see `graphql::documents`) and counted against the per-connection and
//!   per-account limits before it runs; a refusal is an `error` message (`QUERY_TOO_COMPLEX`,
//!   `TOO_MANY_REQUESTS`, …). Only subscriptions run here: queries and mutations go over HTTP,
//!   where their timeouts, idempotency keys and rate limits apply;
//! - the connection is closed (see [`Close`]) when its token expires or is revoked, when the
//!   policy stops granting what it subscribed to, when a subscriber falls
//!   `WS_MAX_QUEUED_EVENTS` behind, and, with 1001, when the server drains;
//! - idle sockets do not stay: the server pings every `WS_PING_INTERVAL_SECS` and closes
//!   (1001) a socket from which nothing was read since the previous ping, closes (1000) an
//!   initialised socket with no subscription for `WS_IDLE_TIMEOUT_SECS`, and refuses an upgrade
//!   with HTTP 429 when `WS_MAX_CONNECTIONS_PER_ADDRESS` sockets from the client's address are
//!   open. Each socket reads into a small buffer and writes each message as it goes.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_graphql::{Data, http::ClientMessage};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    body::Bytes,
    extract::{
        FromRequestParts, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use futures_util::{SinkExt, StreamExt, stream::SplitStream};
use tokio::sync::{mpsc, watch};

use super::{HttpState, client_ip, error_response, operation::Operation, prepare, shape_response};
use crate::{
    auth::{ClientIp, Viewer},
    config::CorsOrigins,
    graphql::{AppSchema, Documents, is_subscription, root_fields},
    server::UpgradeHandle,
    state::AppState,
    subscriptions::{CHECK_INTERVAL, Channel, Close, Closer, Refusal},
};

/// The one subprotocol served.
pub const PROTOCOL: &str = "graphql-transport-ws";
/// Messages waiting to be written to one socket; beyond, the connection stops reading events
/// (and its subscribers' own queues fill instead, which are bounded).
const OUTGOING_BUFFER: usize = 16;
/// How long a close frame may take to be written before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The buffer each socket reads frames into (tungstenite allocates it up front; 128 KiB by
/// default). Client messages are small; a larger one grows it as it is read. The memory an
/// idle socket costs: docs/benchmarks.md, "WebSocket buffers".
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// What may wait to be written to one socket beyond the message being written: each message
/// is written as it is sent (no write buffer), and a message larger than `MAX_RESPONSE_BYTES`
/// and this is refused rather than buffered.
const WRITE_BUFFER_SLACK: usize = 64 * 1024;
/// `Retry-After` (seconds) on an upgrade refused for `WS_MAX_CONNECTIONS_PER_ADDRESS`.
const PER_ADDRESS_RETRY_AFTER_SECS: u32 = 5;

/// Whether a request asks to upgrade to a WebSocket.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case("websocket"))
}

/// `GET /graphql` with `Upgrade: websocket`: the handshake, then the connection.
pub async fn upgrade(state: HttpState, mut parts: Parts) -> Response {
    if !origin_allowed(&parts.headers, &state.settings.cors_allowed_origins) {
        return error_response(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "WebSocket connections from this origin are not allowed (CORS_ALLOWED_ORIGINS)",
        );
    }
    if !offers(&parts.headers, PROTOCOL) {
        return error_response(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "GraphQL over WebSocket needs the graphql-transport-ws subprotocol \
             (Sec-WebSocket-Protocol)",
        );
    }
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let client_ip = client_ip(
        &parts.headers,
        &parts.extensions,
        state.settings.trust_proxy_headers,
    );
    // Taken before the upgrade is answered, held by the socket, given back when it closes
    // (or when the upgrade never completes).
    let Some(slot) = state
        .sockets
        .take(client_ip.0, state.settings.ws_max_per_address)
    else {
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            &format!(
                "at most {} WebSockets at once from one address (WS_MAX_CONNECTIONS_PER_ADDRESS)",
                state.settings.ws_max_per_address
            ),
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(PER_ADDRESS_RETRY_AFTER_SECS),
        );
        return response;
    };
    let handle = parts.extensions.get::<UpgradeHandle>().cloned();
    let max_message = state.settings.limits.max_body_bytes;
    let max_written = state.settings.limits.max_response_bytes + WRITE_BUFFER_SLACK;
    upgrade
        .protocols([PROTOCOL])
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(max_written)
        .on_upgrade(move |socket| async move {
            serve(socket, state, client_ip, handle).await;
            drop(slot);
        })
}

/// The WebSockets open from each client address, for `WS_MAX_CONNECTIONS_PER_ADDRESS`.
#[derive(Debug, Default)]
pub struct Addresses(Mutex<HashMap<IpAddr, usize>>);

impl Addresses {
    /// Takes one of `ip`'s `max` places, if one is free; given back when the slot is dropped.
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            addresses: self.clone(),
            ip,
        })
    }
}

/// One socket's place among its address's.
struct AddressSlot {
    addresses: Arc<Addresses>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self
            .addresses
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Whether `headers` offer `protocol` in `Sec-WebSocket-Protocol`, spelled exactly so: a
/// subprotocol name is case-sensitive (RFC 6455), and the answer must name what was offered.
fn offers(headers: &HeaderMap, protocol: &str) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|offered| offered.trim() == protocol)
}

/// Whether a browser on the request's `Origin` may open a socket: always without an `Origin`
/// (not a browser), else when CORS would let that origin read answers, or when it is the
/// server's own origin (GraphiQL, served from here).
fn origin_allowed(headers: &HeaderMap, allowed: &CorsOrigins) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let same_origin = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
        });
    same_origin
        || match allowed {
            CorsOrigins::None => false,
            CorsOrigins::Any => true,
            CorsOrigins::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
}

/// async-graphql-axum's protocol value for graphql-transport-ws; its extractor is the only
/// way to make one, and it would pick the legacy `graphql-ws` when a client offers it first.
async fn transport_ws() -> Option<GraphQLProtocol> {
    let (mut parts, ()) = axum::http::Request::builder()
        .header(header::SEC_WEBSOCKET_PROTOCOL, PROTOCOL)
        .body(())
        .ok()?
        .into_parts();
    GraphQLProtocol::from_request_parts(&mut parts, &())
        .await
        .ok()
}

/// One connection: async-graphql-axum runs the protocol on the messages the [`Gate`] lets
/// through, and this loop writes what it answers, watches the connection's deadline and
/// checks, and closes it.
async fn serve(
    socket: WebSocket,
    state: HttpState,
    client_ip: ClientIp,
    handle: Option<UpgradeHandle>,
) {
    let Some(protocol) = transport_ws().await else {
        tracing::error!("could not make the graphql-transport-ws protocol value");
        return;
    };
    let (closer, mut closing) = Closer::new();
    // Kept here so that `closing` lives as long as the connection.
    let _closer = closer.clone();
    let (session_tx, session) = watch::channel::<Option<Arc<Channel>>>(None);
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(OUTGOING_BUFFER);
    let (mut sink, source) = socket.split();
    // Set by each frame read from the client, cleared by each ping.
    let heard = Arc::new(AtomicBool::new(false));

    let gate = Gate {
        state: state.clone(),
        closer,
        session: session_tx,
        out: out_tx.clone(),
    };
    let input = incoming(source, gate, heard.clone());
    let output =
        futures_util::sink::unfold(out_tx, |out: mpsc::Sender<Message>, message| async move {
            out.send(message).await.map(|()| out)
        });
    let init_session = session.clone();
    let mut connection_data = Data::default();
    connection_data.insert(client_ip);
    let events = Events {
        schema: state.schema.clone(),
        documents: state.documents.clone(),
    };
    let graphql = GraphQLWebSocket::new_with_pair(output, input, events, protocol)
        .with_data(connection_data)
        .on_connection_init(move |_payload| {
            // The gate checked the payload and opened the channel before letting it through.
            let channel = init_session.borrow().clone();
            async move {
                let channel = channel.ok_or_else(|| async_graphql::Error::new("Forbidden"))?;
                let mut data = Data::default();
                data.insert(channel.viewer().clone());
                data.insert(channel);
                Ok(data)
            }
        })
        .serve();
    let mut graphql = Some(Box::pin(graphql));

    let settings = &state.settings;
    let init_deadline = tokio::time::Instant::now() + settings.ws_init_timeout;
    let mut checks = tokio::time::interval(CHECK_INTERVAL);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pings = tokio::time::interval_at(
        tokio::time::Instant::now() + settings.ws_ping_interval,
        settings.ws_ping_interval,
    );
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether a ping has been sent: from then on, each interval must hear from the client.
    let mut pinged = false;
    let mut stop = handle;
    let closed = loop {
        let initialised = session.borrow().is_some();
        let message = tokio::select! {
            biased;
            _ = closing.changed() => break *closing.borrow(),
            () = stopping(&mut stop) => break Some(Close::GoingAway),
            () = tokio::time::sleep_until(init_deadline), if !initialised => {
                break Some(Close::InitTimeout)
            }
            _ = checks.tick() => {
                let Some(channel) = session.borrow().clone() else {
                    continue;
                };
                if let Some(reason) = channel.verdict() {
                    break Some(reason);
                }
                if channel
                    .idle_since()
                    .is_some_and(|since| since.elapsed() >= settings.ws_idle_timeout)
                {
                    break Some(Close::Idle);
                }
                continue;
            }
            _ = pings.tick() => {
                if !heard.swap(false, Ordering::Relaxed) && pinged {
                    break Some(Close::PingTimeout);
                }
                pinged = true;
                Message::Ping(Bytes::new())
            }
            message = out_rx.recv() => match message {
                Some(message) => message,
                // The protocol ended (the client went away or closed) and all is written.
                None => break None,
            },
            () = async { graphql.as_mut().expect("polled while running").await },
                if graphql.is_some() => {
                // Dropping it drops its senders, so `out_rx` ends once drained.
                graphql = None;
                continue;
            }
        };
        if let Message::Text(text) = &message
            && let Some(id) = completed(text.as_str())
            && let Some(channel) = session.borrow().as_ref()
        {
            channel.finish(&id);
        }
        let last = matches!(message, Message::Close(_));
        // A client that does not read blocks this write; a close (its subscriber fell too
        // far behind, a revocation, the drain, a ping interval without a word from it) still
        // gets through. Nothing is read meanwhile.
        let ended: Option<Option<Close>> = 'write: {
            let mut send = std::pin::pin!(sink.send(message));
            loop {
                tokio::select! {
                    biased;
                    _ = closing.changed() => break 'write Some(*closing.borrow()),
                    () = stopping(&mut stop) => break 'write Some(Some(Close::GoingAway)),
                    _ = pings.tick() => {
                        if !heard.swap(false, Ordering::Relaxed) && pinged {
                            break 'write Some(Some(Close::PingTimeout));
                        }
                    }
                    sent = &mut send => break 'write (sent.is_err() || last).then_some(None),
                }
            }
        };
        if let Some(closed) = ended {
            break closed;
        }
    };
    if let Some(reason) = closed {
        tracing::debug!(
            code = reason.code(),
            reason = reason.reason(),
            "closing a WebSocket"
        );
        let frame = Message::Close(Some(CloseFrame {
            code: reason.code(),
            reason: reason.reason().into(),
        }));
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(frame)).await;
    }
    // Completes the closing handshake (a close frame, if none was sent yet), within the grace.
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
    drop(graphql);
}

/// The schema as sockets run it: each event leaves shaped as an HTTP answer does (see
/// [`shape_response`]): a field the caller may not read is `null` with its error, not left out.
#[derive(Clone)]
struct Events {
    schema: AppSchema,
    documents: Arc<Documents>,
}

impl async_graphql::Executor for Events {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        let mut response = self.schema.execute(request).await;
        shape_response(&mut response, None, self.documents.model());
        response
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> futures_util::stream::BoxStream<'static, async_graphql::Response> {
        // Parsed (and cached) by the gate already.
        let document = self.documents.parse(&request.query).ok();
        let documents = self.documents.clone();
        async_graphql::Executor::execute_stream(&self.schema, request, session_data)
            .map(move |mut response| {
                shape_response(&mut response, document.as_deref(), documents.model());
                response
            })
            .boxed()
    }
}

/// Resolves when the server drains (never without a handle).
async fn stopping(handle: &mut Option<UpgradeHandle>) {
    match handle {
        Some(handle) => handle.stopping().await,
        None => std::future::pending().await,
    }
}

/// The id of a `complete` message the server sends.
fn completed(text: &str) -> Option<String> {
    if !text.starts_with(r#"{"type":"complete""#) {
        return None;
    }
    let message: serde_json::Value = serde_json::from_str(text).ok()?;
    message["id"].as_str().map(str::to_owned)
}

/// What comes from the client, through the [`Gate`].
fn incoming(
    source: SplitStream<WebSocket>,
    gate: Gate,
    heard: Arc<AtomicBool>,
) -> impl futures_util::Stream<Item = Result<Message, axum::Error>> + Send + 'static {
    futures_util::stream::unfold((source, gate), move |(mut source, gate)| {
        let heard = heard.clone();
        async move {
            loop {
                let message = match source.next().await? {
                    Ok(message) => message,
                    Err(err) if too_big(&err) => {
                        gate.close(1009, "message too big (MAX_BODY_BYTES)").await;
                        return None;
                    }
                    Err(err) => return Some((Err(err), (source, gate))),
                };
                heard.store(true, Ordering::Relaxed);
                let bytes = match &message {
                    Message::Text(text) => text.as_bytes(),
                    Message::Binary(bytes) => bytes,
                    // Pings are answered by the socket itself; a close ends `source`.
                    _ => continue,
                };
                match gate.admit(bytes).await {
                    Admit::Forward => return Some((Ok(message), (source, gate))),
                    Admit::Replace(message) => return Some((Ok(message), (source, gate))),
                    Admit::Handled => {}
                    Admit::Close => return None,
                }
            }
        }
    })
}

/// Whether a read failed because the message (or a frame) was over the size limit.
fn too_big(err: &axum::Error) -> bool {
    std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<tungstenite::Error>())
        .is_some_and(|err| matches!(err, tungstenite::Error::Capacity(_)))
}

/// What the gate decided about one client message.
enum Admit {
    /// Let the protocol handle it.
    Forward,
    /// Let the protocol handle this instead (a `subscribe` with its document resolved).
    Replace(Message),
    /// Answered here (an `error` message); nothing for the protocol.
    Handled,
    /// The connection closes (the frame is on its way); read nothing more.
    Close,
}

/// Checks what the client sends before the protocol sees it: the token of `connection_init`,
/// and each `subscribe`'s document and limits.
struct Gate {
    state: HttpState,
    closer: Closer,
    session: watch::Sender<Option<Arc<Channel>>>,
    out: mpsc::Sender<Message>,
}

impl Gate {
    async fn admit(&self, bytes: &[u8]) -> Admit {
        let invalid = "Invalid message received";
        let Ok(serde_json::Value::Object(mut message)) = serde_json::from_slice(bytes) else {
            return self.close(4400, invalid).await;
        };
        if message.get("type").and_then(|t| t.as_str()) == Some("subscribe") {
            let (Some(serde_json::Value::String(id)), Some(serde_json::Value::Object(payload))) =
                (message.remove("id"), message.remove("payload"))
            else {
                return self.close(4400, invalid).await;
            };
            return self.subscribe(id, payload).await;
        }
        let Ok(message) = ClientMessage::from_bytes(bytes) else {
            return self.close(4400, invalid).await;
        };
        match message {
            ClientMessage::ConnectionInit { payload } => self.init(payload.as_ref()).await,
            // `start`, the legacy protocol's: not this one's.
            ClientMessage::Start { .. } => self.close(4400, invalid).await,
            ClientMessage::Stop { id } => {
                if let Some(channel) = self.session.borrow().as_ref() {
                    channel.finish(&id);
                }
                Admit::Forward
            }
            _ => Admit::Forward,
        }
    }

    async fn init(&self, payload: Option<&serde_json::Value>) -> Admit {
        if self.session.borrow().is_some() {
            // A second one: the protocol closes with 4429.
            return Admit::Forward;
        }
        let app: &AppState = &self.state.app;
        let payload = match payload {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Object(payload)) => Some(payload),
            Some(_) => {
                return self
                    .close(4400, "connection_init's payload must be an object")
                    .await;
            }
        };
        // The key in any case, as an HTTP header's name; named twice, it is ambiguous.
        let mut values = payload
            .into_iter()
            .flatten()
            .filter(|(key, _)| key.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value);
        let value = values.next();
        if values.next().is_some() {
            return self
                .close(
                    4400,
                    "Authorization given more than once in connection_init",
                )
                .await;
        }
        let authorization = match value {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(value)) => Some(value.as_str()),
            Some(_) => return self.close(4403, "Forbidden").await,
        };
        let (viewer, token) =
            Viewer::from_authorization(authorization, &app.tokens, &app.revocations);
        if matches!(viewer, Viewer::InvalidToken(_)) {
            return self.close(4403, "Forbidden").await;
        }
        let channel = Channel::new(viewer, token, self.closer.clone(), app.events.clone());
        // A token within its leeway past `exp` passes verification, but the channel, whose
        // clock is stricter, would close right after the ack: refused now instead.
        if channel.verdict().is_some() {
            return self.close(4403, "Forbidden").await;
        }
        self.session.send_replace(Some(Arc::new(channel)));
        Admit::Forward
    }

    async fn subscribe(
        &self,
        id: String,
        payload: serde_json::Map<String, serde_json::Value>,
    ) -> Admit {
        let Some(channel) = self.session.borrow().clone() else {
            return self.close(4401, "Unauthorized").await;
        };
        // Read as an HTTP request's parameters are, persisted documents included.
        let operation = match Operation::from_params(payload, &self.state.app.persisted) {
            Ok(operation) => operation,
            Err(message) => return self.error(&id, "BAD_REQUEST", &message).await,
        };
        let (request, prepared) = prepare(&self.state, operation).await;
        let document = match prepared {
            Ok((_, document)) => document,
            Err(error) => return self.refuse(&id, vec![error]).await,
        };
        if !is_subscription(&document, request.operation_name.as_deref()) {
            return self
                .error(
                    &id,
                    "BAD_REQUEST",
                    "only subscriptions run over WebSocket: send queries and mutations over HTTP",
                )
                .await;
        }
        // Several root fields would be several streams counted as one subscription against
        // the limits (the spec allows one).
        if root_fields(&document, request.operation_name.as_deref()) != 1 {
            return self
                .error(
                    &id,
                    "BAD_REQUEST",
                    "a subscription selects exactly one root field: send one `subscribe` for each",
                )
                .await;
        }
        let forwarded = serde_json::json!({
            "type": "subscribe",
            "id": id,
            "payload": {
                "query": request.query,
                "operationName": request.operation_name,
                "variables": request.variables,
            },
        });
        match channel.open(&id) {
            Ok(()) => Admit::Replace(Message::Text(forwarded.to_string().into())),
            Err(Refusal::Duplicate) => {
                self.close(4409, &format!("Subscriber for {id} already exists"))
                    .await
            }
            Err(Refusal::TooManyOnConnection(limit)) => {
                let message = format!(
                    "at most {limit} subscriptions at once on one connection \
                     (WS_MAX_SUBSCRIPTIONS_PER_CONNECTION)"
                );
                self.error(&id, "TOO_MANY_REQUESTS", &message).await
            }
            Err(Refusal::TooManyForAccount(limit)) => {
                let message = format!(
                    "at most {limit} subscriptions at once for one account \
                     (WS_MAX_SUBSCRIPTIONS_PER_ACCOUNT)"
                );
                self.error(&id, "TOO_MANY_REQUESTS", &message).await
            }
        }
    }

    /// An `error` message for operation `id`: it ends without running.
    async fn error(&self, id: &str, code: &str, message: &str) -> Admit {
        let mut error = async_graphql::ServerError::new(message, None);
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
        self.refuse(id, vec![error]).await
    }

    async fn refuse(&self, id: &str, errors: Vec<async_graphql::ServerError>) -> Admit {
        let message = serde_json::json!({ "type": "error", "id": id, "payload": errors });
        let _ = self
            .out
            .send(Message::Text(message.to_string().into()))
            .await;
        Admit::Handled
    }

    async fn close(&self, code: u16, reason: &str) -> Admit {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let _ = self.out.send(frame).await;
        Admit::Close
    }
}
