use async_graphql::parser::{
    parse_schema,
    types::{
        ConstDirective, DirectiveDefinition, FieldDefinition, InputValueDefinition, TypeDefinition,
        TypeKind, TypeSystemDefinition,
    },
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::kit::{internals::sdl, *};

fn checked_in_schema() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql exists")
}

/// The checked-in schema is what frontend teams read: it must be what the server serves.
#[test]
fn schema_graphql_matches_the_served_schema() {
    let output = storefront(&["print-schema"]).succeeds();
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(printed, sdl(), "the binary prints the served schema");
    let checked_in = checked_in_schema();
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

/// Everything introspection tells about the schema: every type with its description,
/// `specifiedByURL`, fields, arguments, default values and deprecations, every directive, and
/// the root types.
const FULL_INTROSPECTION: &str = r#"
query {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types {
      kind name description specifiedByURL
      interfaces { name } possibleTypes { name }
      fields(includeDeprecated: true) {
        name description isDeprecated deprecationReason type { ...Ref }
        args(includeDeprecated: true) { ...Input }
      }
      inputFields(includeDeprecated: true) { ...Input }
      enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
    }
    directives { name description locations isRepeatable args(includeDeprecated: true) { ...Input } }
  }
}
fragment Input on __InputValue {
  name description type { ...Ref } defaultValue isDeprecated deprecationReason
}
fragment Ref on __Type {
  kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } }
}
"#;

/// The scalars every schema has, which SDL leaves out.
const BUILT_IN_SCALARS: &[&str] = &["Int", "Float", "String", "Boolean", "ID"];
/// The directives the GraphQL spec defines, which an SDL file may leave out (async-graphql
/// writes `@include`, `@skip` and `@specifiedBy`, not `@deprecated` or `@oneOf`).
const BUILT_IN_DIRECTIVES: &[&str] = &["include", "skip", "deprecated", "specifiedBy", "oneOf"];

/// A schema as lines that say everything a client can learn of it, in an order both sources
/// share: types by name, each member in declaration order.
#[derive(Debug, PartialEq)]
struct Described {
    /// Each type's lines (its first line names it), by name.
    types: std::collections::BTreeMap<String, Vec<String>>,
    /// Each directive's lines, by name.
    directives: std::collections::BTreeMap<String, Vec<String>>,
    roots: String,
}

fn described(line: &str, description: Option<&str>) -> Vec<String> {
    let mut lines = vec![line.to_owned()];
    if let Some(description) = description {
        lines.push(format!("  description {description:?}"));
    }
    lines
}

fn deprecation(reason: Option<&str>) -> Option<String> {
    reason.map(|reason| format!("  deprecated {reason:?}"))
}

