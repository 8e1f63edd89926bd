//! The raw-JSON helpers the tests used before the kit, kept (as thin wrappers over it) for
//! `readme.rs` and `cli.rs` until they move to the kit; then this file goes.

use serde_json::{Value, json};

pub use crate::kit::{
    ADMIN_PASSWORD, JWT_SECRET, ServerProcess, TestApp, TestDb, claims_of, forge_jwt, header_of,
    policy_dir, within,
};
use crate::kit::{Actor, Server, internals::Config};

/// Variables a test may set on top of the defaults.
pub type Env = Vec<(&'static str, String)>;

fn with_env(mut builder: crate::kit::TestAppBuilder, extra: Env) -> crate::kit::TestAppBuilder {
    for (name, value) in extra {
        builder = builder.env(name, &value);
    }
    builder
}

/// The configuration a test server runs with: its database, a fixed secret, a free port.
pub fn test_config(db: &TestDb, extra: &Env) -> Config {
    with_env(TestApp::builder(), extra.clone()).config_for(db)
}

pub async fn spawn_app() -> TestApp {
    TestApp::spawn().await
}

pub async fn spawn_app_with(extra: Env) -> TestApp {
    with_env(TestApp::builder(), extra).spawn().await
}

/// A server on an existing test database, with extra variables.
pub async fn spawn_on(db: TestDb, extra: Env) -> TestApp {
    with_env(TestApp::builder().on(db), extra).spawn().await
}

/// A second server on `app`'s database: its GraphQL URL, and what stops it when dropped.
pub async fn spawn_replica(app: &TestApp) -> (String, crate::kit::Replica) {
    let replica = app.replica().await;
    (replica.graphql_url(), replica)
}

/// POSTs a GraphQL request to the server at `url` (a GraphQL URL) and returns its JSON body.
pub async fn gql_at(url: &str, body: Value, token: Option<&str>) -> Value {
    let mut actor = Actor::anonymous(reqwest::Client::new(), url.to_owned());
    if let Some(token) = token {
        actor = actor.bearer(token);
    }
    actor.post(&body).await.body
}

fn caller(app: &TestApp, token: Option<&str>) -> Actor {
    match token {
        Some(token) => app.bearer(token),
        None => app.anonymous(),
    }
}

impl TestApp {
    /// POSTs a GraphQL request and returns the HTTP status and the JSON body.
    pub async fn post(&self, body: Value, token: Option<&str>) -> (u16, Value) {
        let r = caller(self, token).post(&body).await;
        (r.status, r.body)
    }

    /// Runs a query with variables and an optional Bearer token.
    pub async fn gql(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        caller(self, token).query(query, variables).await.body
    }

    /// Runs a query with a raw `Authorization` header value.
    pub async fn gql_with_authorization(&self, query: &str, authorization: &str) -> Value {
        let r = self
            .anonymous()
            .with_header("Authorization", authorization)
            .query(query, json!({}))
            .await;
        r.body
    }

    /// Registers an account and returns its access token.
    pub async fn register(&self, username: &str, password: &str) -> String {
        self.user_with(username, password).await.token().to_owned()
    }

    /// Logs in and returns the whole response.
    pub async fn login(&self, username: &str, password: &str) -> Value {
        self.anonymous().login(username, password).await.body
    }

    /// Creates an admin account the way `storefront create-admin` does, and returns its token.
    pub async fn admin_token(&self) -> String {
        self.admin().await.token().to_owned()
    }

    /// Creates a product as the admin and returns its id.
    pub async fn create_product(&self, admin: &str, name: &str, price: &str) -> String {
        self.bearer(admin).add_product(name, price).await.id
    }

    /// The number of products, read as an admin would.
    pub async fn product_count(&self, token: &str) -> i64 {
        self.bearer(token).product_count().await
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
