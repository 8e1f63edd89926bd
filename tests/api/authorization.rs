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
    /// Expected outcome for anonymous, user and admin callers.
    expected: [Outcome; 3],
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

/// Every protected operation × anonymous / user / admin.
#[tokio::test]
async fn every_protected_operation_follows_the_policy_for_each_kind_of_caller() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.user_with("plainuser", "user passphrase").await;
    let target = app.user_with("target", "target passphrase").await;

    let operations = [
        Operation {
            name: "account",
            query: "{ account { id } }",
            expected: [Unauthenticated, Ok, Ok],
        },
        Operation {
            name: "products",
            query: "{ products { totalCount } }",
            expected: [Unauthenticated, Ok, Ok],
        },
        Operation {
            name: "product",
            query: "query($id:ID!){ product(id:$id){ id } }",
            expected: [Unauthenticated, Ok, Ok],
        },
        Operation {
            name: "users",
            query: "{ users { totalCount nodes { username } } }",
            expected: [Unauthenticated, Forbidden, Ok],
        },
        Operation {
            name: "createProduct",
            query: r#"mutation{ createProduct(input:{name:"New", price:"1.00"}){ id } }"#,
            expected: [Unauthenticated, Forbidden, Ok],
        },
        Operation {
            name: "updateProduct",
            query: r#"mutation($id:ID!){ updateProduct(id:$id, input:{stock: 99}){ stock } }"#,
            expected: [Unauthenticated, Forbidden, Ok],
        },
        Operation {
            name: "deleteProduct",
            query: "mutation($id:ID!){ deleteProduct(id:$id) }",
            expected: [Unauthenticated, Forbidden, Ok],
        },
        Operation {
            name: "deactivateAccount",
            query: "mutation($uid:ID!){ deactivateAccount(userId:$uid){ deactivatedAt } }",
            expected: [Unauthenticated, Forbidden, Ok],
        },
        Operation {
            name: "reactivateAccount",
            query: "mutation($uid:ID!){ reactivateAccount(userId:$uid){ deactivatedAt } }",
            expected: [Unauthenticated, Forbidden, Ok],
        },
        Operation {
            name: "setUserRole",
            query: "mutation($uid:ID!){ setUserRole(userId:$uid, role: USER){ role } }",
            expected: [Unauthenticated, Forbidden, Ok],
        },
    ];

    for op in &operations {
        for (index, (caller, actor)) in [
            ("anonymous", app.anonymous()),
            ("user", user.clone()),
            ("admin", admin.clone()),
        ]
        .into_iter()
        .enumerate()
        {
            let expected = op.expected[index];
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
