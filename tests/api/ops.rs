//! What operators use: probes, metrics, request ids, CORS, logs, shutdown and the policy CLI.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use reqwest::Method;
use serde_json::{Value, json};

use crate::kit::{
    documents::{LOGIN, REGISTER, login_variables},
    *,
};

#[tokio::test]
async fn health_and_readiness_probes() {
    let app = TestApp::spawn().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);

    // A migration recorded as not applied makes the server not ready.
    app.sql(
        "DELETE FROM seaql_migrations WHERE version LIKE '%create_sessions'",
        vec![],
    )
    .await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.text().await.unwrap(), "migrations pending");
}

#[tokio::test]
async fn metrics_count_operations_logins_and_show_the_policy() {
    let app = TestApp::spawn().await;
    let user = app.user_with("measured", "measured passphrase").await;
    let anonymous = app.anonymous();
    let products =
        json!({"query": "query Products { products { totalCount } }", "operationName": "Products"});
    user.post(&products).await;
    anonymous.post(&products).await;
    anonymous.login("measured", "measured passphrase").await;
    anonymous.login("measured", "wrong passphrase").await;
    anonymous.query("{ nosuchfield }", json!({})).await;

    let response = app.get("/metrics").await;
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
            app.policy_version()
        ),
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
}

#[tokio::test]
async fn metrics_can_live_on_their_own_address() {
    let port = free_port();
    let app = TestApp::builder()
        .metrics_addr(([127, 0, 0, 1], port).into())
        .spawn()
        .await;
    assert_eq!(app.get("/metrics").await.status(), 404);
    let text = metrics_at(&format!("http://127.0.0.1:{port}")).await;
    assert!(text.contains("storefront_logins_total"));
}

/// What `/metrics` at `url` (`http://host:port`) answers.
async fn metrics_at(url: &str) -> String {
    let response = reqwest::get(format!("{url}/metrics")).await.unwrap();
    response.text().await.unwrap()
}

const PRODUCTION_SECRET: &str = "production-secret-0123456789abcdefghij";
const METRICS_TOKEN: &str = "prometheus-scrape-token-0123456789";

