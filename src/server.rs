//! The accept loop and HTTP/1.1 connections, with the limits `axum::serve` lacks: a cap on
//! open connections, a deadline for each request's headers and body, and an idle timeout.
//!
//! A connection is in one of three states, and a watchdog closes it when its state's deadline
//! passes:
//! - idle (no request in flight, no byte of the next one yet): `IDLE_TIMEOUT_SECS`;
//! - reading a request's headers (a byte arrived while idle): `HEADER_READ_TIMEOUT_SECS`;
//! - running a request: its body must arrive within `BODY_READ_TIMEOUT_SECS` of its headers
//!   (the handler then answers HTTP 408 and the connection closes), and the handler is bounded
//!   by `REQUEST_TIMEOUT_MS`.

use std::{
    error::Error as StdError,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::ConnectInfo,
};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore, watch},
    time::{Instant, Sleep},
};
use tower_service::Service;

/// Descriptors kept free for the database pool, log files and the process itself.
const RESERVED_FDS: u64 = 128;
/// The pause after an accept error such as EMFILE before accepting again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Connection limits, from `HEADER_READ_TIMEOUT_SECS`, `BODY_READ_TIMEOUT_SECS`,
/// `IDLE_TIMEOUT_SECS` and `MAX_CONNECTIONS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// The configured maximum; [`ConnectionLimits::effective_max_connections`] caps it by the
    /// descriptor limit.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The maximum number of open connections: the configured one, or fewer when the
    /// process's descriptor limit (raised to its hard limit first) leaves less room.
    pub fn effective_max_connections(&self) -> usize {
        match raise_fd_limit() {
            Some(soft) => {
                let room = soft.saturating_sub(RESERVED_FDS).max(16);
                self.max_connections
                    .min(usize::try_from(room).unwrap_or(usize::MAX))
            }
            None => self.max_connections,
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit now in force.
#[cfg(unix)]
fn raise_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above; on failure the old limit stays in force.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    // `rlim_t` is not `u64` on every Unix.
    #[allow(clippy::unnecessary_cast)]
    Some(limit.rlim_cur as u64)
}

#[cfg(not(unix))]
fn raise_fd_limit() -> Option<u64> {
    None
}

/// Tells a running [`Server`] to stop accepting and drain.
#[derive(Clone, Debug)]
pub struct Stop(watch::Sender<bool>);

impl Stop {
    pub fn new() -> Self {
        Self(watch::Sender::new(false))
    }

    /// Stops accepting; connections finish the request in flight, then close.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

impl Default for Stop {
    fn default() -> Self {
        Self::new()
    }
}

/// A listener serving a router, with [`ConnectionLimits`].
pub struct Server {
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    max_connections: usize,
    open: Arc<Semaphore>,
}

impl Server {
    pub fn new(listener: TcpListener, router: Router, limits: ConnectionLimits) -> Self {
        let max_connections = limits.effective_max_connections();
        Self {
            listener,
            router,
            limits,
            max_connections,
            open: Arc::new(Semaphore::new(max_connections)),
        }
    }

    /// The number of connections served at once.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Accepts until `stop` is told to stop, then returns a future that resolves when every
    /// connection has closed. Past `max_connections`, new connections wait in the listen
    /// backlog until one closes. Accept errors (running out of descriptors) are logged and
    /// retried after a short pause; they never end the loop.
    pub async fn serve(self, stop: Stop) -> impl Future<Output = ()> + Send + 'static {
        let Self {
            listener,
            router,
            limits,
            max_connections,
            open,
        } = self;
        let mut stopped = stop.subscribe();
        let mut warned_full: Option<Instant> = None;
        loop {
            if open.available_permits() == 0
                && warned_full.is_none_or(|at| at.elapsed() > Duration::from_secs(60))
            {
                tracing::warn!(
                    max_connections,
                    "connection limit reached; new connections wait until one closes"
                );
                warned_full = Some(Instant::now());
            }
            let permit = tokio::select! {
                permit = open.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                _ = stopped.wait_for(|stop| *stop) => break,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopped.wait_for(|stop| *stop) => break,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    tracing::error!(error = %err, "accept failed; retrying shortly");
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                        _ = stopped.wait_for(|stop| *stop) => break,
                    }
                }
            };
            let _ = stream.set_nodelay(true);
            let router = router.clone();
            let upgrade = UpgradeHandle {
                _permit: Arc::new(permit),
                stopped: stop.subscribe(),
            };
            tokio::spawn(serve_connection(stream, peer, router, limits, upgrade));
        }
        drop(listener);
        async move {
            // Every connection holds a permit until it closes.
            let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
            let _ = open.acquire_many(all).await;
        }
    }
}

