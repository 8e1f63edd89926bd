//! A database per test: a temp-file SQLite by default, a new PostgreSQL database when
//! `TEST_DATABASE_URL` is set.

use std::path::PathBuf;

use sea_orm::{
    ConnectionTrait, Database,
    sqlx::{self, AssertSqlSafe, Connection, SqliteConnection},
};

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
    /// No database: what a stopped app leaves behind once its database was taken.
    pub(super) fn none() -> Self {
        Self {
            url: String::new(),
            postgres: None,
            _dir: None,
        }
    }

    /// Whether the tests run on PostgreSQL (`TEST_DATABASE_URL` is set).
    pub fn on_postgres() -> bool {
        std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty())
    }

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

    /// Takes SQLite's write lock (`BEGIN IMMEDIATE`) on a connection of its own, as another
    /// process would, and holds it until [`WriteLock::release`].
    pub async fn hold_write_lock(&self) -> WriteLock {
        let mut lock = WriteLock(SqliteConnection::connect(&self.url).await.unwrap());
        lock.execute("BEGIN IMMEDIATE").await;
        lock
    }
}

/// A transaction that holds a SQLite database's write lock.
pub struct WriteLock(SqliteConnection);

impl WriteLock {
    /// Runs `sql` in the transaction.
    pub async fn execute(&mut self, sql: &str) {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut self.0)
            .await
            .unwrap();
    }

    /// Rolls the transaction back, which releases the lock, and closes the connection;
    /// returns when the lock was released (the moment the rollback returned).
    pub async fn release(mut self) -> std::time::Instant {
        self.execute("ROLLBACK").await;
        let released_at = std::time::Instant::now();
        self.0.close().await.unwrap();
        released_at
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
