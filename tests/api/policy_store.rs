//! The policy kept in the database (`POLICY_SOURCE=database`): seeded from the files on the
//! first start, changed through the API with the same checks as a policy file, recorded in the
//! audit trail, and in force on every replica within a poll.

use std::time::Duration;

use serde_json::{Value, json};

use crate::kit::*;

/// A server whose policy lives in the database, polled every 100 ms by each replica.
fn stored() -> TestAppBuilder {
    TestApp::builder()
        .env("POLICY_SOURCE", "database")
        .policy_poll(Duration::from_millis(100))
}

const POLICY: &str = "{ policy { storage version rules roles { name inherits } } }";

async fn policy_of(actor: &Actor) -> Value {
    let r = actor.query(POLICY, json!({})).await;
    assert!(r.codes().is_empty(), "{r}");
    r.raw_data()["policy"].clone()
}

async fn change(actor: &Actor, mutation: &str, variables: Value) -> Response {
    actor.query(mutation, variables).await
}

const CREATE_ROLE: &str =
    "mutation($name:String!,$inherits:[String!]!,$permissions:[PermissionInput!]!){
    createRole(name:$name, inherits:$inherits, permissions:$permissions){ version rules } }";
const GRANT: &str = "mutation($role:String!,$p:PermissionInput!){
    grantPermission(role:$role, permission:$p){ version rules } }";
const REVOKE: &str = "mutation($role:String!,$p:PermissionInput!){
    revokePermission(role:$role, permission:$p){ version rules } }";

#[tokio::test]
async fn a_role_made_through_the_api_works_on_every_replica_within_a_poll() {
    let app = stored().spawn().await;
    let replica = app.replica_with(stored()).await;
    let admin = app.admin().await;
    let seeded = policy_of(&admin).await;
    assert_eq!(seeded["storage"], "DATABASE");
    assert!(
        seeded["rules"]
            .as_array()
            .unwrap()
            .contains(&json!("p, role:admin, user, set_role")),
        "seeded from policy.csv: {seeded}"
    );

    // A seller role, made on the first replica.
    let r = change(
        &admin,
        CREATE_ROLE,
        json!({"name": "seller", "inherits": ["user"], "permissions": [
            {"object": "product", "action": "create"},
            {"object": "product", "action": "update", "scope": "OWN"},
        ]}),
    )
    .await;
    assert!(r.codes().is_empty(), "{r}");
    let version = r.raw_data()["createRole"]["version"].clone();
    assert_ne!(version, seeded["version"]);

    // The second replica knows it within a poll: it accepts the role for an account.
    let sam = app.user("sam").await;
    let admin_on_b = admin.on(&replica);
    let known = within(Duration::from_secs(10), async || {
        admin_on_b
            .set_user_role(sam.id(), Role::Named("seller"))
            .await
            .codes()
            .is_empty()
    })
    .await;
    assert!(known.is_some(), "the second replica never learnt the role");
    let sam = app.sign_in("sam", &password_of("sam")).await.on(&replica);
    let own = sam.add_product("Sam's", "2.00").await.id;
    let theirs = admin.add_product("The shop's", "3.00").await.id;
    let changes = ProductChanges {
        stock: Some(9),
        ..ProductChanges::default()
    };
    assert_eq!(sam.update_product(&own, &changes).await.ok().stock, 9);
    assert_eq!(
        sam.update_product(&theirs, &changes).await.codes(),
        ["FORBIDDEN"]
    );

    // Revoked on the second replica: the first refuses within a poll.
    let r = change(
        &admin_on_b,
        REVOKE,
        json!({"role": "seller", "p": {"object": "product", "action": "create"}}),
    )
    .await;
    assert!(r.codes().is_empty(), "{r}");
    let sam_on_a = sam.on(&app);
    let refused = within(Duration::from_secs(10), async || {
        sam_on_a
            .create_product(&NewProduct::new("More", "1.00"))
            .await
            .codes()
            == ["FORBIDDEN"]
    })
    .await;
    assert!(
        refused.is_some(),
        "the first replica kept the revoked grant"
    );

    // Both changes are on record, with the rules they added and removed.
    let r = admin
        .query(
            "{ auditEvents(filter: {entity: \"policy\"}) { nodes { action entityId actor { username }
               changes { field before after } } } }",
            json!({}),
        )
        .await;
    let events = r.raw_data()["auditEvents"]["nodes"]
        .as_array()
        .unwrap()
        .clone();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["policy.revoke", "policy.create_role"], "{r}");
    assert_eq!(events[0]["entityId"], "seller");
    assert_eq!(events[0]["actor"]["username"], "admin");
    assert_eq!(
        events[0]["changes"],
        json!([{"field": "rule", "before": "p, role:seller, product, create", "after": null}])
    );
    let added: Vec<&str> = events[1]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["after"].as_str().unwrap())
        .collect();
    assert_eq!(
        added,
        [
            "g, role:seller, role:user",
            "p, role:seller, product, create",
            "p, role:seller, product, update, own"
        ]
    );
}

