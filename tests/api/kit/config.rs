//! How a test server is configured: the test defaults, typed overrides of [`Config`], and
//! variables for the tests about how a variable is read. Every override names today's
//! `Config` fields here, and nowhere else.

use std::{net::SocketAddr, path::Path, time::Duration};

use super::{
    app::{JWT_SECRET, TestApp},
    db::TestDb,
    internals::{self, Config, CorsOrigins, DatabaseUrl, JwtSecret},
};

type Override = Box<dyn FnOnce(&mut Config) + Send>;

/// A test server to configure, then [`spawn`](TestAppBuilder::spawn).
#[derive(Default)]
pub struct TestAppBuilder {
    db: Option<TestDb>,
    env: Vec<(&'static str, String)>,
    overrides: Vec<Override>,
}

/// The repository's own policy folder.
pub fn policy_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// The policy the repository ships (`policies/policy.csv`).
pub fn shipped_policy() -> String {
    std::fs::read_to_string(policy_dir().join("policy.csv")).unwrap()
}

/// A policy folder of its own (removed when dropped): the shipped `model.conf` and `policy`
/// as `policy.csv`.
pub fn policy_folder(policy: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        policy_dir().join("model.conf"),
        dir.path().join("model.conf"),
    )
    .unwrap();
    std::fs::write(dir.path().join("policy.csv"), policy).unwrap();
    dir
}

/// A policy folder with the example shop policy (`tests/fixtures/shop/policy.csv`): the
/// shipped roles and `editor`, `seller` and `auditor`.
pub fn shop_policy() -> tempfile::TempDir {
    let fixture =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/shop/policy.csv");
    policy_folder(&std::fs::read_to_string(fixture).unwrap())
}

/// A policy folder with the shipped policy and the line `extra`.
pub fn policy_folder_with(extra: &str) -> tempfile::TempDir {
    policy_folder(&format!("{}\n{extra}\n", shipped_policy()))
}

impl TestAppBuilder {
    /// Runs on `db` (an existing database) instead of a fresh one.
    pub fn on(mut self, db: TestDb) -> Self {
        self.db = Some(db);
        self
    }

    /// Sets the variable `name`, read as `storefront serve` reads it: for the tests about
    /// what a variable (or `APP_ENV`'s defaults) does. Other tests use the typed overrides.
    pub fn env(mut self, name: &'static str, value: &str) -> Self {
        self.env.push((name, value.to_owned()));
        self
    }

    /// Changes the configuration after the variables are read.
    pub fn configure(mut self, change: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.overrides.push(Box::new(change));
        self
    }

    /// The configuration this builder makes for `db`.
    pub fn config_for(self, db: &TestDb) -> Config {
        let mut vars = vec![
            ("DATABASE_URL", db.url.clone()),
            ("JWT_SECRET", JWT_SECRET.to_owned()),
            ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ("POLICY_DIR", policy_dir().display().to_string()),
            // Every test client shares one IP; the per-IP limit has tests of its own.
            ("AUTH_RATE_LIMIT_PER_MINUTE", "0".to_owned()),
        ];
        vars.extend(self.env);
        let mut config = internals::config_from(&vars);
        for change in self.overrides {
            change(&mut config);
        }
        config
    }

    /// Starts the server.
    ///
    /// # Panics
    /// When it refuses to start.
    pub async fn spawn(mut self) -> TestApp {
        let db = match self.db.take() {
            Some(db) => db,
            None => TestDb::new().await,
        };
        let config = self.config_for(&db);
        let started = internals::start(&config).await.expect("app builds");
        TestApp::started(started, db)
    }

    /// Why the server refuses to start on `db`; `None` when it starts (and is stopped again).
    pub async fn start_error(self, db: &TestDb) -> Option<String> {
        let config = self.config_for(db);
        internals::start(&config).await.err()
    }

    /// `WS_INIT_TIMEOUT_SECS`.
    pub fn ws_init_timeout(self, timeout: Duration) -> Self {
        self.configure(move |c| c.subscriptions.init_timeout = timeout)
    }

    /// `WS_MAX_SUBSCRIPTIONS_PER_CONNECTION`.
    pub fn ws_max_per_connection(self, subscriptions: usize) -> Self {
        self.configure(move |c| c.subscriptions.max_per_connection = subscriptions)
    }

    /// `WS_MAX_SUBSCRIPTIONS_PER_ACCOUNT`.
    pub fn ws_max_per_account(self, subscriptions: usize) -> Self {
        self.configure(move |c| c.subscriptions.max_per_account = subscriptions)
    }

    /// `WS_MAX_QUEUED_EVENTS`.
    pub fn ws_max_queued_events(self, events: usize) -> Self {
        self.configure(move |c| c.subscriptions.max_queued_events = events)
    }

    /// `WS_PING_INTERVAL_SECS`.
    pub fn ws_ping_interval(self, interval: Duration) -> Self {
        self.configure(move |c| c.subscriptions.ping_interval = interval)
    }

    /// `WS_IDLE_TIMEOUT_SECS`.
    pub fn ws_idle_timeout(self, timeout: Duration) -> Self {
        self.configure(move |c| c.subscriptions.idle_socket_timeout = timeout)
    }

    /// `WS_MAX_CONNECTIONS_PER_ADDRESS`.
    pub fn ws_max_per_address(self, sockets: usize) -> Self {
        self.configure(move |c| c.subscriptions.max_connections_per_address = sockets)
    }

    /// `MAX_BODY_BYTES`.
    pub fn max_body_bytes(self, bytes: usize) -> Self {
        self.configure(move |c| c.limits.max_body_bytes = bytes)
    }

