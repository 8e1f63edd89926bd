use serde_json::{Value, json};

use crate::kit::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Ok,
    Unauthenticated,
    Forbidden,
}
use Outcome::*;

struct Operation {
    name: &'static str,
    query: &'static str,
    /// The roles that may call it (anonymous callers never may), in the shop policy
    /// (`tests/fixtures/shop`); the shipped policy defines `user` and `admin` the same way.
    allowed: &'static [&'static str],
}

fn outcome(response: &Response) -> Outcome {
    match response.codes().as_slice() {
        [] => {
            assert!(!response.raw_data().is_null(), "{response}");
            Ok
        }
        ["UNAUTHENTICATED"] => Unauthenticated,
        ["FORBIDDEN"] => Forbidden,
        other => panic!("unexpected errors {other:?}: {response}"),
    }
}

const SIGNED_IN: &[&str] = &["user", "admin", "editor", "seller", "auditor"];

/// Every protected operation, on a product an admin created and on another account.
const OPERATIONS: &[Operation] = &[
    Operation {
        name: "account",
        query: "{ account { id } }",
        allowed: SIGNED_IN,
    },
    Operation {
        name: "products",
        query: "{ products { totalCount } }",
        allowed: SIGNED_IN,
    },
    Operation {
        name: "product",
        query: "query($id:ID!){ product(id:$id){ id } }",
        allowed: SIGNED_IN,
    },
    Operation {
        name: "users",
        query: "{ users { totalCount nodes { username } } }",
        allowed: &["admin", "auditor"],
    },
    Operation {
        name: "roles",
        query: "{ roles { name } }",
        allowed: &["admin", "auditor"],
    },
    Operation {
        name: "policy",
        query: "{ policy { version } }",
        allowed: &["admin", "auditor"],
    },
    Operation {
        name: "auditEvents",
        query: "{ auditEvents { totalCount } }",
        allowed: &["admin", "auditor"],
    },
    Operation {
        name: "createProduct",
        query: r#"mutation{ createProduct(input:{name:"New", price:"1.00"}){ id } }"#,
        allowed: &["admin", "editor", "seller"],
    },
    Operation {
        name: "updateProduct",
        query: r#"mutation($id:ID!){ updateProduct(id:$id, input:{stock: 99}){ stock } }"#,
        // A seller may update only their own products; this one is an admin's.
        allowed: &["admin", "editor"],
    },
    Operation {
        name: "adjustStock",
        query: "mutation($id:ID!){ adjustStock(id:$id, delta: 4){ stock version } }",
        // A seller may restock only their own products; this one is an admin's.
        allowed: &["admin", "editor"],
    },
    Operation {
        name: "deleteProduct",
        query: "mutation($id:ID!){ deleteProduct(id:$id) }",
        allowed: &["admin"],
    },
    Operation {
        name: "deactivateAccount",
        query: "mutation($uid:ID!){ deactivateAccount(userId:$uid){ deactivatedAt } }",
        allowed: &["admin"],
    },
    Operation {
        name: "reactivateAccount",
        query: "mutation($uid:ID!){ reactivateAccount(userId:$uid){ deactivatedAt } }",
        allowed: &["admin"],
    },
    Operation {
        name: "setUserRole",
        query: "mutation($uid:ID!){ setUserRole(userId:$uid, role: \"user\"){ role } }",
        allowed: &["admin"],
    },
];

/// Calls every protected operation as each of `callers` (a role name, or `anonymous`) and
/// checks the outcome, and that a refused call changed nothing.
async fn every_operation_follows_the_policy(app: &TestApp, callers: &[(&str, Actor)]) {
    let admin = app.admin_named("opsadmin").await;
    let target = app.user("target").await;
    for op in OPERATIONS {
        for (caller, actor) in callers {
            let expected = match *caller {
                "anonymous" => Unauthenticated,
                role if op.allowed.contains(&role) => Ok,
                _ => Forbidden,
            };
            let id = admin.add_product("Fixture", "5.00").await.id;
            let before = admin.product_count().await;
            let variables = json!({ "id": id, "uid": target.id() });
            let r = actor.query(op.query, variables).await;
            assert_eq!(outcome(&r), expected, "{} as {caller}: {r}", op.name);

            if expected != Ok {
                // A refused call changes nothing.
                assert_eq!(
                    admin.product_count().await,
                    before,
                    "{} as {caller}",
                    op.name
                );
                let product = admin.product(&id).await.ok();
                assert_eq!(product.map(|p| p.stock), Some(1), "{} as {caller}", op.name);
            }
        }
    }
}