/// Every change is checked as a policy file is, before anything is stored: a refused change
/// stores nothing, records nothing and leaves the version.
#[tokio::test]
async fn a_change_that_makes_an_invalid_policy_is_refused_and_nothing_is_stored() {
    let app = stored().spawn().await;
    let admin = app.admin().await;
    let before = policy_of(&admin).await;
    let grant = |role: &str, object: &str, action: &str, scope: &str| json!({"role": role, "p": {"object": object, "action": action, "scope": scope}});
    for (mutation, variables, code, field) in [
        (
            GRANT,
            grant("user", "prodcut", "read", "ANY"),
            "BAD_USER_INPUT",
            Some("action"),
        ),
        (
            GRANT,
            grant("user", "product", "read", "OWN"),
            "BAD_USER_INPUT",
            Some("scope"),
        ),
        (
            GRANT,
            grant("ghost", "product", "read", "ANY"),
            "BAD_USER_INPUT",
            Some("role"),
        ),
        (
            REVOKE,
            grant("user", "product", "create", "ANY"),
            "NOT_FOUND",
            None,
        ),
        // The only grant of `user, set_role`: nobody could manage roles again.
        (
            REVOKE,
            grant("admin", "user", "set_role", "ANY"),
            "BAD_USER_INPUT",
            Some("policy"),
        ),
        (
            "mutation { addRoleInheritance(role: \"user\", inherits: \"admin\") { version } }",
            json!({}),
            "BAD_USER_INPUT",
            Some("policy"),
        ),
        // `user` is DEFAULT_ROLE (no account has it here, so only that stops it).
        (
            "mutation { deleteRole(name: \"user\") { version } }",
            json!({}),
            "BAD_USER_INPUT",
            Some("policy"),
        ),
        (
            "mutation { deleteRole(name: \"admin\") { version } }",
            json!({}),
            "CONFLICT",
            Some("name"),
        ),
        (
            "mutation { createRole(name: \"user\", inherits: [\"admin\"]) { version } }",
            json!({}),
            "CONFLICT",
            Some("name"),
        ),
        (
            "mutation { createRole(name: \"Bad Name\", inherits: [\"user\"]) { version } }",
            json!({}),
            "BAD_USER_INPUT",
            Some("name"),
        ),
        (
            "mutation { createRole(name: \"empty\") { version } }",
            json!({}),
            "BAD_USER_INPUT",
            Some("permissions"),
        ),
    ] {
        let r = change(&admin, mutation, variables).await;
        assert_eq!(r.codes(), [code], "{mutation}: {r}");
        assert_eq!(r.error().field(), field, "{mutation}: {r}");
        assert!(!r.error().message.to_lowercase().contains("sql"), "{r}");
    }
    assert_eq!(policy_of(&admin).await, before, "nothing was stored");
    let r = admin
        .query(
            "{ auditEvents(filter: {entity: \"policy\"}) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(r.raw_data()["auditEvents"]["totalCount"], 0, "{r}");

    // Granting what is granted changes nothing either.
    let r = change(&admin, GRANT, grant("user", "product", "read", "ANY")).await;
    assert_eq!(
        r.raw_data()["grantPermission"]["version"],
        before["version"],
        "{r}"
    );
}

/// Twenty grants at once, on two replicas: each is stored once, none is lost.
#[tokio::test]
async fn concurrent_changes_on_two_replicas_are_all_stored() {
    let app = stored().spawn().await;
    let replica = app.replica_with(stored()).await;
    let admin = app.admin().await;
    let created = change(
        &admin,
        CREATE_ROLE,
        json!({"name": "helper", "inherits": ["user"], "permissions": []}),
    )
    .await;
    assert!(created.codes().is_empty(), "{created}");
    let actions = ["create", "update", "delete", "read_creator"];
    let mut calls = Vec::new();
    for round in 0..5 {
        for action in actions {
            let caller = if round % 2 == 0 {
                admin.clone()
            } else {
                admin.on(&replica)
            };
            calls.push(async move {
                change(
                    &caller,
                    GRANT,
                    json!({"role": "helper", "p": {"object": "product", "action": action}}),
                )
                .await
            });
        }
    }
    for r in join_all(calls).await {
        assert!(r.codes().is_empty(), "{r}");
    }
    let rules = policy_of(&admin).await["rules"].clone();
    for action in actions {
        let line = format!("p, role:helper, product, {action}");
        let count = rules
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| **r == json!(line))
            .count();
        assert_eq!(count, 1, "{line}: {rules}");
    }
}

