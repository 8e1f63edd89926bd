use std::process::Stdio;

use crate::kit::*;

/// `storefront ARGS` on `db`, with quiet logs and no `ADMIN_PASSWORD` unless the test sets one.
fn storefront_on(db: &TestDb, args: &[&str]) -> Storefront {
    storefront(args)
        .on(db)
        .env("RUST_LOG", "warn")
        .env_remove("ADMIN_PASSWORD")
}

#[tokio::test]
async fn create_admin_reads_the_password_from_the_environment_or_stdin() {
    let db = TestDb::new().await;
    storefront_on(&db, &["create-admin", "--username", "boss"])
        .env("ADMIN_PASSWORD", "boss passphrase")
        .succeeds();
    let out = storefront_on(&db, &["create-admin", "--username", "deputy"])
        .stdin("deputy passphrase\n")
        .succeeds();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("deputy passphrase"),
        "the password is never echoed"
    );

    let app = TestApp::builder().on(db).spawn().await;
    for (name, password) in [("boss", "boss passphrase"), ("deputy", "deputy passphrase")] {
        let admin = app.sign_in(name, password).await;
        assert_eq!(admin.session().account.role, Role::Admin);
    }
}

/// `--role` gives any role the policy defines, and a role it does not define is refused before
/// a password is asked for.
#[tokio::test]
async fn create_admin_gives_the_role_named_by_the_policy() {
    let policy = shop_policy();
    let db = TestDb::new().await;
    let command = |args: &[&str]| storefront_on(&db, args).env("POLICY_DIR", policy.path());
    command(&["create-admin", "--username", "eddie", "--role", "editor"])
        .env("ADMIN_PASSWORD", "editor passphrase")
        .succeeds();
    let stderr = command(&[
        "create-admin",
        "--username",
        "nobody",
        "--role",
        "superuser",
    ])
    .stdin("never read passphrase\n")
    .fails();
    assert!(stderr.contains("no role `superuser`"), "{stderr}");

    let app = TestApp::builder()
        .policy_dir(policy.path())
        .on(db)
        .spawn()
        .await;
    let ed = app.sign_in("eddie", "editor passphrase").await;
    assert_eq!(ed.session().account.role, Role::Named("editor"));
    let r = app
        .anonymous()
        .login("nobody", "never read passphrase")
        .await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"], "nothing was created: {r}");
}

#[tokio::test]
async fn create_admin_promotes_an_existing_account_and_refuses_bad_input() {
    let app = TestApp::spawn().await;
    app.user_with("riser", "riser passphrase").await;
    storefront_on(&app.db, &["create-admin", "--username", "RISER"])
        .env("ADMIN_PASSWORD", "ignored passphrase")
        .succeeds();
    let r = app.anonymous().login("riser", "riser passphrase").await;
    assert_eq!(r.data().map(|s| s.account.role), Some(Role::Admin), "{r}");

    // The username, the password (from the environment, else from stdin) and what the error
    // must say, if anything.
    for (username, password, says) in [
        ("shorty", Some("short"), Some("password")),
        ("weakling", Some("letmein12345"), Some("too easy to guess")),
        ("x", Some("long enough pass"), None),
        ("nopass", None, None),
    ] {
        let command = storefront_on(&app.db, &["create-admin", "--username", username]);
        let stderr = match password {
            Some(password) => command.env("ADMIN_PASSWORD", password).fails(),
            None => command.stdin("").fails(),
        };
        if let Some(says) = says {
            assert!(stderr.contains(says), "{username}: {stderr}");
        }
    }
}

/// `create-admin` ends with the one line saying what it did, also when it promotes (and
/// reactivates) an existing account: the API's audit lines are not written around it.
#[tokio::test]
async fn create_admin_that_promotes_prints_one_line() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let riser = app.user("riser").await;
    admin.deactivate_account(riser.id()).await.assert_ok();
    let out = storefront_on(&app.db, &["create-admin", "--username", "riser"])
        .env("RUST_LOG", "info")
        .succeeds();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("audit"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("gave existing account riser (")
            && last.ends_with("the role admin; its password is unchanged"),
        "{stderr}"
    );
}

