//! The client-side checks in `clients/` (`npm test`): the graphql-http GraphQL-over-HTTP audit,
//! Apollo Client, urql and graphql-request used as a frontend uses them (automatic persisted
//! queries on), a GraphQL Code Generator typed client type-checked with `tsc`, and the GraphiQL
//! page in headless Chromium. They run against the real `storefront` binary, started here as a
//! subprocess after `create-admin` and `seed`, on a fresh database (SQLite, or PostgreSQL when
//! TEST_DATABASE_URL is set); the tests that need a server of their own (restarted, or with
//! TRUSTED_DOCUMENTS) start the same binary on the same database. Skipped, with a message, when
//! `node` is not on PATH.

use std::{
    fs::File,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use crate::kit::{
    ADMIN_PASSWORD, ChildGuard, JWT_SECRET, NPM_TIMEOUT, TestDb, bare_storefront, free_port,
    install_client_packages, node_version, policy_dir, read_log, run_npm, run_storefront,
};

const ADMIN_USERNAME: &str = "admin";
/// How long the server may take to answer its first request.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn javascript_clients_pass_against_the_real_server() {
    let Some(node) = node_version() else {
        println!("skipped: node not found on PATH (the clients/ tests need Node.js 20 or later)");
        return;
    };
    let work = tempfile::tempdir().expect("a temp dir");

    install_client_packages(work.path());

    let db = TestDb::new().await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let url = format!("http://{addr}");
    // The browser test's cross-origin page: the API's host by another name.
    let page_origin = format!("http://localhost:{port}");
    let env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", db.url.clone()),
        ("JWT_SECRET", JWT_SECRET.to_owned()),
        ("LISTEN_ADDR", addr.clone()),
        ("POLICY_DIR", policy_dir().display().to_string()),
        ("APP_ENV", "development".to_owned()),
        // Every client shares one IP; the per-IP limit has tests of its own.
        ("AUTH_RATE_LIMIT_PER_MINUTE", "0".to_owned()),
        ("CORS_ALLOWED_ORIGINS", page_origin.clone()),
        // apollo.test.mjs replays a spent refresh token at once and expects the session to end:
        // reuse outside the interval (the interval has tests in tests/api/browser_sessions.rs).
        ("REFRESH_REUSE_INTERVAL_SECS", "0".to_owned()),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("RUST_LOG", "info".to_owned()),
        ("NO_COLOR", "1".to_owned()),
    ];
    run_storefront(
        work.path(),
        &env,
        &["create-admin", "--username", ADMIN_USERNAME],
    );
    run_storefront(work.path(), &env, &["seed"]);

    let server_log = work.path().join("server.log");
    let log = File::create(&server_log).expect("create the server log");
    let mut server = ChildGuard::spawn(
        "storefront serve",
        bare_storefront(work.path(), &env)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the server log"))
            .stderr(log),
    );

    // Wait until it answers a GraphQL request.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Some(status) = server.exited() {
            panic!(
                "storefront serve exited early ({status}):\n{}",
                read_log(&server_log)
            );
        }
        let answered = client
            .post(format!("{url}/graphql"))
            .json(&serde_json::json!({ "query": "{ __typename }" }))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if answered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "storefront serve did not answer on {url} within {STARTUP_TIMEOUT:?}:\n{}",
            read_log(&server_log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The GraphiQL test's screenshots go under the target directory, never into the sources.
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let (status, output) = run_npm(
        &["test"],
        &[
            ("STOREFRONT_URL", url.clone()),
            ("ADMIN_USERNAME", ADMIN_USERNAME.to_owned()),
            ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
            ("STOREFRONT_CORS_ORIGIN", page_origin),
            // For the tests that start a server of their own (lib/server.mjs).
            (
                "STOREFRONT_BIN",
                env!("CARGO_BIN_EXE_storefront").to_owned(),
            ),
            ("STOREFRONT_DATABASE_URL", db.url.clone()),
            ("STOREFRONT_JWT_SECRET", JWT_SECRET.to_owned()),
            ("STOREFRONT_POLICY_DIR", policy_dir().display().to_string()),
            ("SCREENSHOT_DIR", screenshots.display().to_string()),
        ],
        &work.path().join("npm-test.log"),
    );
    // node's output is in the panic message on failure, and shown with `--nocapture` otherwise.
    assert!(
        status.is_some_and(|s| s.success()),
        "npm test in clients/ (node {node}) against {url} failed ({}):\n{output}\n--- server log ---\n{}",
        status.map_or_else(
            || format!("killed after {NPM_TIMEOUT:?}"),
            |s| s.to_string()
        ),
        read_log(&server_log)
    );
    println!(
        "npm test in clients/ (node {node}) against {url} (screenshots in {}):\n{output}",
        screenshots.display()
    );

    drop(server);
    drop(db);
}
