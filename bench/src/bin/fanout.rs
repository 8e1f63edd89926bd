//! Subscription fan-out: opens many graphql-transport-ws sockets to a running Storefront, each
//! subscribed to one product's changes, then changes that product over HTTP and times each
//! event from the mutation's answer (the change is committed by then) to each subscriber's
//! receipt. `bench/bench.py` runs it (scenario 7 in docs/benchmarks.md); it can also be run
//! against any server:
//!
//! ```text
//! fanout --addr 127.0.0.1:8000 --token <user access token> --admin-token <admin access token> \
//!        --product <product id> [--subscribers 1000] [--changes 100] [--gap-ms 50] \
//!        [--subscription productChanged|stockChanged] [--server-pid <pid>] [--warm 20] \
//!        [--connect-concurrency 64] [--timeout-secs 30]
//! ```
//!
//! The server needs room for the sockets: `MAX_CONNECTIONS`, `WS_MAX_CONNECTIONS_PER_ADDRESS`
//! and `WS_MAX_SUBSCRIPTIONS_PER_ACCOUNT` above the number of subscribers (all of them use the
//! one `--token`), and a descriptor limit above it too. This process raises its own soft
//! descriptor limit to the hard one.
//!
//! Steps: `--warm` subscribers are opened and primed first (their one-off costs are not counted
//! in the RSS figure), the server's VmRSS is read (`--server-pid`), the other subscribers are
//! opened and primed (changes made until every subscriber has received one, so every
//! subscription has begun), VmRSS is read again after 2 s idle; then `--changes` measured
//! changes (`adjustStock(delta: 1)`), each sent once the previous one has reached every
//! subscriber and `--gap-ms` has passed, so they never pile up. Every subscriber must receive
//! every measured change exactly once and nothing else may go wrong (a socket closed, an
//! `error` message, a duplicate): any of these makes the run fail (exit status 1) rather than
//! become a figure.
//!
//! Prints one JSON object on stdout (progress goes to stderr): the time to the last
//! subscriber's receipt per change and of all receipts (p50, p99, max, in ms), the receipts
//! that came before the mutation's answer (counted as 0 ms), the time to the last receipt from
//! the mutation's sending (an upper bound, as the time from the answer is a lower one), the
//! mutations' own time, the server's CPU time per delivered event and its RSS per idle
//! subscription.

use std::{
    collections::HashMap,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::{Notify, Semaphore},
};
use tokio_tungstenite::tungstenite::{
    Message, client::IntoClientRequest, http::HeaderValue, protocol::WebSocketConfig,
};

/// What the command line asks for.
struct Options {
    addr: String,
    token: String,
    admin_token: String,
    product: String,
    subscribers: usize,
    warm: usize,
    changes: usize,
    gap: Duration,
    subscription: Kind,
    server_pid: Option<u32>,
    connect_concurrency: usize,
    timeout: Duration,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    ProductChanged,
    StockChanged,
}

impl Kind {
    fn field(self) -> &'static str {
        match self {
            Kind::ProductChanged => "productChanged",
            Kind::StockChanged => "stockChanged",
        }
    }

    fn document(self) -> &'static str {
        match self {
            Kind::ProductChanged => {
                "subscription($id: ID!) { productChanged(ids: [$id]) { kind id version } }"
            }
            Kind::StockChanged => {
                "subscription($id: ID!) { stockChanged(productIds: [$id]) { id stock version } }"
            }
        }
    }
}

const USAGE: &str = "usage: fanout --addr HOST:PORT --token TOKEN --admin-token TOKEN \
--product ID [--subscribers N] [--warm N] [--changes M] [--gap-ms MS] \
[--subscription productChanged|stockChanged] [--server-pid PID] [--connect-concurrency N] \
[--timeout-secs S]";

