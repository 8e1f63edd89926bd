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
