//! Who calls the server: an actor sends the kit's documents, or any other, with its token.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{
    documents::{self, Operation},
    response::Response,
    types::{
        Account, AuditEvent, AuthPayload, Connection, ListArgs, NewAccount, NewProduct, Node, Page,
        Permission, Product, ProductChanges, ProductHistory, ProductWithCreator, Role,
    },
};

/// Anything with a GraphQL endpoint: the test app or a replica of it.
pub trait Server {
    /// `http://127.0.0.1:<port>/graphql`.
    fn graphql_url(&self) -> String;
}

/// A caller: anonymous, or presenting a token (usually a session's, signed in through the
/// API), with any extra headers it sends.
#[derive(Clone)]
pub struct Actor {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    headers: Vec<(String, String)>,
    session: Option<AuthPayload>,
    password: Option<String>,
}

impl Actor {
    /// An anonymous caller of the GraphQL endpoint at `url`.
    pub fn anonymous(client: reqwest::Client, url: String) -> Self {
        Self {
            client,
            url,
            token: None,
            headers: Vec::new(),
            session: None,
            password: None,
        }
    }

    /// The same caller presenting `token` as its Bearer token.
    pub fn bearer(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            session: None,
            password: None,
            ..self.clone()
        }
    }

    /// The same caller in the session `session` (signed in with `password`, when known).
    pub fn with_session(&self, session: AuthPayload) -> Self {
        Self {
            token: Some(session.access_token.clone()),
            session: Some(session),
            ..self.clone()
        }
    }

    pub(super) fn knowing_password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// The same caller, talking to another server (a replica).
    pub fn on(&self, server: &impl Server) -> Self {
        Self {
            url: server.graphql_url(),
            ..self.clone()
        }
    }

    /// The same caller, sending one more header with each request.
    pub fn with_header(&self, name: &str, value: &str) -> Self {
        let mut actor = self.clone();
        actor.headers.push((name.to_owned(), value.to_owned()));
        actor
    }

    /// The same caller, from `ip` as a trusted proxy reports it (`X-Forwarded-For`).
    pub fn forwarded_for(&self, ip: &str) -> Self {
        self.with_header("X-Forwarded-For", ip)
    }

    /// The Bearer token it presents.
    ///
    /// # Panics
    /// For an anonymous caller.
    pub fn token(&self) -> &str {
        self.token.as_deref().expect("an actor with a token")
    }

    /// The session it signed in with.
    ///
    /// # Panics
    /// For a caller that did not sign in through the API.
    pub fn session(&self) -> &AuthPayload {
        self.session.as_ref().expect("a signed-in actor")
    }

    pub fn refresh_token(&self) -> &str {
        &self.session().refresh_token
    }

    /// Its account's id.
    pub fn id(&self) -> &str {
        &self.session().account.id
    }

    pub fn username(&self) -> &str {
        &self.session().account.username
    }

    /// The password it signed in with.
    pub fn password(&self) -> &str {
        self.password
            .as_deref()
            .expect("an actor that signed in with a password")
    }

    /// Signs in as `username`, asserting that it works: the same caller in a new session.
    pub async fn sign_in(&self, username: &str, password: &str) -> Self {
        let session = self.login(username, password).await.ok();
        self.with_session(session).knowing_password(password)
    }

    /// A new session of the same account (another device), signed in with its password.
    pub async fn sign_in_again(&self) -> Self {
        self.sign_in(self.username(), self.password()).await
    }

    /// A POST to the GraphQL endpoint with its token and headers, for the caller to finish.
    pub fn request(&self) -> reqwest::RequestBuilder {
        let mut request = self.client.post(&self.url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request
    }

    /// POSTs `body` (a request, or a batch of them) as JSON.
    pub async fn post(&self, body: &Value) -> Response {
        self.send(body, None).await
    }

    async fn send<T>(&self, body: &Value, field: Option<&'static str>) -> Response<T> {
        let response = self
            .request()
            .json(body)
            .send()
            .await
            .expect("server answers");
        Response::read(response, field).await
    }

    /// POSTs `body` as it is, with the `Content-Type` and `Accept` headers given (none when
    /// `None`).
    pub async fn post_raw(
        &self,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: &str,
    ) -> Response {
        let mut request = self.request().body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        Response::send(request).await
    }

    /// Sends any document; its answer is all of `data`.
    pub async fn query(&self, document: &str, variables: Value) -> Response {
        self.query_as(document, variables).await
    }

    /// Sends any document; its answer is all of `data`, read as `T`.
    pub async fn query_as<T>(&self, document: &str, variables: Value) -> Response<T> {
        let body = json!({ "query": document, "variables": variables });
        self.send(&body, None).await
    }

    /// Sends one of the kit's documents.
    pub async fn run<T: DeserializeOwned>(
        &self,
        operation: Operation<T>,
        variables: Value,
    ) -> Response<T> {
        self.send(&operation.request(variables), Some(operation.field))
            .await
    }

    /// Trades its session's refresh token for a new pair, as a caller with no access token
    /// does.
    pub async fn refresh_anonymously(&self) -> Response<AuthPayload> {
        let anonymous = Self::anonymous(self.client.clone(), self.url.clone());
        anonymous.refresh(self.refresh_token()).await
    }

    /// Asserts that its session is over: its access token is refused, and so is its refresh
    /// token. `what` heads the failure message.
    pub async fn assert_ended(&self, what: &str) {
        assert!(!self.works().await, "{what}: the access token still works");
        let r = self.refresh_anonymously().await;
        assert_eq!(r.codes(), ["UNAUTHENTICATED"], "{what}: {r}");
    }

    /// Whether its token is accepted: `account` answers, or is refused as UNAUTHENTICATED.
    ///
    /// # Panics
    /// On any other answer.
    pub async fn works(&self) -> bool {
        let r = self.account().await;
        match r.codes().as_slice() {
            [] => true,
            ["UNAUTHENTICATED"] => false,
            other => panic!("unexpected errors {other:?}: {r}"),
        }
    }

    pub async fn register(&self, username: &str, password: &str) -> Response<AuthPayload> {
        self.register_account(&NewAccount {
            username,
            password,
            email: None,
        })
        .await
    }

    pub async fn register_account(&self, input: &NewAccount<'_>) -> Response<AuthPayload> {
        self.run(documents::REGISTER, json!({ "input": input }))
            .await
    }

    pub async fn login(&self, username: &str, password: &str) -> Response<AuthPayload> {
        self.run(
            documents::LOGIN,
            documents::login_variables(username, password),
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response<AuthPayload> {
        self.run(
            documents::REFRESH_TOKEN,
            json!({ "refreshToken": refresh_token }),
        )
        .await
    }

    pub async fn logout(&self) -> Response<bool> {
        self.run(documents::LOGOUT, json!({})).await
    }

    /// `logout(refreshToken:)`, with whatever token (or none) this caller sends.
    pub async fn logout_with_refresh_token(&self, refresh_token: &str) -> Response<bool> {
        self.run(
            documents::LOGOUT_WITH_REFRESH_TOKEN,
            json!({ "refreshToken": refresh_token }),
        )
        .await
    }

    pub async fn logout_all(&self) -> Response<bool> {
        self.run(documents::LOGOUT_ALL, json!({})).await
    }

    pub async fn change_password(&self, current: &str, new: &str) -> Response<AuthPayload> {
        self.run(
            documents::CHANGE_PASSWORD,
            json!({ "currentPassword": current, "newPassword": new }),
        )
        .await
    }

    pub async fn delete_account(&self, current_password: &str) -> Response<bool> {
        self.run(
            documents::DELETE_ACCOUNT,
            json!({ "currentPassword": current_password }),
        )
        .await
    }

    pub async fn account(&self) -> Response<Account> {
        self.run(documents::ACCOUNT, json!({})).await
    }

    pub async fn my_permissions(&self) -> Response<Vec<Permission>> {
        self.run(documents::MY_PERMISSIONS, json!({})).await
    }

    pub async fn products(&self, page: Page) -> Response<Connection<Product>> {
        self.run(documents::PRODUCTS, json!(page)).await
    }

    /// A page of `products` with any of its arguments.
    pub async fn product_list(&self, args: &ListArgs) -> Response<Connection<Product>> {
        self.run(documents::PRODUCT_LIST, json!(args)).await
    }

    /// How many products there are.
    pub async fn product_count(&self) -> i64 {
        self.run(documents::PRODUCT_COUNT, json!({}))
            .await
            .ok()
            .total_count
    }

    pub async fn product(&self, id: &str) -> Response<Option<Product>> {
        self.run(documents::PRODUCT, json!({ "id": id })).await
    }

    pub async fn product_with_creator(&self, id: &str) -> Response<Option<ProductWithCreator>> {
        self.run(documents::PRODUCT_WITH_CREATOR, json!({ "id": id }))
            .await
    }

    pub async fn users(&self, page: Page) -> Response<Connection<Account>> {
        self.run(documents::USERS, json!(page)).await
    }

    /// How many accounts there are.
    pub async fn user_count(&self) -> i64 {
        self.run(documents::USER_COUNT, json!({}))
            .await
            .ok()
            .total_count
    }

    pub async fn create_product(&self, input: &NewProduct) -> Response<Product> {
        self.run(documents::CREATE_PRODUCT, json!({ "input": input }))
            .await
    }

    /// Creates a product (described `"d"`, 1 in stock), asserting that it was created.
    pub async fn add_product(&self, name: &str, price: &str) -> Product {
        self.add(&NewProduct::new(name, price)).await
    }

    /// Creates `product`, asserting that it was created.
    pub async fn add(&self, product: &NewProduct) -> Product {
        self.create_product(product).await.ok()
    }

    pub async fn update_product(&self, id: &str, changes: &ProductChanges) -> Response<Product> {
        self.run(
            documents::UPDATE_PRODUCT,
            json!({ "id": id, "input": changes }),
        )
        .await
    }

    pub async fn delete_product(&self, id: &str) -> Response<String> {
        self.run(documents::DELETE_PRODUCT, json!({ "id": id }))
            .await
    }

    /// `updateProduct` with `expectedVersion`.
    pub async fn update_product_at(
        &self,
        id: &str,
        changes: &ProductChanges,
        expected_version: i64,
    ) -> Response<Product> {
        let variables = json!({ "id": id, "input": changes, "expectedVersion": expected_version });
        self.run(documents::UPDATE_PRODUCT, variables).await
    }

    /// `deleteProduct` with `expectedVersion`.
    pub async fn delete_product_at(&self, id: &str, expected_version: i64) -> Response<String> {
        let variables = json!({ "id": id, "expectedVersion": expected_version });
        self.run(documents::DELETE_PRODUCT, variables).await
    }

    pub async fn adjust_stock(&self, id: &str, delta: i64) -> Response<Product> {
        self.run(documents::ADJUST_STOCK, json!({ "id": id, "delta": delta }))
            .await
    }

    pub async fn node(&self, id: &str) -> Response<Option<Node>> {
        self.run(documents::NODE, json!({ "id": id })).await
    }

    pub async fn nodes(&self, ids: &[&str]) -> Response<Vec<Option<Node>>> {
        self.run(documents::NODES, json!({ "ids": ids })).await
    }

    pub async fn set_user_role(&self, user_id: &str, role: Role) -> Response<Account> {
        self.run(
            documents::SET_USER_ROLE,
            json!({ "userId": user_id, "role": role }),
        )
        .await
    }

    pub async fn deactivate_account(&self, user_id: &str) -> Response<Account> {
        self.run(documents::DEACTIVATE_ACCOUNT, json!({ "userId": user_id }))
            .await
    }

    pub async fn reactivate_account(&self, user_id: &str) -> Response<Account> {
        self.run(documents::REACTIVATE_ACCOUNT, json!({ "userId": user_id }))
            .await
    }

    /// `auditEvents`: a page of `page`, with `filter` (a JSON `AuditFilter`, or null).
    pub async fn audit_events(
        &self,
        page: Page,
        filter: Value,
    ) -> Response<Connection<AuditEvent>> {
        let mut variables = json!(page);
        variables["filter"] = filter;
        self.run(documents::AUDIT_EVENTS, variables).await
    }

    /// The product `id` with a page of its `history`.
    pub async fn product_history(&self, id: &str, page: Page) -> Response<Option<ProductHistory>> {
        let mut variables = json!(page);
        variables["id"] = json!(id);
        self.run(documents::PRODUCT_HISTORY, variables).await
    }
}