fn options() -> Result<Options, String> {
    let mut given: HashMap<String, String> = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(name) = args.next() {
        let Some(key) = name.strip_prefix("--") else {
            return Err(format!("unexpected argument {name:?}"));
        };
        let value = args.next().ok_or_else(|| format!("{name} needs a value"))?;
        given.insert(key.to_owned(), value);
    }
    let mut take = |key: &str| given.remove(key);
    fn number<T: std::str::FromStr>(
        key: &str,
        value: Option<String>,
        default: T,
    ) -> Result<T, String> {
        value.map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("--{key}: not a number: {v:?}"))
        })
    }
    let required =
        |key: &str, value: Option<String>| value.ok_or_else(|| format!("--{key} is required"));
    let options = Options {
        addr: required("addr", take("addr"))?,
        token: required("token", take("token"))?,
        admin_token: required("admin-token", take("admin-token"))?,
        product: required("product", take("product"))?,
        subscribers: number("subscribers", take("subscribers"), 1000)?,
        warm: number("warm", take("warm"), 20)?,
        changes: number("changes", take("changes"), 100)?,
        gap: Duration::from_millis(number("gap-ms", take("gap-ms"), 50)?),
        subscription: match take("subscription").as_deref() {
            None | Some("productChanged") => Kind::ProductChanged,
            Some("stockChanged") => Kind::StockChanged,
            Some(other) => return Err(format!("--subscription: unknown {other:?}")),
        },
        server_pid: take("server-pid")
            .map(|v| v.parse().map_err(|_| "--server-pid: not a pid".to_owned()))
            .transpose()?,
        connect_concurrency: number("connect-concurrency", take("connect-concurrency"), 64)?,
        timeout: Duration::from_secs(number("timeout-secs", take("timeout-secs"), 30)?),
    };
    if let Some(unknown) = given.keys().next() {
        return Err(format!("unknown option --{unknown}"));
    }
    if options.subscribers == 0 || options.changes == 0 || options.connect_concurrency == 0 {
        return Err("--subscribers, --changes and --connect-concurrency must be at least 1".into());
    }
    if options.warm >= options.subscribers {
        return Err("--warm must be below --subscribers".into());
    }
    Ok(options)
}

/// What every subscriber has received so far, shared by the socket tasks and the driver.
#[derive(Default)]
struct Receipts {
    /// Per subscriber, each event's version and the moment it was read.
    events: Vec<Vec<(i64, Instant)>>,
    /// How many subscribers have received each version.
    per_version: HashMap<i64, usize>,
    /// Subscribers that have received at least one event.
    primed: usize,
    /// What went wrong (a socket closed, an `error` message, an unexpected message).
    failures: Vec<String>,
}

struct Shared {
    receipts: Mutex<Receipts>,
    /// Woken at every receipt, failure and socket ready.
    changed: Notify,
    ready: AtomicUsize,
}

impl Shared {
    fn fail(&self, message: String) {
        self.receipts.lock().unwrap().failures.push(message);
        self.changed.notify_one();
    }
}

