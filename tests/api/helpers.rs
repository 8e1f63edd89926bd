use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::Arc,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use sha2::Sha256;
use storefront::{app::App, config::Config, state::AppState};
use tokio::sync::oneshot;

pub const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";
pub const ADMIN_PASSWORD: &str = "admin passphrase 42";

/// A database for one test, removed when the test ends.
pub struct TestDb {
    pub url: String,
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A temp-file SQLite database, or a new PostgreSQL database when TEST_DATABASE_URL is set.
    pub async fn new() -> Self {
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            Some(admin_url) => {
                let name = format!("storefront_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(admin_url.as_str())
                    .await
                    .expect("TEST_DATABASE_URL is reachable");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create test database");
                admin.close().await.ok();
                let base = admin_url.split('?').next().unwrap();
                let base = &base[..base.rfind('/').expect("URL names a database")];
                Self {
                    url: format!("{base}/{name}"),
                    postgres: Some((admin_url.clone(), name)),
                    _dir: None,
                }
            }
            None => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                Self {
                    url,
                    postgres: None,
                    _dir: Some(dir),
                }
            }
        }
    }

    /// A SQLite database in `dir` (which the caller keeps and removes).
    pub fn sqlite_in(dir: &std::path::Path) -> Self {
        Self {
            url: format!("sqlite://{}?mode=rwc", dir.join("test.db").display()),
            postgres: None,
            _dir: None,
        }
    }

    /// The PostgreSQL admin URL and this database's name, when it is one.
    pub fn postgres(&self) -> Option<(&str, &str)> {
        self.postgres
            .as_ref()
            .map(|(admin, name)| (admin.as_str(), name.as_str()))
    }
}

impl TestDb {
    /// An existing SQLite file (kept when the test ends; put it in a temp dir).
    pub fn sqlite_file(path: &std::path::Path) -> Self {
        Self {
            url: format!("sqlite://{}?mode=rw", path.display()),
            postgres: None,
            _dir: None,
        }
    }

    /// The SQLite file this database lives in; none on PostgreSQL.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        self.url
            .strip_prefix("sqlite://")
            .map(|rest| PathBuf::from(rest.split('?').next().unwrap_or(rest)))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.postgres.take() {
            // Drop runs inside the test's runtime: use a thread with a runtime of its own.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(admin) = Database::connect(admin_url.as_str()).await {
                        let _ = admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            ))
                            .await;
                        admin.close().await.ok();
                    }
                });
            })
            .join()
            .ok();
        }
    }
}