    /// `GRAPHQL_MAX_COMPLEXITY`.
    pub fn max_complexity(self, cost: usize) -> Self {
        self.configure(move |c| c.limits.max_complexity = cost)
    }

    /// `GRAPHQL_MAX_ALIASES`.
    pub fn max_aliases(self, aliases: usize) -> Self {
        self.configure(move |c| c.limits.max_aliases = aliases)
    }

    /// `GRAPHQL_MAX_BATCH`.
    pub fn max_batch(self, operations: usize) -> Self {
        self.configure(move |c| c.limits.max_batch = operations)
    }

    /// `REQUEST_TIMEOUT_MS`.
    pub fn request_timeout(self, timeout: Duration) -> Self {
        self.configure(move |c| c.limits.request_timeout = timeout)
    }

    /// `MAX_RESPONSE_BYTES`.
    pub fn max_response_bytes(self, bytes: usize) -> Self {
        self.configure(move |c| c.limits.max_response_bytes = bytes)
    }

    /// `CATALOG_CACHE_MB=0`: no catalog cache.
    pub fn without_catalog_cache(self) -> Self {
        self.configure(|c| c.caches.catalog_bytes = 0)
    }

    /// `PASSWORD_HASH_QUEUE`.
    pub fn password_hash_queue(self, hashes: usize) -> Self {
        self.configure(move |c| c.auth.password_hash_queue = hashes)
    }

    /// `AUTH_RATE_LIMIT_PER_MINUTE` (the tests' default is 0, off).
    pub fn auth_rate_limit_per_minute(self, attempts: u32) -> Self {
        self.configure(move |c| c.auth.rate_limit_per_minute = attempts)
    }

    /// `TRUST_PROXY_HEADERS=true`: the client address comes from `X-Forwarded-For`.
    pub fn behind_proxy(self) -> Self {
        self.configure(|c| c.server.trust_proxy_headers = true)
    }

    /// `POLICY_DIR`.
    pub fn policy_dir(self, dir: &Path) -> Self {
        let dir = dir.to_owned();
        self.configure(move |c| {
            c.policy.dir = dir;
            c.policy.is_default = false;
        })
    }

    /// `POLICY_POLL_MS`.
    pub fn policy_poll(self, every: Duration) -> Self {
        self.configure(move |c| c.policy.poll = every)
    }

    /// `CORS_ALLOWED_ORIGINS` as a list of origins.
    pub fn cors_origins(self, origins: &[&str]) -> Self {
        let origins = origins.iter().map(|o| (*o).to_owned()).collect();
        self.configure(move |c| c.server.cors_allowed_origins = CorsOrigins::List(origins))
    }

    /// `REFRESH_REUSE_INTERVAL_SECS` (any duration: the tests use fractions of a second).
    pub fn refresh_reuse_interval(self, interval: Duration) -> Self {
        self.configure(move |c| c.auth.refresh_reuse_interval = interval)
    }

    /// `METRICS_ADDR`.
    pub fn metrics_addr(self, addr: SocketAddr) -> Self {
        self.configure(move |c| c.metrics.addr = Some(addr))
    }

    /// `JWT_SECRET` and `JWT_PREVIOUS_SECRETS`.
    pub fn jwt_secrets(self, current: &str, previous: &[&str]) -> Self {
        let current = JwtSecret::new(current.as_bytes()).unwrap();
        let previous: Vec<JwtSecret> = previous
            .iter()
            .map(|s| JwtSecret::new(s.as_bytes()).unwrap())
            .collect();
        self.configure(move |c| {
            c.auth.jwt_secret = current;
            c.auth.jwt_previous_secrets = previous;
        })
    }

    /// `DATABASE_URL`, when it is not the test database's own (a proxy in front of it).
    pub fn database_url(self, url: &str) -> Self {
        let url = url.to_owned();
        self.configure(move |c| c.database.url = DatabaseUrl::new(url))
    }

    /// `HEADER_READ_TIMEOUT_SECS`.
    pub fn header_read_timeout(self, timeout: Duration) -> Self {
        self.configure(move |c| c.server.header_read_timeout = timeout)
    }

    /// `BODY_READ_TIMEOUT_SECS`.
    pub fn body_read_timeout(self, timeout: Duration) -> Self {
        self.configure(move |c| c.server.body_read_timeout = timeout)
    }

    /// `IDLE_TIMEOUT_SECS`.
    pub fn idle_timeout(self, timeout: Duration) -> Self {
        self.configure(move |c| c.server.idle_timeout = timeout)
    }

    /// `AUDIT_RETENTION_DAYS`.
    pub fn audit_retention_days(self, days: u64) -> Self {
        self.env("AUDIT_RETENTION_DAYS", &days.to_string())
    }

    /// `MAX_CONNECTIONS`.
    pub fn max_connections(self, connections: usize) -> Self {
        self.configure(move |c| c.server.max_connections = connections)
    }

    /// `APQ_MAX_DOCUMENTS` (`0` turns automatic persisted queries off).
    pub fn apq_max_documents(self, documents: usize) -> Self {
        self.configure(move |c| c.persisted.apq_max_documents = documents)
    }

    /// `APQ_MAX_BYTES`.
    pub fn apq_max_bytes(self, bytes: usize) -> Self {
        self.configure(move |c| c.persisted.apq_max_bytes = bytes)
    }

    /// `TRUSTED_DOCUMENTS`, read as the variable is (it also turns the GraphiQL page off).
    pub fn trusted_documents(self, manifest: &Path) -> Self {
        self.env("TRUSTED_DOCUMENTS", &manifest.display().to_string())
    }
}
