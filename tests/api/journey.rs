use crate::kit::*;

#[tokio::test]
async fn a_new_user_registers_logs_in_and_browses_while_an_admin_manages_products() {
    let app = TestApp::spawn().await;

    // Register: the response signs the user in.
    let payload = app
        .anonymous()
        .register_account(&NewAccount {
            username: "Dana",
            password: "dana's passphrase",
            email: Some("dana@example.com"),
        })
        .await
        .ok();
    assert_eq!(payload.token_type, "Bearer");
    assert_eq!(payload.expires_in, 3600);
    assert_eq!(payload.account.username, "Dana");
    assert_eq!(payload.account.email.as_deref(), Some("dana@example.com"));
    assert_eq!(payload.account.role, Role::User);
    let registered = app.anonymous().with_session(payload.clone());
    assert_eq!(registered.account().await.ok().username, "Dana");

    // Log in (the username is matched ignoring case) and see the account.
    let user = app.sign_in("dana", "dana's passphrase").await;
    let account = user.account().await.ok();
    assert_eq!(account.username, "Dana");
    assert_eq!(account.id, payload.account.id);

    // An admin creates products; the user pages through them.
    let admin = app.admin().await;
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
        ids.push(admin.add_product(name, &format!("{}.50", i + 1)).await.id);
    }

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let products = user
            .products(Page::first(2).after(after.as_deref()))
            .await
            .ok();
        assert_eq!(products.total_count, 5);
        assert_eq!(products.nodes.len(), products.edges.len());
        assert_eq!(products.page_info.has_previous_page, pages > 0);
        assert_eq!(
            products.page_info.end_cursor.as_deref(),
            Some(products.edges.last().unwrap().cursor.as_str())
        );
        seen.extend(products.edges.iter().map(|e| e.node.id.clone()));
        pages += 1;
        if !products.page_info.has_next_page {
            break;
        }
        after = products.page_info.end_cursor;
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen, ids,
        "pages list every product once, in creation order"
    );

    // Search is case-insensitive on the name.
    let found = user.products(Page::search("LAMP")).await.ok();
    assert_eq!(found.total_count, 2);
    assert_eq!(found.names(), ["Desk lamp", "Lamp shade"]);

    // A single product by id, and the admin's update and delete.
    let product = user.product(&ids[0]).await.ok().unwrap();
    assert_eq!(product.name, "Desk lamp");
    assert_eq!(product.price, "1.50");

    let changes = ProductChanges {
        price: Some("24.99".to_owned()),
        stock: Some(7),
        ..ProductChanges::default()
    };
    let updated = admin.update_product(&ids[0], &changes).await.ok();
    assert_eq!(updated.name, "Desk lamp", "omitted fields keep their value");
    assert_eq!(updated.price, "24.99");
    assert_eq!(updated.stock, 7);

    assert_eq!(admin.delete_product(&ids[0]).await.ok(), ids[0]);
    assert!(user.product(&ids[0]).await.ok().is_none());
    assert_eq!(user.product_count().await, 4);
}

#[tokio::test]
async fn created_by_names_the_admin_who_created_the_product() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let id = admin.add_product("Kettle", "30").await.id;
    let product = admin.product_with_creator(&id).await.ok().unwrap();
    assert_eq!(product.product.price, "30.00");
    let creator = product.created_by.unwrap();
    assert_eq!(creator.username, "admin");
    assert_eq!(creator.role, Role::Admin);
}

#[tokio::test]
async fn the_playground_is_served_for_browsers() {
    let app = TestApp::spawn().await;
    for path in ["/", "/graphql"] {
        let response = app
            .get_accepting(path, "text/html,application/xhtml+xml")
            .await;
        assert_eq!(response.status(), 200);
        let html = response.text().await.unwrap();
        assert!(html.contains("GraphiQL"), "{path}");
        assert!(
            html.contains("/storefront-playground.js\""),
            "the page starts the sign-in control"
        );
    }
}
