use serde_json::json;

use crate::kit::{internals::AppError, *};

#[tokio::test]
async fn an_admin_promotes_a_user_who_then_manages_products_after_signing_in_again() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.user_with("promoted", "promoted passphrase").await;

    let promoted = admin.set_user_role(user.id(), Role::Admin).await.ok();
    assert_eq!(promoted.role, Role::Admin);

    let r = app
        .anonymous()
        .login("promoted", "promoted passphrase")
        .await;
    let session = r.ok();
    assert_eq!(session.account.role, Role::Admin);
    let promoted = app.anonymous().with_session(session);
    promoted.add_product("By the new admin", "1").await;
    assert_eq!(promoted.account().await.ok().role, Role::Admin);
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let r = admin.set_user_role(admin.id(), Role::User).await;
    assert_eq!(r.codes(), ["CONFLICT"], "{r}");
    assert_eq!(admin.account().await.ok().role, Role::Admin);

    // With a second admin, demotion is allowed.
    let other = app.user_with("second", "second passphrase").await;
    admin
        .set_user_role(other.id(), Role::Admin)
        .await
        .assert_ok();
    let demoted = admin.set_user_role(admin.id(), Role::User).await.ok();
    assert_eq!(demoted.role, Role::User);
}

#[tokio::test]
async fn admins_list_users_page_by_page() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    for name in ["u1", "u2", "u3", "u4"] {
        app.user_with(&format!("{name}-user"), "listing passphrase")
            .await;
    }
    let users = admin.users(Page::first(2)).await.ok();
    assert_eq!(users.total_count, 5);
    assert_eq!(users.edges[0].node.username, "admin");
    assert_eq!(users.edges[1].node.username, "u1-user");
    assert!(users.page_info.has_next_page);
    let next = admin
        .users(Page::first(2).after(users.page_info.end_cursor.as_deref()))
        .await;
    let names: Vec<_> = next
        .data()
        .unwrap()
        .edges
        .into_iter()
        .map(|e| e.node.username)
        .collect();
    assert_eq!(names, ["u2-user", "u3-user"]);
}

#[tokio::test]
async fn racing_demotions_always_leave_an_admin() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let deputy = app.user_with("deputy", "deputy passphrase").await;
    let (admin_id, deputy_id) = (admin.id(), deputy.id());
    for round in 0..10 {
        app.set_role_directly(admin_id, Role::Admin).await.unwrap();
        app.set_role_directly(deputy_id, Role::Admin).await.unwrap();
        // Two admins, both demoted at the same moment: the check and the update are one step,
        // so exactly one demotion goes through.
        let (a, b) = tokio::join!(
            app.set_role_directly(admin_id, Role::User),
            app.set_role_directly(deputy_id, Role::User),
        );
        let refused = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Err(AppError::Conflict { field: "role", .. })))
            .count();
        assert_eq!(refused, 1, "round {round}: {a:?} / {b:?}");
        assert!(a.is_ok() || b.is_ok(), "round {round}: {a:?} / {b:?}");
    }
}

/// The roles a policy defines, as the `roles` query lists them: id, name, direct parents,
/// and every permission with its scope.
#[tokio::test]
async fn the_roles_query_lists_what_the_policy_defines() {
    let policy = shop_policy();
    let app = TestApp::builder().policy_dir(policy.path()).spawn().await;
    let admin = app.admin().await;
    let r = admin
        .query(
            "{ roles { id name inherits permissions { object action scope } } }",
            json!({}),
        )
        .await;
    let roles = r.raw_data()["roles"].as_array().unwrap().clone();
    let names: Vec<&str> = roles.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["user", "admin", "editor", "seller", "auditor"],
        "{r}"
    );
    // The key a client cache keeps each role under: the policy's name for it.
    for role in &roles {
        assert_eq!(
            role["id"],
            format!("role:{}", role["name"].as_str().unwrap())
        );
    }
    let seller = &roles[3];
    assert_eq!(seller["inherits"], json!(["user"]));
    let grants: Vec<String> = seller["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{} {} {}", p["object"], p["action"], p["scope"]).replace('"', ""))
        .collect();
    for expected in [
        "product read ANY",
        "product create ANY",
        "product update OWN",
        "product delete OWN",
        "account read ANY",
    ] {
        assert!(
            grants.contains(&expected.to_owned()),
            "{expected}: {grants:?}"
        );
    }
    assert!(!grants.iter().any(|g| g.starts_with("user ")), "{grants:?}");

    let user = app.user("curious").await;
    let r = user.query("{ roles { name } }", json!({})).await;
    assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");
}

