//! Catalog writes for admins who work at the same time, and refetching by id: `Product.version`
//! and `expectedVersion` (a stale one is a `CONFLICT` that changes nothing), `adjustStock`
//! (atomic, never below zero, its own permission, on record), and `node`/`nodes` under the
//! guards of the typed fields.

use serde_json::json;

use crate::kit::*;

/// A product named `name` with `stock` in stock, created by `admin`.
async fn stocked(admin: &Actor, name: &str, stock: i64) -> Product {
    let mut product = NewProduct::new(name, "3.00");
    product.stock = stock;
    admin.add(&product).await
}

fn stock(stock: i64) -> ProductChanges {
    ProductChanges {
        stock: Some(stock),
        ..ProductChanges::default()
    }
}

fn renamed(name: &str) -> ProductChanges {
    ProductChanges {
        name: Some(name.to_owned()),
        ..ProductChanges::default()
    }
}

/// The product as it is stored now.
async fn current(reader: &Actor, id: &str) -> Product {
    reader.product(id).await.ok().expect("the product exists")
}

// --- node / nodes ---

fn is_product(node: &Option<Node>, product: &Product) -> bool {
    node.as_ref().is_some_and(|node| {
        node.typename == "Product"
            && node.id == product.id
            && node.name.as_deref() == Some(product.name.as_str())
            && node.version == Some(product.version)
    })
}

fn is_account(node: &Option<Node>, account: &Actor) -> bool {
    node.as_ref().is_some_and(|node| {
        node.typename == "Account"
            && node.id == account.id()
            && node.username.as_deref() == Some(account.username())
    })
}

#[tokio::test]
async fn node_resolves_what_the_typed_fields_would_show_the_caller_and_null_otherwise() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let kettle = admin.add_product("Kettle", "30.00").await;
    let unknown = "01900000-0000-7000-8000-00000000abcd";

    // A signed-in user: any product, their own account, nobody else's.
    let node = |actor: &Actor, id: &str| {
        let (actor, id) = (actor.clone(), id.to_owned());
        async move { actor.node(&id).await.ok() }
    };
    assert!(is_product(&node(&ada, &kettle.id).await, &kettle));
    assert!(is_account(&node(&ada, ada.id()).await, &ada));
    assert_eq!(node(&ada, bob.id()).await, None, "another user's account");
    assert_eq!(node(&ada, admin.id()).await, None, "an admin's account");

    // An admin (`user list`): every account.
    assert!(is_account(&node(&admin, bob.id()).await, &bob));
    assert!(is_account(&node(&admin, admin.id()).await, &admin));
    assert!(is_product(&node(&admin, &kettle.id).await, &kettle));

    // Anonymous callers may read neither products nor accounts under the shipped policy:
    // null, exactly as for an id that names nothing.
    let anonymous = app.anonymous();
    assert_eq!(node(&anonymous, &kettle.id).await, None);
    assert_eq!(node(&anonymous, ada.id()).await, None);

    for actor in [&anonymous, &ada, &admin] {
        assert_eq!(node(actor, unknown).await, None);
        assert_eq!(node(actor, "not an id").await, None);
    }

    // A bad token is refused, as on every guarded field.
    let r = app.bearer("not-a-token").node(&kettle.id).await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{r}");
}

#[tokio::test]
async fn node_follows_the_policy_file_not_the_code() {
    let policy = policy_folder_with("p, role:anonymous, product, read");
    let app = TestApp::builder().policy_dir(policy.path()).spawn().await;
    let admin = app.admin().await;
    let ada = app.user("ada").await;
    let kettle = admin.add_product("Kettle", "30.00").await;

    // Anonymous callers may browse products under this policy, and still see no account.
    let anonymous = app.anonymous();
    assert!(is_product(&anonymous.node(&kettle.id).await.ok(), &kettle));
    assert_eq!(anonymous.node(ada.id()).await.ok(), None);
}

