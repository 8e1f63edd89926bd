//! Can-see equals can-do: introspection shows each caller exactly the fields the policy lets
//! them use, and a denial names what was missing.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::*;

/// Every guarded field, with a call that exercises it.
const GUARDED: &[(&str, &str, &str)] = &[
    ("Query", "account", "{ account { id } }"),
    ("Query", "products", "{ products { totalCount } }"),
    ("Query", "product", r#"{ product(id: "x") { id } }"#),
    ("Query", "users", "{ users { totalCount } }"),
    ("Mutation", "logoutAll", "mutation { logoutAll }"),
    (
        "Mutation",
        "changePassword",
        r#"mutation { changePassword(currentPassword: "wrong one here", newPassword: "n e w passphrase") { accessToken } }"#,
    ),
    (
        "Mutation",
        "createProduct",
        r#"mutation { createProduct(input: {name: "V", price: "1"}) { id } }"#,
    ),
    (
        "Mutation",
        "updateProduct",
        r#"mutation { updateProduct(id: "x", input: {stock: 1}) { id } }"#,
    ),
    (
        "Mutation",
        "deleteProduct",
        r#"mutation { deleteProduct(id: "x") }"#,
    ),
    (
        "Mutation",
        "setUserRole",
        r#"mutation { setUserRole(userId: "x", role: USER) { id } }"#,
    ),
    (
        "Product",
        "createdBy",
        "{ products(first: 1) { nodes { createdBy { id } } } }",
    ),
];

async fn visible_fields(app: &TestApp, token: Option<&str>, type_name: &str) -> BTreeSet<String> {
    let r = app
        .gql(
            "query($t:String!){ __type(name:$t){ fields { name } } }",
            json!({"t": type_name}),
            token,
        )
        .await;
    r["data"]["__type"]["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .map(|f| f["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the call was let through by the guard (it may still fail for other reasons).
fn allowed(r: &Value) -> bool {
    !codes(r)
        .iter()
        .any(|c| c == "FORBIDDEN" || c == "UNAUTHENTICATED")
}

#[tokio::test]
async fn introspection_shows_each_role_exactly_what_the_guards_allow() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    app.register("looker", "looker passphrase").await;
    app.create_product(&admin, "Visible", "1").await;
    // A fresh sign-in for every call: some calls (logoutAll) end the caller's sessions.
    let sign_in = async |caller: &str| -> Option<String> {
        let (username, password) = match caller {
            "user" => ("looker", "looker passphrase"),
            "admin" => ("admin", ADMIN_PASSWORD),
            _ => return None,
        };
        let r = app.login(username, password).await;
        Some(
            r["data"]["login"]["accessToken"]
                .as_str()
                .unwrap()
                .to_owned(),
        )
    };

    for caller in ["anonymous", "user", "admin"] {
        for (type_name, field, call) in GUARDED {
            let token = sign_in(caller).await;
            let shown = visible_fields(&app, token.as_deref(), type_name)
                .await
                .contains(*field);
            let r = app.gql(call, json!({}), token.as_deref()).await;
            assert_eq!(
                shown,
                allowed(&r),
                "{caller}: {type_name}.{field} shown={shown} but the call says {r}"
            );
        }
    }
    // Anonymous callers see no admin mutations, and what everyone may do stays visible.
    let anonymous = visible_fields(&app, None, "Mutation").await;
    assert_eq!(
        anonymous,
        ["login", "refreshToken", "register"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    let user = sign_in("user").await.unwrap();
    let user_fields = visible_fields(&app, Some(&user), "Mutation").await;
    assert!(user_fields.contains("logout") && !user_fields.contains("createProduct"));
}

#[tokio::test]
async fn hidden_fields_follow_the_policy_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        policy_dir().join("model.conf"),
        dir.path().join("model.conf"),
    )
    .unwrap();
    let policy = std::fs::read_to_string(policy_dir().join("policy.csv")).unwrap();
    std::fs::write(
        dir.path().join("policy.csv"),
        format!("{policy}\np, role:user, product, create\n"),
    )
    .unwrap();
    let app = spawn_app_with(vec![("POLICY_DIR", dir.path().display().to_string())]).await;
    let user = app.register("maker", "maker passphrase").await;
    assert!(
        visible_fields(&app, Some(&user), "Mutation")
            .await
            .contains("createProduct")
    );
    assert!(
        !visible_fields(&app, Some(&user), "Mutation")
            .await
            .contains("deleteProduct")
    );
}

#[tokio::test]
async fn a_denial_names_the_missing_permission_and_my_permissions_lists_the_grants() {
    let app = spawn_app().await;
    let user = app.register("asker", "asker passphrase").await;
    let r = app
        .gql(
            r#"mutation { createProduct(input: {name: "N", price: "1"}) { id } }"#,
            json!({}),
            Some(&user),
        )
        .await;
    assert_eq!(codes(&r), ["FORBIDDEN"]);
    assert_eq!(r["errors"][0]["extensions"]["object"], "product");
    assert_eq!(r["errors"][0]["extensions"]["action"], "create");

    let permissions = |r: &Value| -> BTreeSet<String> {
        r["data"]["myPermissions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{}:{}",
                    p["object"].as_str().unwrap(),
                    p["action"].as_str().unwrap()
                )
            })
            .collect()
    };
    let query = "{ myPermissions { object action } }";
    let r = app.gql(query, json!({}), Some(&user)).await;
    assert_eq!(
        permissions(&r),
        [
            "account:delete",
            "account:read",
            "account:update",
            "product:read",
            "session:manage"
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    let r = app.gql(query, json!({}), None).await;
    assert!(permissions(&r).is_empty(), "{r}");
    let admin = app.admin_token().await;
    let r = app.gql(query, json!({}), Some(&admin)).await;
    assert!(
        permissions(&r).contains("product:create") && permissions(&r).contains("user:set_role")
    );
    let r = app.gql(query, json!({}), Some("not-a-token")).await;
    assert_eq!(codes(&r), ["UNAUTHENTICATED"]);
}
