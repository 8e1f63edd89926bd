use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_new_user_registers_logs_in_and_browses_while_an_admin_manages_products() {
    let app = spawn_app().await;

    // Register: the response signs the user in.
    let r = app
        .gql(
            r#"mutation { register(input: {username: "Dana", password: "dana's passphrase", email: "dana@example.com"}) {
                accessToken tokenType expiresIn account { id username email role createdAt } } }"#,
            json!({}),
            None,
        )
        .await;
    assert_no_errors(&r);
    let payload = &r["data"]["register"];
    assert_eq!(payload["tokenType"], "Bearer");
    assert_eq!(payload["expiresIn"], 3600);
    assert_eq!(payload["account"]["username"], "Dana");
    assert_eq!(payload["account"]["email"], "dana@example.com");
    assert_eq!(payload["account"]["role"], "USER");
    let registered_token = payload["accessToken"].as_str().unwrap();
    let r = app
        .gql(
            "{ account { username } }",
            json!({}),
            Some(registered_token),
        )
        .await;
    assert_eq!(r["data"]["account"]["username"], "Dana");

    // Log in (the username is matched ignoring case) and see the account.
    let r = app.login("dana", "dana's passphrase").await;
    assert_no_errors(&r);
    let user = r["data"]["login"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .gql("{ account { id username role } }", json!({}), Some(&user))
        .await;
    assert_no_errors(&r);
    assert_eq!(r["data"]["account"]["username"], "Dana");
    assert_eq!(r["data"]["account"]["id"], payload["account"]["id"]);

    // An admin creates products; the user pages through them.
    let admin = app.admin_token().await;
    let mut ids = Vec::new();
    for (i, name) in [
        "Desk lamp",
        "Desk chair",
        "Coffee mug",
        "Lamp shade",
        "Notebook",
    ]
    .iter()
    .enumerate()
    {
        ids.push(
            app.create_product(&admin, name, &format!("{}.50", i + 1))
                .await,
        );
    }

    let page_query = "query($after:String){ products(first: 2, after: $after) {
        totalCount edges { cursor node { id name price } } nodes { id }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";
    let mut seen = Vec::new();
    let mut after = serde_json::Value::Null;
    let mut pages = 0;
    loop {
        let r = app
            .gql(page_query, json!({ "after": after }), Some(&user))
            .await;
        assert_no_errors(&r);
        let products = &r["data"]["products"];
        assert_eq!(products["totalCount"], 5);
        let edges = products["edges"].as_array().unwrap();
        assert_eq!(products["nodes"].as_array().unwrap().len(), edges.len());
        assert_eq!(products["pageInfo"]["hasPreviousPage"], pages > 0);
        assert_eq!(
            products["pageInfo"]["endCursor"],
            edges.last().unwrap()["cursor"]
        );
        seen.extend(
            edges
                .iter()
                .map(|e| e["node"]["id"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        if products["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = products["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen, ids,
        "pages list every product once, in creation order"
    );

    // Search is case-insensitive on the name.
    let r = app
        .gql(
            r#"{ products(search: "LAMP") { totalCount nodes { name } } }"#,
            json!({}),
            Some(&user),
        )
        .await;
    assert_no_errors(&r);
    assert_eq!(r["data"]["products"]["totalCount"], 2);
    let names: Vec<_> = r["data"]["products"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Desk lamp", "Lamp shade"]);

    // A single product by id, and the admin's update and delete.
    let product = "query($id:ID!){ product(id:$id){ id name price stock } }";
    let r = app.gql(product, json!({"id": ids[0]}), Some(&user)).await;
    assert_eq!(r["data"]["product"]["name"], "Desk lamp");
    assert_eq!(r["data"]["product"]["price"], "1.50");

    let r = app
        .gql(
            r#"mutation($id:ID!){ updateProduct(id:$id, input:{price:"24.99", stock: 7}){ name price stock updatedAt createdAt } }"#,
            json!({"id": ids[0]}),
            Some(&admin),
        )
        .await;
    assert_no_errors(&r);
    let updated = &r["data"]["updateProduct"];
    assert_eq!(
        updated["name"], "Desk lamp",
        "omitted fields keep their value"
    );
    assert_eq!(updated["price"], "24.99");
    assert_eq!(updated["stock"], 7);

    let r = app
        .gql(
            "mutation($id:ID!){ deleteProduct(id:$id) }",
            json!({"id": ids[0]}),
            Some(&admin),
        )
        .await;
    assert_no_errors(&r);
    assert_eq!(r["data"]["deleteProduct"], ids[0]);
    let r = app.gql(product, json!({"id": ids[0]}), Some(&user)).await;
    assert_no_errors(&r);
    assert!(r["data"]["product"].is_null());
    assert_eq!(app.product_count(&user).await, 4);
}

#[tokio::test]
async fn created_by_names_the_admin_who_created_the_product() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let id = app.create_product(&admin, "Kettle", "30").await;
    let r = app
        .gql(
            "query($id:ID!){ product(id:$id){ price createdBy { username role } } }",
            json!({"id": id}),
            Some(&admin),
        )
        .await;
    assert_no_errors(&r);
    assert_eq!(r["data"]["product"]["price"], "30.00");
    assert_eq!(r["data"]["product"]["createdBy"]["username"], "admin");
    assert_eq!(r["data"]["product"]["createdBy"]["role"], "ADMIN");
}

#[tokio::test]
async fn the_playground_is_served_for_browsers() {
    let app = spawn_app().await;
    for path in ["/", "/graphql"] {
        let response = app
            .client
            .get(format!("{}{path}", app.url))
            .header("Accept", "text/html,application/xhtml+xml")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let html = response.text().await.unwrap();
        assert!(html.contains("GraphiQL"), "{path}");
        assert!(
            html.contains("Authorization"),
            "the page explains the header"
        );
    }
}