/// One subscriber: connects, initialises, subscribes, then records each event until the end.
async fn subscriber(
    index: usize,
    options: Arc<Options>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
) {
    let permit = gate.acquire().await.expect("gate open");
    let mut request = format!("ws://{}/graphql", options.addr)
        .into_client_request()
        .expect("a valid URL");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    // Small buffers, as the server's: with 10,000 sockets the client's memory matters too.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let mut socket =
        match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
            Ok((socket, _)) => socket,
            Err(e) => return shared.fail(format!("subscriber {index}: connect: {e}")),
        };
    let init = json!({
        "type": "connection_init",
        "payload": {"Authorization": format!("Bearer {}", options.token)},
    });
    if let Err(e) = socket.send(Message::text(init.to_string())).await {
        return shared.fail(format!("subscriber {index}: connection_init: {e}"));
    }
    match socket.next().await {
        Some(Ok(Message::Text(text))) if text.as_str().contains("\"connection_ack\"") => {}
        other => {
            return shared.fail(format!(
                "subscriber {index}: expected connection_ack, got {other:?}"
            ));
        }
    }
    let subscribe = json!({
        "type": "subscribe",
        "id": "1",
        "payload": {
            "query": options.subscription.document(),
            "variables": {"id": options.product},
        },
    });
    if let Err(e) = socket.send(Message::text(subscribe.to_string())).await {
        return shared.fail(format!("subscriber {index}: subscribe: {e}"));
    }
    drop(permit);
    shared.ready.fetch_add(1, Ordering::SeqCst);
    shared.changed.notify_one();

    let field = options.subscription.field();
    while let Some(message) = socket.next().await {
        let at = Instant::now();
        let text = match message {
            Ok(Message::Text(text)) => text,
            // Pings are answered by tungstenite as the socket is read.
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(frame)) => {
                return shared.fail(format!(
                    "subscriber {index}: closed by the server: {frame:?}"
                ));
            }
            Ok(other) => {
                return shared.fail(format!("subscriber {index}: unexpected {other:?}"));
            }
            Err(e) => return shared.fail(format!("subscriber {index}: {e}")),
        };
        let value: Value = match serde_json::from_str(text.as_str()) {
            Ok(value) => value,
            Err(e) => return shared.fail(format!("subscriber {index}: not JSON ({e}): {text}")),
        };
        let version = (value["type"] == "next")
            .then(|| value["payload"]["data"][field]["version"].as_i64())
            .flatten()
            .filter(|_| value["payload"]["errors"].is_null());
        let Some(version) = version else {
            return shared.fail(format!("subscriber {index}: unexpected message {text}"));
        };
        let mut receipts = shared.receipts.lock().unwrap();
        if receipts.events[index].is_empty() {
            receipts.primed += 1;
        }
        receipts.events[index].push((version, at));
        *receipts.per_version.entry(version).or_default() += 1;
        drop(receipts);
        shared.changed.notify_one();
    }
    shared.fail(format!("subscriber {index}: the connection ended"));
}

/// One `adjustStock(delta: 1)` over HTTP/1.1; returns the product's new version and the
/// moment the answer had been read in full.
async fn adjust_stock(options: &Options) -> Result<(i64, Instant), String> {
    let body = json!({
        "query": "mutation($id: ID!) { adjustStock(id: $id, delta: 1) { version } }",
        "variables": {"id": options.product},
    })
    .to_string();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        options.addr,
        options.admin_token,
        body.len()
    );
    let mut stream = TcpStream::connect(&options.addr)
        .await
        .map_err(|e| format!("adjustStock: connect: {e}"))?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("adjustStock: send: {e}"))?;
    // Read until the answer is complete (not until the server closes the connection, which
    // would add the close to the answer's time).
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("adjustStock: read: {e}"))?;
        answer.extend_from_slice(&chunk[..read]);
        if read == 0 || answer_complete(&answer) {
            break;
        }
    }
    let at = Instant::now();
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("adjustStock: no HTTP answer: {answer}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("adjustStock: {answer}"));
    }
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    let value: Value =
        serde_json::from_str(&body).map_err(|e| format!("adjustStock: {e}: {body}"))?;
    let version = value["data"]["adjustStock"]["version"]
        .as_i64()
        .ok_or_else(|| format!("adjustStock: {body}"))?;
    Ok((version, at))
}

/// Whether `answer` holds a whole HTTP/1.1 response (by its `Content-Length`, or the last
/// chunk of a chunked body).
fn answer_complete(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let body = &answer[end + 4..];
    match head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|length| length.trim().parse::<usize>().ok())
    {
        Some(length) => body.len() >= length,
        None => body.ends_with(b"0\r\n\r\n"),
    }
}

fn dechunk(mut body: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body
            .split_once("\r\n")
            .ok_or("adjustStock: a chunk without its size")?;
        let size = usize::from_str_radix(size.trim(), 16)
            .map_err(|_| format!("adjustStock: bad chunk size {size:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).ok_or("adjustStock: a short chunk")?);
        body = rest.get(size + 2..).unwrap_or("");
    }
}

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// User + system CPU time of `pid` (all its threads), in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf with a constant name has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks as f64 / per_second as f64)
}

