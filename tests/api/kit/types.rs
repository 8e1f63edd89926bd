//! The answers of the kit's documents, as serde types (the GraphQL names in camelCase).

use serde::{Deserialize, Serialize};

/// A role name, as `Account.role` and `setUserRole` spell it: the built-in policy's two, or
/// another the policy in force defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
    Named(&'static str),
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Named(name) => name,
        }
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(match name.as_str() {
            "user" => Role::User,
            "admin" => Role::Admin,
            // A test's handful of names: leaking them keeps `Role` `Copy`.
            _ => Role::Named(Box::leak(name.into_boxed_str())),
        })
    }
}

/// `type Account`, every field.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub role: Role,
    pub created_at: String,
    pub deactivated_at: Option<String>,
}

/// `type AuthPayload`, every field.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthPayload {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_token_expires_in: i64,
    pub account: Account,
}

/// `type Product`, every field but the guarded `createdBy`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: String,
    pub name: String,
    pub description: String,
    pub price: String,
    pub stock: i64,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
}

/// `interface Node`: its type, id, and a field of each kind (`name`, `version` of a product,
/// `username` of an account).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    #[serde(rename = "__typename")]
    pub typename: String,
    pub id: String,
    pub name: Option<String>,
    pub version: Option<i64>,
    pub username: Option<String>,
}

/// A product with `createdBy`, which only some roles may read.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductWithCreator {
    #[serde(flatten)]
    pub product: Product,
    pub created_by: Option<Account>,
}

/// `type ProductConnection` / `AccountConnection`.
/// `type AuditEvent`, every field.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: String,
    pub occurred_at: String,
    pub actor: Option<AuditActor>,
    pub action: String,
    pub entity: String,
    pub entity_id: String,
    pub request_id: Option<String>,
    pub changes: Vec<AuditChange>,
}

/// `type AuditActor`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AuditActor {
    pub id: String,
    pub username: String,
}

/// `type AuditChange`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AuditChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl AuditChange {
    /// A change from `before` to `after`.
    pub fn new(field: &str, before: Option<&str>, after: Option<&str>) -> Self {
        Self {
            field: field.to_owned(),
            before: before.map(str::to_owned),
            after: after.map(str::to_owned),
        }
    }
}

/// A product with its `history`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ProductHistory {
    pub id: String,
    pub history: Connection<AuditEvent>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection<T> {
    pub total_count: i64,
    pub edges: Vec<Edge<T>>,
    pub nodes: Vec<T>,
    pub page_info: PageInfo,
}

impl<T> Connection<T> {
    /// What `f` says of each node, in order.
    pub fn map<U>(&self, f: impl Fn(&T) -> U) -> Vec<U> {
        self.nodes.iter().map(f).collect()
    }
}

impl Connection<Product> {
    /// The products' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.map(|p| p.name.clone())
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Edge<T> {
    pub cursor: String,
    pub node: T,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

/// A connection read for its `totalCount` alone.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TotalCount {
    pub total_count: i64,
}

/// `type Permission`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct Permission {
    pub object: String,
    pub action: String,
    /// `ANY` or `OWN`.
    pub scope: String,
}

/// `input RegisterInput`.
#[derive(Clone, Debug, Serialize)]
pub struct NewAccount<'a> {
    pub username: &'a str,
    pub password: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
}

/// `input CreateProductInput`: [`NewProduct::new`] fills the description and stock as the
/// tests' fixtures always had them (`"d"`, 1).
#[derive(Clone, Debug, Serialize)]
pub struct NewProduct {
    pub name: String,
    pub description: String,
    pub price: String,
    pub stock: i64,
}

impl NewProduct {
    pub fn new(name: &str, price: &str) -> Self {
        Self {
            name: name.to_owned(),
            description: "d".to_owned(),
            price: price.to_owned(),
            stock: 1,
        }
    }

    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }
}

/// `input UpdateProductInput`: the fields to change.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProductChanges {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock: Option<i64>,
}

/// The arguments of `products` and `users`; unset ones are left out, so the schema's
/// defaults apply.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Page {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
}

impl Page {
    /// The first page, `first` long.
    pub fn first(first: i64) -> Self {
        Self {
            first: Some(first),
            ..Self::default()
        }
    }

    /// Products whose name contains `search`.
    pub fn search(search: &str) -> Self {
        Self::default().matching(search)
    }

    pub fn after(mut self, cursor: Option<&str>) -> Self {
        self.after = cursor.map(str::to_owned);
        self
    }

    pub fn matching(mut self, search: &str) -> Self {
        self.search = Some(search.to_owned());
        self
    }
}

/// The arguments of `products` ([`super::documents::PRODUCT_LIST`]); unset ones are left
/// out.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListArgs {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_by: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
}

impl ListArgs {
    /// Sorted on `field` (`"PRICE"`, …) in `direction` (`"ASC"` or `"DESC"`).
    pub fn sorted(field: &str, direction: &str) -> Self {
        Self::default().order(&[(field, direction)])
    }

    /// Sorted on these keys, in turn.
    pub fn order(mut self, keys: &[(&str, &str)]) -> Self {
        let keys: Vec<_> = keys
            .iter()
            .map(|(field, direction)| serde_json::json!({ "field": field, "direction": direction }))
            .collect();
        self.order_by = Some(serde_json::Value::Array(keys));
        self
    }

    /// Filtered by `filter` (a `ProductFilter` object).
    pub fn filter(mut self, filter: serde_json::Value) -> Self {
        self.filter = Some(filter);
        self
    }

    pub fn first(mut self, first: i64) -> Self {
        self.first = Some(first);
        self
    }

    pub fn last(mut self, last: i64) -> Self {
        self.last = Some(last);
        self
    }

    pub fn after(mut self, cursor: Option<&str>) -> Self {
        self.after = cursor.map(str::to_owned);
        self
    }

    pub fn before(mut self, cursor: Option<&str>) -> Self {
        self.before = cursor.map(str::to_owned);
        self
    }
}
