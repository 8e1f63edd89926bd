//! Connections cannot be held open forever: idle, slow-header and slow-body clients are cut
//! off, hundreds of slow clients do not stop the server answering, and connections beyond the
//! maximum wait instead of breaking the accept loop.
//!
//! Timing bounds here are generous on purpose (a loaded 2-core machine): a deadline of 1 s
//! must close the connection within 10 s, and cannot close it before 0.9 s.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::kit::*;

/// Generous upper bound for "the server closed the connection after a 1 s deadline".
const CLOSED_WITHIN: Duration = Duration::from_secs(10);

/// Reads until the server closes the connection (EOF or reset); returns what was read, or
/// panics after [`CLOSED_WITHIN`].
async fn read_until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(CLOSED_WITHIN, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection");
    received
}

/// Connects, sends `at_once`, then `trickled` one byte every 50 ms, until the server closes
/// the connection; returns what the server sent and how long it kept the connection.
async fn trickle(
    app: &TestApp,
    at_once: Vec<u8>,
    trickled: impl Iterator<Item = u8> + Send + 'static,
) -> (Vec<u8>, Duration) {
    let stream = TcpStream::connect(app.addr()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        if writer.write_all(&at_once).await.is_err() {
            return;
        }
        for byte in trickled {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let received = read_until_closed(&mut reader).await;
    let waited = started.elapsed();
    sender.abort();
    (received, waited)
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::builder()
        .idle_timeout(Duration::from_secs(1))
        .header_read_timeout(Duration::from_secs(60))
        .spawn()
        .await;

    // A kept-alive connection after its request.
    let mut stream = TcpStream::connect(app.addr()).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    let answered = Instant::now();
    let received = read_until_closed(&mut stream).await;
    let waited = answered.elapsed();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("ok"), "{text}");
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );

    // A connection that never sends anything.
    let mut silent = TcpStream::connect(app.addr()).await.unwrap();
    let opened = Instant::now();
    assert!(read_until_closed(&mut silent).await.is_empty());
    assert!(opened.elapsed() >= Duration::from_millis(900));

    // The server still serves new connections.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn headers_sent_one_byte_at_a_time_are_cut_off_after_the_header_timeout() {
    let app = TestApp::builder()
        .header_read_timeout(Duration::from_secs(1))
        .idle_timeout(Duration::from_secs(60))
        .spawn()
        .await;
    // An endless header, one byte every 50 ms: each byte alone would reset a per-read timer.
    let head = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ";
    let (received, waited) = trickle(
        &app,
        Vec::new(),
        head.iter().copied().chain(std::iter::repeat(b'a')),
    )
    .await;
    assert!(
        received.is_empty(),
        "{}",
        String::from_utf8_lossy(&received)
    );
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn a_body_that_trickles_in_is_cut_off_after_the_body_timeout() {
    let app = TestApp::builder()
        .body_read_timeout(Duration::from_secs(1))
        .spawn()
        .await;
    let head = "POST /graphql HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
                Content-Length: 4000\r\n\r\n";
    // Well under the body limit, but one byte every 50 ms would take 200 s.
    let body = format!(
        r#"{{"query":"{{ __typename }}","pad":"{}"}}"#,
        " ".repeat(4000)
    );
    let (received, waited) = trickle(&app, head.into(), body.into_bytes().into_iter()).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""code":"REQUEST_TIMEOUT""#), "{text}");
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
}

#[tokio::test]
async fn hundreds_of_slow_clients_do_not_stop_the_server_answering() {
    const SLOW_CLIENTS: usize = 300;
    let app = TestApp::builder()
        .header_read_timeout(Duration::from_secs(3))
        .spawn()
        .await;
    let token = app
        .user_with("steady", "steady passphrase")
        .await
        .token()
        .to_owned();

    // Each slow client sends half a request head and then nothing.
    let mut slow = Vec::with_capacity(SLOW_CLIENTS);
    for _ in 0..SLOW_CLIENTS {
        let mut stream = TcpStream::connect(app.addr()).await.unwrap();
        stream
            .write_all(b"POST /graphql HTTP/1.1\r\nHost: test\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }

    // Ordinary clients are still served, 40 at once.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut answers = Vec::new();
    for i in 0..40 {
        let client = client.clone();
        let url = app.url.clone();
        let token = token.clone();
        answers.push(tokio::spawn(async move {
            let started = Instant::now();
            if i % 2 == 0 {
                let r = client.get(format!("{url}/healthz")).send().await.unwrap();
                assert_eq!(r.status(), 200);
            } else {
                let response = client
                    .post(format!("{url}/graphql"))
                    .bearer_auth(token)
                    .json(&json!({"query": "{ products(first: 5) { totalCount } }"}))
                    .send()
                    .await
                    .unwrap();
                Response::<serde_json::Value>::read(response, None)
                    .await
                    .assert_ok();
            }
            started.elapsed()
        }));
    }
    let mut slowest = Duration::ZERO;
    for answer in answers {
        slowest = slowest.max(answer.await.unwrap());
    }
    // A measurement for the report, not an assertion (the bound above is the 5 s timeout).
    eprintln!("{SLOW_CLIENTS} slow clients held: slowest of 40 concurrent answers {slowest:?}");

    // And every slow client is eventually cut off.
    for mut stream in slow {
        assert!(read_until_closed(&mut stream).await.is_empty());
    }
}

#[tokio::test]
async fn connections_over_the_maximum_wait_and_are_served_when_others_close() {
    const MAX: usize = 16;
    let app = TestApp::builder()
        .max_connections(MAX)
        .idle_timeout(Duration::from_secs(2))
        .spawn()
        .await;
    // Fill every slot with a connection that sends nothing.
    let mut held = Vec::new();
    for _ in 0..MAX {
        held.push(TcpStream::connect(app.addr()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // One more client waits in the backlog; it is neither refused nor served yet.
    let started = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let response = client
        .get(format!("{}/healthz", app.url))
        .send()
        .await
        .expect("served once a slot frees up");
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "served after {:?}, while every slot was taken",
        started.elapsed()
    );
    for mut stream in held {
        assert!(read_until_closed(&mut stream).await.is_empty());
    }

    // The accept loop survived: 40 clients at once, over the maximum, are all answered.
    let mut answers = Vec::new();
    for _ in 0..40 {
        let url = app.url.clone();
        answers.push(tokio::spawn(async move {
            reqwest::Client::new()
                .get(format!("{url}/healthz"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for answer in answers {
        assert_eq!(answer.await.unwrap().unwrap(), 200);
    }
}

#[tokio::test]
async fn the_connection_cap_stays_below_the_descriptor_limit_and_the_server_keeps_serving() {
    const FD_LIMIT: u64 = 200;
    let db = TestDb::new().await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" serve"))
        .arg(env!("CARGO_BIN_EXE_storefront"))
        .env("DATABASE_URL", &db.url)
        .env("JWT_SECRET", JWT_SECRET)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("POLICY_DIR", policy_dir())
        .env("IDLE_TIMEOUT_SECS", "1")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(log.reopen().unwrap()))
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if client.get(format!("{url}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "server did not start");
    let logged = std::fs::read_to_string(log.path()).unwrap();
    let limits: serde_json::Value = logged
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "connection limits")
        .expect("the limits are logged");
    let max = limits["max_connections"].as_u64().unwrap();
    assert!(max < FD_LIMIT, "{limits}");

    // Twice as many connections as descriptors: none of them breaks the accept loop.
    let mut held = Vec::new();
    for _ in 0..2 * FD_LIMIT {
        held.push(
            TcpStream::connect(format!("127.0.0.1:{port}"))
                .await
                .unwrap(),
        );
    }
    for mut stream in held {
        read_until_closed(&mut stream).await;
    }
    let response = client.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(child.try_wait().unwrap().is_none(), "the server died");
    let logged = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        !logged.contains("accept failed"),
        "ran out of descriptors:\n{logged}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