/// Raises this process's soft descriptor limit to its hard limit; returns the new soft limit.
fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// Nearest-rank percentile of sorted `values`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(mut values: Vec<f64>) -> Value {
    values.sort_by(f64::total_cmp);
    json!({
        "count": values.len(),
        "p50": percentile(&values, 50.0),
        "p99": percentile(&values, 99.0),
        "max": values.last().copied().unwrap_or(f64::NAN),
    })
}

fn log(message: &str) {
    eprintln!("[fanout] {message}");
}

/// The driver: waits until `done` holds of the receipts, a failure is recorded, or `timeout`.
async fn wait_until(
    shared: &Shared,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&Receipts) -> bool,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = shared.changed.notified();
        {
            let receipts = shared.receipts.lock().unwrap();
            if let Some(failure) = receipts.failures.first() {
                return Err(format!(
                    "{failure} ({} failures in all)",
                    receipts.failures.len()
                ));
            }
            if done(&receipts) {
                return Ok(());
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
    }
}

/// Opens subscribers `range`, waits until they are all subscribed, then makes changes until
/// each of them (and those opened before) has received one. Returns how many changes that
/// took and the product's version after the last.
async fn open_and_prime(
    options: &Arc<Options>,
    shared: &Arc<Shared>,
    range: std::ops::Range<usize>,
) -> Result<(usize, i64), String> {
    let gate = Arc::new(Semaphore::new(options.connect_concurrency));
    let total = range.end;
    for index in range {
        tokio::spawn(subscriber(
            index,
            options.clone(),
            shared.clone(),
            gate.clone(),
        ));
    }
    let deadline = options.timeout * 10;
    let ready = || shared.ready.load(Ordering::SeqCst) >= total;
    wait_until(shared, deadline, "the subscribers to connect", |_| ready()).await?;
    // A subscription may still be starting on the server; change the product until every
    // subscriber has received a change.
    let mut primes = 0;
    let started = Instant::now();
    loop {
        let (version, _) = adjust_stock(options).await?;
        primes += 1;
        let primed = wait_until(shared, Duration::from_millis(500), "priming", |r| {
            r.primed >= total
        })
        .await;
        match primed {
            Ok(()) => return Ok((primes, version)),
            Err(e) if e.starts_with("timed out") && started.elapsed() < options.timeout => {}
            Err(e) => return Err(e),
        }
    }
}

