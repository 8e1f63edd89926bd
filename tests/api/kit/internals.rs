//! Everything the tests take from inside the `storefront` crate, in one place: when its API
//! moves (the state, the services, the configuration types), this file follows it and no test
//! does; `config.rs` holds the `Config` field paths. Everything else reaches the server over
//! HTTP.

use std::{net::SocketAddr, sync::Arc};

use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, QueryResult, Statement, TransactionTrait};
use storefront::{
    app::App,
    catalog::{Filter, ProductQuery, Search, SortKey, query as catalog_query},
    entities::account,
};
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

/// The subscribers the event hub holds (one per live subscription).
pub fn subscriber_count(state: &AppState) -> usize {
    state.events.subscriber_count()
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

/// The product lists whose query plans [`catalog_query_plans`] reads: every order in both
/// directions, each filter, and a few combinations.
fn product_lists() -> Vec<ProductQuery> {
    use storefront::catalog::{SortDirection as D, SortField as F};
    let key = |field, direction| SortKey { field, direction };
    let search = || Filter {
        search: Search::parse("tea"),
        ..Filter::default()
    };
    let now = chrono::Utc::now();
    let filters = vec![
        Filter::default(),
        Filter {
            price_min_cents: Some(100),
            ..Filter::default()
        },
        Filter {
            price_max_cents: Some(100),
            ..Filter::default()
        },
        Filter {
            in_stock: Some(true),
            ..Filter::default()
        },
        Filter {
            in_stock: Some(false),
            ..Filter::default()
        },
        Filter::default()
            .with_ids(vec![uuid::Uuid::now_v7(), uuid::Uuid::now_v7()])
            .unwrap(),
        Filter {
            created_after: Some(now),
            ..Filter::default()
        },
        Filter {
            created_before: Some(now),
            ..Filter::default()
        },
        search(),
        Filter::default().with_name_containing("lamp"),
        Filter {
            price_min_cents: Some(100),
            price_max_cents: Some(1000),
            in_stock: Some(true),
            ..search()
        },
    ];
    let mut lists = Vec::new();
    for filter in filters {
        lists.push(ProductQuery::new(vec![], filter).unwrap());
    }
    for field in [F::Name, F::Price, F::Stock, F::CreatedAt, F::UpdatedAt] {
        for direction in [D::Asc, D::Desc] {
            lists.push(ProductQuery::new(vec![key(field, direction)], Filter::default()).unwrap());
        }
    }
    for direction in [D::Asc, D::Desc] {
        lists.push(ProductQuery::new(vec![key(F::Relevance, direction)], search()).unwrap());
    }
    let price_in_stock = Filter {
        price_min_cents: Some(100),
        in_stock: Some(true),
        ..Filter::default()
    };
    lists.push(ProductQuery::new(vec![key(F::Price, D::Desc)], price_in_stock).unwrap());
    lists.push(
        ProductQuery::new(
            vec![key(F::Price, D::Desc), key(F::Name, D::Asc)],
            Filter::default(),
        )
        .unwrap(),
    );
    lists
}

/// Every statement the product lists of [`product_lists`] run (pages both ways, the checks
/// beyond a cursor, the counts), each with its query plan: `EXPLAIN QUERY PLAN` on SQLite,
/// `EXPLAIN` with sequential scans disabled on PostgreSQL (so a `Seq Scan` in a plan means
/// that no index can serve the statement, however small the table).
pub async fn catalog_query_plans(state: &AppState) -> Vec<(String, String)> {
    let backend = backend(state);
    let mut plans = Vec::new();
    for list in product_lists() {
        for statement in catalog_query::statements(backend, &list) {
            let txn = state.db.reader().begin().await.unwrap();
            let (prefix, column) = if backend == DbBackend::Postgres {
                txn.execute_unprepared("SET LOCAL enable_seqscan = off")
                    .await
                    .unwrap();
                ("EXPLAIN ", "QUERY PLAN")
            } else {
                ("EXPLAIN QUERY PLAN ", "detail")
            };
            let explain = Statement {
                sql: format!("{prefix}{}", statement.sql),
                ..statement.clone()
            };
            let rows = txn.query_all_raw(explain).await.unwrap();
            let plan: Vec<String> = rows
                .iter()
                .map(|row| row.try_get::<String>("", column).unwrap())
                .collect();
            txn.rollback().await.unwrap();
            plans.push((statement.sql, plan.join("\n")));
        }
    }
    plans
}

/// The schema the server serves, as `storefront print-schema` prints it.
pub fn sdl() -> String {
    storefront::graphql::sdl()
}
