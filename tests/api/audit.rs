//! The audit trail: every change made with admin power has its record, written with the change
//! (or neither is stored), read back newest first through `auditEvents` and `Product.history`
//! by the roles the policy allows, and pruned only when a retention is configured.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::kit::{
    types::{Connection, ProductHistory},
    *,
};

/// A change the test made, as its record must show it.
#[derive(Debug)]
struct Made {
    action: &'static str,
    entity: &'static str,
    entity_id: String,
    request_id: String,
    changes: Vec<AuditChange>,
}

/// The request id the server answered with.
fn request_id<T>(r: &Response<T>) -> String {
    r.header("x-request-id")
        .expect("every answer carries its request id")
        .to_owned()
}

fn change(field: &str, before: Option<&str>, after: Option<&str>) -> AuditChange {
    AuditChange::new(field, before, after)
}

fn ids(page: &Connection<AuditEvent>) -> Vec<String> {
    page.map(|event| event.id.clone())
}

fn time(at: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(at)
        .unwrap_or_else(|e| panic!("{at}: {e}"))
        .with_timezone(&Utc)
}

/// Every record, newest first, as `reader` reads them.
async fn all_events(reader: &Actor) -> Vec<AuditEvent> {
    let page = reader.audit_events(Page::first(50), Value::Null).await.ok();
    assert!(!page.page_info.has_next_page, "more than 50 records");
    page.nodes
}

/// The ids `filter` keeps, newest first, asserting that `totalCount` agrees.
async fn filtered(reader: &Actor, filter: Value) -> Vec<String> {
    let r = reader.audit_events(Page::first(50), filter.clone()).await;
    let page = r.ok();
    assert_eq!(page.total_count as usize, page.nodes.len(), "{filter}");
    ids(&page)
}

#[tokio::test]
async fn every_admin_mutation_is_on_record_as_it_was_made() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let dana = app.user("dana").await;
    let before = admin.audit_events(Page::default(), Value::Null).await.ok();
    assert_eq!(
        before.total_count, 1,
        "registering is no admin change; creating the first admin (create-admin) is one"
    );
    let mut made = Vec::new();

    let input = NewProduct::new("Milk jug", "14.50").description("350 ml");
    let r = admin.create_product(&input).await;
    let jug = r.ok();
    made.push(Made {
        action: "product.create",
        entity: "product",
        entity_id: jug.id.clone(),
        request_id: request_id(&r),
        changes: vec![
            change("name", None, Some("Milk jug")),
            change("description", None, Some("350 ml")),
            change("price", None, Some("14.50")),
            change("stock", None, Some("1")),
        ],
    });

    let price = ProductChanges {
        price: Some("15".into()),
        ..Default::default()
    };
    let r = admin.update_product(&jug.id, &price).await;
    r.assert_ok();
    made.push(Made {
        action: "product.update",
        entity: "product",
        entity_id: jug.id.clone(),
        request_id: request_id(&r),
        changes: vec![change("price", Some("14.50"), Some("15.00"))],
    });

    // The price is sent again unchanged: only the fields whose values changed are on record.
    // This request names its own id, which the record keeps.
    let rename = ProductChanges {
        name: Some("Milk jug, large".into()),
        price: Some("15.00".into()),
        stock: Some(30),
        ..Default::default()
    };
    let r = admin
        .with_header("x-request-id", "audit-rename-7")
        .update_product(&jug.id, &rename)
        .await;
    r.assert_ok();
    assert_eq!(request_id(&r), "audit-rename-7");
    made.push(Made {
        action: "product.update",
        entity: "product",
        entity_id: jug.id.clone(),
        request_id: request_id(&r),
        changes: vec![
            change("name", Some("Milk jug"), Some("Milk jug, large")),
            change("stock", Some("1"), Some("30")),
        ],
    });

    let r = admin.delete_product(&jug.id).await;
    r.assert_ok();
    made.push(Made {
        action: "product.delete",
        entity: "product",
        entity_id: jug.id.clone(),
        request_id: request_id(&r),
        changes: vec![
            change("name", Some("Milk jug, large"), None),
            change("description", Some("350 ml"), None),
            change("price", Some("15.00"), None),
            change("stock", Some("30"), None),
        ],
    });

    let r = admin.set_user_role(dana.id(), Role::Admin).await;
    r.assert_ok();
    made.push(Made {
        action: "account.set_role",
        entity: "account",
        entity_id: dana.id().to_owned(),
        request_id: request_id(&r),
        changes: vec![change("role", Some("user"), Some("admin"))],
    });

    let r = admin.deactivate_account(dana.id()).await;
    let deactivated_at = r.ok().deactivated_at.expect("deactivated");
    made.push(Made {
        action: "account.deactivate",
        entity: "account",
        entity_id: dana.id().to_owned(),
        request_id: request_id(&r),
        changes: vec![change("deactivatedAt", None, Some(&deactivated_at))],
    });

    let r = admin.reactivate_account(dana.id()).await;
    r.assert_ok();
    made.push(Made {
        action: "account.reactivate",
        entity: "account",
        entity_id: dana.id().to_owned(),
        request_id: request_id(&r),
        changes: vec![change("deactivatedAt", Some(&deactivated_at), None)],
    });

    // The records of the changes above, newest first; the oldest is the admin's creation.
    let page = admin.audit_events(Page::first(50), Value::Null).await.ok();
    assert_eq!(page.total_count, made.len() as i64 + 1);
    let mut events = page.nodes;
    assert_eq!(
        events.pop().map(|e| e.action).as_deref(),
        Some("account.create")
    );
    made.reverse();
    assert_eq!(events.len(), made.len());
    for (event, made) in events.iter().zip(&made) {
        let actor = event.actor.as_ref().expect("an actor");
        assert_eq!(
            (actor.id.as_str(), actor.username.as_str()),
            (admin.id(), "admin")
        );
        assert_eq!(event.action, made.action, "{event:?}");
        assert_eq!(event.entity, made.entity, "{event:?}");
        assert_eq!(event.entity_id, made.entity_id, "{event:?}");
        assert_eq!(event.request_id.as_deref(), Some(made.request_id.as_str()));
        assert_eq!(event.changes, made.changes, "{}", made.action);
    }
    let times: Vec<_> = events.iter().map(|e| time(&e.occurred_at)).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    let distinct: std::collections::BTreeSet<_> = events.iter().map(|e| &e.id).collect();
    assert_eq!(distinct.len(), made.len());
}