/// From introspection's answer.
fn described_by_introspection(schema: &Value) -> Described {
    fn type_ref(ty: &Value) -> String {
        match ty["kind"].as_str() {
            Some("NON_NULL") => format!("{}!", type_ref(&ty["ofType"])),
            Some("LIST") => format!("[{}]", type_ref(&ty["ofType"])),
            _ => ty["name"].as_str().expect("a named type").to_owned(),
        }
    }
    fn text(value: &Value) -> Option<&str> {
        value.as_str()
    }
    fn input(kind: &str, value: &Value) -> Vec<String> {
        let default = text(&value["defaultValue"])
            .map(|default| format!(" = {default}"))
            .unwrap_or_default();
        let mut lines = described(
            &format!(
                "{kind} {}: {}{default}",
                value["name"].as_str().unwrap(),
                type_ref(&value["type"])
            ),
            text(&value["description"]),
        );
        if value["isDeprecated"] == true {
            lines.extend(deprecation(text(&value["deprecationReason"])));
        }
        lines
    }
    let names = |list: &Value| -> Vec<String> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|item| item["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let list = |value: &Value| value.as_array().cloned().unwrap_or_default();

    let mut types = std::collections::BTreeMap::new();
    for ty in list(&schema["types"]) {
        let name = ty["name"].as_str().unwrap();
        if name.starts_with("__") || BUILT_IN_SCALARS.contains(&name) {
            continue;
        }
        let kind = ty["kind"].as_str().unwrap();
        let mut head = format!("{kind} {name}");
        let interfaces = names(&ty["interfaces"]);
        if !interfaces.is_empty() {
            head += &format!(" implements {}", interfaces.join(" & "));
        }
        if kind == "UNION" {
            head += &format!(" = {}", names(&ty["possibleTypes"]).join(" | "));
        }
        let mut lines = described(&head, text(&ty["description"]));
        if let Some(url) = text(&ty["specifiedByURL"]) {
            lines.push(format!("  specifiedBy {url:?}"));
        }
        for field in list(&ty["fields"]) {
            lines.extend(described(
                &format!(
                    "field {}: {}",
                    field["name"].as_str().unwrap(),
                    type_ref(&field["type"])
                ),
                text(&field["description"]),
            ));
            if field["isDeprecated"] == true {
                lines.extend(deprecation(text(&field["deprecationReason"])));
            }
            for arg in list(&field["args"]) {
                lines.extend(input("  argument", &arg));
            }
        }
        for field in list(&ty["inputFields"]) {
            lines.extend(input("input", &field));
        }
        for value in list(&ty["enumValues"]) {
            lines.extend(described(
                &format!("value {}", value["name"].as_str().unwrap()),
                text(&value["description"]),
            ));
            if value["isDeprecated"] == true {
                lines.extend(deprecation(text(&value["deprecationReason"])));
            }
        }
        types.insert(name.to_owned(), lines);
    }

    let mut directives = std::collections::BTreeMap::new();
    for directive in list(&schema["directives"]) {
        let name = directive["name"].as_str().unwrap();
        let locations: Vec<_> = list(&directive["locations"])
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect();
        let repeatable = if directive["isRepeatable"] == true {
            " repeatable"
        } else {
            ""
        };
        let mut lines = described(
            &format!("directive @{name}{repeatable} on {}", locations.join(" | ")),
            text(&directive["description"]),
        );
        for arg in list(&directive["args"]) {
            lines.extend(input("argument", &arg));
        }
        directives.insert(name.to_owned(), lines);
    }

    let root = |key: &str| schema[key]["name"].as_str().unwrap_or("-").to_owned();
    Described {
        types,
        directives,
        roots: format!(
            "query {} mutation {} subscription {}",
            root("queryType"),
            root("mutationType"),
            root("subscriptionType")
        ),
    }
}

/// From an SDL file.
fn described_by_sdl(sdl: &str) -> Described {
    fn text(description: &Option<async_graphql::Positioned<String>>) -> Option<&str> {
        description.as_ref().map(|d| d.node.as_str())
    }
    fn directive<'a>(
        directives: &'a [async_graphql::Positioned<ConstDirective>],
        name: &str,
    ) -> Option<&'a ConstDirective> {
        directives
            .iter()
            .map(|d| &d.node)
            .find(|d| d.name.node == name)
    }
    /// The reason of an `@deprecated`, with the default the spec gives it.
    fn deprecated(directives: &[async_graphql::Positioned<ConstDirective>]) -> Option<String> {
        directive(directives, "deprecated").map(|d| {
            let reason = match d.get_argument("reason").map(|r| &r.node) {
                Some(async_graphql::Value::String(reason)) => reason.clone(),
                _ => "No longer supported".to_owned(),
            };
            format!("  deprecated {reason:?}")
        })
    }
    fn input(kind: &str, value: &InputValueDefinition) -> Vec<String> {
        let default = value
            .default_value
            .as_ref()
            .map(|default| format!(" = {}", default.node))
            .unwrap_or_default();
        let mut lines = described(
            &format!("{kind} {}: {}{default}", value.name.node, value.ty.node),
            text(&value.description),
        );
        lines.extend(deprecated(&value.directives));
        lines
    }
    fn fields(lines: &mut Vec<String>, fields: &[async_graphql::Positioned<FieldDefinition>]) {
        for field in fields.iter().map(|f| &f.node) {
            lines.extend(described(
                &format!("field {}: {}", field.name.node, field.ty.node),
                text(&field.description),
            ));
            lines.extend(deprecated(&field.directives));
            for arg in &field.arguments {
                lines.extend(input("  argument", &arg.node));
            }
        }
    }
    /// `FragmentSpread` → `FRAGMENT_SPREAD`.
    fn location(name: String) -> String {
        let mut out = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
        out
    }

    let document = parse_schema(sdl).expect("the SDL parses");
    let mut types = std::collections::BTreeMap::new();
    let mut directives = std::collections::BTreeMap::new();
    let mut roots = String::new();
    for definition in document.definitions {
        match definition {
            TypeSystemDefinition::Type(ty) => {
                let TypeDefinition {
                    description,
                    name,
                    directives: applied,
                    kind,
                    ..
                } = ty.node;
                let name = name.node.to_string();
                let (kind_name, implements) = match &kind {
                    TypeKind::Scalar => ("SCALAR", vec![]),
                    TypeKind::Object(object) => ("OBJECT", object.implements.clone()),
                    TypeKind::Interface(interface) => ("INTERFACE", interface.implements.clone()),
                    TypeKind::Union(_) => ("UNION", vec![]),
                    TypeKind::Enum(_) => ("ENUM", vec![]),
                    TypeKind::InputObject(_) => ("INPUT_OBJECT", vec![]),
                };
                let mut head = format!("{kind_name} {name}");
                if !implements.is_empty() {
                    let names: Vec<_> = implements.iter().map(|n| n.node.to_string()).collect();
                    head += &format!(" implements {}", names.join(" & "));
                }
                if let TypeKind::Union(union) = &kind {
                    let names: Vec<_> = union.members.iter().map(|n| n.node.to_string()).collect();
                    head += &format!(" = {}", names.join(" | "));
                }
                let mut lines = described(&head, text(&description));
                if let Some(specified_by) = directive(&applied, "specifiedBy") {
                    let url = match specified_by.get_argument("url").map(|u| &u.node) {
                        Some(async_graphql::Value::String(url)) => url.clone(),
                        other => panic!("@specifiedBy(url: {other:?}) on {name}"),
                    };
                    lines.push(format!("  specifiedBy {url:?}"));
                }
                match &kind {
                    TypeKind::Object(object) => fields(&mut lines, &object.fields),
                    TypeKind::Interface(interface) => fields(&mut lines, &interface.fields),
                    TypeKind::InputObject(input_object) => {
                        for field in &input_object.fields {
                            lines.extend(input("input", &field.node));
                        }
                    }
                    TypeKind::Enum(enumeration) => {
                        for value in enumeration.values.iter().map(|v| &v.node) {
                            lines.extend(described(
                                &format!("value {}", value.value.node),
                                text(&value.description),
                            ));
                            lines.extend(deprecated(&value.directives));
                        }
                    }
                    TypeKind::Scalar | TypeKind::Union(_) => {}
                }
                types.insert(name, lines);
            }
            TypeSystemDefinition::Directive(definition) => {
                let DirectiveDefinition {
                    description,
                    name,
                    arguments,
                    is_repeatable,
                    locations,
                    ..
                } = definition.node;
                let locations: Vec<_> = locations
                    .into_iter()
                    .map(|l| location(format!("{:?}", l.node)))
                    .collect();
                // The parser reads every definition as `repeatable` (its grammar's optional
                // keyword always matches), so the text says.
                let _ = is_repeatable;
                let repeatable = if repeatable_in(sdl, &name.node) {
                    " repeatable"
                } else {
                    ""
                };
                let mut lines = described(
                    &format!(
                        "directive @{}{repeatable} on {}",
                        name.node,
                        locations.join(" | ")
                    ),
                    text(&description),
                );
                for arg in &arguments {
                    lines.extend(input("argument", &arg.node));
                }
                directives.insert(name.node.to_string(), lines);
            }
            TypeSystemDefinition::Schema(schema) => {
                let root = |name: &Option<async_graphql::Positioned<async_graphql::Name>>| {
                    name.as_ref().map_or("-".to_owned(), |n| n.node.to_string())
                };
                let schema = schema.node;
                roots = format!(
                    "query {} mutation {} subscription {}",
                    root(&schema.query),
                    root(&schema.mutation),
                    root(&schema.subscription)
                );
            }
        }
    }
    Described {
        types,
        directives,
        roots,
    }
}

