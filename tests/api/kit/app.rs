//! A server per test, on its own database, reached over HTTP by actors.

use std::sync::Arc;

use reqwest::Method;
use tokio::sync::oneshot;

use super::{
    actor::{Actor, Server},
    config::TestAppBuilder,
    db::TestDb,
    internals::{self, AppError, AppState, PasswordWork, PolicySource, Pruned},
    response::Response,
    types::{NewAccount, Role},
};

/// The secret test servers sign tokens with.
pub const JWT_SECRET: &str = "integration-test-secret-0123456789abcdef";
/// The password of the admin that [`TestApp::admin`] creates.
pub const ADMIN_PASSWORD: &str = "admin passphrase 42";

/// The password [`TestApp::user`] registers `username` with.
pub fn password_of(username: &str) -> String {
    format!("{username} passphrase 42")
}

/// A running server on a free port, with its own database; it stops when dropped.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub client: reqwest::Client,
    pub db: TestDb,
    /// Reached only through [`internals`].
    state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Server for TestApp {
    fn graphql_url(&self) -> String {
        format!("{}/graphql", self.url)
    }
}

impl TestApp {
    /// A server with the test defaults, on a fresh database.
    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    /// A server to configure before it starts.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    pub(super) fn started(started: internals::Started, db: TestDb) -> Self {
        Self {
            url: format!("http://{}", started.addr),
            client: reqwest::Client::new(),
            db,
            state: started.state,
            shutdown: Some(started.stop),
        }
    }

    /// Tells the server to drain and stop, as SIGTERM does; the database stays.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// The live subscriptions the server's event hub holds.
    pub fn subscriber_count(&self) -> usize {
        internals::subscriber_count(&self.state)
    }

    /// Stops the server and keeps its database, to start another server on it.
    pub fn into_db(mut self) -> TestDb {
        std::mem::replace(&mut self.db, TestDb::none())
    }

    /// `127.0.0.1:<port>`, for raw TCP.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// A second server on this one's database, as another replica would be.
    pub async fn replica(&self) -> Replica {
        let config = TestAppBuilder::default().config_for(&self.db);
        let started = internals::start(&config).await.expect("replica builds");
        Replica {
            url: format!("http://{}", started.addr),
            state: started.state,
            _stop: started.stop,
        }
    }

    /// A second server on this one's database configured by `builder`, as another replica
    /// would be.
    pub async fn replica_with(&self, builder: TestAppBuilder) -> Replica {
        let config = builder.config_for(&self.db);
        let started = internals::start(&config).await.expect("replica builds");
        Replica {
            url: format!("http://{}", started.addr),
            state: started.state,
            _stop: started.stop,
        }
    }

    /// A request to `path` (`/healthz`, …), for the caller to finish.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url))
    }

    /// GETs `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    /// GETs `path` with `Accept: accept` (a browser sends `text/html`).
    pub async fn get_accepting(&self, path: &str, accept: &str) -> reqwest::Response {
        let request = self.request(Method::GET, path).header("Accept", accept);
        request.send().await.unwrap()
    }

    /// Runs `query` as a GET (`/graphql?query=…`) with `Accept: accept`.
    pub async fn get_query(&self, query: &str, accept: &str) -> Response {
        let request = self
            .request(Method::GET, "/graphql")
            .query(&[("query", query)])
            .header("Accept", accept);
        Response::send(request).await
    }

    /// A caller with no token.
    pub fn anonymous(&self) -> Actor {
        Actor::anonymous(self.client.clone(), self.graphql_url())
    }

    /// A caller presenting `token`, whatever it is.
    pub fn bearer(&self, token: &str) -> Actor {
        self.anonymous().bearer(token)
    }

    /// Registers `username` (with [`password_of`]) and returns it in the session
    /// registration started.
    pub async fn user(&self, username: &str) -> Actor {
        self.user_with(username, &password_of(username)).await
    }

    /// Registers `username` with `password` and returns it in the session registration
    /// started.
    pub async fn user_with(&self, username: &str, password: &str) -> Actor {
        let input = NewAccount {
            username,
            password,
            email: None,
        };
        let session = self.anonymous().register_account(&input).await.ok();
        self.anonymous()
            .with_session(session)
            .knowing_password(password)
    }

    /// Registers `username` (with [`password_of`]), gives it `role` through the accounts
    /// service and returns it signed in anew, with a token that carries the role.
    pub async fn user_in_role(&self, username: &str, role: Role) -> Actor {
        let account = self.user(username).await;
        self.set_role_directly(account.id(), role)
            .await
            .expect("the policy defines the role");
        self.sign_in(username, &password_of(username)).await
    }

    /// Signs in, asserting that it works: a new session.
    pub async fn sign_in(&self, username: &str, password: &str) -> Actor {
        self.anonymous().sign_in(username, password).await
    }

    /// The admin `admin` (created, or promoted, as `storefront create-admin` does), signed in.
    pub async fn admin(&self) -> Actor {
        self.admin_named("admin").await
    }

    /// An admin named `username` with [`ADMIN_PASSWORD`], created or promoted as
    /// `storefront create-admin` does, signed in.
    pub async fn admin_named(&self, username: &str) -> Actor {
        self.create_admin(username, ADMIN_PASSWORD)
            .await
            .expect("ADMIN_PASSWORD follows the password rules");
        self.sign_in(username, ADMIN_PASSWORD).await
    }

    /// Creates the admin `username` (or promotes the account) as `storefront create-admin`
    /// does, without signing in.
    ///
    /// # Errors
    /// The service's refusal (a password that breaks the rules).
    pub async fn create_admin(&self, username: &str, password: &str) -> Result<(), AppError> {
        internals::create_admin(&self.state, username, password).await
    }

    /// Gives the account `id` a role through the accounts service, past the HTTP layer.
    ///
    /// # Errors
    /// The service's refusal.
    pub async fn set_role_directly(&self, id: &str, role: Role) -> Result<(), AppError> {
        internals::set_role(&self.state, id, role).await
    }

    /// Where the policy in force was loaded from.
    pub fn policy_source(&self) -> PolicySource {
        internals::policy_source(&self.state)
    }

    /// The version of the policy in force, as `/metrics` labels it.
    pub fn policy_version(&self) -> String {
        internals::policy_version(&self.state)
    }

    /// Runs the pruning `storefront prune` runs.
    pub async fn prune(&self) -> Pruned {
        internals::prune(&self.state).await
    }

    /// The account `id`'s stored role (`admin` or `user`) and whether it is deactivated;
    /// `None` when there is no such account.
    pub async fn stored_account(&self, id: &str) -> Option<(String, bool)> {
        internals::stored_account(&self.state, id).await
    }

    /// What the password hasher has done so far.
    pub fn password_work(&self) -> PasswordWork {
        internals::password_work(&self.state)
    }

    /// The URL of the server's database.
    pub fn database_url(&self) -> &str {
        &self.db.url
    }

    /// Whether the test runs on PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        internals::backend(&self.state) == sea_orm::DbBackend::Postgres
    }

    /// Makes every insert into `products` fail inside the database: on PostgreSQL with the
    /// SQLSTATE `sqlstate` (`53100`, disk full, is a failure the server reports as
    /// `SERVICE_UNAVAILABLE`; `P0001`, a plain exception, as an internal error); on SQLite as
    /// an aborted statement (an internal error).
    pub async fn refuse_product_inserts(&self, sqlstate: &str) {
        self.refuse_inserts("products", sqlstate).await;
    }

    /// Undoes [`TestApp::refuse_product_inserts`].
    pub async fn allow_product_inserts(&self) {
        self.allow_inserts("products").await;
    }

    /// Makes every insert into `table` fail inside the database, as
    /// [`TestApp::refuse_product_inserts`] does for `products`.
    pub async fn refuse_inserts(&self, table: &str, sqlstate: &str) {
        if self.on_postgres() {
            self.sql(
                &format!(
                    "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger AS $$ BEGIN \
                     RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'; END $$ \
                     LANGUAGE plpgsql"
                ),
                vec![],
            )
            .await;
            self.sql(
                &format!(
                    "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW \
                     EXECUTE FUNCTION refuse()"
                ),
                vec![],
            )
            .await;
        } else {
            self.sql(
                &format!(
                    "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} \
                     BEGIN SELECT RAISE(ABORT, 'injected'); END"
                ),
                vec![],
            )
            .await;
        }
    }

    /// Undoes [`TestApp::refuse_inserts`].
    pub async fn allow_inserts(&self, table: &str) {
        let drop = if self.on_postgres() {
            format!("DROP TRIGGER refuse_{table} ON {table}")
        } else {
            format!("DROP TRIGGER refuse_{table}")
        };
        self.sql(&drop, vec![]).await;
    }

    /// Runs `sql` on the server's database (on the writer), `$1`… bound to `values`; returns
    /// the number of rows it changed.
    pub async fn sql(&self, sql: &str, values: Vec<sea_orm::Value>) -> u64 {
        internals::execute(&self.state, sql, values).await
    }

    /// The rows `sql` reads from the server's database.
    pub async fn sql_rows(
        &self,
        sql: &str,
        values: Vec<sea_orm::Value>,
    ) -> Vec<sea_orm::QueryResult> {
        internals::query(&self.state, sql, values).await
    }

    /// Every statement the catalog's product lists run (one list per order and filter), each
    /// with its query plan (see [`internals::catalog_query_plans`]).
    pub async fn catalog_query_plans(&self) -> Vec<(String, String)> {
        internals::catalog_query_plans(&self.state).await
    }

    /// The number `sql` reads as its column `n`.
    pub async fn sql_count(&self, sql: &str, values: Vec<sea_orm::Value>) -> i64 {
        let rows = self.sql_rows(sql, values).await;
        rows[0].try_get("", "n").unwrap()
    }
}

/// Another server on a test app's database; stops when dropped.
pub struct Replica {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<AppState>,
    _stop: oneshot::Sender<()>,
}

impl Replica {
    /// The live subscriptions this replica's event hub holds.
    pub fn subscriber_count(&self) -> usize {
        internals::subscriber_count(&self.state)
    }
}

impl Server for Replica {
    fn graphql_url(&self) -> String {
        format!("{}/graphql", self.url)
    }
}
