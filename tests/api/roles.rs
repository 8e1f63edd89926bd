use serde_json::json;

use crate::helpers::*;

const SET_ROLE: &str =
    "mutation($id:ID!,$r:Role!){ setUserRole(userId:$id, role:$r){ id username role } }";

async fn id_of(app: &TestApp, token: &str) -> String {
    app.gql("{ account { id } }", json!({}), Some(token)).await["data"]["account"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn an_admin_promotes_a_user_who_then_manages_products_after_signing_in_again() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let user = app.register("promoted", "promoted passphrase").await;
    let id = id_of(&app, &user).await;

    let r = app
        .gql(SET_ROLE, json!({"id": id, "r": "ADMIN"}), Some(&admin))
        .await;
    assert_no_errors(&r);
    assert_eq!(r["data"]["setUserRole"]["role"], "ADMIN");

    let r = app.login("promoted", "promoted passphrase").await;
    assert_eq!(r["data"]["login"]["account"]["role"], "ADMIN");
    let token = r["data"]["login"]["accessToken"].as_str().unwrap();
    app.create_product(token, "By the new admin", "1").await;
    let r = app
        .gql("{ account { role } }", json!({}), Some(token))
        .await;
    assert_eq!(r["data"]["account"]["role"], "ADMIN");
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let admin_id = id_of(&app, &admin).await;
    let r = app
        .gql(SET_ROLE, json!({"id": admin_id, "r": "USER"}), Some(&admin))
        .await;
    assert_eq!(codes(&r), ["CONFLICT"], "{r}");
    let r = app
        .gql("{ account { role } }", json!({}), Some(&admin))
        .await;
    assert_eq!(r["data"]["account"]["role"], "ADMIN");

    // With a second admin, demotion is allowed.
    let other = app.register("second", "second passphrase").await;
    let other_id = id_of(&app, &other).await;
    let r = app
        .gql(
            SET_ROLE,
            json!({"id": other_id, "r": "ADMIN"}),
            Some(&admin),
        )
        .await;
    assert_no_errors(&r);
    let r = app
        .gql(SET_ROLE, json!({"id": admin_id, "r": "USER"}), Some(&admin))
        .await;
    assert_no_errors(&r);
    assert_eq!(r["data"]["setUserRole"]["role"], "USER");
}

#[tokio::test]
async fn admins_list_users_page_by_page() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for name in ["u1", "u2", "u3", "u4"] {
        app.register(&format!("{name}-user"), "listing passphrase")
            .await;
    }
    let query = "query($a:String){ users(first: 2, after: $a){ totalCount edges { cursor node { username role } } pageInfo { hasNextPage endCursor } } }";
    let r = app.gql(query, json!({"a": null}), Some(&admin)).await;
    assert_no_errors(&r);
    let users = &r["data"]["users"];
    assert_eq!(users["totalCount"], 5);
    assert_eq!(users["edges"][0]["node"]["username"], "admin");
    assert_eq!(users["edges"][1]["node"]["username"], "u1-user");
    assert_eq!(users["pageInfo"]["hasNextPage"], true);
    let r = app
        .gql(
            query,
            json!({"a": users["pageInfo"]["endCursor"]}),
            Some(&admin),
        )
        .await;
    let names: Vec<_> = r["data"]["users"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["u2-user", "u3-user"]);
}

#[tokio::test]
async fn racing_demotions_always_leave_an_admin() {
    use storefront::{error::AppError, role::Role};
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let admin_id: uuid::Uuid = id_of(&app, &admin).await.parse().unwrap();
    let deputy = app.register("deputy", "deputy passphrase").await;
    let deputy_id: uuid::Uuid = id_of(&app, &deputy).await.parse().unwrap();
    let accounts = &app.state.accounts;
    for round in 0..10 {
        accounts
            .set_role(None, admin_id, Role::Admin)
            .await
            .unwrap();
        accounts
            .set_role(None, deputy_id, Role::Admin)
            .await
            .unwrap();
        // Two admins, both demoted at the same moment: the check and the update are one step,
        // so exactly one demotion goes through.
        let (a, b) = tokio::join!(
            accounts.set_role(None, admin_id, Role::User),
            accounts.set_role(None, deputy_id, Role::User),
        );
        let refused = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Err(AppError::Conflict { field: "role", .. })))
            .count();
        assert_eq!(refused, 1, "round {round}: {a:?} / {b:?}");
        assert!(a.is_ok() || b.is_ok(), "round {round}: {a:?} / {b:?}");
    }
}