#[tokio::test]
async fn nodes_answers_mixed_ids_in_order_and_takes_at_most_100() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let ada = app.user("ada").await;
    let bob = app.user("bob").await;
    let cup = admin.add_product("Cup", "4.00").await;
    let pot = admin.add_product("Pot", "24.00").await;
    let unknown = "01900000-0000-7000-8000-00000000abcd";
    let ids = [
        cup.id.as_str(),
        ada.id(),
        bob.id(),
        unknown,
        "garbage",
        pot.id.as_str(),
        cup.id.as_str(),
    ];

    let seen = ada.nodes(&ids).await.ok();
    assert_eq!(seen.len(), ids.len());
    assert!(is_product(&seen[0], &cup));
    assert!(is_account(&seen[1], &ada));
    assert_eq!(
        seen[2..5],
        [None, None, None],
        "bob's account, unknown, garbage"
    );
    assert!(is_product(&seen[5], &pot));
    assert!(is_product(&seen[6], &cup), "a repeated id answers again");

    let seen = admin.nodes(&ids).await.ok();
    assert!(is_account(&seen[1], &ada));
    assert!(is_account(&seen[2], &bob));
    assert_eq!(seen[3..5], [None, None]);

    let anonymous = app.anonymous().nodes(&ids).await.ok();
    assert!(anonymous.iter().all(Option::is_none), "{anonymous:?}");
    assert_eq!(ada.nodes(&[]).await.ok(), []);

    // A cart of 100 products in one call; 101 ids are refused.
    let mut hundred: Vec<&str> = vec![cup.id.as_str(); 99];
    hundred.push(&pot.id);
    let seen = ada.nodes(&hundred).await.ok();
    assert!(seen.iter().all(Option::is_some));
    hundred.push(&pot.id);
    let r = ada.nodes(&hundred).await;
    assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{r}");
    assert_eq!(r.error().field(), Some("ids"));
}

// --- versions and expectedVersion ---

#[tokio::test]
async fn every_change_raises_the_version_and_the_answer_carries_it() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let made = admin.add_product("Jug", "9.00").await;
    assert_eq!(made.version, 1);

    let updated = admin
        .update_product(&made.id, &renamed("Big jug"))
        .await
        .ok();
    assert_eq!(updated.version, 2);
    assert!(updated.updated_at >= made.updated_at);
    // Nothing differs: nothing is written, the version stays.
    let same = admin
        .update_product(&made.id, &renamed("Big jug"))
        .await
        .ok();
    assert_eq!(same.version, 2);

    let adjusted = admin.adjust_stock(&made.id, 5).await.ok();
    assert_eq!((adjusted.stock, adjusted.version), (6, 3));
    assert!(adjusted.updated_at >= updated.updated_at);
    assert_eq!(current(&admin, &made.id).await, adjusted);

    // The list (and its page cache) sees the change at once.
    let page = admin.products(Page::first(10)).await.ok();
    let listed = page.nodes.iter().find(|p| p.id == made.id).unwrap();
    assert_eq!((listed.stock, listed.version), (6, 3));
}

#[tokio::test]
async fn a_stale_expected_version_is_a_conflict_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = admin.add_product("Tray", "12.00").await.id;

    let first = admin.update_product_at(&id, &stock(7), 1).await.ok();
    assert_eq!((first.stock, first.version), (7, 2));

    // A second admin still holding version 1.
    let r = admin.update_product_at(&id, &stock(3), 1).await;
    assert_eq!(r.codes(), ["CONFLICT"], "{r}");
    assert_eq!(r.error().field(), Some("expectedVersion"));
    assert_eq!(r.error().extension("currentVersion"), &json!(2));
    assert_eq!(current(&admin, &id).await, first, "nothing written");
    // Even a change to nothing is refused at a stale version.
    let r = admin.update_product_at(&id, &stock(7), 1).await;
    assert_eq!(r.codes(), ["CONFLICT"], "{r}");

    let r = admin.delete_product_at(&id, 1).await;
    assert_eq!(r.codes(), ["CONFLICT"], "{r}");
    assert_eq!(r.error().extension("currentVersion"), &json!(2));
    assert_eq!(current(&admin, &id).await, first, "not deleted");

    let unknown = "01900000-0000-7000-8000-00000000abcd";
    let r = admin.update_product_at(unknown, &stock(3), 1).await;
    assert_eq!(r.codes(), ["NOT_FOUND"], "{r}");
    let r = admin.delete_product_at(unknown, 1).await;
    assert_eq!(r.codes(), ["NOT_FOUND"], "{r}");

    // At the current version both go through.
    let second = admin.update_product_at(&id, &stock(3), 2).await.ok();
    assert_eq!(second.version, 3);
    admin.delete_product_at(&id, 3).await.ok();
    assert_eq!(admin.product(&id).await.ok(), None);
}

