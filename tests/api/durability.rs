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
use serde::Deserialize;
use serde_json::{Value, json};

use crate::kit::{
    documents::{
        CHANGE_PASSWORD, CREATE_PRODUCT, DELETE_PRODUCT, LOGIN, LOGOUT, LOGOUT_ALL, REFRESH_TOKEN,
        REGISTER, SET_USER_ROLE, UPDATE_PRODUCT, login_variables,
    },
    *,
};

const VICTIM_PASSWORD: &str = "victim passphrase one";
const NEW_PASSWORD: &str = "victim passphrase two";
const SNAPSHOT: &str = "{ products(first: 100) { totalCount nodes { id name stock price } } \
                        users(first: 100) { totalCount nodes { username role } } }";

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
                set_read_only(admin_url, name, "SET default_transaction_read_only = on").await;
            }
        }
    }

    async fn end(&self) {
        match self {
            Fault::FullDisk(fs) => fs.free(),
            Fault::ReadOnly { admin_url, name } => {
                set_read_only(admin_url, name, "RESET default_transaction_read_only").await;
            }
        }
    }
}

async fn pg_admin(admin_url: &str, sql: &str) {
    let admin = Database::connect(admin_url).await.unwrap();
    admin.execute_unprepared(sql).await.unwrap();
    admin.close().await.unwrap();
}

/// Applies `setting` (`SET …` or `RESET …`) to the database `name`, and ends its connections
/// so that the server's new ones follow it.
async fn set_read_only(admin_url: &str, name: &str, setting: &str) {
    pg_admin(admin_url, &format!("ALTER DATABASE \"{name}\" {setting}")).await;
    terminate_backends(admin_url, name).await;
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
    admin: Actor,
    victim_id: String,
    victim: Sessions,
    product_id: String,
}

/// Two sessions of the victim: the first for `logout`, the second for `logoutAll`,
/// `changePassword` and `refreshToken`.
struct Sessions {
    first: Actor,
    second: Actor,
}

impl Sessions {
    async fn sign_in(app: &TestApp) -> Self {
        Sessions {
            first: app.sign_in("victim", VICTIM_PASSWORD).await,
            second: app.sign_in("victim", VICTIM_PASSWORD).await,
        }
    }
}