/// Errors about one connection that went away before it was accepted; not worth a pause.
fn is_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// What a connection upgraded to another protocol (a WebSocket) keeps of the HTTP connection
/// it came from, found in the upgrade request's extensions: its place among the open
/// connections (`MAX_CONNECTIONS`), and the server's stop signal, so that a drain closes it
/// too. Its deadlines (headers, idle) end with the upgrade; the protocol keeps its own.
#[derive(Clone)]
pub struct UpgradeHandle {
    _permit: Arc<OwnedSemaphorePermit>,
    stopped: watch::Receiver<bool>,
}

impl UpgradeHandle {
    /// Resolves once the server is told to stop.
    pub async fn stopping(&mut self) {
        let _ = self.stopped.wait_for(|stop| *stop).await;
    }
}

/// Serves one connection until the client closes it, a deadline passes, or the server stops.
/// A connection upgraded (to a WebSocket) leaves this loop at the upgrade; its handler holds
/// the [`UpgradeHandle`] from then on.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    upgrade: UpgradeHandle,
) {
    let mut stopped = upgrade.stopped.clone();
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(TrackedStream {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: axum::http::Request<Incoming>| {
            let in_flight = activity.request_started();
            let mut router = router.clone();
            let mut request =
                request.map(|body| Body::new(DeadlineBody::new(body, limits.body_read_timeout)));
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(upgrade.clone());
            async move {
                let response = router.call(request).await;
                drop(in_flight);
                response
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        let deadline = activity.deadline(&limits);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, %peer, "connection ended with an error");
                }
                return;
            }
            () = sleep_until(deadline) => {
                if activity.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(%peer, "closing a connection that was idle or slow");
                    return;
                }
            }
            () = activity.changed.notified() => {}
            _ = stopped.wait_for(|stop| *stop), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What a connection is doing, for its watchdog.
struct Activity {
    state: Mutex<ActivityState>,
    /// Woken when a deadline may have moved earlier.
    changed: Notify,
}

struct ActivityState {
    in_flight: usize,
    /// When the first byte of the next request arrived, while no request was in flight.
    head_started: Option<Instant>,
    /// When the connection last finished a request (or opened).
    idle_since: Instant,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                head_started: None,
                idle_since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection should close if nothing changes; none while a request runs.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let state = self.lock();
        if state.in_flight > 0 {
            return None;
        }
        Some(match state.head_started {
            Some(started) => started + limits.header_read_timeout,
            None => state.idle_since + limits.idle_timeout,
        })
    }

    fn bytes_read(&self) {
        let mut state = self.lock();
        if state.in_flight == 0 && state.head_started.is_none() {
            state.head_started = Some(Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut state = self.lock();
        state.in_flight += 1;
        state.head_started = None;
        InFlight(self.clone())
    }
}

/// A request in flight; dropping it marks the connection idle again.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.idle_since = Instant::now();
        drop(state);
        self.0.changed.notify_one();
    }
}

/// A TCP stream that reports reads to its connection's [`Activity`].
struct TrackedStream {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The error a request body gives when it did not arrive within `BODY_READ_TIMEOUT_SECS`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// Whether `err` (or what caused it) is a [`BodyTimedOut`].
pub fn is_body_timeout(err: &(dyn StdError + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(err) = current {
        if err.is::<BodyTimedOut>() {
            return true;
        }
        current = err.source();
    }
    false
}

/// A request body that fails with [`BodyTimedOut`] once its deadline passes.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Instant::now() + timeout,
            timer: None,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