#[tokio::test]
async fn of_concurrent_updates_at_the_same_version_exactly_one_is_made() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = admin.add_product("Race", "1.00").await.id;
    let tasks = (0..12)
        .map(|i| {
            let (admin, id) = (admin.clone(), id.clone());
            tokio::spawn(async move { admin.update_product_at(&id, &stock(100 + i), 1).await })
        })
        .collect();
    let answers = join_tasks(tasks).await;
    let made: Vec<_> = answers.iter().filter(|r| r.is_ok()).collect();
    assert_eq!(made.len(), 1, "{answers:?}");
    for r in answers.iter().filter(|r| !r.is_ok()) {
        assert_eq!(r.codes(), ["CONFLICT"], "{r}");
        assert_eq!(r.error().extension("currentVersion"), &json!(2));
    }
    let stored = current(&admin, &id).await;
    assert_eq!(stored, made[0].ok());
    assert_eq!(stored.version, 2);
}

// --- adjustStock ---

#[tokio::test]
async fn fifty_concurrent_adjustments_leave_exactly_the_sum() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = stocked(&admin, "Beans", 1000).await.id;
    // +1 … +25 and -1 … -25, but not in pairs: each side its own sizes.
    let deltas: Vec<i64> = (1..=25).chain((1..=25).map(|d| -2 * d)).collect();
    let tasks = deltas
        .iter()
        .map(|&delta| {
            let (admin, id) = (admin.clone(), id.clone());
            tokio::spawn(async move { admin.adjust_stock(&id, delta).await })
        })
        .collect();
    for r in join_tasks(tasks).await {
        r.assert_ok();
    }
    let stored = current(&admin, &id).await;
    assert_eq!(stored.stock, 1000 + deltas.iter().sum::<i64>());
    assert_eq!(stored.version, 1 + 50);

    // Each on record, with the stock before and after.
    let filter = json!({ "action": "product.adjust_stock", "entityId": id });
    let mut events = admin.audit_events(Page::first(50), filter).await.ok().nodes;
    assert_eq!(events.len(), 50);
    for event in &events {
        let [change] = event.changes.as_slice() else {
            panic!("one change: {event:?}")
        };
        assert_eq!(change.field, "stock");
        let before: i64 = change.before.as_deref().unwrap().parse().unwrap();
        let after: i64 = change.after.as_deref().unwrap().parse().unwrap();
        assert!(deltas.contains(&(after - before)), "{event:?}");
    }
    // Newest first: each record starts where the one before it ended.
    events.reverse();
    for pair in events.windows(2) {
        assert_eq!(
            pair[0].changes[0].after, pair[1].changes[0].before,
            "{pair:?}"
        );
    }
}

#[tokio::test]
async fn concurrent_decrements_racing_to_zero_never_go_below_zero() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = stocked(&admin, "Last ones", 25).await.id;
    let tasks = (0..40)
        .map(|_| {
            let (admin, id) = (admin.clone(), id.clone());
            tokio::spawn(async move { admin.adjust_stock(&id, -1).await })
        })
        .collect();
    let answers = join_tasks(tasks).await;
    let sold = answers.iter().filter(|r| r.is_ok()).count();
    assert_eq!(sold, 25);
    for r in answers.iter().filter(|r| !r.is_ok()) {
        assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{r}");
        assert_eq!(r.error().field(), Some("delta"));
    }
    let mut stocks: Vec<i64> = answers
        .iter()
        .filter_map(|r| r.data())
        .map(|p| p.stock)
        .collect();
    stocks.sort_unstable();
    assert_eq!(
        stocks,
        (0..25).collect::<Vec<_>>(),
        "each sale saw its own stock"
    );
    let stored = current(&admin, &id).await;
    assert_eq!((stored.stock, stored.version), (0, 26));
}

/// Checkouts racing restocks from an empty shelf: a refusal names the stock it was refused at,
/// and that stock is too small for it (on PostgreSQL a restock committing between the refused
/// change and the read that explains it used to make "only 6 in stock" refuse a -1).
#[tokio::test]
async fn a_refused_checkout_racing_restocks_names_a_stock_too_small_for_it() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for round in 0..5 {
        let id = stocked(&admin, &format!("Shelf {round}"), 0).await.id;
        let tasks = (0..40)
            .map(|i| {
                let (admin, id) = (admin.clone(), id.clone());
                let delta = if i % 2 == 0 { -1 } else { 1 };
                tokio::spawn(async move { (delta, admin.adjust_stock(&id, delta).await) })
            })
            .collect();
        let mut made = 0;
        for (delta, r) in join_tasks(tasks).await {
            if r.is_ok() {
                made += delta;
                continue;
            }
            assert_eq!(delta, -1, "{r}");
            assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{r}");
            assert_eq!(
                r.error().message,
                "only 0 in stock: the stock cannot go below 0",
                "{r}"
            );
        }
        assert_eq!(current(&admin, &id).await.stock, made);
    }
}

