//! The catalog cache never shows a change late on the replica that made it, and shows every
//! other change (another replica, the CLI, a SQL prompt) within a second.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, Statement};

use crate::kit::*;

/// The names on the first page of 50 (with `search`), and the total count.
async fn names(caller: &Actor, search: Option<&str>) -> (Vec<String>, i64) {
    let mut page = Page::first(50);
    if let Some(search) = search {
        page = page.matching(search);
    }
    let products = caller.products(page).await.ok();
    (products.names(), products.total_count)
}

/// Runs `sql` as an operator at a SQL prompt would: on a connection of its own, past the
/// server; returns the number of rows it changed.
async fn at_a_sql_prompt(app: &TestApp, sql: &str, values: Vec<sea_orm::Value>) -> u64 {
    let db = Database::connect(app.db.url.as_str()).await.unwrap();
    let statement = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
    let changed = db.execute_raw(statement).await.unwrap().rows_affected();
    db.close().await.ok();
    changed
}

/// Polls `check` until it holds or a second has passed; returns whether it held.
async fn within_a_second(check: impl AsyncFnMut() -> bool) -> bool {
    within(Duration::from_secs(1), check).await.is_some()
}

#[tokio::test]
async fn own_changes_show_in_the_very_next_read() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (before, total) = names(&admin, None).await;
    // The same read again comes from the cache; it must agree with the first.
    assert_eq!(names(&admin, None).await, (before.clone(), total));
    assert_eq!(names(&admin, Some("lamp")).await, (vec![], 0));

    let id = admin.add_product("Desk lamp", "20.00").await.id;
    let (after, after_total) = names(&admin, None).await;
    assert_eq!(after_total, total + 1);
    assert!(after.contains(&"Desk lamp".to_owned()), "{after:?}");
    assert_eq!(
        names(&admin, Some("lamp")).await,
        (vec!["Desk lamp".to_owned()], 1),
        "a cached search and its count follow the change too"
    );

    let rename = ProductChanges {
        name: Some("Floor lamp".to_owned()),
        ..ProductChanges::default()
    };
    admin.update_product(&id, &rename).await.assert_ok();
    let (renamed, _) = names(&admin, Some("lamp")).await;
    assert_eq!(renamed, vec!["Floor lamp".to_owned()]);

    admin.delete_product(&id).await.assert_ok();
    assert_eq!(names(&admin, None).await, (before, total));
    assert_eq!(names(&admin, Some("lamp")).await, (vec![], 0));
}

#[tokio::test]
async fn another_replica_sees_a_change_within_a_second() {
    let replica_a = TestApp::spawn().await;
    let admin = replica_a.admin().await;
    admin.add_product("Teapot", "12.00").await;
    let replica_b = replica_a.replica().await;
    let admin_on_b = admin.on(&replica_b);
    // Replica B has the page cached before the change.
    assert_eq!(
        names(&admin_on_b, None).await,
        (vec!["Teapot".to_owned()], 1)
    );
    assert_eq!(
        names(&admin_on_b, None).await,
        (vec!["Teapot".to_owned()], 1)
    );

    admin.add_product("Teacup", "4.00").await;
    let expected = (vec!["Teapot".to_owned(), "Teacup".to_owned()], 2);
    assert!(
        within_a_second(async || names(&admin_on_b, None).await == expected).await,
        "replica B still shows {:?} a second after replica A's change",
        names(&admin_on_b, None).await
    );
}

#[tokio::test]
async fn a_change_made_outside_the_api_shows_within_a_second() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = admin.add_product("Kettle", "30.00").await.id;
    assert_eq!(names(&admin, None).await, (vec!["Kettle".to_owned()], 1));

    // An operator renames it at a SQL prompt: the database's triggers bump the catalog version.
    let renamed = at_a_sql_prompt(
        &app,
        "UPDATE products SET name = $1, name_search = $2, name_folded = $2 WHERE id = $3",
        vec![
            "Electric kettle".into(),
            "electric kettle".into(),
            uuid::Uuid::parse_str(&id).unwrap().into(),
        ],
    )
    .await;
    assert_eq!(renamed, 1);

    assert!(
        within_a_second(async || {
            names(&admin, None).await == (vec!["Electric kettle".to_owned()], 1)
        })
        .await,
        "the server still shows {:?} a second after the SQL change",
        names(&admin, None).await
    );
}

