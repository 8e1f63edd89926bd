//! The GraphQL documents the tests send, each written once (as `clients/lib/documents.mjs`
//! does for the Node.js clients), with the type of its answer.

use std::marker::PhantomData;

use serde_json::{Value, json};

use super::types::{
    Account, AuditEvent, AuthPayload, Connection, Node, Permission, Product, ProductHistory,
    ProductWithCreator, TotalCount,
};

/// A document whose answer is the root field `field`, read as `T`.
pub struct Operation<T> {
    pub field: &'static str,
    pub document: &'static str,
    answer: PhantomData<fn() -> T>,
}

impl<T> Operation<T> {
    const fn new(field: &'static str, document: &'static str) -> Self {
        Self {
            field,
            document,
            answer: PhantomData,
        }
    }
}

impl<T> Operation<T> {
    /// The request's JSON body, to put in a batch or send by hand.
    pub fn request(&self, variables: Value) -> Value {
        json!({ "query": self.document, "variables": variables })
    }
}

impl<T> Clone for Operation<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Operation<T> {}

macro_rules! account_fields {
    () => {
        "id username email role createdAt deactivatedAt"
    };
}

macro_rules! auth_fields {
    () => {
        concat!(
            "accessToken tokenType expiresIn refreshToken refreshTokenExpiresIn account { ",
            account_fields!(),
            " }"
        )
    };
}

macro_rules! product_fields {
    () => {
        "id name description price stock createdAt updatedAt version"
    };
}

macro_rules! connection_fields {
    ($node:expr) => {
        concat!(
            "totalCount edges { cursor node { ",
            $node,
            " } } nodes { ",
            $node,
            " } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
        )
    };
}

pub const REGISTER: Operation<AuthPayload> = Operation::new(
    "register",
    concat!(
        "mutation Register($input: RegisterInput!) { register(input: $input) { ",
        auth_fields!(),
        " } }"
    ),
);

pub const LOGIN: Operation<AuthPayload> = Operation::new(
    "login",
    concat!(
        "mutation Login($input: LoginInput!) { login(input: $input) { ",
        auth_fields!(),
        " } }"
    ),
);

/// The variables of [`LOGIN`].
pub fn login_variables(username: &str, password: &str) -> Value {
    json!({ "input": { "username": username, "password": password } })
}

pub const REFRESH_TOKEN: Operation<AuthPayload> = Operation::new(
    "refreshToken",
    concat!(
        "mutation RefreshToken($refreshToken: String!) { ",
        "refreshToken(refreshToken: $refreshToken) { ",
        auth_fields!(),
        " } }"
    ),
);

pub const LOGOUT: Operation<bool> = Operation::new("logout", "mutation Logout { logout }");

pub const LOGOUT_WITH_REFRESH_TOKEN: Operation<bool> = Operation::new(
    "logout",
    "mutation Logout($refreshToken: String) { logout(refreshToken: $refreshToken) }",
);

pub const LOGOUT_ALL: Operation<bool> =
    Operation::new("logoutAll", "mutation LogoutAll { logoutAll }");

pub const CHANGE_PASSWORD: Operation<AuthPayload> = Operation::new(
    "changePassword",
    concat!(
        "mutation ChangePassword($currentPassword: String!, $newPassword: String!) { ",
        "changePassword(currentPassword: $currentPassword, newPassword: $newPassword) { ",
        auth_fields!(),
        " } }"
    ),
);

pub const DELETE_ACCOUNT: Operation<bool> = Operation::new(
    "deleteAccount",
    "mutation DeleteAccount($currentPassword: String!) { \
     deleteAccount(currentPassword: $currentPassword) }",
);

pub const ACCOUNT: Operation<Account> = Operation::new(
    "account",
    concat!("query Account { account { ", account_fields!(), " } }"),
);

pub const MY_PERMISSIONS: Operation<Vec<Permission>> = Operation::new(
    "myPermissions",
    "query MyPermissions { myPermissions { object action scope } }",
);

pub const PRODUCTS: Operation<Connection<Product>> = Operation::new(
    "products",
    concat!(
        "query Products($first: Int, $after: String, $search: String) { ",
        "products(first: $first, after: $after, search: $search) { ",
        connection_fields!(product_fields!()),
        " } }"
    ),
);

/// `products` with every argument but the deprecated `search` (see [`super::types::ListArgs`]).
pub const PRODUCT_LIST: Operation<Connection<Product>> = Operation::new(
    "products",
    concat!(
        "query ProductList($first: Int, $after: String, $last: Int, $before: String, ",
        "$orderBy: [ProductOrder!], $filter: ProductFilter) { ",
        "products(first: $first, after: $after, last: $last, before: $before, ",
        "orderBy: $orderBy, filter: $filter) { ",
        connection_fields!(product_fields!()),
        " } }"
    ),
);