#[tokio::test]
async fn seed_is_idempotent_and_migrate_prepares_a_new_database() {
    let db = TestDb::new().await;
    storefront_on(&db, &["migrate"]).succeeds();
    for _ in 0..2 {
        storefront_on(&db, &["seed"]).succeeds();
    }
    let app = TestApp::builder().on(db).spawn().await;
    let user = app.user_with("shopper", "shopper passphrase").await;
    let products = user.products(Page::default()).await.ok();
    assert_eq!(products.total_count, 3);
    // Full-text search finds the seeded products by their name and description, folded as
    // the API stores its own (case and accents ignored, the last word a prefix).
    for (search, name) in [
        ("ESPRESSO", "Espresso cup"),
        ("porcelain crém", "Espresso cup"),
    ] {
        let args = ListArgs::default().filter(serde_json::json!({ "search": search }));
        let found = user.product_list(&args).await.ok();
        let names: Vec<_> = found.edges.iter().map(|e| e.node.name.as_str()).collect();
        assert_eq!(names, [name], "{search}");
    }
}

#[tokio::test]
async fn bad_configuration_is_a_clear_error_naming_the_variable() {
    let db = TestDb::new().await;
    for (var, value) in [
        ("LISTEN_ADDR", "not-an-address"),
        ("JWT_SECRET", "too-short"),
        ("APP_ENV", "staging"),
    ] {
        let stderr = storefront_on(&db, &["serve"]).env(var, value).fails();
        assert!(stderr.contains(var), "{var}: {stderr}");
        assert!(!stderr.contains("too-short"), "the secret is not echoed");
    }
    let stderr = storefront_on(&db, &["serve"])
        .env("APP_ENV", "production")
        .env("JWT_SECRET", "")
        .fails();
    assert!(stderr.contains("JWT_SECRET"), "{stderr}");
}

/// `storefront serve` in `cwd` with no `DATABASE_URL`, up and answering, and its admin
/// signed in.
async fn serve_in(cwd: &std::path::Path) -> (ServerProcess, Actor) {
    let server = ServerProcess::start(cwd, &[], Stdio::null());
    server.wait_until_up().await;
    let admin = server.anonymous().sign_in("admin", ADMIN_PASSWORD).await;
    (server, admin)
}

#[tokio::test]
async fn with_no_database_url_serve_uses_a_local_sqlite_file_seeded_once() {
    let cwd = tempfile::tempdir().unwrap();
    // create-admin first: the database file exists before the first serve.
    storefront(&["create-admin", "--username", "admin"])
        .in_dir(cwd.path())
        .env_remove("DATABASE_URL")
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .succeeds();
    assert!(cwd.path().join("storefront.db").exists());

    let (server, admin) = serve_in(cwd.path()).await;
    let products = admin.products(Page::default()).await.ok();
    assert_eq!(products.total_count, 3);
    admin
        .delete_product(&products.nodes[0].id)
        .await
        .assert_ok();
    server.stop();

    // A restart does not bring the deleted demo product back.
    let (server, admin) = serve_in(cwd.path()).await;
    assert_eq!(admin.product_count().await, 2);
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
    server.wait_until_up().await;
    let password = "password-that-must-stay-secret";
    let session = server.anonymous().register("logger", password).await.ok();
    let token = session.access_token.clone();
    let logger = server.anonymous().with_session(session);
    server.anonymous().login("logger", password).await;
    server
        .anonymous()
        .login("logger", "wrong-password-also-secret")
        .await;
    logger.account().await;
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
    let printed = |args: &[&str]| {
        let out = storefront_on(&db, args)
            .env("JWT_SECRET", secret)
            .env("GRAPHQL_MAX_DEPTH", "7")
            .succeeds();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let markdown = printed(&["config", "--markdown"]);
    let text = printed(&["config"]);
    let help = printed(&["--help"]);

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