#[tokio::test]
async fn with_the_policy_in_files_the_policy_mutations_refuse() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    assert_eq!(policy_of(&admin).await["storage"], "FILES");
    let r = change(
        &admin,
        GRANT,
        json!({"role": "user", "p": {"object": "product", "action": "create"}}),
    )
    .await;
    assert_eq!(r.codes(), ["CONFLICT"], "{r}");
    assert_eq!(r.error().field(), Some("policy"));
    let user = app.user("plain").await;
    let r = change(
        &user,
        GRANT,
        json!({"role": "user", "p": {"object": "product", "action": "create"}}),
    )
    .await;
    assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");
}

/// `storefront policy show` and `check` read the stored policy when `POLICY_SOURCE=database`.
#[tokio::test]
async fn the_cli_shows_and_checks_the_stored_policy() {
    let app = stored().spawn().await;
    let admin = app.admin().await;
    let r = change(
        &admin,
        CREATE_ROLE,
        json!({"name": "clerk", "inherits": ["user"], "permissions": []}),
    )
    .await;
    assert!(r.codes().is_empty(), "{r}");
    let version = r.raw_data()["createRole"]["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = |command: &str| {
        storefront(&["policy", command])
            .on(&app.db)
            .env("POLICY_SOURCE", "database")
            .env_remove("POLICY_DIR")
            .run()
    };
    let out = run("show");
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(
        shown.starts_with(&format!("policy: database (version {version})")),
        "{shown}"
    );
    assert!(shown.lines().next_back().is_some_and(|l| !l.is_empty()));
    assert!(shown.contains("role:clerk"), "{shown}");
    let out = run("check");
    assert!(out.status.success(), "{out:?}");
    let checked = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        checked.trim(),
        format!("the stored policy is valid (version {version})")
    );
}

/// A replica that has not read the stored policy yet still keeps the last account that may
/// manage roles under the stored one: the rule reads the stored policy under its lock.
#[tokio::test]
async fn a_replica_behind_the_stored_policy_still_keeps_the_last_manager() {
    // No polling: the second replica reads the stored policy only when it must.
    let still = || {
        TestApp::builder()
            .env("POLICY_SOURCE", "database")
            .policy_poll(Duration::ZERO)
    };
    let app = still().spawn().await;
    let replica = app.replica_with(still()).await;
    let admin = app.admin().await;
    let r = change(
        &admin,
        CREATE_ROLE,
        json!({"name": "owner", "inherits": ["user"], "permissions": [
            {"object": "user", "action": "set_role"},
        ]}),
    )
    .await;
    assert!(r.codes().is_empty(), "{r}");
    let keyholder = app.user("keyholder").await;
    admin
        .set_user_role(keyholder.id(), Role::Named("owner"))
        .await
        .assert_ok();
    let r = change(
        &admin,
        REVOKE,
        json!({"role": "admin", "p": {"object": "user", "action": "set_role"}}),
    )
    .await;
    assert!(r.codes().is_empty(), "an owner manages roles now: {r}");

    // The second replica still runs the policy where admins manage roles: its guard lets the
    // admin through, but the rule reads the stored policy, where the keyholder is the last.
    let admin_on_b = app.sign_in("admin", ADMIN_PASSWORD).await.on(&replica);
    let r = admin_on_b.set_user_role(keyholder.id(), Role::User).await;
    assert_eq!(r.codes(), ["CONFLICT"], "{r}");
    assert_eq!(
        app.stored_account(keyholder.id()).await,
        Some(("owner".into(), false))
    );
}