#[tokio::test]
async fn set_user_role_takes_only_roles_the_policy_defines() {
    let policy = shop_policy();
    let app = TestApp::builder().policy_dir(policy.path()).spawn().await;
    let admin = app.admin().await;
    let user = app.user("hopeful").await;
    for role in [
        "superuser",
        "anonymous",
        "role:admin",
        "Admin",
        "",
        &"x".repeat(500),
    ] {
        let r = admin
            .query(
                "mutation($id:ID!,$role:String!){ setUserRole(userId:$id, role:$role){ role } }",
                json!({"id": user.id(), "role": role}),
            )
            .await;
        assert_eq!(r.codes(), ["BAD_USER_INPUT"], "{role}: {r}");
        assert_eq!(r.error().field(), Some("role"), "{role}: {r}");
        assert!(r.error().message.len() < 200, "{r}");
    }
    assert_eq!(app.stored_account(user.id()).await.unwrap().0, "user");
    let editor = admin
        .set_user_role(user.id(), Role::Named("editor"))
        .await
        .ok();
    assert_eq!(editor.role, Role::Named("editor"));
}

/// `p, role:seller, product, update, own`: a seller changes and deletes the products they
/// created, and nobody else's.
#[tokio::test]
async fn a_seller_changes_only_their_own_products() {
    let policy = shop_policy();
    let app = TestApp::builder().policy_dir(policy.path()).spawn().await;
    let admin = app.admin().await;
    let seller = app.user_in_role("sally", Role::Named("seller")).await;
    let theirs = admin.add_product("The shop's", "9.00").await.id;
    let own = seller.add_product("Sally's", "4.00").await.id;

    let changes = ProductChanges {
        price: Some("5.00".into()),
        ..ProductChanges::default()
    };
    let updated = seller.update_product(&own, &changes).await.ok();
    assert_eq!(updated.price, "5.00");
    let r = seller.update_product(&theirs, &changes).await;
    assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");
    assert_eq!(r.error().extension("action"), "update");
    let r = seller.delete_product(&theirs).await;
    assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");
    let untouched = admin.product(&theirs).await.ok().unwrap();
    assert_eq!(untouched.price, "9.00");

    let missing = uuid::Uuid::now_v7().to_string();
    let r = seller.delete_product(&missing).await;
    assert_eq!(r.codes(), ["NOT_FOUND"], "{r}");
    assert_eq!(seller.delete_product(&own).await.ok(), own);
    assert!(admin.product(&own).await.ok().is_none());

    let scopes: Vec<String> = seller
        .my_permissions()
        .await
        .ok()
        .into_iter()
        .filter(|p| p.object == "product")
        .map(|p| format!("{} {}", p.action, p.scope))
        .collect();
    assert_eq!(
        scopes,
        [
            "read ANY",
            "create ANY",
            "update OWN",
            "delete OWN",
            "adjust_stock OWN"
        ]
    );
}

/// Whatever the policy calls the role that manages roles, the last active account with it
/// keeps it: not demoted, deactivated or deleted, also when two try at once.
#[tokio::test]
async fn the_last_account_that_may_manage_roles_keeps_it_whatever_the_role_is_called() {
    let policy = policy_folder(
        "p, role:owner, user, set_role\n\
         p, role:owner, user, deactivate\n\
         p, role:owner, account, read\n\
         p, role:owner, account, delete\n\
         p, role:clerk, account, read\n",
    );
    let app = TestApp::builder()
        .policy_dir(policy.path())
        .env("DEFAULT_ROLE", "clerk")
        .spawn()
        .await;
    let boss = app.user_in_role("boss", Role::Named("owner")).await;
    let r = boss.set_user_role(boss.id(), Role::Named("clerk")).await;
    assert_eq!(r.codes(), ["CONFLICT"], "{r}");
    let r = boss.deactivate_account(boss.id()).await;
    assert_eq!(r.codes(), ["CONFLICT"], "{r}");
    let r = boss.delete_account(&password_of("boss")).await;
    assert_eq!(r.codes(), ["CONFLICT"], "{r}");
    assert_eq!(
        app.stored_account(boss.id()).await,
        Some(("owner".into(), false))
    );

    let deputy = app.user("deputy").await;
    let (boss_id, deputy_id) = (boss.id(), deputy.id());
    for round in 0..10 {
        app.set_role_directly(boss_id, Role::Named("owner"))
            .await
            .unwrap();
        app.set_role_directly(deputy_id, Role::Named("owner"))
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            app.set_role_directly(boss_id, Role::Named("clerk")),
            app.set_role_directly(deputy_id, Role::Named("clerk")),
        );
        let refused = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Err(AppError::Conflict { field: "role", .. })))
            .count();
        assert_eq!(refused, 1, "round {round}: {a:?} / {b:?}");
    }
}

