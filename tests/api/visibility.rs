//! Can-see equals can-do: introspection shows each caller exactly the fields the policy lets
//! them use, and a denial names what was missing.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::json;

use crate::kit::*;

/// Every guarded field, with a call that exercises it.
const GUARDED: &[(&str, &str, &str)] = &[
    ("Query", "account", "{ account { id } }"),
    ("Query", "products", "{ products { totalCount } }"),
    ("Query", "product", r#"{ product(id: "x") { id } }"#),
    ("Query", "users", "{ users { totalCount } }"),
    ("Query", "roles", "{ roles { name } }"),
    ("Query", "policy", "{ policy { version } }"),
    (
        "Mutation",
        "grantPermission",
        r#"mutation { grantPermission(role: "user", permission: {object: "product", action: "read"}) { version } }"#,
    ),
    (
        "Mutation",
        "deleteRole",
        r#"mutation { deleteRole(name: "nobody") { version } }"#,
    ),
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
        "adjustStock",
        r#"mutation { adjustStock(id: "x", delta: 1) { id } }"#,
    ),
    (
        "Mutation",
        "setUserRole",
        r#"mutation { setUserRole(userId: "x", role: "user") { id } }"#,
    ),
    (
        "Product",
        "createdBy",
        "{ products(first: 1) { nodes { createdBy { id } } } }",
    ),
    ("Query", "auditEvents", "{ auditEvents { totalCount } }"),
    (
        "Product",
        "history",
        "{ products(first: 1) { nodes { history { totalCount } } } }",
    ),
];

#[derive(Deserialize)]
struct TypeQuery {
    #[serde(rename = "__type")]
    of: Option<TypeFields>,
}

#[derive(Deserialize)]
struct TypeFields {
    fields: Option<Vec<Named>>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

async fn visible_fields(caller: &Actor, type_name: &str) -> BTreeSet<String> {
    let r = caller
        .query_as::<TypeQuery>(
            "query($t:String!){ __type(name:$t){ fields { name } } }",
            json!({"t": type_name}),
        )
        .await;
    r.data()
        .and_then(|t| t.of)
        .and_then(|t| t.fields)
        .map(|fields| fields.into_iter().map(|f| f.name).collect())
        .unwrap_or_default()
}

/// Whether the call was let through by the guard (it may still fail for other reasons).
fn allowed(r: &Response) -> bool {
    !r.codes()
        .iter()
        .any(|c| *c == "FORBIDDEN" || *c == "UNAUTHENTICATED")
}

/// For each caller (`anonymous`, or the username of an account whose password is
/// [`password_of`] it, or `admin`), each guarded field is shown exactly when the call is let
/// through.
async fn introspection_matches_the_guards(app: &TestApp, callers: &[&str]) {
    let admin = app.admin().await;
    admin.add_product("Visible", "1").await;
    // A fresh sign-in for every call: some calls (logoutAll) end the caller's sessions.
    let sign_in = async |caller: &str| -> Actor {
        match caller {
            "anonymous" => app.anonymous(),
            "admin" => app.sign_in("admin", ADMIN_PASSWORD).await,
            username => app.sign_in(username, &password_of(username)).await,
        }
    };
    for caller in callers {
        for (type_name, field, call) in GUARDED {
            let actor = sign_in(caller).await;
            let shown = visible_fields(&actor, type_name).await.contains(*field);
            let r = actor.query(call, json!({})).await;
            assert_eq!(
                shown,
                allowed(&r),
                "{caller}: {type_name}.{field} shown={shown} but the call says {r}"
            );
        }
    }
}

#[tokio::test]
async fn introspection_shows_each_role_exactly_what_the_guards_allow() {
    let app = TestApp::spawn().await;
    app.user("looker").await;
    introspection_matches_the_guards(&app, &["anonymous", "looker", "admin"]).await;
    // Anonymous callers see no admin mutations, and what everyone may do stays visible.
    let anonymous = visible_fields(&app.anonymous(), "Mutation").await;
    assert_eq!(
        anonymous,
        ["login", "logout", "refreshToken", "register"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    let user = app.sign_in("looker", &password_of("looker")).await;
    let user_fields = visible_fields(&user, "Mutation").await;
    assert!(user_fields.contains("logout") && !user_fields.contains("createProduct"));
}

/// The same under a policy with three more roles, defined only in its file; and each role
/// sees what the policy says it may do, and nothing else.
#[tokio::test]
async fn introspection_follows_a_policy_with_more_roles() {
    let policy = shop_policy();
    let app = TestApp::builder().policy_dir(policy.path()).spawn().await;
    app.user("looker").await;
    for role in ["editor", "seller", "auditor"] {
        app.user_in_role(role, Role::Named(role)).await;
    }
    introspection_matches_the_guards(
        &app,
        &[
            "anonymous",
            "looker",
            "admin",
            "editor",
            "seller",
            "auditor",
        ],
    )
    .await;

    let shown = async |role: &str, type_name: &str| {
        let actor = app.sign_in(role, &password_of(role)).await;
        visible_fields(&actor, type_name).await
    };
    let editor = shown("editor", "Mutation").await;
    assert!(editor.contains("updateProduct") && !editor.contains("deleteProduct"));
    let seller = shown("seller", "Mutation").await;
    assert!(seller.contains("deleteProduct") && !seller.contains("setUserRole"));
    let auditor = shown("auditor", "Query").await;
    assert!(auditor.contains("users") && auditor.contains("roles"));
    assert!(!shown("auditor", "Mutation").await.contains("createProduct"));
}

#[tokio::test]
async fn hidden_fields_follow_the_policy_file() {
    let dir = policy_folder_with("p, role:user, product, create");
    let app = TestApp::builder().policy_dir(dir.path()).spawn().await;
    let user = app.user_with("maker", "maker passphrase").await;
    assert!(
        visible_fields(&user, "Mutation")
            .await
            .contains("createProduct")
    );
    assert!(
        !visible_fields(&user, "Mutation")
            .await
            .contains("deleteProduct")
    );
}

#[tokio::test]
async fn a_denial_names_the_missing_permission_and_my_permissions_lists_the_grants() {
    let app = TestApp::spawn().await;
    let user = app.user_with("asker", "asker passphrase").await;
    let r = user.create_product(&NewProduct::new("N", "1")).await;
    assert_eq!(r.codes(), ["FORBIDDEN"]);
    assert_eq!(r.error().extension("object"), "product");
    assert_eq!(r.error().extension("action"), "create");

    let permissions = async |caller: &Actor| -> BTreeSet<String> {
        caller
            .my_permissions()
            .await
            .data()
            .unwrap()
            .into_iter()
            .map(|p| format!("{}:{}", p.object, p.action))
            .collect()
    };
    assert_eq!(
        permissions(&user).await,
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
    assert!(permissions(&app.anonymous()).await.is_empty());
    let admin = app.admin().await;
    let granted = permissions(&admin).await;
    assert!(granted.contains("product:create") && granted.contains("user:set_role"));
    let r = app.bearer("not-a-token").my_permissions().await;
    assert_eq!(r.codes(), ["UNAUTHENTICATED"]);
}