#[tokio::test]
async fn a_record_keeps_the_username_of_its_time_and_outlives_its_actor() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let temp = app.admin_named("temp-admin").await;
    let product = temp.add_product("Left behind", "2").await;
    temp.delete_account(ADMIN_PASSWORD).await.ok();

    // `create-admin` promoting an existing account is a role change too, with no actor.
    let ops = app.user("ops").await;
    app.create_admin("ops", &password_of("ops")).await.unwrap();

    let events = all_events(&admin).await;
    assert_eq!(events.len(), 4, "{events:?}");
    // The two admins `create-admin` created are on record too: a role given by an operator.
    for (event, account) in [(&events[2], temp.id()), (&events[3], admin.id())] {
        assert_eq!(event.action, "account.create");
        assert_eq!(event.entity_id, account);
        assert_eq!(event.actor, None, "made from the command line");
        assert_eq!(event.changes, [change("role", None, Some("admin"))]);
    }
    let promoted = &events[0];
    assert_eq!(promoted.action, "account.set_role");
    assert_eq!(promoted.entity_id, ops.id());
    assert_eq!(promoted.actor, None, "made from the command line");
    assert_eq!(promoted.request_id, None);
    assert_eq!(
        promoted.changes,
        [change("role", Some("user"), Some("admin"))]
    );
    let created = &events[1];
    assert_eq!(created.entity_id, product.id);
    let actor = created.actor.as_ref().expect("an actor");
    assert_eq!(
        (actor.id.as_str(), actor.username.as_str()),
        (temp.id(), "temp-admin"),
        "the account is gone; its record stays"
    );
}

#[tokio::test]
async fn a_mutation_that_changes_nothing_records_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let dana = app.user("dana").await;
    let product = admin.add_product("Steady", "3.00").await;

    let same = ProductChanges {
        name: Some("Steady".into()),
        description: Some("d".into()),
        price: Some("3".into()),
        stock: Some(1),
    };
    let unchanged = admin.update_product(&product.id, &same).await.ok();
    assert_eq!(unchanged, product, "nothing is written, updatedAt included");
    admin.set_user_role(dana.id(), Role::User).await.ok();
    admin.reactivate_account(dana.id()).await.ok();
    admin.deactivate_account(dana.id()).await.ok();
    admin.deactivate_account(dana.id()).await.ok();

    let actions: Vec<_> = all_events(&admin)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        ["account.deactivate", "product.create", "account.create"]
    );
}

