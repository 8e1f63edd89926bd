//! A small graphql-transport-ws client over a real WebSocket (tokio-tungstenite), for the
//! subscription tests.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{self, Message, client::IntoClientRequest, http::HeaderValue},
};

use super::actor::{Actor, Server};

/// How long a test waits for a message that should come.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One WebSocket to `/graphql`.
pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server sent, as the client reads it.
#[derive(Debug, PartialEq)]
pub enum Received {
    /// A protocol message (`connection_ack`, `next`, `error`, `complete`, `pong`).
    Message(Value),
    /// A close frame: its code and reason.
    Closed(u16, String),
    /// The connection ended without a close frame.
    Dropped,
}

impl WsClient {
    /// The upgrade request to `server`'s `/graphql` (the app or a replica of it) offering
    /// graphql-transport-ws, for a test to change before [`WsClient::connect_request`].
    pub fn request(server: &impl Server) -> tungstenite::handshake::client::Request {
        let url = server.graphql_url().replacen("http://", "ws://", 1);
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        request
    }

    /// Opens a socket with `request`.
    ///
    /// # Errors
    /// The handshake's failure (an HTTP answer other than 101 among them).
    pub async fn connect_request(
        request: tungstenite::handshake::client::Request,
    ) -> Result<Self, tungstenite::Error> {
        Ok(Self::connect_seeing_headers(request).await?.0)
    }

    /// Opens a socket with `request`, and returns the upgrade answer's headers too (what a
    /// proxy in front added to them).
    ///
    /// # Errors
    /// The handshake's failure (an HTTP answer other than 101 among them).
    pub async fn connect_seeing_headers(
        request: tungstenite::handshake::client::Request,
    ) -> Result<(Self, tungstenite::http::HeaderMap), tungstenite::Error> {
        let (socket, response) = tokio_tungstenite::connect_async(request).await?;
        assert_eq!(
            response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok()),
            Some("graphql-transport-ws"),
            "the server picks graphql-transport-ws"
        );
        Ok((Self { socket }, response.into_parts().0.headers))
    }

    /// Opens a socket to `server`, not yet initialised.
    pub async fn connect(server: &impl Server) -> Self {
        Self::connect_request(Self::request(server)).await.unwrap()
    }

    /// Opens a socket to `server` and initialises it as `actor` (its token in the payload's
    /// `Authorization`), asserting the `connection_ack`.
    pub async fn signed_in(server: &impl Server, actor: &Actor) -> Self {
        Self::initialised(server, Self::token_of(actor)).await
    }

    /// Opens a socket to `server` and initialises it with no token, asserting the
    /// `connection_ack`.
    pub async fn anonymous(server: &impl Server) -> Self {
        Self::initialised(server, json!({})).await
    }

    /// Opens a socket to `server` and initialises it with `payload`, asserting the
    /// `connection_ack`.
    pub async fn initialised(server: &impl Server, payload: Value) -> Self {
        let mut client = Self::connect(server).await;
        client.initialise(payload).await;
        client
    }

    /// The `connection_init` payload that carries `actor`'s token.
    pub fn token_of(actor: &Actor) -> Value {
        json!({ "Authorization": format!("Bearer {}", actor.token()) })
    }

    /// Sends `connection_init` with `payload` and asserts the `connection_ack`.
    pub async fn initialise(&mut self, payload: Value) {
        self.init(payload).await;
        assert_eq!(
            self.receive().await,
            Received::Message(json!({"type": "connection_ack"})),
            "initialised"
        );
    }

    /// Sends `connection_init` with `payload`.
    pub async fn init(&mut self, payload: Value) {
        self.send(json!({"type": "connection_init", "payload": payload}))
            .await;
    }

    /// Starts operation `id`.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({
            "type": "subscribe",
            "id": id,
            "payload": {"query": query, "variables": variables},
        }))
        .await;
    }

    /// Ends operation `id`.
    pub async fn complete(&mut self, id: &str) {
        self.send(json!({"type": "complete", "id": id})).await;
    }

    /// Sends one JSON message.
    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.to_owned().into()))
            .await
            .unwrap();
    }

    /// The next thing the server sends, waiting at most [`PATIENCE`].
    ///
    /// # Panics
    /// When nothing comes in time.
    pub async fn receive(&mut self) -> Received {
        self.receive_within(PATIENCE)
            .await
            .expect("the server sent nothing in time")
    }

    /// The next thing the server sends within `limit`, if anything.
    pub async fn receive_within(&mut self, limit: Duration) -> Option<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, self.socket.next()).await.ok()?;
            return Some(match next {
                Some(Ok(Message::Text(text))) => {
                    Received::Message(serde_json::from_str(text.as_str()).unwrap())
                }
                Some(Ok(Message::Close(frame))) => match frame {
                    Some(frame) => Received::Closed(frame.code.into(), frame.reason.to_string()),
                    None => Received::Closed(1005, String::new()),
                },
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => Received::Dropped,
            });
        }
    }

    /// The next protocol message, asserting that one comes.
    pub async fn message(&mut self) -> Value {
        match self.receive().await {
            Received::Message(message) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The payload of the next message, asserting it is operation `id`'s `next`.
    pub async fn next_of(&mut self, id: &str) -> Value {
        let message = self.message().await;
        assert_eq!(message["type"], "next", "{message}");
        assert_eq!(message["id"], id, "{message}");
        message["payload"].clone()
    }

    /// Waits for the close frame (skipping messages) and returns its code and reason; how long
    /// it took comes second.
    pub async fn closed_within(&mut self, limit: Duration) -> Option<((u16, String), Duration)> {
        let started = Instant::now();
        loop {
            let left = limit.saturating_sub(started.elapsed());
            match self.receive_within(left).await? {
                Received::Closed(code, reason) => return Some(((code, reason), started.elapsed())),
                Received::Dropped => return Some(((1006, String::new()), started.elapsed())),
                Received::Message(_) => {}
            }
        }
    }

    /// The close frame's code and reason, asserting it comes within [`PATIENCE`].
    pub async fn closed(&mut self) -> (u16, String) {
        self.closed_within(PATIENCE)
            .await
            .expect("the server did not close the socket")
            .0
    }

    /// Asserts that nothing arrives for `quiet`.
    pub async fn assert_silent(&mut self, quiet: Duration) {
        if let Some(received) = self.receive_within(quiet).await {
            panic!("expected nothing, got {received:?}");
        }
    }
}