#[tokio::test]
async fn an_adjustment_that_cannot_be_made_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let before = stocked(&admin, "Scarce", 2).await;

    for delta in [-3, 0, i64::from(i32::MAX)] {
        let r = admin.adjust_stock(&before.id, delta).await;
        assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{delta}: {r}");
        assert_eq!(r.error().field(), Some("delta"), "{delta}");
    }
    // Beyond an `Int`: refused before anything runs.
    for delta in [i64::from(i32::MAX) + 1, i64::from(i32::MIN) - 1] {
        let r = admin.adjust_stock(&before.id, delta).await;
        assert!(!r.is_ok(), "{delta}: {r}");
    }
    assert_eq!(current(&admin, &before.id).await, before);
    let filter = json!({ "action": "product.adjust_stock" });
    let page = admin.audit_events(Page::first(10), filter).await.ok();
    assert_eq!(page.total_count, 0, "nothing on record");

    let r = admin
        .adjust_stock("01900000-0000-7000-8000-00000000abcd", 1)
        .await;
    assert_eq!(r.codes(), ["NOT_FOUND"], "{r}");
    // Down to exactly zero is fine.
    assert_eq!(admin.adjust_stock(&before.id, -2).await.ok().stock, 0);
}

#[tokio::test]
async fn adjust_stock_needs_its_own_permission_and_may_be_limited_to_owned_products() {
    let policy = shop_policy();
    let app = TestApp::builder().policy_dir(policy.path()).spawn().await;
    let admin = app.admin().await;
    let editor = app.user_in_role("eddie", Role::Named("editor")).await;
    let seller = app.user_in_role("sal", Role::Named("seller")).await;
    let auditor = app.user_in_role("aud", Role::Named("auditor")).await;
    let user = app.user("plain").await;
    let admins = stocked(&admin, "Admin's", 10).await;
    let sellers = stocked(&seller, "Seller's", 10).await;

    let r = app.anonymous().adjust_stock(&admins.id, 1).await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{r}");
    for refused in [&user, &auditor] {
        let r = refused.adjust_stock(&admins.id, 1).await;
        assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");
        assert_eq!(r.error().extension("action"), &json!("adjust_stock"));
    }
    // A seller restocks their own products only.
    let r = seller.adjust_stock(&admins.id, 1).await;
    assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");
    assert_eq!(current(&admin, &admins.id).await, admins, "nothing changed");
    assert_eq!(seller.adjust_stock(&sellers.id, -4).await.ok().stock, 6);
    // An editor restocks any.
    assert_eq!(editor.adjust_stock(&admins.id, 5).await.ok().stock, 15);
    assert_eq!(editor.adjust_stock(&sellers.id, 1).await.ok().stock, 7);

    // What `myPermissions` says, a frontend can rely on.
    let granted = seller.my_permissions().await.ok();
    assert!(
        granted
            .iter()
            .any(|p| p.object == "product" && p.action == "adjust_stock" && p.scope == "OWN"),
        "{granted:?}"
    );
}

#[tokio::test]
async fn each_adjustment_is_on_record_with_the_stock_before_and_after() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = stocked(&admin, "Filters", 10).await.id;
    let r = admin.adjust_stock(&id, 5).await;
    r.assert_ok();
    let request_id = r.header("x-request-id").unwrap().to_owned();
    admin.adjust_stock(&id, -12).await.assert_ok();

    let filter = json!({ "action": "product.adjust_stock" });
    let page = admin.audit_events(Page::first(10), filter).await.ok();
    let changes: Vec<_> = page.nodes.iter().map(|e| e.changes.clone()).collect();
    assert_eq!(
        changes,
        [
            vec![AuditChange::new("stock", Some("15"), Some("3"))],
            vec![AuditChange::new("stock", Some("10"), Some("15"))],
        ]
    );
    let older = &page.nodes[1];
    assert_eq!(
        (older.entity.as_str(), older.entity_id.as_str()),
        ("product", id.as_str())
    );
    assert_eq!(
        older.actor.as_ref().map(|a| a.id.as_str()),
        Some(admin.id())
    );
    assert_eq!(older.request_id.as_deref(), Some(request_id.as_str()));
    // The product's own history shows them too.
    let history = admin
        .product_history(&id, Page::first(10))
        .await
        .ok()
        .unwrap();
    assert_eq!(
        history.history.total_count, 3,
        "created, then adjusted twice"
    );
}