#[tokio::test]
async fn audit_events_page_newest_first_and_every_filter_holds() {
    let app = TestApp::spawn().await;
    let first = app.admin().await;
    let second = app.admin_named("second").await;
    let dana = app.user("dana").await;
    // This test pages through the records of the changes below only: the two admins'
    // creation (`account.create`, tested elsewhere) goes.
    app.sql("DELETE FROM audit_events", vec![]).await;
    let p1 = first.add_product("One", "1").await;
    let p2 = first.add_product("Two", "2").await;
    let price = ProductChanges {
        price: Some("1.50".into()),
        ..Default::default()
    };
    second.update_product(&p1.id, &price).await.ok();
    first.set_user_role(dana.id(), Role::Admin).await.ok();
    second.deactivate_account(dana.id()).await.ok();
    first.delete_product(&p2.id).await.ok();

    let events = all_events(&first).await;
    let all: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "product.delete",
            "account.deactivate",
            "account.set_role",
            "product.update",
            "product.create",
            "product.create"
        ]
    );
    let [e6, e5, e4, e3, e2, e1] =
        <[&str; 6]>::try_from(all.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
    let has = |list: &[String], id: &str| list.iter().any(|x| x == id);

    // Pages of two, each with the total.
    let mut cursor: Option<String> = None;
    let mut read = Vec::new();
    for page_number in 0..3 {
        let page = first
            .audit_events(Page::first(2).after(cursor.as_deref()), Value::Null)
            .await
            .ok();
        assert_eq!(page.total_count, 6);
        assert_eq!(page.page_info.has_next_page, page_number < 2);
        assert_eq!(page.page_info.has_previous_page, page_number > 0);
        let cursors: Vec<_> = page.edges.iter().map(|e| e.cursor.clone()).collect();
        assert_eq!(page.page_info.end_cursor.as_ref(), cursors.last());
        read.extend(ids(&page));
        cursor = page.page_info.end_cursor;
    }
    assert_eq!(read, all);

    let by = |filter: Value| filtered(&first, filter);
    assert_eq!(by(json!({ "actor": second.id() })).await, [e5, e3]);
    assert_eq!(by(json!({ "entity": "product" })).await, [e6, e3, e2, e1]);
    assert_eq!(by(json!({ "entity": "account" })).await, [e5, e4]);
    assert_eq!(by(json!({ "entityId": p1.id })).await, [e3, e1]);
    assert_eq!(
        by(json!({ "entity": "product", "entityId": p2.id })).await,
        [e6, e2]
    );
    assert_eq!(by(json!({ "action": "product.create" })).await, [e2, e1]);
    assert_eq!(
        by(json!({ "actor": first.id(), "entity": "product" })).await,
        [e6, e2, e1]
    );
    assert_eq!(
        by(json!({ "actor": dana.id() })).await,
        Vec::<String>::new(),
        "dana made no change"
    );

    // Time windows, both ends included: compared with the times the records show.
    let at = &events[3].occurred_at;
    let t3 = time(at);
    let kept = |keep: &dyn Fn(DateTime<Utc>) -> bool| -> Vec<String> {
        events
            .iter()
            .filter(|e| keep(time(&e.occurred_at)))
            .map(|e| e.id.clone())
            .collect()
    };
    let since = by(json!({ "since": at })).await;
    assert_eq!(since, kept(&|t| t >= t3));
    assert!(has(&since, e3) && has(&since, e6) && !has(&since, e1));
    let until = by(json!({ "until": at })).await;
    assert_eq!(until, kept(&|t| t <= t3));
    assert!(has(&until, e3) && has(&until, e1) && !has(&until, e6));
    assert!(has(&by(json!({ "since": at, "until": at })).await, e3));
    assert_eq!(
        by(json!({ "since": "2999-01-01T00:00:00Z" })).await,
        Vec::<String>::new()
    );

    // Pages of a filtered list.
    let filter = json!({ "entity": "product" });
    let page = first
        .audit_events(Page::first(3), filter.clone())
        .await
        .ok();
    assert_eq!((page.total_count, page.page_info.has_next_page), (4, true));
    let rest = first
        .audit_events(
            Page::first(3).after(page.page_info.end_cursor.as_deref()),
            filter,
        )
        .await
        .ok();
    assert_eq!(ids(&rest), [e1]);
    assert_eq!(rest.total_count, 4);
    assert!(!rest.page_info.has_next_page && rest.page_info.has_previous_page);
}