#[tokio::test]
async fn with_the_cache_off_every_read_goes_to_the_database() {
    let app = TestApp::builder().without_catalog_cache().spawn().await;
    let admin = app.admin().await;
    let id = admin.add_product("Mug", "5.00").await.id;
    assert_eq!(names(&admin, None).await, (vec!["Mug".to_owned()], 1));

    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    let deleted = at_a_sql_prompt(
        &app,
        "DELETE FROM products WHERE id = $1",
        vec![uuid.into()],
    );
    assert_eq!(deleted.await, 1);

    // No waiting: nothing is kept between reads.
    assert_eq!(names(&admin, None).await, (vec![], 0));
}

/// With the cache off, many reads at once share the few connections the catalog reads with
/// (four on SQLite, eight on PostgreSQL, held outside the pool: `db::sqlite_reader`,
/// `db::postgres_reader`): 48 requests, each for a window of its own, all answered with
/// exactly their window, in two rounds (connections are taken back and reused).
#[tokio::test]
async fn with_the_cache_off_reads_at_once_share_the_readers_and_each_gets_its_own_page() {
    let app = TestApp::builder().without_catalog_cache().spawn().await;
    let admin = app.admin().await;
    let mut all = Vec::new();
    for i in 0..30 {
        let name = format!("Item {i:02}");
        admin.add_product(&name, "1.00").await;
        all.push(name);
    }
    let (first_page, total) = names(&admin, None).await;
    assert_eq!(total, 30);
    let all = first_page;
    for round in 0..2 {
        let reads = (0..48_usize).map(|i| {
            let (admin, all) = (&admin, &all);
            async move {
                let size = 1 + (i + round) % 30;
                let products = admin.products(Page::first(size as i64)).await.ok();
                assert_eq!(products.names(), all[..size], "read {i} of round {round}");
                assert_eq!(products.total_count, 30);
                assert_eq!(products.page_info.has_next_page, size < 30);
            }
        });
        futures_util::future::join_all(reads).await;
    }
}

/// A product never goes back to an older version for a client of one replica: a read that
/// meets a catalog version newer than the replica knew (another writer changed it) raises the
/// replica's, so a page cached before the change is not served after a newer one was. (Found
/// by an outside attack: with writers racing, a read that started before a change stored its
/// older page where the next reads found it.)
#[tokio::test]
async fn a_read_that_meets_a_newer_catalog_never_lets_an_older_page_be_served_after_it() {
    // The replica does not poll during the test: only reads tell it of the change.
    let app = TestApp::builder()
        .configure(|c| c.caches.catalog_poll = Duration::from_secs(60))
        .spawn()
        .await;
    let admin = app.admin().await;
    let id = admin.add_product("Counter", "1.00").await.id;
    let list = "query($first: Int!, $ids: [ID!]!) { products(first: $first, filter: { ids: $ids }) { edges { node { version stock } } } }";
    let version = async |first: i64| {
        let r = admin
            .query(list, serde_json::json!({ "first": first, "ids": [id] }))
            .await;
        r.assert_ok();
        r.body["data"]["products"]["edges"][0]["node"]["version"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(version(1).await, 1, "read, and cached");
    // Another writer (a SQL prompt) changes it; the catalog version moves in the same
    // transaction, and this replica has not looked.
    let changed = at_a_sql_prompt(
        &app,
        "UPDATE products SET version = version + 1, stock = stock + 1",
        vec![],
    )
    .await;
    assert_eq!(changed, 1);
    assert_eq!(version(2).await, 2, "another page, read from the database");
    assert_eq!(
        version(1).await,
        2,
        "the first page again: never older than what was seen"
    );
}