/// What an admin sees of the catalog and the accounts.
#[derive(Debug, PartialEq, Deserialize)]
struct Snapshot {
    products: Listing<StoredProduct>,
    users: Listing<StoredAccount>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listing<T> {
    total_count: i64,
    nodes: Vec<T>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct StoredProduct {
    id: String,
    name: String,
    stock: i64,
    price: String,
}

#[derive(Debug, PartialEq, Deserialize)]
struct StoredAccount {
    username: String,
    role: Role,
}

/// A mutation of the world: its name (the response field), document, variables and caller.
type Mutation = (&'static str, &'static str, Value, Actor);

impl World {
    async fn set_up(app: &TestApp) -> Self {
        let admin = app.admin().await;
        let victim_id = app
            .user_with("victim", VICTIM_PASSWORD)
            .await
            .id()
            .to_owned();
        let product_id = admin.add_product("Kept lamp", "12.50").await.id;
        World {
            victim_id,
            victim: Sessions::sign_in(app).await,
            product_id,
            admin,
        }
    }

    /// Every mutation, the victim's ones in `victim`'s sessions. `changePassword` comes last:
    /// the victim signs in with the first password until then.
    fn mutations(&self, app: &TestApp, victim: &Sessions) -> Vec<Mutation> {
        let anonymous = app.anonymous();
        vec![
            (
                "register",
                REGISTER.document,
                json!({"input": {"username": "newcomer", "password": "newcomer passphrase"}}),
                anonymous.clone(),
            ),
            (
                "login",
                LOGIN.document,
                login_variables("victim", VICTIM_PASSWORD),
                anonymous.clone(),
            ),
            (
                "refreshToken",
                REFRESH_TOKEN.document,
                json!({"refreshToken": victim.second.refresh_token()}),
                anonymous,
            ),
            ("logout", LOGOUT.document, json!({}), victim.first.clone()),
            (
                "logoutAll",
                LOGOUT_ALL.document,
                json!({}),
                victim.second.clone(),
            ),
            (
                "createProduct",
                CREATE_PRODUCT.document,
                json!({"input": {"name": "Lost lamp", "description": "d", "price": "9.99", "stock": 3}}),
                self.admin.clone(),
            ),
            (
                "updateProduct",
                UPDATE_PRODUCT.document,
                json!({"id": self.product_id, "input": {"stock": 99, "name": "Changed lamp"}}),
                self.admin.clone(),
            ),
            (
                "deleteProduct",
                DELETE_PRODUCT.document,
                json!({"id": self.product_id}),
                self.admin.clone(),
            ),
            (
                "setUserRole",
                SET_USER_ROLE.document,
                json!({"userId": self.victim_id, "role": "admin"}),
                self.admin.clone(),
            ),
            (
                "changePassword",
                CHANGE_PASSWORD.document,
                json!({"currentPassword": VICTIM_PASSWORD, "newPassword": NEW_PASSWORD}),
                victim.second.clone(),
            ),
        ]
    }

    async fn snapshot(&self) -> Snapshot {
        self.admin
            .query_as::<Snapshot>(SNAPSHOT, json!({}))
            .await
            .ok()
    }

    /// What the failed mutations would have changed is as it was: sessions, tokens, password.
    async fn assert_nothing_half_done(&self, app: &TestApp) {
        for (session, caller) in [
            ("logout's", &self.victim.first),
            ("logoutAll's", &self.victim.second),
        ] {
            let account = caller.account().await.ok();
            assert_eq!(
                account.role,
                Role::User,
                "{session} session still works, with its role"
            );
        }
        let anonymous = app.anonymous();
        anonymous
            .refresh(self.victim.second.refresh_token())
            .await
            .assert_ok();
        let r = anonymous.login("victim", NEW_PASSWORD).await;
        assert_eq!(
            r.codes(),
            ["UNAUTHENTICATED"],
            "the password did not change"
        );
        anonymous.login("victim", VICTIM_PASSWORD).await.assert_ok();
    }
}

/// The answer to a mutation the database could not store: `SERVICE_UNAVAILABLE` with a retry
/// hint, no result, and no database text.
fn assert_unavailable<T>(r: &Response<T>, field: &str) {
    assert_eq!(r.codes(), ["SERVICE_UNAVAILABLE"], "{field}: {r}");
    assert!(
        r.raw_data().is_null() || r.raw_data()[field].is_null(),
        "{field} must not answer with a result: {r}"
    );
    assert!(r.error().retry_after() >= Some(1), "{field}: {r}");
    let text = r.text.to_lowercase();
    for leak in ["sqlite", "disk", "read-only", "sqlstate", "code:"] {
        assert!(!text.contains(leak), "{field} leaks {leak:?}: {r}");
    }
}

async fn readyz(app: &TestApp) -> u16 {
    app.get("/readyz").await.status().as_u16()
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

/// Polls `/readyz` until its reason is `reason` (or `within` has passed); returns the last one.
async fn wait_for_readyz_reason(app: &TestApp, reason: &str, within: Duration) -> String {
    let started = Instant::now();
    loop {
        let said = app.get("/readyz").await.text().await.unwrap();
        if said == reason || started.elapsed() > within {
            return said;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs every mutation against a database that cannot store anything, then checks that each
/// failed, that nothing changed, and that everything works again once the fault is gone.
async fn every_mutation_fails_and_changes_nothing(app: &TestApp, fault: Fault) {
    let world = World::set_up(app).await;
    let before = world.snapshot().await;
    assert_eq!(readyz(app).await, 200);

    fault.start().await;
    let red_after = wait_for_readyz(app, 503, Duration::from_secs(10)).await;
    for (field, document, variables, caller) in world.mutations(app, &world.victim) {
        let r = caller.query(document, variables).await;
        assert_unavailable(&r, field);
    }
    // Forty at once: none is acknowledged.
    let creates = (0..40).map(|i| {
        let (admin, product) = (&world.admin, NewProduct::new(&format!("Burst {i}"), "1.00"));
        async move { admin.create_product(&product).await }
    });
    for r in join_all(creates).await {
        assert_unavailable(&r, "createProduct");
    }
    assert_eq!(readyz(app).await, 503);
    // Reads go on while writes cannot be stored.
    assert_eq!(world.snapshot().await, before);

    fault.end().await;
    let green_after = wait_for_readyz(app, 200, Duration::from_secs(10)).await;
    eprintln!("readyz: red {red_after:?} after the fault, green {green_after:?} after it ended");
    assert_eq!(world.snapshot().await, before, "nothing changed");
    world.assert_nothing_half_done(app).await;

    // And every mutation works again (each of the victim's in fresh sessions, as one ends
    // the other's), its result read back.
    let count = world.mutations(app, &world.victim).len();
    for i in 0..count {
        let sessions = Sessions::sign_in(app).await;
        let (field, document, variables, caller) = world.mutations(app, &sessions).swap_remove(i);
        let r = caller.query(document, variables).await;
        r.assert_ok();
        assert!(!r.raw_data()[field].is_null(), "{field}: {r}");
    }
    let after = world.snapshot().await;
    let names: Vec<&str> = after
        .products
        .nodes
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["Lost lamp"],
        "created, and the lamp deleted: {after:?}"
    );
    let roles: Vec<(&str, Role)> = after
        .users
        .nodes
        .iter()
        .map(|u| (u.username.as_str(), u.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("admin", Role::Admin),
            ("victim", Role::Admin),
            ("newcomer", Role::User)
        ]
    );
    app.anonymous()
        .login("victim", NEW_PASSWORD)
        .await
        .assert_ok();
}

#[tokio::test]
async fn on_a_full_disk_every_mutation_fails_and_nothing_changes_sqlite() {
    if TestDb::on_postgres() {
        return; // SQLite only: runs in the SQLite pass.
    }
    let Some(fs) = Tmpfs::mount("8m") else {
        return;
    };
    let app = TestApp::builder()
        .on(TestDb::sqlite_in(&fs.mnt))
        .spawn()
        .await;
    every_mutation_fails_and_changes_nothing(&app, Fault::FullDisk(fs)).await;
}

#[tokio::test]
async fn on_a_read_only_database_every_mutation_fails_and_nothing_changes_postgres() {
    if !TestDb::on_postgres() {
        return; // PostgreSQL only: runs in the PostgreSQL pass.
    }
    let app = TestApp::spawn().await;
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
    if TestDb::on_postgres() {
        return;
    }
    let Some(fs) = Tmpfs::mount("6m") else {
        return;
    };
    let app = TestApp::builder()
        .on(TestDb::sqlite_in(&fs.mnt))
        .spawn()
        .await;
    let admin = app.admin().await;
    fs.fill_leaving(256 * 1024);
    let description = "d".repeat(4_000);
    let writer = |w: usize| {
        let (admin, description) = (&admin, &description);
        async move {
            let (mut acknowledged, mut refused) = (Vec::new(), 0);
            for i in 0..200 {
                let product = NewProduct::new(&format!("Writer {w} item {i}"), "1.00")
                    .description(description);
                let r = admin.create_product(&product).await;
                match r.data() {
                    Some(created) => acknowledged.push(created.id),
                    None => {
                        assert_eq!(r.codes(), ["SERVICE_UNAVAILABLE"], "{r}");
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
    let results = join_all((0..8).map(writer)).await;
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
/// `application/graphql-response+json`); returns the answer and how long it took.
async fn post_timed(caller: &Actor, query: &str) -> (Response, Duration) {
    let started = Instant::now();
    let r = caller
        .with_header("Accept", "application/graphql-response+json")
        .query(query, json!({}))
        .await;
    (r, started.elapsed())
}

const COUNT: &str = "{ products { totalCount } }";

/// Once the server knows the database cannot be reached, requests are refused at once (not
/// after the pool's 5 s timeout) with 503 and `Retry-After`; it serves again, without a
/// restart, soon after the database takes connections again.
#[tokio::test]
async fn a_database_that_refuses_connections_is_reported_at_once_and_recovers_postgres() {
    if !TestDb::on_postgres() {
        return;
    }
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (admin_url, name) = app.db.postgres().unwrap();
    let (admin_url, name) = (admin_url.to_owned(), name.to_owned());

    pg_admin(
        &admin_url,
        &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"),
    )
    .await;
    terminate_backends(&admin_url, &name).await;
    let red_after = wait_for_readyz(&app, 503, Duration::from_secs(15)).await;

    let create = "mutation { createProduct(input:{name:\"Never\", description:\"d\", price:\"1.00\", stock:1}){ id } }";
    let queries = (0..40).map(|i| post_timed(&admin, if i % 2 == 0 { COUNT } else { create }));
    let answers = join_all(queries).await;
    let slowest = answers.iter().map(|a| a.1).max().unwrap();
    for (r, _) in &answers {
        assert_eq!(r.status, 503, "{r}");
        assert_eq!(r.header("retry-after"), Some("2"), "{r}");
        assert_eq!(r.codes(), ["SERVICE_UNAVAILABLE"], "{r}");
        assert!(r.is_request_error(), "{r}");
        // Refused before the document was read: no location in it is named.
        assert!(r.error().locations.is_none(), "{r}");
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
    let (r, _) = post_timed(&admin, COUNT).await;
    assert_eq!(r.status, 200, "{r}");
    r.assert_ok();
    admin.add_product("After", "1.00").await;
    assert_eq!(
        admin.product_count().await,
        1,
        "only the create that was acknowledged"
    );
}

/// Another process holding SQLite's write lock (a long write, a backup tool, `sqlite3` left in
/// a transaction): writes fail with `SERVICE_UNAVAILABLE` after the busy timeout, `/readyz` is
/// red, reads go on; all is well once the lock is released.
#[tokio::test]
async fn while_another_process_holds_the_write_lock_writes_fail_and_reads_go_on_sqlite() {
    if TestDb::on_postgres() {
        return;
    }
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    admin.add_product("Before", "1.00").await;
    let lock = app.db.hold_write_lock().await;

    let r = admin
        .create_product(&NewProduct::new("Blocked", "1.00"))
        .await;
    assert_unavailable(&r, "createProduct");
    wait_for_readyz(&app, 503, Duration::from_secs(10)).await;
    assert_eq!(admin.product_count().await, 1, "reads go on");

    lock.release().await;
    wait_for_readyz(&app, 200, Duration::from_secs(10)).await;
    admin.add_product("After", "1.00").await;
    assert_eq!(admin.product_count().await, 2);
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
    if !TestDb::on_postgres() {
        return;
    }
    let db = TestDb::new().await;
    // postgres://user@host:port/name → the same through the proxy.
    let (head, rest) = db.url.split_once('@').unwrap();
    let (target, name) = rest.split_once('/').unwrap();
    let mut proxy = Proxy::start(0, target).await;
    let proxied = format!("{head}@127.0.0.1:{}/{name}", proxy.port);
    let app = TestApp::builder()
        .on(db)
        .database_url(&proxied)
        .spawn()
        .await;
    let admin = app.admin().await;

    proxy.stop();
    let red_after = wait_for_readyz(&app, 503, Duration::from_secs(15)).await;
    // A pooled connection in steady use is not pinged before its next query (see
    // `db::PING_IF_IDLE_FOR`): the first probe may meet one the proxy cut, and name that; once
    // the pool has dropped it, new connections are refused, and the probe says so.
    let reason = app.get("/readyz").await.text().await.unwrap();
    assert!(
        ["connection refused", "connection closed by the database"].contains(&reason.as_str()),
        "{reason}"
    );
    let reason = wait_for_readyz_reason(&app, "connection refused", Duration::from_secs(5)).await;
    assert_eq!(reason, "connection refused");
    let answers = join_all((0..40).map(|_| post_timed(&admin, COUNT))).await;
    let slowest = answers.iter().map(|a| a.1).max().unwrap();
    for (r, _) in &answers {
        assert_eq!(r.status, 503, "{r}");
        assert_eq!(r.codes(), ["SERVICE_UNAVAILABLE"], "{r}");
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
    admin.add_product("After the outage", "1.00").await;
    assert_eq!(admin.product_count().await, 1);
}

/// Clients that go away at every moment of a request (while it writes, while it commits, while
/// the readiness probe writes) leave nothing half-done: afterwards every write is answered as
/// it is stored, and readiness is green. (On SQLite a commit cut short used to leave its
/// connection believing a transaction was still open: every later write was stored yet
/// answered INTERNAL_SERVER_ERROR, until a restart.)
#[tokio::test]
async fn requests_cut_off_at_any_moment_leave_writes_answered_as_stored() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for i in 0..240u64 {
        // Cut off after 0.1 ms to 4 ms: before, during and after the work and its commit.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_micros(100 + (i * 397) % 3900))
            .build()
            .unwrap();
        let _ = if i % 2 == 0 {
            client.get(format!("{}/readyz", app.url)).send().await
        } else {
            let create = CREATE_PRODUCT
                .request(json!({"input": {"name": format!("cut {i}"), "price": "1.00"}}));
            client
                .post(app.graphql_url())
                .bearer_auth(admin.token())
                .json(&create)
                .send()
                .await
        };
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..10 {
        admin
            .create_product(&NewProduct::new(&format!("after {i}"), "1.00"))
            .await
            .assert_ok();
    }
    let r = admin.products(Page::first(100).matching("after")).await;
    assert_eq!(r.data().map(|p| p.total_count), Some(10), "{r}");
    assert_eq!(readyz(&app).await, 200);
    app.anonymous()
        .login("admin", ADMIN_PASSWORD)
        .await
        .assert_ok();
}

/// PostgreSQL ends every connection of a busy server (`pg_terminate_backend`, a PgBouncer or
/// failover restart): pooled connections used within the last second are handed out without
/// a ping, so a request may fail on one. That is all that may fail: the next requests are
/// answered. (Found by attack13: the failed request made the health probe run, the probe
/// took another dead pooled connection, called the database unreachable, and the gate then
/// refused every request with 503 for about a second.)
#[tokio::test]
async fn a_cut_of_every_connection_fails_at_most_one_request_postgres() {
    if !TestDb::on_postgres() {
        return;
    }
    let app = TestApp::builder().without_catalog_cache().spawn().await;
    let admin = app.admin().await;
    admin.add_product("Lamp", "12.50").await;
    let (admin_url, name) = app.db.postgres().unwrap();
    let (admin_url, name) = (admin_url.to_owned(), name.to_owned());
    // Many pooled connections, each used just now.
    join_all((0..32).map(|_| post_timed(&admin, COUNT))).await;
    terminate_backends(&admin_url, &name).await;
    let mut failed = Vec::new();
    for _ in 0..20 {
        let (r, _) = post_timed(&admin, COUNT).await;
        if r.status != 200 || !r.codes().is_empty() {
            failed.push(r.to_string());
        }
    }
    assert!(
        failed.len() <= 1,
        "{} of 20 failed: {failed:#?}",
        failed.len()
    );
}
