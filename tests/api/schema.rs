use serde::Deserialize;
use serde_json::json;

use crate::kit::{internals::sdl, *};

/// The checked-in schema is what frontend teams read: it must be what the server serves.
#[test]
fn schema_graphql_matches_the_served_schema() {
    let output = storefront(&["print-schema"]).succeeds();
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(printed, sdl(), "the binary prints the served schema");
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
            .expect("schema.graphql exists");
    assert!(
        checked_in == printed,
        "schema.graphql is out of date: run `cargo run -- print-schema > schema.graphql`"
    );
}

#[derive(Deserialize)]
struct Introspection {
    #[serde(rename = "__schema")]
    schema: RootTypes,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RootTypes {
    query_type: Fields,
    mutation_type: Fields,
}

#[derive(Deserialize)]
struct Fields {
    fields: Vec<Named>,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

impl Fields {
    fn names(&self) -> Vec<&str> {
        self.fields.iter().map(|f| f.name.as_str()).collect()
    }
}

#[tokio::test]
async fn introspection_shows_the_same_schema() {
    let app = TestApp::spawn().await;
    // An admin sees every field (see `visibility` for what others see).
    let admin = app.admin().await;
    let schema = admin
        .query_as::<Introspection>(
            "{ __schema { queryType { fields { name } } mutationType { fields { name } } } }",
            json!({}),
        )
        .await
        .ok()
        .schema;
    let (query, mutation) = (schema.query_type.names(), schema.mutation_type.names());
    let sdl = sdl();
    for name in query.iter().chain(&mutation) {
        assert!(
            sdl.contains(&format!("\t{name}")),
            "{name} missing from the SDL"
        );
    }
    assert_eq!(
        query,
        [
            "myPermissions",
            "policy",
            "roles",
            "account",
            "products",
            "product",
            "node",
            "nodes",
            "users",
            "auditEvents"
        ]
    );
    assert_eq!(
        mutation,
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
            "adjustStock",
            "setUserRole",
            "deactivateAccount",
            "reactivateAccount",
            "grantPermission",
            "revokePermission",
            "addRoleInheritance",
            "removeRoleInheritance",
            "createRole",
            "deleteRole",
        ]
    );
}
