//! Nothing acknowledged is lost, and a database that cannot store anything is reported as such
//! (issue 10, items 1 and 2).
//!
//! SQLite: a full disk is a real full filesystem, a small tmpfs mounted for the test (this needs
//! root, as the tests run here). `PRAGMA max_page_count` is not used: it is a per-connection
//! setting the test cannot give the server's connections, and it makes the *statement* fail,
//! which the old code already reported; a full filesystem makes the *commit* fail, which the old
//! code lost (3,000 creates acknowledged, 37 stored). PostgreSQL: a database made read-only, and
//! one that refuses connections.

use std::{
    collections::HashSet,
    ffi::CString,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use serde_json::{Value, json};

use crate::helpers::*;

const VICTIM_PASSWORD: &str = "victim passphrase one";
const NEW_PASSWORD: &str = "victim passphrase two";
const SNAPSHOT: &str = "{ products(first: 100) { totalCount nodes { id name stock price } } \
                        users(first: 100) { totalCount nodes { username role } } }";
const LOGIN: &str = "mutation($u:String!,$p:String!){ login(input:{username:$u,password:$p}){ accessToken refreshToken } }";
const ACCOUNT: &str = "{ account { username role } }";

/// A tmpfs of its own, unmounted when dropped.
struct Tmpfs {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"8m"`), or says why it cannot and returns `None`.
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let c = |s: &str| CString::new(s).unwrap();
        let (source, target, fstype) = (c("tmpfs"), c(mnt.to_str().unwrap()), c("tmpfs"));
        let options = c(&format!("size={size}"));
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs ({}); the full-disk tests need root \
                 (CAP_SYS_ADMIN)",
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(Self { mnt, _dir: dir })
    }

    fn db_file(&self) -> PathBuf {
        self.mnt.join("test.db")
    }

    fn filler(&self) -> PathBuf {
        self.mnt.join("filler")
    }

    /// Bytes still free.
    fn available(&self) -> u64 {
        let path = c_path(&self.mnt);
        // SAFETY: `stat` is plain old data written by the call; the path is NUL-terminated.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut stat) }, 0);
        stat.f_bavail * stat.f_bsize
    }

    /// Fills the filesystem, leaving about `leave` bytes free.
    fn fill_leaving(&self, leave: u64) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .unwrap();
        let chunk = vec![0x5a_u8; 4096];
        while self.available() > leave {
            match file.write(&chunk) {
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(err) => panic!("filling: {err}"),
            }
        }
        // Every byte counts once the aim is "full": top up byte by byte.
        if leave == 0 {
            while file.write(&[0x5a]).is_ok() {}
        }
    }

    /// Frees the space the filler took.
    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = c_path(&self.mnt);
        // SAFETY: a NUL-terminated path; a lazy unmount, as the server may still hold files.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

fn c_path(path: &Path) -> CString {
    CString::new(path.to_str().unwrap()).unwrap()
}

/// Checkpoints the WAL into the database file and truncates it to zero bytes, so that the next
/// commit has to allocate space (a WAL that already holds space takes small writes on a full
/// disk, as it would in production).
async fn truncate_wal(db_file: &Path) {
    let url = format!("sqlite://{}", db_file.display());
    let db = Database::connect(url.as_str()).await.unwrap();
    let wal = PathBuf::from(format!("{}-wal", db_file.display()));
    for _ in 0..200 {
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA wal_checkpoint(TRUNCATE)",
            ))
            .await
            .unwrap()
            .unwrap();
        let busy: i32 = row.try_get_by_index(0).unwrap();
        if busy == 0 && std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0 {
            db.close().await.unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the WAL could not be truncated");
}

/// A database that stops taking writes, and takes them again.
enum Fault {
    /// SQLite on a filesystem filled to the last byte.
    FullDisk(Tmpfs),
    /// PostgreSQL with `default_transaction_read_only` for every new connection.
    ReadOnly { admin_url: String, name: String },
}

impl Fault {
    async fn start(&self) {
        match self {
            Fault::FullDisk(fs) => {
                truncate_wal(&fs.db_file()).await;
                fs.fill_leaving(0);
            }
            Fault::ReadOnly { admin_url, name } => {
                pg_admin(
                    admin_url,
                    &format!("ALTER DATABASE \"{name}\" SET default_transaction_read_only = on"),
                )
                .await;
                terminate_backends(admin_url, name).await;
            }
        }
    }

    async fn end(&self) {
        match self {
            Fault::FullDisk(fs) => fs.free(),
            Fault::ReadOnly { admin_url, name } => {
                pg_admin(
                    admin_url,
                    &format!("ALTER DATABASE \"{name}\" RESET default_transaction_read_only"),
                )
                .await;
                terminate_backends(admin_url, name).await;
            }
        }
    }
}

async fn pg_admin(admin_url: &str, sql: &str) {
    let admin = Database::connect(admin_url).await.unwrap();
    admin.execute_unprepared(sql).await.unwrap();
    admin.close().await.unwrap();
}

/// Ends every connection to the database `name` (the server's pool must open new ones).
async fn terminate_backends(admin_url: &str, name: &str) {
    pg_admin(
        admin_url,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ),
    )
    .await;
}

/// Accounts, sessions and a product: something for every mutation to change.
struct World {
    admin: String,
    victim_id: String,
    victim: Sessions,
    product_id: String,
}

/// Two sessions of the victim: one for `logout`, one for `logoutAll`, `changePassword` and
/// `refreshToken`.
struct Sessions {
    first_access: String,
    second_access: String,
    second_refresh: String,
}

impl Sessions {
    async fn sign_in(app: &TestApp) -> Self {
        let pair = async || {
            let r = app
                .gql(LOGIN, json!({"u": "victim", "p": VICTIM_PASSWORD}), None)
                .await;
            assert_no_errors(&r);
            let token = |name: &str| r["data"]["login"][name].as_str().unwrap().to_owned();
            (token("accessToken"), token("refreshToken"))
        };
        let (first_access, _) = pair().await;
        let (second_access, second_refresh) = pair().await;
        Sessions {
            first_access,
            second_access,
            second_refresh,
        }
    }
}

impl World {
    async fn set_up(app: &TestApp) -> Self {
        let admin = app.admin_token().await;
        let r = app
            .gql(
                "mutation($p:String!){ register(input:{username:\"victim\",password:$p}){ accessToken account { id } } }",
                json!({"p": VICTIM_PASSWORD}),
                None,
            )
            .await;
        assert_no_errors(&r);
        let victim_id = r["data"]["register"]["account"]["id"].as_str().unwrap();
        let product_id = app.create_product(&admin, "Kept lamp", "12.50").await;
        World {
            victim_id: victim_id.to_owned(),
            victim: Sessions::sign_in(app).await,
            product_id,
            admin,
        }
    }

    /// Every mutation, the victim's ones in `victim`'s sessions: its name (the response
    /// field), document, variables and token. `changePassword` comes last: the victim signs
    /// in with the first password until then.
    fn mutations<'a>(
        &'a self,
        victim: &'a Sessions,
    ) -> Vec<(&'static str, &'static str, Value, Option<&'a str>)> {
        vec![
            (
                "register",
                "mutation($p:String!){ register(input:{username:\"newcomer\",password:$p}){ accessToken } }",
                json!({"p": "newcomer passphrase"}),
                None,
            ),
            (
                "login",
                LOGIN,
                json!({"u": "victim", "p": VICTIM_PASSWORD}),
                None,
            ),
            (
                "refreshToken",
                "mutation($t:String!){ refreshToken(refreshToken:$t){ accessToken } }",
                json!({"t": victim.second_refresh}),
                None,
            ),
            (
                "logout",
                "mutation { logout }",
                json!({}),
                Some(&victim.first_access),
            ),
            (
                "logoutAll",
                "mutation { logoutAll }",
                json!({}),
                Some(&victim.second_access),
            ),
            (
                "createProduct",
                "mutation { createProduct(input:{name:\"Lost lamp\", description:\"d\", price:\"9.99\", stock:3}){ id stock } }",
                json!({}),
                Some(&self.admin),
            ),
            (
                "updateProduct",
                "mutation($id:ID!){ updateProduct(id:$id, input:{stock: 99, name: \"Changed lamp\"}){ id stock } }",
                json!({"id": self.product_id}),
                Some(&self.admin),
            ),
            (
                "deleteProduct",
                "mutation($id:ID!){ deleteProduct(id:$id) }",
                json!({"id": self.product_id}),
                Some(&self.admin),
            ),
            (
                "setUserRole",
                "mutation($id:ID!){ setUserRole(userId:$id, role: ADMIN){ role } }",
                json!({"id": self.victim_id}),
                Some(&self.admin),
            ),
            (
                "changePassword",
                "mutation($c:String!,$n:String!){ changePassword(currentPassword:$c, newPassword:$n){ accessToken } }",
                json!({"c": VICTIM_PASSWORD, "n": NEW_PASSWORD}),
                Some(&victim.second_access),
            ),
        ]
    }

    async fn snapshot(&self, app: &TestApp) -> Value {
        let r = app.gql(SNAPSHOT, json!({}), Some(&self.admin)).await;
        assert_no_errors(&r);
        r["data"].clone()
    }

    /// What the failed mutations would have changed is as it was: sessions, tokens, password.
    async fn assert_nothing_half_done(&self, app: &TestApp) {
        for (session, token) in [
            ("logout's", &self.victim.first_access),
            ("logoutAll's", &self.victim.second_access),
        ] {
            let r = app.gql(ACCOUNT, json!({}), Some(token)).await;
            assert_no_errors(&r);
            assert_eq!(
                r["data"]["account"]["role"], "USER",
                "{session} session still works, with its role"
            );
        }
        let r = app
            .gql(
                "mutation($t:String!){ refreshToken(refreshToken:$t){ accessToken } }",
                json!({"t": self.victim.second_refresh}),
                None,
            )
            .await;
        assert_no_errors(&r);
        let r = app
            .gql(LOGIN, json!({"u": "victim", "p": NEW_PASSWORD}), None)
            .await;
        assert_eq!(
            codes(&r),
            ["UNAUTHENTICATED"],
            "the password did not change"
        );
        let r = app
            .gql(LOGIN, json!({"u": "victim", "p": VICTIM_PASSWORD}), None)
            .await;
        assert_no_errors(&r);
    }
}

/// The answer to a mutation the database could not store: `SERVICE_UNAVAILABLE` with a retry
/// hint, no result, and no database text.
fn assert_unavailable(r: &Value, field: &str) {
    assert_eq!(codes(r), ["SERVICE_UNAVAILABLE"], "{field}: {r}");
    assert!(
        r["data"].is_null() || r["data"][field].is_null(),
        "{field} must not answer with a result: {r}"
    );
    assert!(
        r["errors"][0]["extensions"]["retryAfter"].as_u64() >= Some(1),
        "{field}: {r}"
    );
    let text = r.to_string().to_lowercase();
    for leak in ["sqlite", "disk", "read-only", "sqlstate", "code:"] {
        assert!(!text.contains(leak), "{field} leaks {leak:?}: {r}");
    }
}

async fn readyz(app: &TestApp) -> u16 {
    app.client
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls `/readyz` until it answers `status`; returns how long that took.
async fn wait_for_readyz(app: &TestApp, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if readyz(app).await == status {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/readyz did not answer {status} within {within:?}");
}

/// Runs every mutation against a database that cannot store anything, then checks that each
/// failed, that nothing changed, and that everything works again once the fault is gone.
async fn every_mutation_fails_and_changes_nothing(app: &TestApp, fault: Fault) {
    let world = World::set_up(app).await;
    let before = world.snapshot(app).await;
    assert_eq!(readyz(app).await, 200);

    fault.start().await;
    let red_after = wait_for_readyz(app, 503, Duration::from_secs(10)).await;
    for (field, query, variables, token) in world.mutations(&world.victim) {
        let r = app.gql(query, variables, token).await;
        assert_unavailable(&r, field);
    }
    // Forty at once: none is acknowledged.
    let creates = (0..40).map(|i| {
        app.gql(
            "mutation($n:String!){ createProduct(input:{name:$n, description:\"d\", price:\"1.00\", stock:1}){ id } }",
            json!({"n": format!("Burst {i}")}),
            Some(&world.admin),
        )
    });
    for r in join_all(creates.map(Box::pin).collect()).await {
        assert_unavailable(&r, "createProduct");
    }
    assert_eq!(readyz(app).await, 503);
    // Reads go on while writes cannot be stored.
    assert_eq!(world.snapshot(app).await, before);

    fault.end().await;
    let green_after = wait_for_readyz(app, 200, Duration::from_secs(10)).await;
    eprintln!("readyz: red {red_after:?} after the fault, green {green_after:?} after it ended");
    assert_eq!(world.snapshot(app).await, before, "nothing changed");
    world.assert_nothing_half_done(app).await;

    // And every mutation works again (each of the victim's in fresh sessions, as one ends
    // the other's), its result read back.
    let count = world.mutations(&world.victim).len();
    for i in 0..count {
        let sessions = Sessions::sign_in(app).await;
        let (field, query, variables, token) = world.mutations(&sessions).swap_remove(i);
        let r = app.gql(query, variables, token).await;
        assert_no_errors(&r);
        assert!(!r["data"][field].is_null(), "{field}: {r}");
    }
    let after = world.snapshot(app).await;
    let names: Vec<&str> = after["products"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Lost lamp"],
        "created, and the lamp deleted: {after}"
    );
    let roles: Vec<(&str, &str)> = after["users"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["username"].as_str().unwrap(), u["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        roles,
        [
            ("admin", "ADMIN"),
            ("victim", "ADMIN"),
            ("newcomer", "USER")
        ]
    );
    let r = app
        .gql(LOGIN, json!({"u": "victim", "p": NEW_PASSWORD}), None)
        .await;
    assert_no_errors(&r);
}

/// A minimal `join_all` (the tests carry no futures crate).
async fn join_all<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let mut results: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, result) in futures.iter_mut().zip(results.iter_mut()) {
            if result.is_none() {
                match std::pin::Pin::new(future).poll(cx) {
                    std::task::Poll::Ready(value) => *result = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(Option::unwrap).collect()
}

fn on_postgres() -> bool {
    std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty())
}

#[tokio::test]
async fn on_a_full_disk_every_mutation_fails_and_nothing_changes_sqlite() {
    if on_postgres() {
        return; // SQLite only: runs in the SQLite pass.
    }
    let Some(fs) = Tmpfs::mount("8m") else {
        return;
    };
    let app = spawn_on(TestDb::sqlite_in(&fs.mnt), Vec::new()).await;
    every_mutation_fails_and_changes_nothing(&app, Fault::FullDisk(fs)).await;
}

#[tokio::test]
async fn on_a_read_only_database_every_mutation_fails_and_nothing_changes_postgres() {
    if !on_postgres() {
        return; // PostgreSQL only: runs in the PostgreSQL pass.
    }
    let app = spawn_app().await;
    let (admin_url, name) = app.db.postgres().unwrap();
    let fault = Fault::ReadOnly {
        admin_url: admin_url.to_owned(),
        name: name.to_owned(),
    };
    every_mutation_fails_and_changes_nothing(&app, fault).await;
}

/// The scenario: writers keep creating products while the disk fills up. Every create
/// that was acknowledged must be stored; the ones that were not get `SERVICE_UNAVAILABLE`.
#[tokio::test]
async fn while_the_disk_fills_up_every_acknowledged_create_is_stored_sqlite() {
    if on_postgres() {
        return;
    }
    let Some(fs) = Tmpfs::mount("6m") else {
        return;
    };
    let app = spawn_on(TestDb::sqlite_in(&fs.mnt), Vec::new()).await;
    let admin = app.admin_token().await;
    fs.fill_leaving(256 * 1024);
    let description = "d".repeat(4_000);
    let writer = |w: usize| {
        let (app, admin, description) = (&app, &admin, &description);
        async move {
            let (mut acknowledged, mut refused) = (Vec::new(), 0);
            for i in 0..200 {
                let r = app
                    .gql(
                        "mutation($n:String!,$d:String!){ createProduct(input:{name:$n, description:$d, price:\"1.00\", stock:1}){ id } }",
                        json!({"n": format!("Writer {w} item {i}"), "d": description}),
                        Some(admin),
                    )
                    .await;
                match r["data"]["createProduct"]["id"].as_str() {
                    Some(id) => acknowledged.push(id.to_owned()),
                    None => {
                        assert_eq!(codes(&r), ["SERVICE_UNAVAILABLE"], "{r}");
                        refused += 1;
                        if refused == 5 {
                            break;
                        }
                    }
                }
            }
            (acknowledged, refused)
        }
    };
    let results = join_all((0..8).map(|w| Box::pin(writer(w))).collect()).await;
    let acknowledged: Vec<String> = results.iter().flat_map(|(a, _)| a.clone()).collect();
    let refused: usize = results.iter().map(|(_, r)| r).sum();
    assert!(refused > 0, "the disk never filled up");

    fs.free();
    let url = format!("sqlite://{}", fs.db_file().display());
    let reader = Database::connect(url.as_str()).await.unwrap();
    let stored: HashSet<String> = reader
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT id FROM products",
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| {
            let id: uuid::Uuid = row.try_get("", "id").unwrap();
            id.to_string()
        })
        .collect();
    eprintln!(
        "filling disk: {} acknowledged, {refused} refused, {} stored",
        acknowledged.len(),
        stored.len()
    );
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert_eq!(
        stored.len(),
        acknowledged.len(),
        "nothing refused was stored"
    );
    reader.close().await.unwrap();
}

/// POSTs `query` as a spec-following client would (accepting
/// `application/graphql-response+json`); returns the status, the `Retry-After` header, the
/// body and how long the answer took.
async fn post_timed(
    app: &TestApp,
    query: &str,
    token: Option<&str>,
) -> (u16, Option<String>, Value, Duration) {
    let started = Instant::now();
    let mut request = app
        .client
        .post(format!("{}/graphql", app.url))
        .header("Accept", "application/graphql-response+json")
        .json(&json!({ "query": query }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap();
    (status, retry_after, body, started.elapsed())
}

/// Once the server knows the database cannot be reached, requests are refused at once (not
/// after the pool's 5 s timeout) with 503 and `Retry-After`; it serves again, without a
/// restart, soon after the database takes connections again.
#[tokio::test]
async fn a_database_that_refuses_connections_is_reported_at_once_and_recovers_postgres() {
    if !on_postgres() {
        return;
    }
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (admin_url, name) = app.db.postgres().unwrap();
    let (admin_url, name) = (admin_url.to_owned(), name.to_owned());

    pg_admin(
        &admin_url,
        &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"),
    )
    .await;
    terminate_backends(&admin_url, &name).await;
    let red_after = wait_for_readyz(&app, 503, Duration::from_secs(15)).await;

    let queries = (0..40).map(|i| {
        let query = if i % 2 == 0 {
            "{ products { totalCount } }"
        } else {
            "mutation { createProduct(input:{name:\"Never\", description:\"d\", price:\"1.00\", stock:1}){ id } }"
        };
        Box::pin(post_timed(&app, query, Some(&admin)))
    });
    let answers = join_all(queries.collect()).await;
    let slowest = answers.iter().map(|a| a.3).max().unwrap();
    for (status, retry_after, body, _) in &answers {
        assert_eq!(*status, 503, "{body}");
        assert_eq!(retry_after.as_deref(), Some("2"), "{body}");
        assert_eq!(codes(body), ["SERVICE_UNAVAILABLE"], "{body}");
        assert!(body.get("data").is_none(), "{body}");
        // Refused before the document was read: no location in it is named.
        assert!(body["errors"][0].get("locations").is_none(), "{body}");
    }
    // The pool would wait 5 s per request; a generous bound for a loaded 2-core machine.
    assert!(
        slowest < Duration::from_secs(2),
        "slowest answer {slowest:?}"
    );

    pg_admin(
        &admin_url,
        &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"),
    )
    .await;
    let green_after = wait_for_readyz(&app, 200, Duration::from_secs(10)).await;
    eprintln!(
        "refused connections: readyz red after {red_after:?}; 40 requests answered 503, the \
         slowest in {slowest:?}; green {green_after:?} after connections were allowed again"
    );
    let (status, _, body, _) = post_timed(&app, "{ products { totalCount } }", Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    assert_no_errors(&body);
    let r = app
        .gql(
            "mutation { createProduct(input:{name:\"After\", description:\"d\", price:\"1.00\", stock:1}){ id } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_no_errors(&r);
    assert_eq!(
        app.product_count(&admin).await,
        1,
        "only the create that was acknowledged"
    );
}

/// Another process holding SQLite's write lock (a long write, a backup tool, `sqlite3` left in
/// a transaction): writes fail with `SERVICE_UNAVAILABLE` after the busy timeout, `/readyz` is
/// red, reads go on; all is well once the lock is released.
#[tokio::test]
async fn while_another_process_holds_the_write_lock_writes_fail_and_reads_go_on_sqlite() {
    use sea_orm::sqlx::{self, Connection};
    if on_postgres() {
        return;
    }
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    app.create_product(&admin, "Before", "1.00").await;
    let mut holder = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();

    let r = app
        .gql(
            "mutation { createProduct(input:{name:\"Blocked\", description:\"d\", price:\"1.00\", stock:1}){ id } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_unavailable(&r, "createProduct");
    wait_for_readyz(&app, 503, Duration::from_secs(10)).await;
    assert_eq!(app.product_count(&admin).await, 1, "reads go on");

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    holder.close().await.unwrap();
    wait_for_readyz(&app, 200, Duration::from_secs(10)).await;
    app.create_product(&admin, "After", "1.00").await;
    assert_eq!(app.product_count(&admin).await, 2);
}

/// A TCP proxy in front of PostgreSQL: stopping it cuts every connection and makes the port
/// refuse new ones, as a database server that went down would.
struct Proxy {
    port: u16,
    target: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Proxy {
    async fn start(port: u16, target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let target_addr = target.to_owned();
        tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { continue };
                        let target = target_addr.clone();
                        connections.spawn(async move {
                            if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                    }
                }
            }
            // Dropping the listener and every connection: the database is gone.
            connections.abort_all();
        });
        Proxy {
            port,
            target: target.to_owned(),
            stop: Some(stop),
        }
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    async fn restart(&mut self) {
        *self = Proxy::start(self.port, &self.target).await;
    }
}

/// PostgreSQL going down (connections cut, then refused): `/readyz` names the cause, requests
/// are refused at once, and all is well again once it is back.
#[tokio::test]
async fn a_database_server_that_goes_down_is_named_refused_fast_and_recovered_postgres() {
    if !on_postgres() {
        return;
    }
    let db = TestDb::new().await;
    // postgres://user@host:port/name → the same through the proxy.
    let (head, rest) = db.url.split_once('@').unwrap();
    let (target, name) = rest.split_once('/').unwrap();
    let mut proxy = Proxy::start(0, target).await;
    let proxied = format!("{head}@127.0.0.1:{}/{name}", proxy.port);
    let app = spawn_on(db, vec![("DATABASE_URL", proxied)]).await;
    let admin = app.admin_token().await;

    proxy.stop();
    let red_after = wait_for_readyz(&app, 503, Duration::from_secs(15)).await;
    let reason = app
        .client
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(reason, "connection refused");
    let answers = join_all(
        (0..40)
            .map(|_| {
                Box::pin(post_timed(
                    &app,
                    "{ products { totalCount } }",
                    Some(&admin),
                ))
            })
            .collect(),
    )
    .await;
    let slowest = answers.iter().map(|a| a.3).max().unwrap();
    for (status, _, body, _) in &answers {
        assert_eq!(*status, 503, "{body}");
        assert_eq!(codes(body), ["SERVICE_UNAVAILABLE"], "{body}");
    }
    assert!(
        slowest < Duration::from_secs(2),
        "slowest answer {slowest:?}"
    );

    proxy.restart().await;
    let green_after = wait_for_readyz(&app, 200, Duration::from_secs(10)).await;
    eprintln!(
        "database down: readyz red after {red_after:?} ({reason}); 40 requests answered 503, \
         the slowest in {slowest:?}; green {green_after:?} after it came back"
    );
    app.create_product(&admin, "After the outage", "1.00").await;
    assert_eq!(app.product_count(&admin).await, 1);
}

/// Clients that go away at every moment of a request (while it writes, while it commits, while
/// the readiness probe writes) leave nothing half-done: afterwards every write is answered as
/// it is stored, and readiness is green. (On SQLite a commit cut short used to leave its
/// connection believing a transaction was still open: every later write was stored yet
/// answered INTERNAL_SERVER_ERROR, until a restart.)
#[tokio::test]
async fn requests_cut_off_at_any_moment_leave_writes_answered_as_stored() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let create = "mutation($n:String!){ createProduct(input:{name:$n, price:\"1.00\"}){ id } }";
    for i in 0..240u64 {
        // Cut off after 0.1 ms to 4 ms: before, during and after the work and its commit.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_micros(100 + (i * 397) % 3900))
            .build()
            .unwrap();
        let _ = if i % 2 == 0 {
            client.get(format!("{}/readyz", app.url)).send().await
        } else {
            client
                .post(format!("{}/graphql", app.url))
                .bearer_auth(&admin)
                .json(&json!({"query": create, "variables": {"n": format!("cut {i}")}}))
                .send()
                .await
        };
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..10 {
        let r = app
            .gql(create, json!({"n": format!("after {i}")}), Some(&admin))
            .await;
        assert_no_errors(&r);
    }
    let r = app
        .gql(
            "{ products(first: 100, search: \"after\") { totalCount } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(r["data"]["products"]["totalCount"], 10, "{r}");
    assert_eq!(readyz(&app).await, 200);
    assert_no_errors(&app.login("admin", ADMIN_PASSWORD).await);
}