/// Whether the SDL defines `@name` as `repeatable`.
fn repeatable_in(sdl: &str, name: &str) -> bool {
    let start = format!("directive @{name}");
    sdl.lines()
        .find(|line| line.starts_with(&start))
        .and_then(|line| line.split(" on ").next())
        .is_some_and(|head| head.split_whitespace().any(|word| word == "repeatable"))
}

/// A spec directive's definition without its descriptions: the spec defines them, and
/// async-graphql's SDL leaves out its arguments' descriptions.
fn signature(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|line| !line.trim_start().starts_with("description "))
        .cloned()
        .collect()
}

/// How `file` differs from what introspection `served`: one line per difference, none when
/// they agree. A directive of the spec's own may be left out of the file.
fn drift(served: &Described, file: &Described) -> Vec<String> {
    let mut differences = Vec::new();
    let mut compare = |what: &str,
                       served: &std::collections::BTreeMap<String, Vec<String>>,
                       file: &std::collections::BTreeMap<String, Vec<String>>,
                       optional: &[&str]| {
        for (name, lines) in served {
            match file.get(name) {
                None if optional.contains(&name.as_str()) => {}
                None => differences.push(format!("{what} {name} is served but not in the file")),
                Some(in_file) if in_file != lines => {
                    let missing: Vec<_> = lines.iter().filter(|l| !in_file.contains(l)).collect();
                    let extra: Vec<_> = in_file.iter().filter(|l| !lines.contains(l)).collect();
                    differences.push(format!(
                        "{what} {name} differs: served {missing:?}, file {extra:?} (or the order)"
                    ));
                }
                Some(_) => {}
            }
        }
        for name in file.keys().filter(|name| !served.contains_key(*name)) {
            differences.push(format!("{what} {name} is in the file but not served"));
        }
    };
    compare("type", &served.types, &file.types, &[]);
    let compared = |directives: &std::collections::BTreeMap<String, Vec<String>>| {
        directives
            .iter()
            .map(|(name, lines)| {
                let lines = if BUILT_IN_DIRECTIVES.contains(&name.as_str()) {
                    signature(lines)
                } else {
                    lines.clone()
                };
                (name.clone(), lines)
            })
            .collect()
    };
    compare(
        "directive",
        &compared(&served.directives),
        &compared(&file.directives),
        BUILT_IN_DIRECTIVES,
    );
    if served.roots != file.roots {
        differences.push(format!(
            "roots: served {}, file {}",
            served.roots, file.roots
        ));
    }
    differences
}