/// Every protected operation × anonymous / user / admin, under the shipped policy.
#[tokio::test]
async fn every_protected_operation_follows_the_policy_for_each_kind_of_caller() {
    let app = TestApp::spawn().await;
    let callers = [
        ("anonymous", app.anonymous()),
        ("user", app.user("plainuser").await),
        ("admin", app.admin().await),
    ];
    every_operation_follows_the_policy(&app, &callers).await;
}

/// The same, under a policy with three more roles (`editor`, `seller`, `auditor`), defined
/// only in its file.
#[tokio::test]
async fn every_protected_operation_follows_a_policy_with_more_roles() {
    let policy = shop_policy();
    let app = TestApp::builder().policy_dir(policy.path()).spawn().await;
    let mut callers = vec![
        ("anonymous", app.anonymous()),
        ("user", app.user("plainuser").await),
        ("admin", app.admin().await),
    ];
    for role in ["editor", "seller", "auditor"] {
        let actor = app
            .user_in_role(&format!("a{role}"), Role::Named(role))
            .await;
        callers.push((role, actor));
    }
    every_operation_follows_the_policy(&app, &callers).await;
}

#[tokio::test]
async fn created_by_is_admin_only_and_the_rest_of_the_product_still_comes_back() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.user_with("curious", "curious passphrase").await;
    let id = admin.add_product("Teapot", "19.99").await.id;

    let r = user.product_with_creator(&id).await;
    assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");
    assert_eq!(r.error().path(), ["product", "createdBy"]);
    let product = r.data().unwrap().unwrap().product;
    assert_eq!(product.name, "Teapot");
    assert_eq!(product.price, "19.99");
    assert_eq!(
        r.raw_data()["product"].get("createdBy"),
        Some(&Value::Null),
        "the refused field is present and null: {r}"
    );
    // With only that field selected, the product is still there and holds the null
    // (async-graphql turns an object whose every field failed into null), in a list as well.
    let r = user
        .query(
            "query($id: ID!) { product(id: $id) { createdBy { id } } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(r.codes(), ["FORBIDDEN"], "{r}");
    assert_eq!(r.raw_data()["product"], json!({"createdBy": null}), "{r}");
    let r = user
        .query(
            "{ products(first: 1) { nodes { createdBy { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        r.raw_data()["products"]["nodes"],
        json!([{"createdBy": null}]),
        "{r}"
    );

    let product = admin.product_with_creator(&id).await.ok().unwrap();
    assert_eq!(product.created_by.unwrap().username, "admin");
}

#[tokio::test]
async fn a_user_cannot_grant_themselves_admin() {
    let app = TestApp::spawn().await;
    let _admin = app.admin().await;
    let user = app.user_with("climber", "climber passphrase").await;
    let r = user.set_user_role(user.id(), Role::Admin).await;
    assert_eq!(r.codes(), ["FORBIDDEN"]);
    let session = app
        .anonymous()
        .login("climber", "climber passphrase")
        .await
        .ok();
    assert_eq!(session.account.role, Role::User);
}

#[tokio::test]
async fn usernames_that_look_like_roles_gain_nothing() {
    let app = TestApp::spawn().await;
    // With no admin yet, `admin` is an ordinary username and its owner an ordinary user.
    for name in ["admin", "role.admin", "role-admin", "role_admin"] {
        let lookalike = app.user_with(name, "lookalike passphrase").await;
        let r = lookalike.create_product(&NewProduct::new("X", "1")).await;
        assert_eq!(r.codes(), ["FORBIDDEN"], "{name}: {r}");
        let r = lookalike.users(Page::default()).await;
        assert_eq!(r.codes(), ["FORBIDDEN"], "{name}: {r}");
    }
    let r = app
        .anonymous()
        .register("Admin", "lookalike passphrase")
        .await;
    assert_eq!(r.codes(), ["CONFLICT"], "taken, ignoring case: {r}");
    // `role:admin` is not a valid username at all.
    let r = app
        .anonymous()
        .register("role:admin", "lookalike passphrase")
        .await;
    assert_eq!(r.codes(), ["BAD_USER_INPUT"]);
}