/// A role added in the files, with an ownership rule, works on the running server; a role
/// taken out of them grants nothing any more, to tokens already issued too.
#[tokio::test]
async fn roles_added_to_or_taken_from_the_files_take_effect_while_the_server_runs() {
    let dir = policy_folder(&shipped_policy());
    let app = TestApp::builder()
        .policy_dir(dir.path())
        .policy_poll(std::time::Duration::from_millis(100))
        .spawn()
        .await;
    let admin = app.admin().await;
    let sam = app.user("sam").await;
    let r = admin.set_user_role(sam.id(), Role::Named("seller")).await;
    assert_eq!(r.codes(), ["BAD_USER_INPUT"], "no such role yet: {r}");

    let seller_lines = "p, role:seller, product, create\n\
                        p, role:seller, product, update, own\n\
                        g, role:seller, role:user\n";
    std::fs::write(
        dir.path().join("policy.csv"),
        format!("{}\n{seller_lines}", shipped_policy()),
    )
    .unwrap();
    let defined = within(std::time::Duration::from_secs(10), async || {
        admin
            .set_user_role(sam.id(), Role::Named("seller"))
            .await
            .codes()
            .is_empty()
    })
    .await;
    assert!(defined.is_some(), "the new role never became known");
    let sam = app.sign_in("sam", &password_of("sam")).await;
    let own = sam.add_product("Sam's", "2.00").await.id;
    let theirs = admin.add_product("Admin's", "3.00").await.id;
    let changes = ProductChanges {
        stock: Some(7),
        ..ProductChanges::default()
    };
    assert_eq!(sam.update_product(&own, &changes).await.ok().stock, 7);
    let r = sam.update_product(&theirs, &changes).await;
    assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");

    // Out of the files again: sam's token, still valid, carries a role that grants nothing.
    std::fs::write(dir.path().join("policy.csv"), shipped_policy()).unwrap();
    let gone = within(std::time::Duration::from_secs(10), async || {
        sam.products(Page::default()).await.codes() == ["FORBIDDEN"]
    })
    .await;
    assert!(gone.is_some(), "the removed role kept its permissions");
    let r = sam.my_permissions().await;
    assert_eq!(
        r.data().map(|p| p.len()),
        Some(0),
        "never silently `user`: {r}"
    );
    let r = sam.update_product(&own, &changes).await;
    assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");
    assert_eq!(app.stored_account(sam.id()).await.unwrap().0, "seller");
}

/// A policy under which no active account could manage roles any more is refused, and the
/// one in force stays.
#[tokio::test]
async fn a_policy_that_would_leave_nobody_able_to_manage_roles_is_refused() {
    let dir = policy_folder(&shipped_policy());
    let app = TestApp::builder()
        .policy_dir(dir.path())
        .policy_poll(std::time::Duration::from_millis(50))
        .spawn()
        .await;
    let admin = app.admin().await;
    let before = app.policy_version();
    let stranded = shipped_policy().replace(
        "p, role:admin, user, set_role",
        "p, role:owner, user, set_role",
    );
    std::fs::write(dir.path().join("policy.csv"), &stranded).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(
        app.policy_version(),
        before,
        "the stranding policy was put in force"
    );
    let user = app.user("next").await;
    admin
        .set_user_role(user.id(), Role::Admin)
        .await
        .assert_ok();

    // Once an account has the new managing role, taking the permission from admins is taken.
    let both = format!(
        "{}\np, role:owner, user, set_role\np, role:owner, account, read\n",
        shipped_policy()
    );
    std::fs::write(dir.path().join("policy.csv"), &both).unwrap();
    let waited = within(std::time::Duration::from_secs(10), async || {
        app.policy_version() != before
    })
    .await;
    assert!(
        waited.is_some(),
        "the policy with both managing roles never took effect"
    );
    admin
        .set_user_role(user.id(), Role::Named("owner"))
        .await
        .assert_ok();
    let with_both = app.policy_version();
    let owners_only = format!("{stranded}\np, role:owner, account, read\n");
    std::fs::write(dir.path().join("policy.csv"), &owners_only).unwrap();
    let waited = within(std::time::Duration::from_secs(10), async || {
        app.policy_version() != with_both
    })
    .await;
    assert!(
        waited.is_some(),
        "an owner is active, so this policy is valid"
    );
    let r = admin.set_user_role(user.id(), Role::User).await;
    assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");
}

#[tokio::test]
async fn register_gives_the_default_role_which_the_policy_must_define() {
    let policy = shop_policy();
    let app = TestApp::builder()
        .policy_dir(policy.path())
        .env("DEFAULT_ROLE", "seller")
        .spawn()
        .await;
    let seller = app.user("newcomer").await;
    assert_eq!(seller.account().await.ok().role, Role::Named("seller"));
    seller.add_product("First listing", "1.00").await;

    let db = TestDb::new().await;
    let err = TestApp::builder()
        .policy_dir(policy.path())
        .env("DEFAULT_ROLE", "member")
        .start_error(&db)
        .await
        .expect("refused");
    assert!(err.contains("DEFAULT_ROLE `member`"), "{err}");
    assert!(
        err.contains("user, admin, editor, seller, auditor"),
        "{err}"
    );
}

/// The role `register` gives stays defined: a policy file without it is refused.
#[tokio::test]
async fn a_policy_file_without_the_default_role_is_refused() {
    let dir = policy_folder(&shipped_policy());
    let app = TestApp::builder()
        .policy_dir(dir.path())
        .policy_poll(std::time::Duration::from_millis(50))
        .spawn()
        .await;
    let before = app.policy_version();
    let without_user = "p, role:admin, user, set_role\np, role:admin, product, read\n";
    std::fs::write(dir.path().join("policy.csv"), without_user).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(
        app.policy_version(),
        before,
        "a policy without `user` was put in force"
    );
    let newcomer = app.user("newcomer").await;
    newcomer.products(Page::default()).await.assert_ok();
}