async fn run(options: Options) -> Result<Value, String> {
    let options = Arc::new(options);
    let descriptors = raise_descriptor_limit();
    if (descriptors as usize) < options.subscribers + 64 {
        return Err(format!(
            "the descriptor limit ({descriptors}) is too low for {} sockets",
            options.subscribers
        ));
    }
    let total = options.subscribers;
    let shared = Arc::new(Shared {
        receipts: Mutex::new(Receipts {
            events: vec![Vec::new(); total],
            ..Receipts::default()
        }),
        changed: Notify::new(),
        ready: AtomicUsize::new(0),
    });
    let pid = options.server_pid;

    log(&format!("{} warm-up subscribers", options.warm));
    open_and_prime(&options, &shared, 0..options.warm).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = pid.and_then(rss_kib);

    let measured = total - options.warm;
    log(&format!("{measured} more subscribers"));
    let opened = Instant::now();
    let (primes, last_priming) = open_and_prime(&options, &shared, options.warm..total).await?;
    let connect_s = opened.elapsed().as_secs_f64();
    log(&format!(
        "{total} subscribers connected and primed in {connect_s:.1} s ({primes} priming changes)"
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = pid.and_then(rss_kib);

    let first_measured = last_priming + 1;
    let cpu_before = pid.and_then(cpu_seconds);
    let mut answers = Vec::with_capacity(options.changes);
    let mut mutation_ms = Vec::with_capacity(options.changes);
    let mut last_ms = Vec::with_capacity(options.changes);
    let mut sends = Vec::with_capacity(options.changes);
    log(&format!("{} changes", options.changes));
    let changes_started = Instant::now();
    for n in 0..options.changes {
        let sent = Instant::now();
        let (version, answered) = adjust_stock(&options).await?;
        mutation_ms.push((answered - sent).as_secs_f64() * 1e3);
        answers.push((version, answered));
        sends.push((version, sent));
        wait_until(
            &shared,
            options.timeout,
            "every subscriber's receipt",
            |r| r.per_version.get(&version).copied().unwrap_or(0) >= total,
        )
        .await
        .map_err(|e| format!("change {n} (version {version}): {e}"))?;
        tokio::time::sleep(options.gap).await;
    }
    let changes_s = changes_started.elapsed().as_secs_f64();
    // Time for a late duplicate to show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_after = pid.and_then(cpu_seconds);

    let receipts = shared.receipts.lock().unwrap();
    if let Some(failure) = receipts.failures.first() {
        return Err(failure.clone());
    }
    let answered: HashMap<i64, Instant> = answers.iter().copied().collect();
    if answered.len() != options.changes {
        return Err("two changes answered with the same version".into());
    }
    let mut all_ms = Vec::with_capacity(total * options.changes);
    let mut last: HashMap<i64, f64> = HashMap::new();
    let mut last_at: HashMap<i64, Instant> = HashMap::new();
    let mut before_answer = 0usize;
    for (index, events) in receipts.events.iter().enumerate() {
        let mut seen = HashMap::new();
        for &(version, at) in events {
            if *seen.entry(version).or_insert(0) > 0 {
                return Err(format!(
                    "subscriber {index} received version {version} twice"
                ));
            }
            seen.insert(version, 1);
            if version < first_measured {
                continue; // a priming change
            }
            let Some(&answer) = answered.get(&version) else {
                return Err(format!(
                    "subscriber {index} received version {version}, which no change made"
                ));
            };
            let ms = if at < answer {
                before_answer += 1;
                0.0
            } else {
                (at - answer).as_secs_f64() * 1e3
            };
            all_ms.push(ms);
            let latest = last_at.entry(version).or_insert(at);
            *latest = (*latest).max(at);
            let slowest = last.entry(version).or_insert(0.0);
            *slowest = slowest.max(ms);
        }
        let measured_received = events.iter().filter(|(v, _)| *v >= first_measured).count();
        if measured_received != options.changes {
            return Err(format!(
                "subscriber {index} received {measured_received} of {} changes",
                options.changes
            ));
        }
    }
    for (version, _) in &answers {
        last_ms.push(last.get(version).copied().unwrap_or(f64::NAN));
    }
    // The commit happened between the mutation's sending and its answer: the time from the
    // sending bounds the delivery from above, as the time from the answer does from below.
    let last_from_send_ms: Vec<f64> = sends
        .iter()
        .map(|(version, sent)| {
            last_at
                .get(version)
                .map_or(f64::NAN, |at| (*at - *sent).as_secs_f64() * 1e3)
        })
        .collect();
    let receipts_total = all_ms.len();
    let server_cpu_us_per_receipt = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => Some((b - a) * 1e6 / receipts_total as f64),
        _ => None,
    };
    let rss_per_subscription_kib = match (rss_before, rss_after) {
        (Some(a), Some(b)) => Some((b as f64 - a as f64) / measured as f64),
        _ => None,
    };
    Ok(json!({
        "subscription": options.subscription.field(),
        "subscribers": total,
        "warm": options.warm,
        "changes": options.changes,
        "gap_ms": options.gap.as_secs_f64() * 1e3,
        "priming_changes": primes,
        "connect_s": connect_s,
        "changes_s": changes_s,
        "last_receipt_ms": summary(last_ms),
        "last_receipt_from_send_ms": summary(last_from_send_ms),
        "all_receipts_ms": summary(all_ms),
        "receipts": receipts_total,
        "receipts_before_answer": before_answer,
        "mutation_ms": summary(mutation_ms),
        "server_cpu_us_per_receipt": server_cpu_us_per_receipt,
        "server_rss_before_kib": rss_before,
        "server_rss_after_kib": rss_after,
        "server_rss_per_subscription_kib": rss_per_subscription_kib,
        "client_descriptor_limit": descriptors,
    }))
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("fanout: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(options)) {
        Ok(result) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fanout: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