pub const PRODUCT_COUNT: Operation<TotalCount> =
    Operation::new("products", "query ProductCount { products { totalCount } }");

pub const PRODUCT: Operation<Option<Product>> = Operation::new(
    "product",
    concat!(
        "query Product($id: ID!) { product(id: $id) { ",
        product_fields!(),
        " } }"
    ),
);

pub const PRODUCT_WITH_CREATOR: Operation<Option<ProductWithCreator>> = Operation::new(
    "product",
    concat!(
        "query ProductWithCreator($id: ID!) { product(id: $id) { ",
        product_fields!(),
        " createdBy { ",
        account_fields!(),
        " } } }"
    ),
);

pub const USERS: Operation<Connection<Account>> = Operation::new(
    "users",
    concat!(
        "query Users($first: Int, $after: String) { users(first: $first, after: $after) { ",
        connection_fields!(account_fields!()),
        " } }"
    ),
);

pub const USER_COUNT: Operation<TotalCount> =
    Operation::new("users", "query UserCount { users { totalCount } }");

pub const CREATE_PRODUCT: Operation<Product> = Operation::new(
    "createProduct",
    concat!(
        "mutation CreateProduct($input: CreateProductInput!) { createProduct(input: $input) { ",
        product_fields!(),
        " } }"
    ),
);

pub const UPDATE_PRODUCT: Operation<Product> = Operation::new(
    "updateProduct",
    concat!(
        "mutation UpdateProduct($id: ID!, $input: UpdateProductInput!, $expectedVersion: Int) { ",
        "updateProduct(id: $id, input: $input, expectedVersion: $expectedVersion) { ",
        product_fields!(),
        " } }"
    ),
);

pub const DELETE_PRODUCT: Operation<String> = Operation::new(
    "deleteProduct",
    concat!(
        "mutation DeleteProduct($id: ID!, $expectedVersion: Int) { ",
        "deleteProduct(id: $id, expectedVersion: $expectedVersion) }"
    ),
);

pub const ADJUST_STOCK: Operation<Product> = Operation::new(
    "adjustStock",
    concat!(
        "mutation AdjustStock($id: ID!, $delta: Int!) { adjustStock(id: $id, delta: $delta) { ",
        product_fields!(),
        " } }"
    ),
);

macro_rules! node_fields {
    () => {
        "__typename id ... on Product { name version } ... on Account { username }"
    };
}

pub const NODE: Operation<Option<Node>> = Operation::new(
    "node",
    concat!(
        "query Node($id: ID!) { node(id: $id) { ",
        node_fields!(),
        " } }"
    ),
);

pub const NODES: Operation<Vec<Option<Node>>> = Operation::new(
    "nodes",
    concat!(
        "query Nodes($ids: [ID!]!) { nodes(ids: $ids) { ",
        node_fields!(),
        " } }"
    ),
);

pub const SET_USER_ROLE: Operation<Account> = Operation::new(
    "setUserRole",
    concat!(
        "mutation SetUserRole($userId: ID!, $role: String!) { ",
        "setUserRole(userId: $userId, role: $role) { ",
        account_fields!(),
        " } }"
    ),
);

pub const DEACTIVATE_ACCOUNT: Operation<Account> = Operation::new(
    "deactivateAccount",
    concat!(
        "mutation DeactivateAccount($userId: ID!) { deactivateAccount(userId: $userId) { ",
        account_fields!(),
        " } }"
    ),
);

pub const REACTIVATE_ACCOUNT: Operation<Account> = Operation::new(
    "reactivateAccount",
    concat!(
        "mutation ReactivateAccount($userId: ID!) { reactivateAccount(userId: $userId) { ",
        account_fields!(),
        " } }"
    ),
);

macro_rules! audit_event_fields {
    () => {
        "id occurredAt actor { id username } action entity entityId requestId \
         changes { field before after }"
    };
}

pub const AUDIT_EVENTS: Operation<Connection<AuditEvent>> = Operation::new(
    "auditEvents",
    concat!(
        "query AuditEvents($first: Int, $after: String, $filter: AuditFilter) { ",
        "auditEvents(first: $first, after: $after, filter: $filter) { ",
        connection_fields!(audit_event_fields!()),
        " } }"
    ),
);

/// `Product.history`, under `data.product.history`.
pub const PRODUCT_HISTORY: Operation<Option<ProductHistory>> = Operation::new(
    "product",
    concat!(
        "query ProductHistory($id: ID!, $first: Int, $after: String) { product(id: $id) { ",
        "id history(first: $first, after: $after) { ",
        connection_fields!(audit_event_fields!()),
        " } } }"
    ),
);
