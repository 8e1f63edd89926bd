//! The catalog cache never shows a change late on the replica that made it, and shows every
//! other change (another replica, the CLI, a SQL prompt) within a second.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

use crate::helpers::*;

const PAGE: &str = "query($s: String) { products(first: 50, search: $s) { totalCount \
                    edges { node { id name price } } } }";

/// The names on the first page (with `search`), and the total count.
async fn names(app: &TestApp, token: &str, search: Option<&str>) -> (Vec<String>, i64) {
    let r = app.gql(PAGE, json!({ "s": search }), Some(token)).await;
    assert_no_errors(&r);
    page_names(&r)
}

fn page_names(r: &Value) -> (Vec<String>, i64) {
    let products = &r["data"]["products"];
    let names = products["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["name"].as_str().unwrap().to_owned())
        .collect();
    (names, products["totalCount"].as_i64().unwrap())
}

/// Polls `check` until it holds or a second has passed; returns whether it held.
async fn within_a_second(mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn own_changes_show_in_the_very_next_read() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (before, total) = names(&app, &admin, None).await;
    // The same read again comes from the cache; it must agree with the first.
    assert_eq!(names(&app, &admin, None).await, (before.clone(), total));
    assert_eq!(names(&app, &admin, Some("lamp")).await, (vec![], 0));

    let id = app.create_product(&admin, "Desk lamp", "20.00").await;
    let (after, after_total) = names(&app, &admin, None).await;
    assert_eq!(after_total, total + 1);
    assert!(after.contains(&"Desk lamp".to_owned()), "{after:?}");
    assert_eq!(
        names(&app, &admin, Some("lamp")).await,
        (vec!["Desk lamp".to_owned()], 1),
        "a cached search and its count follow the change too"
    );

    let r = app
        .gql(
            "mutation($id: ID!) { updateProduct(id: $id, input: {name: \"Floor lamp\"}) { id } }",
            json!({ "id": id }),
            Some(&admin),
        )
        .await;
    assert_no_errors(&r);
    let (renamed, _) = names(&app, &admin, Some("lamp")).await;
    assert_eq!(renamed, vec!["Floor lamp".to_owned()]);

    let r = app
        .gql(
            "mutation($id: ID!) { deleteProduct(id: $id) }",
            json!({ "id": id }),
            Some(&admin),
        )
        .await;
    assert_no_errors(&r);
    assert_eq!(names(&app, &admin, None).await, (before, total));
    assert_eq!(names(&app, &admin, Some("lamp")).await, (vec![], 0));
}

#[tokio::test]
async fn another_replica_sees_a_change_within_a_second() {
    let replica_a = spawn_app().await;
    let admin = replica_a.admin_token().await;
    replica_a.create_product(&admin, "Teapot", "12.00").await;
    let (url_b, _stop_b) = spawn_replica(&replica_a).await;
    let read_b = async || -> (Vec<String>, i64) {
        let r = gql_at(&url_b, json!({ "query": PAGE }), Some(&admin)).await;
        assert_no_errors(&r);
        page_names(&r)
    };
    // Replica B has the page cached before the change.
    assert_eq!(read_b().await, (vec!["Teapot".to_owned()], 1));
    assert_eq!(read_b().await, (vec!["Teapot".to_owned()], 1));

    replica_a.create_product(&admin, "Teacup", "4.00").await;
    let expected = (vec!["Teapot".to_owned(), "Teacup".to_owned()], 2);
    assert!(
        within_a_second(async || read_b().await == expected).await,
        "replica B still shows {:?} a second after replica A's change",
        read_b().await
    );
}

#[tokio::test]
async fn a_change_made_outside_the_api_shows_within_a_second() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let id = app.create_product(&admin, "Kettle", "30.00").await;
    assert_eq!(
        names(&app, &admin, None).await,
        (vec!["Kettle".to_owned()], 1)
    );

    // An operator renames it at a SQL prompt: the database's triggers bump the catalog version.
    let db = Database::connect(app.db.url.as_str()).await.unwrap();
    let stmt = sea_orm::Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE products SET name = $1, name_search = $2 WHERE id = $3",
        [
            "Electric kettle".into(),
            "electric kettle".into(),
            uuid::Uuid::parse_str(&id).unwrap().into(),
        ],
    );
    assert_eq!(db.execute_raw(stmt).await.unwrap().rows_affected(), 1);
    db.close().await.ok();

    assert!(
        within_a_second(async || {
            names(&app, &admin, None).await == (vec!["Electric kettle".to_owned()], 1)
        })
        .await,
        "the server still shows {:?} a second after the SQL change",
        names(&app, &admin, None).await
    );
}

#[tokio::test]
async fn with_the_cache_off_every_read_goes_to_the_database() {
    let app = spawn_app_with(vec![("CATALOG_CACHE_MB", "0".to_owned())]).await;
    let admin = app.admin_token().await;
    let id = app.create_product(&admin, "Mug", "5.00").await;
    assert_eq!(names(&app, &admin, None).await, (vec!["Mug".to_owned()], 1));

    let db = Database::connect(app.db.url.as_str()).await.unwrap();
    let stmt = sea_orm::Statement::from_sql_and_values(
        db.get_database_backend(),
        "DELETE FROM products WHERE id = $1",
        [uuid::Uuid::parse_str(&id).unwrap().into()],
    );
    assert_eq!(db.execute_raw(stmt).await.unwrap().rows_affected(), 1);
    db.close().await.ok();

    // No waiting: nothing is kept between reads.
    assert_eq!(names(&app, &admin, None).await, (vec![], 0));
}