#[tokio::test]
async fn every_argument_is_validated() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let product = admin.add_product("Checked", "1").await;
    let refused = [
        (Page::default(), json!({ "actor": "nope" }), "actor"),
        (Page::default(), json!({ "entityId": "12" }), "entityId"),
        (Page::default(), json!({ "entity": "order" }), "entity"),
        (
            Page::default(),
            json!({ "action": "product.launch" }),
            "action",
        ),
        (
            Page::default(),
            json!({ "entity": "account", "action": "product.create" }),
            "action",
        ),
        (
            Page::default(),
            json!({ "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z" }),
            "until",
        ),
        (
            Page::default(),
            json!({ "since": "+10000-01-01T00:00:00Z" }),
            "since",
        ),
        (
            Page::default(),
            json!({ "until": "-4713-01-01T00:00:00Z" }),
            "until",
        ),
        (Page::default().after(Some("garbage")), Value::Null, "after"),
        (Page::first(0), Value::Null, "first"),
        (Page::first(101), Value::Null, "first"),
    ];
    // A light document: `first: 101` must reach the resolver, not the cost limit.
    let count = "query($first: Int, $after: String, $filter: AuditFilter) { \
                 auditEvents(first: $first, after: $after, filter: $filter) { totalCount } }";
    for (page, filter, field) in refused {
        let mut variables = json!(page);
        variables["filter"] = filter.clone();
        let r = admin.query(count, variables).await;
        assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{filter}: {r}");
        assert_eq!(r.error().field(), Some(field), "{filter}: {r}");
    }
    let r = admin
        .query(count, json!({ "filter": { "since": "yesterday" } }))
        .await;
    assert!(!r.errors.is_empty() && r.raw_data().is_null(), "{r}");

    let r = admin
        .product_history(&product.id, Page::default().after(Some("garbage")))
        .await;
    assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{r}");
    assert_eq!(r.error().field(), Some("after"));
    let r = admin.product_history(&product.id, Page::first(0)).await;
    assert_eq!(r.error().field(), Some("first"), "{r}");
}

#[tokio::test]
async fn a_product_history_lists_its_own_records_newest_first() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let kept = admin.add_product("Kept", "5").await;
    let other = admin.add_product("Other", "6").await;
    for stock in [2, 3] {
        let changes = ProductChanges {
            stock: Some(stock),
            ..Default::default()
        };
        admin.update_product(&kept.id, &changes).await.ok();
    }

    let history = |page: Page| admin.product_history(&kept.id, page);
    let whole: ProductHistory = history(Page::first(10)).await.ok().unwrap();
    let events = &whole.history.nodes;
    assert_eq!(whole.history.total_count, 3);
    let stocks: Vec<_> = events
        .iter()
        .map(|e| (e.action.as_str(), e.changes.last().unwrap().after.clone()))
        .collect();
    assert_eq!(
        stocks,
        [
            ("product.update", Some("3".to_owned())),
            ("product.update", Some("2".to_owned())),
            ("product.create", Some("1".to_owned()))
        ]
    );
    assert!(events.iter().all(|e| e.entity_id == kept.id));
    // The same records as `auditEvents` shows for this product.
    let filter = json!({ "entity": "product", "entityId": kept.id });
    assert_eq!(filtered(&admin, filter.clone()).await, ids(&whole.history));

    let one = history(Page::first(1)).await.ok().unwrap().history;
    assert_eq!((one.nodes.len(), one.page_info.has_next_page), (1, true));
    let next = history(Page::first(1).after(one.page_info.end_cursor.as_deref()))
        .await
        .ok()
        .unwrap()
        .history;
    assert_eq!(ids(&next), [ids(&whole.history)[1].clone()]);

    let theirs = admin.product_history(&other.id, Page::first(10)).await;
    assert_eq!(theirs.ok().unwrap().history.total_count, 1);

    // A deleted product has no `history` to reach; its records stay in `auditEvents`.
    admin.delete_product(&kept.id).await.ok();
    assert_eq!(
        admin.product_history(&kept.id, Page::first(1)).await.ok(),
        None
    );
    assert_eq!(filtered(&admin, filter).await.len(), 4);
}

/// The names of the fields of `type_name` that `caller` sees through introspection; `None`
/// when the type itself is hidden.
async fn visible_fields(caller: &Actor, type_name: &str) -> Option<Vec<String>> {
    let r = caller
        .query(
            "query($t: String!) { __type(name: $t) { fields { name } } }",
            json!({ "t": type_name }),
        )
        .await;
    let fields = r.body["data"]["__type"]["fields"].as_array()?.clone();
    Some(
        fields
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect(),
    )
}