/// The repository's own policy folder.
pub fn policy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A running server on a free port, with its own database.
pub struct TestApp {
    pub url: String,
    pub state: Arc<AppState>,
    pub client: reqwest::Client,
    pub db: TestDb,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl TestApp {
    /// Stops the server and keeps its database, to start another server on it.
    pub fn into_db(mut self) -> TestDb {
        let empty = TestDb {
            url: String::new(),
            postgres: None,
            _dir: None,
        };
        std::mem::replace(&mut self.db, empty)
    }
}

/// Variables a test may set on top of the defaults.
pub type Env = Vec<(&'static str, String)>;

/// The configuration a test server runs with: its database, a fixed secret, a free port.
pub fn test_config(db: &TestDb, extra: &Env) -> Config {
    let mut vars: Env = vec![
        ("DATABASE_URL", db.url.clone()),
        ("JWT_SECRET", JWT_SECRET.to_owned()),
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("POLICY_DIR", policy_dir().display().to_string()),
        // Every test client shares one IP; the per-IP limit has tests of its own.
        ("AUTH_RATE_LIMIT_PER_MINUTE", "0".to_owned()),
    ];
    vars.extend(extra.iter().cloned());
    Config::from_lookup(|name| {
        vars.iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("valid test configuration")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Vec::new()).await
}

pub async fn spawn_app_with(extra: Env) -> TestApp {
    spawn_on(TestDb::new().await, extra).await
}

/// A server on an existing test database, with extra variables.
pub async fn spawn_on(db: TestDb, extra: Env) -> TestApp {
    let config = test_config(&db, &extra);
    let app = App::build(&config).await.expect("app builds");
    let url = format!("http://{}", app.local_addr());
    let state = app.state();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        url,
        state,
        client: reqwest::Client::new(),
        db,
        shutdown: Some(tx),
    }
}

/// A second server on `app`'s database, as another replica would be: its GraphQL URL, and
/// a sender that stops it when dropped.
pub async fn spawn_replica(app: &TestApp) -> (String, oneshot::Sender<()>) {
    let config = test_config(&app.db, &Vec::new());
    let replica = App::build(&config).await.expect("replica builds");
    let url = format!("http://{}/graphql", replica.local_addr());
    let (stop, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(replica.run_until(async {
        let _ = stop_rx.await;
    }));
    (url, stop)
}

/// POSTs a GraphQL request to the server at `url` (a GraphQL URL) and returns its JSON body.
pub async fn gql_at(url: &str, body: Value, token: Option<&str>) -> Value {
    let mut request = reqwest::Client::new().post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().json().await.unwrap()
}

impl TestApp {
    /// POSTs a GraphQL request and returns the HTTP status and the JSON body.
    pub async fn post(&self, body: Value, token: Option<&str>) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.url))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("server answers");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Runs a query with variables and an optional Bearer token.
    pub async fn gql(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        self.post(json!({ "query": query, "variables": variables }), token)
            .await
            .1
    }

    /// Runs a query with a raw `Authorization` header value.
    pub async fn gql_with_authorization(&self, query: &str, authorization: &str) -> Value {
        self.client
            .post(format!("{}/graphql", self.url))
            .header("Authorization", authorization)
            .json(&json!({ "query": query }))
            .send()
            .await
            .expect("server answers")
            .json()
            .await
            .unwrap()
    }

    /// Registers an account and returns its access token.
    pub async fn register(&self, username: &str, password: &str) -> String {
        let r = self
            .gql(
                "mutation($u:String!,$p:String!){ register(input:{username:$u,password:$p}){ accessToken } }",
                json!({"u": username, "p": password}),
                None,
            )
            .await;
        assert_no_errors(&r);
        r["data"]["register"]["accessToken"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Logs in and returns the whole response.
    pub async fn login(&self, username: &str, password: &str) -> Value {
        self.gql(
            "mutation($u:String!,$p:String!){ login(input:{username:$u,password:$p}){ accessToken tokenType expiresIn account{ id username role } } }",
            json!({"u": username, "p": password}),
            None,
        )
        .await
    }

    /// Creates an admin account the way `storefront create-admin` does, and returns its token.
    pub async fn admin_token(&self) -> String {
        self.state
            .accounts
            .create_or_promote_admin("admin", ADMIN_PASSWORD.to_owned())
            .await
            .unwrap();
        let r = self.login("admin", ADMIN_PASSWORD).await;
        assert_no_errors(&r);
        r["data"]["login"]["accessToken"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Creates a product as the admin and returns its id.
    pub async fn create_product(&self, admin: &str, name: &str, price: &str) -> String {
        let r = self
            .gql(
                "mutation($n:String!,$p:Decimal!){ createProduct(input:{name:$n, description:\"d\", price:$p, stock:1}){ id } }",
                json!({"n": name, "p": price}),
                Some(admin),
            )
            .await;
        assert_no_errors(&r);
        r["data"]["createProduct"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The number of products, read as an admin would.
    pub async fn product_count(&self, token: &str) -> i64 {
        let r = self
            .gql("{ products { totalCount } }", json!({}), Some(token))
            .await;
        assert_no_errors(&r);
        r["data"]["products"]["totalCount"].as_i64().unwrap()
    }
}

/// The `extensions.code` of every error in a response.
pub fn codes(response: &Value) -> Vec<String> {
    response["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    e["extensions"]["code"]
                        .as_str()
                        .unwrap_or("<none>")
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `extensions.field` of the first error.
pub fn error_field(response: &Value) -> Option<String> {
    response["errors"][0]["extensions"]["field"]
        .as_str()
        .map(str::to_owned)
}

pub fn assert_no_errors(response: &Value) {
    assert!(
        response.get("errors").is_none() && !response["data"].is_null(),
        "unexpected errors: {response}"
    );
}

/// Signs `claims` as an HS256 JWT with `secret` and the given header.
pub fn forge_jwt(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// The claims of a token, decoded without verification.
pub fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The header of a token, decoded without verification.
pub fn header_of(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

/// A `storefront serve` process on a free port, for what only the real binary shows (signals,
/// logs, the working directory).
pub struct ServerProcess {
    pub child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl ServerProcess {
    /// Starts `storefront serve` in `cwd` with the test secret and policy, no `DATABASE_URL`
    /// unless `env` gives one, and `env` on top.
    pub fn start(cwd: &std::path::Path, env: &[(&str, String)], stderr: Stdio) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_storefront"));
        command
            .arg("serve")
            .current_dir(cwd)
            .env_remove("DATABASE_URL")
            .env("JWT_SECRET", JWT_SECRET)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("POLICY_DIR", policy_dir())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in env {
            command.env(k, v);
        }
        Self {
            child: command.spawn().unwrap(),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits until `/healthz` answers.
    pub async fn wait_until_up(&self) {
        for _ in 0..200 {
            if reqwest::get(format!("{}/healthz", self.url)).await.is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("server did not start");
    }

    /// Posts a query, retrying while the server starts.
    pub async fn gql(&self, body: Value, token: Option<&str>) -> Value {
        let client = reqwest::Client::new();
        for _ in 0..150 {
            let mut request = client.post(format!("{}/graphql", self.url)).json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Ok(response) = request.send().await {
                return response.json().await.unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("server did not answer");
    }

    pub fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// Waits until `check` holds, for at most `limit`; returns how long it took.
pub async fn within(
    limit: std::time::Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Option<std::time::Duration> {
    let started = std::time::Instant::now();
    loop {
        if check().await {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
