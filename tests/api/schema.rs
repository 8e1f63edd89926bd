use std::process::Command;

/// The checked-in schema is what frontend teams read: it must be what the server serves.
#[test]
fn schema_graphql_matches_the_served_schema() {
    let output = Command::new(env!("CARGO_BIN_EXE_storefront"))
        .arg("print-schema")
        .output()
        .expect("storefront runs");
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        printed,
        storefront::graphql::sdl(),
        "the binary prints the served schema"
    );
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
            .expect("schema.graphql exists");
    assert!(
        checked_in == printed,
        "schema.graphql is out of date: run `cargo run -- print-schema > schema.graphql`"
    );
}

#[tokio::test]
async fn introspection_shows_the_same_schema() {
    let app = crate::helpers::spawn_app().await;
    // An admin sees every field (see `visibility` for what others see).
    let admin = app.admin_token().await;
    let r = app
        .gql(
            "{ __schema { queryType { fields { name } } mutationType { fields { name } } } }",
            serde_json::json!({}),
            Some(&admin),
        )
        .await;
    let names = |kind: &str| -> Vec<String> {
        r["data"]["__schema"][kind]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let sdl = storefront::graphql::sdl();
    for name in names("queryType").into_iter().chain(names("mutationType")) {
        assert!(
            sdl.contains(&format!("\t{name}")),
            "{name} missing from the SDL"
        );
    }
    assert_eq!(
        names("queryType"),
        ["myPermissions", "account", "products", "product", "users"]
    );
    assert_eq!(
        names("mutationType"),
        [
            "register",
            "login",
            "refreshToken",
            "logout",
            "logoutAll",
            "changePassword",
            "deleteAccount",
            "createProduct",
            "updateProduct",
            "deleteProduct",
            "setUserRole",
            "deactivateAccount",
            "reactivateAccount",
        ]
    );
}
