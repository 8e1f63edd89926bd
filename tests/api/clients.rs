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
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use crate::kit::{ADMIN_PASSWORD, JWT_SECRET, TestDb, free_port, policy_dir};

const ADMIN_USERNAME: &str = "admin";
/// How long the server may take to answer its first request.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `npm ci` and `npm test` may run.
const NPM_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A child process (and, on Unix, every process it started) killed when this is dropped, so a
/// failing assertion or a panic never leaves a server or a browser behind.
struct ChildGuard {
    child: Child,
    name: &'static str,
}

impl ChildGuard {
    fn spawn(name: &'static str, command: &mut Command) -> Self {
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(command, 0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self { child, name }
    }

    /// The exit status once the process has ended, or `None` while it runs.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", self.name))
    }

    /// Waits for the process to end; kills it and returns `None` after `timeout`.
    fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        #[cfg(unix)]
        {
            // The process group holds the children too (node's test workers, Chromium).
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
    }
}

/// The version `node --version` prints, or `None` when there is no `node` on PATH.
fn node_version() -> Option<String> {
    let output = Command::new("node").arg("--version").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// The `storefront` binary with only the variables the test chooses (no `.env`, no outer
/// configuration leaking in).
fn storefront(work_dir: &Path, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_storefront"));
    command.env_clear().current_dir(work_dir);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// Runs a one-shot `storefront` command and panics with its output if it fails.
fn run_storefront(work_dir: &Path, env: &[(&str, String)], args: &[&str]) {
    let output = storefront(work_dir, env)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run storefront {args:?}: {e}"));
    assert!(
        output.status.success(),
        "storefront {args:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// Runs npm in `clients/` with its output in `log`; returns the exit status and the output.
fn run_npm(args: &[&str], env: &[(&str, String)], log: &Path) -> (Option<ExitStatus>, String) {
    let out = File::create(log).expect("create the npm log");
    let err = out.try_clone().expect("clone the npm log");
    let mut npm = ChildGuard::spawn(
        "npm",
        Command::new("npm")
            .args(args)
            .current_dir(clients_dir())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err),
    );
    let status = npm.wait_for(NPM_TIMEOUT);
    (status, read_log(log))
}

/// Whether `node_modules` holds what `package-lock.json` says: npm writes
/// `node_modules/.package-lock.json` when it installs, so one older than the lock file was
/// installed from an earlier lock (a checkout that added a package).
fn installed_packages_are_current() -> bool {
    let modified = |path: PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let dir = clients_dir();
    match (
        modified(dir.join("node_modules").join(".package-lock.json")),
        modified(dir.join("package-lock.json")),
    ) {
        (Some(installed), Some(locked)) => installed >= locked,
        _ => false,
    }
}

#[tokio::test]
async fn javascript_clients_pass_against_the_real_server() {
    let Some(node) = node_version() else {
        println!("skipped: node not found on PATH (the clients/ tests need Node.js 20 or later)");
        return;
    };
    let work = tempfile::tempdir().expect("a temp dir");

    if !installed_packages_are_current() {
        let (status, output) = run_npm(
            &["ci", "--no-audit", "--no-fund"],
            &[],
            &work.path().join("npm-ci.log"),
        );
        assert!(
            status.is_some_and(|s| s.success()),
            "npm ci in clients/ failed ({status:?}):\n{output}"
        );
    }

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
        storefront(work.path(), &env)
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
