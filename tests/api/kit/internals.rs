//! Everything the tests take from inside the `storefront` crate, in one place: when its API
//! moves (the state, the services, the configuration types), this file follows it and no test
//! does; `config.rs` holds the `Config` field paths. Everything else reaches the server over
//! HTTP.

use std::{net::SocketAddr, sync::Arc};

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, QueryResult, Statement};
use storefront::{app::App, entities::account};
use tokio::sync::oneshot;

pub use storefront::{
    accounts::INVALID_CREDENTIALS,
    authz::{DbAdapter, PolicySource, adapter as policy_store},
    config::{Config, CorsOrigins, DatabaseUrl, JwtSecret},
    db::{Db, SQLITE_JOURNAL_SIZE_LIMIT, connect_and_migrate},
    error::AppError,
    pruning::Pruned,
    state::AppState,
};

use super::types::Role;

/// The configuration the variables `vars` give (later entries win).
///
/// # Panics
/// When a variable is malformed: a test's configuration is always valid.
pub fn config_from(vars: &[(&'static str, String)]) -> Config {
    Config::from_lookup(|name| {
        vars.iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("valid test configuration")
}

/// A server started in this process, and the sender that stops it (when sent or dropped).
pub struct Started {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub stop: oneshot::Sender<()>,
}

/// Builds the app as `storefront serve` does and runs it on a task of its own.
///
/// # Errors
/// The start-up error's message, when the server refuses to start.
pub async fn start(config: &Config) -> Result<Started, String> {
    let app = App::build(config).await.map_err(|err| err.to_string())?;
    let addr = app.local_addr();
    let state = app.state();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    Ok(Started { addr, state, stop })
}

/// Creates (or promotes) an admin the way `storefront create-admin` does.
///
/// # Errors
/// The service's refusal (a password that breaks the rules).
pub async fn create_admin(
    state: &AppState,
    username: &str,
    password: &str,
) -> Result<(), AppError> {
    state
        .accounts
        .create_or_promote(username, password.to_owned(), "admin")
        .await
        .map(drop)
}

/// Gives the account `id` a role through the accounts service itself, past the HTTP layer.
///
/// # Errors
/// The service's refusal (a `Conflict` on `role` for the last admin).
pub async fn set_role(state: &AppState, id: &str, role: Role) -> Result<(), AppError> {
    let id = uuid::Uuid::parse_str(id).unwrap();
    state
        .accounts
        .set_role(None, id, role.as_str())
        .await
        .map(drop)
}

/// Runs the pruning `storefront prune` runs.
pub async fn prune(state: &AppState) -> Pruned {
    storefront::pruning::prune(&state.db, state.audit.retention())
        .await
        .unwrap()
}

/// The version of the policy in force, as `/metrics` labels it.
pub fn policy_version(state: &AppState) -> String {
    state.authz.version()
}

/// Where the policy in force was loaded from.
pub fn policy_source(state: &AppState) -> PolicySource {
    state.authz.source()
}

/// What the password hasher has done so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordWork {
    /// New password hashes computed.
    pub hashes: u64,
    /// Passwords verified against a hash (the dummy hash included).
    pub verifications: u64,
    /// Hashing requests refused because the queue was full.
    pub refused: u64,
}

pub fn password_work(state: &AppState) -> PasswordWork {
    PasswordWork {
        hashes: state.passwords.hashes(),
        verifications: state.passwords.verifications(),
        refused: state.passwords.refused(),
    }
}

/// The database's SQL dialect.
pub fn backend(state: &AppState) -> DbBackend {
    state.db.get_database_backend()
}

/// `sql` in the database's dialect, `$1`… bound to `values`.
fn statement(state: &AppState, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(backend(state), sql, values)
}

/// Runs a statement on the writer (on SQLite the readers refuse writes), `$1`… bound to
/// `values`; returns the rows it changed.
pub async fn execute(state: &AppState, sql: &str, values: Vec<sea_orm::Value>) -> u64 {
    let statement = statement(state, sql, values);
    let result = state.db.writer().execute_raw(statement).await.unwrap();
    result.rows_affected()
}

/// The rows a query returns, read through the reader pool.
pub async fn query(state: &AppState, sql: &str, values: Vec<sea_orm::Value>) -> Vec<QueryResult> {
    let statement = statement(state, sql, values);
    state.db.reader().query_all_raw(statement).await.unwrap()
}

/// The account `id`'s stored role and whether it is deactivated; `None`
/// when there is no such account.
pub async fn stored_account(state: &AppState, id: &str) -> Option<(String, bool)> {
    account::Entity::find_by_id(uuid::Uuid::parse_str(id).unwrap())
        .one(state.db.reader())
        .await
        .unwrap()
        .map(|a| (a.role, a.deactivated_at.is_some()))
}

/// The schema the server serves, as `storefront print-schema` prints it.
pub fn sdl() -> String {
    storefront::graphql::sdl()
}
