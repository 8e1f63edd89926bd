use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use serde_json::json;

use crate::helpers::*;

fn storefront(db: &TestDb, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_storefront"));
    command
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .env_remove("ADMIN_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("storefront runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn create_admin_reads_the_password_from_the_environment_or_stdin() {
    let db = TestDb::new().await;
    let out = storefront(
        &db,
        &["create-admin", "--username", "boss"],
        &[("ADMIN_PASSWORD", "boss passphrase")],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = storefront(
        &db,
        &["create-admin", "--username", "deputy"],
        &[],
        Some("deputy passphrase\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("deputy passphrase"),
        "the password is never echoed"
    );

    let app = spawn_on(db, Vec::new()).await;
    for (name, password) in [("boss", "boss passphrase"), ("deputy", "deputy passphrase")] {
        let r = app.login(name, password).await;
        assert_no_errors(&r);
        assert_eq!(r["data"]["login"]["account"]["role"], "ADMIN");
    }
}

#[tokio::test]
async fn create_admin_promotes_an_existing_account_and_refuses_bad_input() {
    let db = TestDb::new().await;
    let app = spawn_on(db, Vec::new()).await;
    app.register("riser", "riser passphrase").await;
    let out = storefront(
        &app.db,
        &["create-admin", "--username", "RISER"],
        &[("ADMIN_PASSWORD", "ignored passphrase")],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = app.login("riser", "riser passphrase").await;
    assert_eq!(r["data"]["login"]["account"]["role"], "ADMIN", "{r}");

    let out = storefront(
        &app.db,
        &["create-admin", "--username", "shorty"],
        &[("ADMIN_PASSWORD", "short")],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("password"));
    let out = storefront(
        &app.db,
        &["create-admin", "--username", "weakling"],
        &[("ADMIN_PASSWORD", "letmein12345")],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("too easy to guess"));
    let out = storefront(
        &app.db,
        &["create-admin", "--username", "x"],
        &[("ADMIN_PASSWORD", "long enough pass")],
        None,
    );
    assert!(!out.status.success());
    let out = storefront(
        &app.db,
        &["create-admin", "--username", "nopass"],
        &[],
        Some(""),
    );
    assert!(!out.status.success());
}

/// `create-admin` ends with the one line saying what it did, also when it promotes (and
/// reactivates) an existing account: the API's audit lines are not written around it.
#[tokio::test]
async fn create_admin_that_promotes_prints_one_line() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let riser = app.user("riser").await;
    admin.deactivate_account(riser.id()).await.assert_ok();
    let out = storefront(
        &app.db,
        &["create-admin", "--username", "riser"],
        &[("RUST_LOG", "info")],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("audit"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("promoted existing account riser ("),
        "{stderr}"
    );
}

#[tokio::test]
async fn seed_is_idempotent_and_migrate_prepares_a_new_database() {
    let db = TestDb::new().await;
    let out = storefront(&db, &["migrate"], &[], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for _ in 0..2 {
        let out = storefront(&db, &["seed"], &[], None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let app = spawn_on(db, Vec::new()).await;
    let user = app.register("shopper", "shopper passphrase").await;
    let r = app
        .gql(
            "{ products { totalCount nodes { name price } } }",
            json!({}),
            Some(&user),
        )
        .await;
    assert_no_errors(&r);
    assert_eq!(r["data"]["products"]["totalCount"], 3);
}

#[tokio::test]
async fn bad_configuration_is_a_clear_error_naming_the_variable() {
    let db = TestDb::new().await;
    for (var, value) in [
        ("LISTEN_ADDR", "not-an-address"),
        ("JWT_SECRET", "too-short"),
        ("APP_ENV", "staging"),
    ] {
        let out = storefront(&db, &["serve"], &[(var, value)], None);
        assert!(!out.status.success(), "{var}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{var}: {stderr}");
        assert!(!stderr.contains("too-short"), "the secret is not echoed");
    }
    let out = storefront(
        &db,
        &["serve"],
        &[("APP_ENV", "production"), ("JWT_SECRET", "")],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_SECRET"));
}

#[tokio::test]
async fn with_no_database_url_serve_uses_a_local_sqlite_file_seeded_once() {
    let cwd = tempfile::tempdir().unwrap();
    // create-admin first: the database file exists before the first serve.
    let out = Command::new(env!("CARGO_BIN_EXE_storefront"))
        .args(["create-admin", "--username", "admin"])
        .current_dir(cwd.path())
        .env_remove("DATABASE_URL")
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cwd.path().join("storefront.db").exists());

    let login = json!({"query": "mutation($p:String!){ login(input:{username:\"admin\", password:$p}){ accessToken } }", "variables": {"p": ADMIN_PASSWORD}});
    let products = json!({"query": "{ products { totalCount nodes { id } } }"});

    let server = ServerProcess::start(cwd.path(), &[], Stdio::null());
    let r = server.gql(login.clone(), None).await;
    let token = r["data"]["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = server.gql(products.clone(), Some(&token)).await;
    assert_eq!(r["data"]["products"]["totalCount"], 3, "{r}");
    let id = r["data"]["products"]["nodes"][0]["id"].clone();
    let r = server
        .gql(
            json!({"query": "mutation($id:ID!){ deleteProduct(id:$id) }", "variables": {"id": id}}),
            Some(&token),
        )
        .await;
    assert_no_errors(&r);
    server.stop();

    // A restart does not bring the deleted demo product back.
    let server = ServerProcess::start(cwd.path(), &[], Stdio::null());
    let r = server.gql(login, None).await;
    let token = r["data"]["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = server.gql(products, Some(&token)).await;
    assert_eq!(r["data"]["products"]["totalCount"], 2, "{r}");
    server.stop();
}

#[tokio::test]
async fn secrets_never_reach_the_log() {
    let db = TestDb::new().await;
    let log = tempfile::NamedTempFile::new().unwrap();
    let secret = "log-test-secret-0123456789-abcdefghijkl";
    let server = ServerProcess::start(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        &[
            ("DATABASE_URL", db.url.clone()),
            ("JWT_SECRET", secret.to_owned()),
            ("RUST_LOG", "trace".to_owned()),
        ],
        Stdio::from(log.reopen().unwrap()),
    );
    let password = "password-that-must-stay-secret";
    let login = |p: &str| json!({"query": "mutation($p:String!){ login(input:{username:\"logger\", password:$p}){ accessToken } }", "variables": {"p": p}});
    let r = server
        .gql(json!({"query": "mutation($p:String!){ register(input:{username:\"logger\", password:$p}){ accessToken } }", "variables": {"p": password}}), None)
        .await;
    let token = r["data"]["register"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    server.gql(login(password), None).await;
    server.gql(login("wrong-password-also-secret"), None).await;
    server
        .gql(json!({"query": "{ account { id } }"}), Some(&token))
        .await;
    server.stop();

    let logged = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        logged.contains("authorization policy loaded"),
        "the log was captured: {logged:.500}"
    );
    for secret_text in [
        secret,
        password,
        "wrong-password-also-secret",
        "$argon2",
        token.as_str(),
    ] {
        assert!(
            !logged.contains(secret_text),
            "{secret_text:.20} appears in the log"
        );
    }
}

#[tokio::test]
async fn config_lists_every_variable_from_its_declaration_never_from_the_environment() {
    let db = TestDb::new().await;
    let secret = "config-command-secret-0123456789-abcdef";
    let env = [("JWT_SECRET", secret), ("GRAPHQL_MAX_DEPTH", "7")];
    let markdown = storefront(&db, &["config", "--markdown"], &env, None);
    assert!(markdown.status.success());
    let markdown = String::from_utf8_lossy(&markdown.stdout);
    let text = storefront(&db, &["config"], &env, None);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    let help = storefront(&db, &["--help"], &env, None);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);

    assert!(
        markdown.contains("| `GRAPHQL_MAX_DEPTH` | `15` | 1–1000 | Deepest selection nesting. |"),
        "{markdown}"
    );
    for output in [&text, &help] {
        assert!(
            output.contains("GRAPHQL_MAX_DEPTH  [default: 15]  [allowed: 1–1000]"),
            "{output}"
        );
    }
    for name in [
        "DATABASE_URL",
        "JWT_SECRET",
        "RUST_LOG",
        "LOG_FORMAT",
        "ADMIN_PASSWORD",
    ] {
        for output in [&markdown, &text, &help] {
            assert!(output.contains(name), "{name} is not listed:\n{output}");
        }
    }
    for output in [&markdown, &text, &help] {
        assert!(
            !output.contains(secret),
            "a value from the environment is printed"
        );
    }
}
