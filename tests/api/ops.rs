//! What operators use: probes, metrics, request ids, CORS, logs, shutdown and the policy CLI.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

use crate::helpers::*;

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.url))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn health_and_readiness_probes() {
    let app = spawn_app().await;
    let response = get(&app, "/healthz").await;
    assert_eq!(response.status(), 200);
    let response = get(&app, "/readyz").await;
    assert_eq!(response.status(), 200);

    // A migration recorded as not applied makes the server not ready.
    use sea_orm::ConnectionTrait;
    app.state
        .db
        .writer()
        .execute_unprepared("DELETE FROM seaql_migrations WHERE version LIKE '%create_sessions'")
        .await
        .unwrap();
    let response = get(&app, "/readyz").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.text().await.unwrap(), "migrations pending");
}

#[tokio::test]
async fn metrics_count_operations_logins_and_show_the_policy() {
    let app = spawn_app().await;
    let token = app.register("measured", "measured passphrase").await;
    app.post(
        json!({"query": "query Products { products { totalCount } }", "operationName": "Products"}),
        Some(&token),
    )
    .await;
    app.post(
        json!({"query": "query Products { products { totalCount } }", "operationName": "Products"}),
        None,
    )
    .await;
    app.login("measured", "measured passphrase").await;
    app.login("measured", "wrong passphrase").await;
    app.gql("{ nosuchfield }", json!({}), None).await;

    let response = get(&app, "/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for expected in [
        r#"storefront_graphql_requests_total{operation="Products",outcome="ok"} 1"#,
        r#"storefront_graphql_requests_total{operation="Products",outcome="error"} 1"#,
        r#"storefront_graphql_requests_total{operation="anonymous",outcome="rejected"} 1"#,
        r#"storefront_graphql_request_duration_seconds_count{operation="Products"} 2"#,
        r#"storefront_logins_total{outcome="success"} 1"#,
        r#"storefront_logins_total{outcome="failure"} 1"#,
        "storefront_password_hash_queue 0",
        r#"storefront_db_pool_connections{state="idle"}"#,
        &format!(
            r#"storefront_policy_info{{version="{}""#,
            app.state.authz.version()
        ),
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
}

#[tokio::test]
async fn metrics_can_live_on_their_own_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app_with(vec![("METRICS_ADDR", format!("127.0.0.1:{port}"))]).await;
    assert_eq!(get(&app, "/metrics").await.status(), 404);
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("storefront_logins_total"));
}

const PRODUCTION_SECRET: &str = "production-secret-0123456789abcdefghij";
const METRICS_TOKEN: &str = "prometheus-scrape-token-0123456789";

#[tokio::test]
async fn in_production_metrics_are_not_on_the_api_address_unless_asked_for() {
    let production = || {
        vec![
            ("APP_ENV", "production".to_owned()),
            ("JWT_SECRET", PRODUCTION_SECRET.to_owned()),
        ]
    };
    let app = spawn_app_with(production()).await;
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let response = app
            .client
            .request(method, format!("{}/metrics", app.url))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    // Development keeps serving it, as before.
    assert_eq!(get(&spawn_app().await, "/metrics").await.status(), 200);
}