#[tokio::test]
async fn only_roles_the_policy_allows_read_the_trail_or_see_that_it_exists() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let product = admin.add_product("Watched", "1").await;
    let user = app.user("curious").await;

    let r = user.audit_events(Page::default(), Value::Null).await;
    assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");
    assert_eq!(r.error().extension("object"), "audit");
    assert_eq!(r.error().extension("action"), "read");
    let r = user.product_history(&product.id, Page::default()).await;
    assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");
    let r = app
        .anonymous()
        .audit_events(Page::default(), Value::Null)
        .await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{r}");

    for (caller, sees) in [(&user, false), (&app.anonymous(), false), (&admin, true)] {
        let query = visible_fields(caller, "Query").await.unwrap();
        assert_eq!(query.contains(&"auditEvents".to_owned()), sees, "{query:?}");
        let product_fields = visible_fields(caller, "Product").await.unwrap_or_default();
        assert_eq!(
            product_fields.contains(&"history".to_owned()),
            sees,
            "{product_fields:?}"
        );
        for type_name in ["AuditEvent", "AuditFilter", "AuditEventConnection"] {
            let r = caller
                .query(
                    "query($t: String!) { __type(name: $t) { name } }",
                    json!({ "t": type_name }),
                )
                .await;
            assert_eq!(
                !r.body["data"]["__type"].is_null(),
                sees,
                "{type_name}: {r}"
            );
        }
    }
}

#[tokio::test]
async fn a_change_whose_record_cannot_be_written_does_not_happen() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let dana = app.user("dana").await;
    let product = admin.add_product("Guarded", "7.00").await;
    app.refuse_inserts("audit_events", "P0001").await;

    let r = admin.create_product(&NewProduct::new("Ghost", "1")).await;
    assert_eq!(r.codes(), ["INTERNAL_SERVER_ERROR"], "{r}");
    let ghosts = admin.products(Page::search("Ghost")).await.ok();
    assert_eq!(ghosts.total_count, 0, "the product went with its record");

    let price = ProductChanges {
        price: Some("9.00".into()),
        ..Default::default()
    };
    let r = admin.update_product(&product.id, &price).await;
    assert_eq!(r.codes(), ["INTERNAL_SERVER_ERROR"], "{r}");
    let r = admin.delete_product(&product.id).await;
    assert_eq!(r.codes(), ["INTERNAL_SERVER_ERROR"], "{r}");
    let stored = admin.product(&product.id).await.ok();
    assert_eq!(
        stored.as_ref(),
        Some(&product),
        "neither updated nor deleted"
    );

    let r = admin.set_user_role(dana.id(), Role::Admin).await;
    assert_eq!(r.codes(), ["INTERNAL_SERVER_ERROR"], "{r}");
    let r = admin.deactivate_account(dana.id()).await;
    assert_eq!(r.codes(), ["INTERNAL_SERVER_ERROR"], "{r}");
    assert_eq!(
        app.stored_account(dana.id()).await,
        Some(("user".to_owned(), false)),
        "neither promoted nor deactivated"
    );
    assert!(dana.works().await, "her token was not revoked");

    app.allow_inserts("audit_events").await;
    admin.add_product("Ghost", "1").await;
    let actions: Vec<_> = all_events(&admin)
        .await
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        ["product.create", "product.create", "account.create"]
    );
}

#[tokio::test]
async fn records_are_pruned_only_past_a_configured_retention() {
    let backdate = async |app: &TestApp, entity_id: &str, days: i64| {
        let at = Utc::now() - chrono::Duration::days(days);
        let changed = app
            .sql(
                "UPDATE audit_events SET occurred_at = $1 WHERE entity_id = $2",
                vec![at.into(), entity_id.into()],
            )
            .await;
        assert_eq!(changed, 1);
    };

    // By default records are kept for ever.
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let ancient = admin.add_product("Ancient", "1").await;
    backdate(&app, &ancient.id, 3650).await;
    assert_eq!(app.prune().await.audit_events, 0);
    // The product's record, and the admin's creation.
    assert_eq!(all_events(&admin).await.len(), 2);

    let app = TestApp::builder().audit_retention_days(30).spawn().await;
    let admin = app.admin().await;
    let old = admin.add_product("Old", "1").await;
    let recent = admin.add_product("Recent", "1").await;
    let new = admin.add_product("New", "1").await;
    backdate(&app, &old.id, 31).await;
    backdate(&app, &recent.id, 29).await;
    assert_eq!(app.prune().await.audit_events, 1);
    let left: Vec<_> = all_events(&admin)
        .await
        .into_iter()
        .map(|e| e.entity_id)
        .collect();
    assert_eq!(left, [new.id, recent.id, admin.id().to_owned()]);
    assert_eq!(
        app.prune().await.audit_events,
        0,
        "pruning again deletes nothing"
    );
}