/// What introspection over HTTP shows the admin (who sees every field).
async fn served_schema() -> Described {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let answer = admin.query(FULL_INTROSPECTION, json!({})).await;
    described_by_introspection(&answer.ok()["__schema"])
}

/// The file frontend tools read is what the running server serves, element by element:
/// descriptions, `@specifiedBy`, default values, deprecations and directives included.
#[tokio::test]
async fn schema_graphql_is_what_introspection_serves() {
    let served = served_schema().await;
    let file = described_by_sdl(&checked_in_schema());
    assert!(
        served.types.contains_key("DateTime") && served.types.len() > 20,
        "introspection read: {:?}",
        served.types.keys()
    );
    let differences = drift(&served, &file);
    assert!(
        differences.is_empty(),
        "schema.graphql is not what the server serves (run `cargo run -- print-schema > \
         schema.graphql`):\n{}",
        differences.join("\n")
    );
}

/// The comparison above notices what a stale file gets wrong: a description changed, a
/// `@specifiedBy` missing, a default value changed, a deprecation dropped.
#[tokio::test]
async fn a_stale_schema_graphql_is_noticed() {
    let served = served_schema().await;
    let file = checked_in_schema();
    let breakages = [
        (
            "a changed description",
            "Unique among every `Node`.",
            "Unique among all nodes.",
        ),
        (
            "a missing @specifiedBy",
            r#"scalar Decimal @specifiedBy(url: "docs/money.md")"#,
            "scalar Decimal",
        ),
        (
            "a changed default value",
            "first: Int = 20, after: String): AccountConnection!",
            "first: Int = 10, after: String): AccountConnection!",
        ),
        (
            "a dropped deprecation",
            r#" @deprecated(reason: "use filter: { nameContains: ... }, which it is the same as")"#,
            "",
        ),
    ];
    for (what, from, to) in breakages {
        assert!(
            file.contains(from),
            "{what}: {from:?} is not in schema.graphql"
        );
        let broken = described_by_sdl(&file.replacen(from, to, 1));
        assert!(!drift(&served, &broken).is_empty(), "{what} is not noticed");
    }
}
