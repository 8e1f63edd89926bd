use serde_json::{Value, json};

use crate::helpers::*;

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

fn outcome(response: &Value) -> Outcome {
    match codes(response).as_slice() {
        [] => {
            assert!(!response["data"].is_null(), "{response}");
            Ok
        }
        [code] if code == "UNAUTHENTICATED" => Unauthenticated,
        [code] if code == "FORBIDDEN" => Forbidden,
        other => panic!("unexpected errors {other:?}: {response}"),
    }
}

/// Every protected operation × anonymous / user / admin.
#[tokio::test]
async fn every_protected_operation_follows_the_policy_for_each_kind_of_caller() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let user = app.register("plainuser", "user passphrase").await;
    let target = app.register("target", "target passphrase").await;
    let target_id = app
        .gql("{ account { id } }", json!({}), Some(&target))
        .await["data"]["account"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

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
        for (caller, token) in [
            ("anonymous", None),
            ("user", Some(user.as_str())),
            ("admin", Some(admin.as_str())),
        ] {
            let index = match caller {
                "anonymous" => 0,
                "user" => 1,
                _ => 2,
            };
            let expected = op.expected[index];
            let id = app.create_product(&admin, "Fixture", "5.00").await;
            let before = app.product_count(&admin).await;
            let variables = json!({ "id": id, "uid": target_id });
            let r = app.gql(op.query, variables, token).await;
            assert_eq!(outcome(&r), expected, "{} as {caller}: {r}", op.name);

            if expected != Ok {
                // A refused call changes nothing.
                assert_eq!(
                    app.product_count(&admin).await,
                    before,
                    "{} as {caller}",
                    op.name
                );
                let r = app
                    .gql(
                        "query($id:ID!){ product(id:$id){ stock } }",
                        json!({"id": id}),
                        Some(&admin),
                    )
                    .await;
                assert_eq!(r["data"]["product"]["stock"], 1, "{} as {caller}", op.name);
            }
        }
    }
}

#[tokio::test]
async fn created_by_is_admin_only_and_the_rest_of_the_product_still_comes_back() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let user = app.register("curious", "curious passphrase").await;
    let id = app.create_product(&admin, "Teapot", "19.99").await;

    let query = "query($id:ID!){ product(id:$id){ id name price createdBy { username } } }";
    let r = app.gql(query, json!({"id": id}), Some(&user)).await;
    assert_eq!(codes(&r), ["FORBIDDEN"], "{r}");
    assert_eq!(r["errors"][0]["path"], json!(["product", "createdBy"]));
    assert_eq!(r["data"]["product"]["name"], "Teapot");
    assert_eq!(r["data"]["product"]["price"], "19.99");
    assert_eq!(
        r["data"]["product"].get("createdBy"),
        Some(&Value::Null),
        "the refused field is present and null: {r}"
    );

    let r = app.gql(query, json!({"id": id}), Some(&admin)).await;
    assert_no_errors(&r);
    assert_eq!(r["data"]["product"]["createdBy"]["username"], "admin");
}

#[tokio::test]
async fn a_user_cannot_grant_themselves_admin() {
    let app = spawn_app().await;
    let _admin = app.admin_token().await;
    let user = app.register("climber", "climber passphrase").await;
    let id = app.gql("{ account { id } }", json!({}), Some(&user)).await["data"]["account"]["id"]
        .clone();
    let r = app
        .gql(
            "mutation($id:ID!){ setUserRole(userId:$id, role: ADMIN){ role } }",
            json!({"id": id}),
            Some(&user),
        )
        .await;
    assert_eq!(codes(&r), ["FORBIDDEN"]);
    let r = app.login("climber", "climber passphrase").await;
    assert_eq!(r["data"]["login"]["account"]["role"], "USER");
}

#[tokio::test]
async fn usernames_that_look_like_roles_gain_nothing() {
    let app = spawn_app().await;
    // With no admin yet, `admin` is an ordinary username and its owner an ordinary user.
    for name in ["admin", "role.admin", "role-admin", "role_admin"] {
        let token = app.register(name, "lookalike passphrase").await;
        let r = app
            .gql(
                r#"mutation{ createProduct(input:{name:"X", price:"1"}){ id } }"#,
                json!({}),
                Some(&token),
            )
            .await;
        assert_eq!(codes(&r), ["FORBIDDEN"], "{name}: {r}");
        let r = app
            .gql("{ users { totalCount } }", json!({}), Some(&token))
            .await;
        assert_eq!(codes(&r), ["FORBIDDEN"], "{name}: {r}");
    }
    let r = app
        .gql(r#"mutation{ register(input:{username:"Admin", password:"lookalike passphrase"}){ accessToken } }"#, json!({}), None)
        .await;
    assert_eq!(codes(&r), ["CONFLICT"], "taken, ignoring case: {r}");
    // `role:admin` is not a valid username at all.
    let r = app
        .gql(r#"mutation{ register(input:{username:"role:admin", password:"lookalike passphrase"}){ accessToken } }"#, json!({}), None)
        .await;
    assert_eq!(codes(&r), ["BAD_USER_INPUT"]);
}