#[tokio::test]
async fn in_production_metrics_are_not_on_the_api_address_unless_asked_for() {
    let app = TestApp::builder()
        .env("APP_ENV", "production")
        .env("JWT_SECRET", PRODUCTION_SECRET)
        .spawn()
        .await;
    for method in [Method::GET, Method::HEAD] {
        let response = app
            .request(method, "/metrics")
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    // Development keeps serving it, as before.
    assert_eq!(TestApp::spawn().await.get("/metrics").await.status(), 200);
}

#[tokio::test]
async fn a_metrics_token_is_required_when_configured() {
    // Production, with METRICS_TOKEN set: as the variables would configure it.
    let production = || {
        TestApp::builder()
            .env("APP_ENV", "production")
            .env("JWT_SECRET", PRODUCTION_SECRET)
            .env("METRICS_TOKEN", METRICS_TOKEN)
    };
    let app = production().spawn().await;
    let scrape = |token: Option<String>| {
        let mut request = app.request(Method::GET, "/metrics");
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
    let port = free_port();
    let _app = production()
        .env("METRICS_ADDR", &format!("127.0.0.1:{port}"))
        .spawn()
        .await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let response = client.get(&url).bearer_auth(METRICS_TOKEN).send().await;
    assert_eq!(response.unwrap().status(), 200);
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let r = app
        .anonymous()
        .with_header("x-request-id", "trace-me-42")
        .query("{ __typename }", json!({}))
        .await;
    assert_eq!(r.header("x-request-id"), Some("trace-me-42"));
    let generated = app.get("/healthz").await.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let response = app
        .request(Method::GET, "/healthz")
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .unwrap();
    assert!(uuid::Uuid::parse_str(response.headers()["x-request-id"].to_str().unwrap()).is_ok());
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::header::HeaderMap {
    app.request(Method::OPTIONS, "/graphql")
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
    let app = TestApp::spawn().await;
    let headers = preflight(&app, "https://evil.example").await;
    assert!(
        headers.get("access-control-allow-origin").is_none(),
        "none by default"
    );

    // The variable's own syntax (a list with spaces, `*`), end to end.
    let app = TestApp::builder()
        .env(
            "CORS_ALLOWED_ORIGINS",
            "https://shop.example, http://localhost:3000",
        )
        .spawn()
        .await;
    let headers = preflight(&app, "https://shop.example").await;
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://shop.example"
    );
    assert!(headers.get("access-control-allow-credentials").is_none());
    let headers = preflight(&app, "https://evil.example").await;
    assert!(headers.get("access-control-allow-origin").is_none());

    let app = TestApp::builder()
        .env("CORS_ALLOWED_ORIGINS", "*")
        .spawn()
        .await;
    let headers = preflight(&app, "https://anyone.example").await;
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(headers.get("access-control-allow-credentials").is_none());
}

/// A `storefront serve` process with JSON logs, up and answering, and the file its log goes
/// to.
async fn serve_process(
    db: &TestDb,
    extra: &[(&str, &str)],
) -> (ServerProcess, tempfile::NamedTempFile) {
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
    server.wait_until_up().await;
    (server, log)
}

/// Waits for the process to end; asserts that it exits with status 0.
async fn exits_zero(mut child: std::process::Child) {
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

/// The answers to a batch sent in the background, asserting that it was answered with 200.
async fn answered(
    request: tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) -> Vec<Response> {
    let response = request
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    Response::<Value>::read(response, None).await.batch()
}

/// Waits until the server is hashing a password, so a signal lands while work is in flight.
async fn wait_for_hashing(url: &str) {
    for _ in 0..500 {
        let metrics = metrics_at(url).await;
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
    let (server, log) = serve_process(&db, &[]).await;
    signal_while_signing_in(server, "json-log-check", "TERM").await;

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

/// Log pipelines select audit lines by their target as well as by `audit` (for instance
/// `RUST_LOG=warn,storefront::graphql::mutation=info` keeps only them at INFO): every audit
/// event keeps the target, message and fields it has always had, whichever module writes it.
#[tokio::test]
async fn audit_lines_keep_their_target_message_and_fields() {
    let db = TestDb::new().await;
    let out = Command::new(env!("CARGO_BIN_EXE_storefront"))
        .args(["create-admin", "--username", "auditor"])
        .env("DATABASE_URL", &db.url)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (server, log) = serve_process(
        &db,
        &[("RUST_LOG", "warn,storefront::graphql::mutation=info")],
    )
    .await;
    let anonymous = server.anonymous();
    let admin = anonymous.with_session(anonymous.login("auditor", ADMIN_PASSWORD).await.ok());
    anonymous.login("auditor", "not the password").await;
    let (username, password) = ("audited", "audited passphrase 42");
    let user = anonymous.with_session(anonymous.register(username, password).await.ok());
    let product = admin.add_product("Audited teapot", "30.00").await;
    let changes = ProductChanges {
        stock: Some(2),
        ..ProductChanges::default()
    };
    admin
        .update_product(&product.id, &changes)
        .await
        .assert_ok();
    admin.delete_product(&product.id).await.assert_ok();
    admin
        .set_user_role(user.id(), Role::Admin)
        .await
        .assert_ok();
    admin.deactivate_account(user.id()).await.assert_ok();
    admin.reactivate_account(user.id()).await.assert_ok();
    let user = anonymous.with_session(anonymous.login(username, password).await.ok());
    let new_password = "audited passphrase 43";
    let user = anonymous.with_session(user.change_password(password, new_password).await.ok());
    let other_device = anonymous.with_session(anonymous.login(username, new_password).await.ok());
    other_device.logout().await.assert_ok();
    user.logout_all().await.assert_ok();
    let user = anonymous.with_session(anonymous.login(username, new_password).await.ok());
    user.delete_account(new_password).await.assert_ok();
    server.stop();

    let logged = std::fs::read_to_string(log.path()).unwrap();
    let audit: Vec<Value> = logged
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line.get("audit").is_some())
        .collect();
    let seen: Vec<(&str, &str, &str)> = audit
        .iter()
        .map(|l| {
            let field = |name: &str| l[name].as_str().unwrap_or_default();
            (field("audit"), field("message"), field("target"))
        })
        .collect();
    let mutation = "storefront::graphql::mutation";
    let expected = [
        ("login", "signed in"),
        ("login", "sign-in refused"),
        ("register", "account registered"),
        ("create_product", "product created"),
        ("update_product", "product updated"),
        ("delete_product", "product deleted"),
        ("set_user_role", "role changed"),
        ("deactivate_account", "account deactivated"),
        ("reactivate_account", "account reactivated"),
        ("login", "signed in"),
        ("change_password", "password changed; sessions ended"),
        ("login", "signed in"),
        ("logout", "session ended"),
        ("logout_all", "every session ended"),
        ("login", "signed in"),
        ("delete_account", "account deleted"),
    ]
    .map(|(audit, message)| (audit, message, mutation));
    assert_eq!(seen, expected, "audit lines:\n{logged}");
    fn fields(line: &Value) -> Vec<&str> {
        let mut names: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.retain(|n| {
            !matches!(
                *n,
                "timestamp" | "level" | "message" | "target" | "span" | "spans"
            )
        });
        names.sort_unstable();
        names
    }
    assert_eq!(fields(&audit[1]), ["audit", "outcome"]);
    assert_eq!(fields(&audit[0]), ["account_id", "audit", "outcome"]);
    assert_eq!(fields(&audit[3]), ["actor", "audit", "product_id"]);
    assert_eq!(fields(&audit[6]), ["account_id", "actor", "audit", "role"]);
    assert_eq!(fields(&audit[7]), ["account_id", "actor", "audit"]);
    assert_eq!(fields(&audit[15]), ["account_id", "audit"]);
}

#[tokio::test]
async fn the_shutdown_deadline_bounds_how_long_in_flight_requests_may_take() {
    let db = TestDb::new().await;
    let (server, _log) = serve_process(&db, &[("SHUTDOWN_TIMEOUT_SECS", "0")]).await;
    let (child, url) = (server.child, server.url);
    let client = reqwest::Client::new();
    let batch: Vec<Value> = (0..10)
        .map(|i| {
            REGISTER.request(json!({"input": {
                "username": format!("slow{i}"),
                "password": format!("slow passphrase {i}"),
            }}))
        })
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
    send_signal(&child, "TERM");
    exits_zero(child).await;
    // The request still running at the deadline was cut off rather than answered.
    assert!(request.await.unwrap().is_err(), "abandoned at the deadline");
}

#[test]
fn policy_show_prints_the_table_and_check_refuses_broken_folders() {
    let run = |args: &[&str]| storefront(args).env_remove("POLICY_DIR").run();
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

    let broken = policy_folder("p, role:user, prodcut, read\n");
    let broken_dir = broken.path().display().to_string();
    let out = run(&["policy", "check", "--dir", &broken_dir]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("prodcut"));

    std::fs::write(
        broken.path().join("model.conf"),
        "[request_definition]\nr = sub\n",
    )
    .unwrap();
    let out = run(&["policy", "check", "--dir", &broken_dir]);
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
        .map(|_| LOGIN.request(login_variables(username, password)))
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

/// Registers an account (the request carrying `request_id`), sends ten of its sign-ins in one
/// batch (a while of argon2 work) and `signal` while they run: the batch is answered in full,
/// then the process exits with status 0.
async fn signal_while_signing_in(server: ServerProcess, request_id: &str, signal: &str) {
    let (username, password) = ("inflight", "in flight passphrase");
    server
        .anonymous()
        .with_header("x-request-id", request_id)
        .register(username, password)
        .await
        .assert_ok();
    let (child, url) = (server.child, server.url);
    let request = ten_logins_in_flight(&url, username, password);
    wait_for_hashing(&url).await;
    send_signal(&child, signal);
    assert_eq!(answered(request).await.len(), 10);
    exits_zero(child).await;
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
    let (server, log) = serve_process(&db, &[]).await;
    server
        .anonymous()
        .register("hangup", "hang up passphrase")
        .await
        .assert_ok();
    let (mut child, url) = (server.child, server.url);
    for _ in 0..3 {
        let request = ten_logins_in_flight(&url, "hangup", "hang up passphrase");
        wait_for_hashing(&url).await;
        send_signal(&child, "HUP");
        for item in answered(request).await {
            item.assert_ok();
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
    exits_zero(child).await;
}

#[tokio::test]
async fn sighup_reloads_an_edited_policy_and_keeps_it_when_the_new_one_is_broken() {
    let db = TestDb::new().await;
    let dir = policy_folder(&shipped_policy());
    let policy_dir_var = dir.path().display().to_string();
    let (server, log) = serve_process(&db, &[("POLICY_DIR", &policy_dir_var)]).await;
    let anonymous = server.anonymous();
    let maker = anonymous.with_session(anonymous.register("maker", "maker passphrase").await.ok());
    let create = NewProduct::new("Reloaded", "1.00");
    assert_eq!(maker.create_product(&create).await.codes(), ["FORBIDDEN"]);

    std::fs::write(
        dir.path().join("policy.csv"),
        format!("{}\np, role:user, product, create\n", shipped_policy()),
    )
    .unwrap();
    send_signal(&server.child, "HUP");
    wait_for_log(&log, "policy reloaded").await;
    maker.create_product(&create).await.assert_ok();

    // A broken policy is refused, logged at ERROR, and the one in force stays.
    std::fs::write(dir.path().join("policy.csv"), "p, alice, product, create\n").unwrap();
    send_signal(&server.child, "HUP");
    let line = wait_for_log(&log, "was refused").await;
    assert_eq!(line["level"], "ERROR");
    assert!(line["error"].as_str().unwrap().contains("line 1"), "{line}");
    maker.create_product(&create).await.assert_ok();
    server.stop();
}

#[tokio::test]
async fn sigquit_drains_in_flight_requests_then_exits_zero() {
    let db = TestDb::new().await;
    let (server, log) = serve_process(&db, &[]).await;
    signal_while_signing_in(server, "quit-check", "QUIT").await;
    assert_eq!(
        wait_for_log(&log, "shutting down").await["signal"],
        "SIGQUIT"
    );
}