#[tokio::test]
async fn a_metrics_token_is_required_when_configured() {
    let mut env = vec![
        ("APP_ENV", "production".to_owned()),
        ("JWT_SECRET", PRODUCTION_SECRET.to_owned()),
        ("METRICS_TOKEN", METRICS_TOKEN.to_owned()),
    ];
    let app = spawn_app_with(env.clone()).await;
    let scrape = |token: Option<String>| {
        let mut request = app.client.get(format!("{}/metrics", app.url));
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        request.send()
    };
    let refused = [
        None,
        Some("Bearer".to_owned()),
        Some("Bearer wrong-token".to_owned()),
        Some(format!(
            "Bearer {}",
            &METRICS_TOKEN[..METRICS_TOKEN.len() - 1]
        )),
        Some(format!("Bearer {METRICS_TOKEN}x")),
        Some(format!("Basic {METRICS_TOKEN}")),
    ];
    for token in refused {
        let response = scrape(token.clone()).await.unwrap();
        assert_eq!(response.status(), 401, "{token:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert!(!response.text().await.unwrap().contains("storefront_"));
    }
    let response = scrape(Some(format!("bearer {METRICS_TOKEN}")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("storefront_logins_total")
    );

    // On METRICS_ADDR the token is required too.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.push(("METRICS_ADDR", format!("127.0.0.1:{port}")));
    let _app = spawn_app_with(env).await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let response = client.get(&url).bearer_auth(METRICS_TOKEN).send().await;
    assert_eq!(response.unwrap().status(), 200);
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(format!("{}/graphql", app.url))
        .header("x-request-id", "trace-me-42")
        .json(&json!({"query": "{ __typename }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let generated = get(&app, "/healthz").await.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let response = app
        .client
        .get(format!("{}/healthz", app.url))
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .unwrap();
    assert!(uuid::Uuid::parse_str(response.headers()["x-request-id"].to_str().unwrap()).is_ok());
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::header::HeaderMap {
    app.client
        .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.url))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
        .headers()
        .clone()
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins_and_never_credentials() {
    let app = spawn_app().await;
    let headers = preflight(&app, "https://evil.example").await;
    assert!(
        headers.get("access-control-allow-origin").is_none(),
        "none by default"
    );

    let app = spawn_app_with(vec![(
        "CORS_ALLOWED_ORIGINS",
        "https://shop.example, http://localhost:3000".to_owned(),
    )])
    .await;
    let headers = preflight(&app, "https://shop.example").await;
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://shop.example"
    );
    assert!(headers.get("access-control-allow-credentials").is_none());
    let headers = preflight(&app, "https://evil.example").await;
    assert!(headers.get("access-control-allow-origin").is_none());

    let app = spawn_app_with(vec![("CORS_ALLOWED_ORIGINS", "*".to_owned())]).await;
    let headers = preflight(&app, "https://anyone.example").await;
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(headers.get("access-control-allow-credentials").is_none());
}

/// A `storefront serve` process with JSON logs, and the file its log goes to.
fn serve_process(db: &TestDb, extra: &[(&str, &str)]) -> (ServerProcess, tempfile::NamedTempFile) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "0".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let server = ServerProcess::start(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        &env,
        Stdio::from(log.reopen().unwrap()),
    );
    (server, log)
}

/// Waits until the server is hashing a password, so a signal lands while work is in flight.
async fn wait_for_hashing(url: &str) {
    for _ in 0..500 {
        let metrics = reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let busy = metrics.lines().any(|line| {
            line.strip_prefix("storefront_password_hashes_in_flight ")
                .or_else(|| line.strip_prefix("storefront_password_hash_queue "))
                .is_some_and(|n| n.trim() != "0")
        });
        if busy {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the server never started hashing");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits_zero_and_logs_are_json() {
    let db = TestDb::new().await;
    let (server, log) = serve_process(&db, &[]);
    server.wait_until_up().await;
    let (mut child, url) = (server.child, server.url);
    let client = reqwest::Client::new();
    let r: Value = client
        .post(format!("{url}/graphql"))
        .header("x-request-id", "json-log-check")
        .json(&json!({"query": r#"mutation{ register(input:{username:"inflight", password:"in flight passphrase"}){ accessToken } }"#}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_no_errors(&r);

    // Ten sign-ins in one batch take a while; SIGTERM arrives while they run.
    let batch: Vec<Value> = (0..10)
        .map(|_| json!({"query": r#"mutation{ login(input:{username:"inflight", password:"in flight passphrase"}){ accessToken } }"#}))
        .collect();
    let request = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .post(format!("{url}/graphql"))
                .json(&batch)
                .send()
                .await
        }
    });
    wait_for_hashing(&url).await;
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let response = request
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body.as_array().unwrap().len(), 10);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");

    let logged = std::fs::read_to_string(log.path()).unwrap();
    let lines: Vec<Value> = logged
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["request_id"] == "json-log-check"
                || l["span"]["request_id"] == "json-log-check"),
        "a log line carries the request id:\n{logged}"
    );
    assert!(
        lines.iter().any(|l| l["audit"] == "register"),
        "audit event logged:\n{logged}"
    );
}

#[tokio::test]
async fn the_shutdown_deadline_bounds_how_long_in_flight_requests_may_take() {
    let db = TestDb::new().await;
    let (server, _log) = serve_process(&db, &[("SHUTDOWN_TIMEOUT_SECS", "0")]);
    server.wait_until_up().await;
    let (mut child, url) = (server.child, server.url);
    let client = reqwest::Client::new();
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"query": format!(r#"mutation{{ register(input:{{username:"slow{i}", password:"slow passphrase {i}"}}){{ accessToken }} }}"#)}))
        .collect();
    let request = tokio::spawn({
        let url = url.clone();
        async move {
            client
                .post(format!("{url}/graphql"))
                .json(&batch)
                .send()
                .await
        }
    });
    wait_for_hashing(&url).await;
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    // The request still running at the deadline was cut off rather than answered.
    assert!(request.await.unwrap().is_err(), "abandoned at the deadline");
}

#[test]
fn policy_show_prints_the_table_and_check_refuses_broken_folders() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_storefront"))
            .args(args)
            .env_remove("POLICY_DIR")
            .output()
            .unwrap()
    };
    let dir = policy_dir().display().to_string();
    let out = run(&["policy", "show", "--dir", &dir]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let row = table
        .lines()
        .find(|l| l.starts_with("product create"))
        .unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["product", "create", "-", "-", "yes"]
    );
    assert!(run(&["policy", "check", "--dir", &dir]).status.success());

    let broken = tempfile::tempdir().unwrap();
    std::fs::copy(
        policy_dir().join("model.conf"),
        broken.path().join("model.conf"),
    )
    .unwrap();
    std::fs::write(
        broken.path().join("policy.csv"),
        "p, role:user, prodcut, read\n",
    )
    .unwrap();
    let out = run(&[
        "policy",
        "check",
        "--dir",
        &broken.path().display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("prodcut"));

    std::fs::write(
        broken.path().join("model.conf"),
        "[request_definition]\nr = sub\n",
    )
    .unwrap();
    let out = run(&[
        "policy",
        "check",
        "--dir",
        &broken.path().display().to_string(),
    ]);
    assert!(!out.status.success());
    let out = run(&["policy", "check", "--dir", "/nonexistent"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent"));
}

fn send_signal(child: &std::process::Child, signal: &str) {
    assert!(
        Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// A batch of ten sign-ins (slow: ten argon2 hashes), sent in the background.
fn ten_logins_in_flight(
    url: &str,
    username: &str,
    password: &str,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let batch: Vec<Value> = (0..10)
        .map(|_| json!({"query": format!(r#"mutation{{ login(input:{{username:"{username}", password:"{password}"}}){{ accessToken }} }}"#)}))
        .collect();
    let url = url.to_owned();
    tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{url}/graphql"))
            .json(&batch)
            .send()
            .await
    })
}

/// Waits until the log has a line with `message` (the server handles signals asynchronously).
async fn wait_for_log(log: &tempfile::NamedTempFile, message: &str) -> Value {
    for _ in 0..200 {
        let logged = std::fs::read_to_string(log.path()).unwrap();
        if let Some(line) = logged
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| {
                line["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(message))
            })
        {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no log line with {message:?}:\n{}",
        std::fs::read_to_string(log.path()).unwrap()
    );
}

#[tokio::test]
async fn sighup_with_requests_in_flight_leaves_the_server_running_and_answers_them() {
    let db = TestDb::new().await;
    let (server, log) = serve_process(&db, &[]);
    server.wait_until_up().await;
    let r = server
        .gql(json!({"query": r#"mutation{ register(input:{username:"hangup", password:"hang up passphrase"}){ accessToken } }"#}), None)
        .await;
    assert_no_errors(&r);
    let (mut child, url) = (server.child, server.url);
    for round in 0..3 {
        let request = ten_logins_in_flight(&url, "hangup", "hang up passphrase");
        wait_for_hashing(&url).await;
        send_signal(&child, "HUP");
        let response = request.await.unwrap().expect("answered");
        assert_eq!(response.status(), 200, "round {round}");
        let body: Value = response.json().await.unwrap();
        for item in body.as_array().unwrap() {
            assert_no_errors(item);
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "SIGHUP ended the server"
        );
    }
    wait_for_log(&log, "policy reloaded").await;
    // Signals that would kill a process by default are ignored too.
    for signal in ["USR1", "USR2", "ALRM"] {
        send_signal(&child, signal);
    }
    wait_for_log(&log, "signal ignored").await;
    let response = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(child.try_wait().unwrap().is_none());
    send_signal(&child, "TERM");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn sighup_reloads_an_edited_policy_and_keeps_it_when_the_new_one_is_broken() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    for file in ["model.conf", "policy.csv"] {
        std::fs::copy(policy_dir().join(file), dir.path().join(file)).unwrap();
    }
    let policy_dir_var = dir.path().display().to_string();
    let (server, log) = serve_process(&db, &[("POLICY_DIR", &policy_dir_var)]);
    server.wait_until_up().await;
    let r = server
        .gql(json!({"query": r#"mutation{ register(input:{username:"maker", password:"maker passphrase"}){ accessToken } }"#}), None)
        .await;
    assert_no_errors(&r);
    let token = r["data"]["register"]["accessToken"].as_str().unwrap();
    let create = json!({"query": r#"mutation{ createProduct(input:{name:"Reloaded", price:"1.00"}){ name } }"#});
    assert_eq!(
        codes(&server.gql(create.clone(), Some(token)).await),
        ["FORBIDDEN"]
    );

    let shipped = std::fs::read_to_string(policy_dir().join("policy.csv")).unwrap();
    std::fs::write(
        dir.path().join("policy.csv"),
        format!("{shipped}\np, role:user, product, create\n"),
    )
    .unwrap();
    send_signal(&server.child, "HUP");
    wait_for_log(&log, "policy reloaded").await;
    let r = server.gql(create.clone(), Some(token)).await;
    assert_no_errors(&r);

    // A broken policy is refused, logged at ERROR, and the one in force stays.
    std::fs::write(dir.path().join("policy.csv"), "p, alice, product, create\n").unwrap();
    send_signal(&server.child, "HUP");
    let line = wait_for_log(&log, "was refused").await;
    assert_eq!(line["level"], "ERROR");
    assert!(line["error"].as_str().unwrap().contains("line 1"), "{line}");
    let r = server.gql(create, Some(token)).await;
    assert_no_errors(&r);
    server.stop();
}

#[tokio::test]
async fn sigquit_drains_in_flight_requests_then_exits_zero() {
    let db = TestDb::new().await;
    let (server, log) = serve_process(&db, &[]);
    server.wait_until_up().await;
    let r = server
        .gql(json!({"query": r#"mutation{ register(input:{username:"quitter", password:"quit passphrase"}){ accessToken } }"#}), None)
        .await;
    assert_no_errors(&r);
    let (mut child, url) = (server.child, server.url);
    let request = ten_logins_in_flight(&url, "quitter", "quit passphrase");
    wait_for_hashing(&url).await;
    send_signal(&child, "QUIT");
    let response = request
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body.as_array().unwrap().len(), 10);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        wait_for_log(&log, "shutting down").await["signal"],
        "SIGQUIT"
    );
}
