use std::{borrow::Cow, sync::Arc};

use async_graphql::{
    ContainerType, Context, ContextSelectionSet, ID, InputObject, MaybeUndefined, Object,
    ObjectType, OutputType, Positioned, ScalarType, ServerResult, SimpleObject, Value,
    dataloader::DataLoader, parser::types::Field, registry::Registry, resolver_utils::Fields,
};
use uuid::Uuid;

use super::ContextExt;
use super::guard::{Can, visible};
use super::loaders::AccountLoader;
use super::plain::{self, Plain};
pub use super::scalars::{Decimal, Timestamp};
use crate::{
    accounts::NewAccount,
    audit::{self, EntityKind, Event, Filter, FilterInput},
    authz::{Authorizer, Permission, Reach, RoleDefinition, Rule},
    catalog::{self, Listed, NewProduct, ProductChanges, ProductQuery, Search, SortField, SortKey},
    entities::{account, product},
    error::{AppError, AppResult},
    pagination::{DEFAULT_PAGE_SIZE, Page, PageRequest, encode_cursor},
    sessions::SignedIn,
    timestamp::{self, within_four_digit_years},
    validation,
};

/// A person's account, as they and admins see it.
#[derive(SimpleObject, Clone)]
pub struct Account {
    /// Unique among every `Node`.
    #[graphql(owned)]
    pub id: ID,
    pub username: String,
    pub email: Option<String>,
    /// The account's role: one of those the `roles` query lists, or a role the policy no
    /// longer defines (which grants nothing).
    pub role: String,
    pub created_at: Timestamp,
    /// When an admin deactivated the account (it cannot sign in until reactivated); null while
    /// it is active.
    pub deactivated_at: Option<Timestamp>,
}

impl From<account::Model> for Account {
    fn from(row: account::Model) -> Self {
        Self {
            id: ID(row.id.to_string()),
            username: row.username,
            email: row.email,
            role: row.role,
            created_at: row.created_at.into(),
            deactivated_at: row.deactivated_at.map(Timestamp),
        }
    }
}

/// A signed-in session: the Bearer token to send as `Authorization: Bearer <accessToken>`,
/// and the refresh token to trade for a new pair with `refreshToken` before it expires.
#[derive(SimpleObject)]
pub struct AuthPayload {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires (3600).
    pub expires_in: i32,
    /// Opaque; single use: each refresh returns a new one, and using a spent one ends the
    /// session.
    pub refresh_token: String,
    /// Seconds until the refresh token expires.
    pub refresh_token_expires_in: i32,
    pub account: Account,
}

impl From<SignedIn> for AuthPayload {
    fn from(signed_in: SignedIn) -> Self {
        Self {
            access_token: signed_in.access.token,
            token_type: "Bearer".to_owned(),
            expires_in: i32::try_from(signed_in.access.expires_in).unwrap_or(i32::MAX),
            refresh_token: signed_in.refresh_token,
            refresh_token_expires_in: i32::try_from(signed_in.refresh_expires_in)
                .unwrap_or(i32::MAX),
            account: signed_in.account.into(),
        }
    }
}

/// Something a role may do: an object and an action of the policy, on every row or only on
/// the rows the caller owns.
#[derive(SimpleObject, Clone, PartialEq, Eq)]
#[graphql(name = "Permission")]
pub struct PermissionGrant {
    pub object: String,
    pub action: String,
    pub scope: PermissionScope,
}

/// How far a permission reaches.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum PermissionScope {
    /// Every row.
    Any,
    /// Only rows the caller owns (products they created).
    Own,
}

impl From<(Permission, Reach)> for PermissionGrant {
    fn from((permission, reach): (Permission, Reach)) -> Self {
        let (object, action) = permission.object_action();
        Self {
            object: object.to_owned(),
            action: action.to_owned(),
            scope: match reach {
                Reach::Any => PermissionScope::Any,
                Reach::Own => PermissionScope::Own,
            },
        }
    }
}

/// Where the policy's rules are kept.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum PolicyStorage {
    /// `policy.csv` in `POLICY_DIR`, edited by hand; the policy mutations refuse.
    Files,
    /// The database (`POLICY_SOURCE=database`), changed with the policy mutations.
    Database,
}

/// The authorization policy in force.
#[derive(SimpleObject)]
#[graphql(name = "Policy")]
pub struct PolicyView {
    pub storage: PolicyStorage,
    /// The policy's version, as `/readyz` and `/metrics` show it.
    pub version: String,
    /// The rules, as `policy.csv` lines.
    pub rules: Vec<String>,
    /// The roles it defines, as the `roles` query lists them.
    pub roles: Vec<RoleView>,
}

impl PolicyView {
    pub fn new(policy: &Authorizer, stored: bool) -> Self {
        Self {
            storage: if stored {
                PolicyStorage::Database
            } else {
                PolicyStorage::Files
            },
            version: policy.version().to_owned(),
            rules: policy.rules().iter().map(Rule::to_line).collect(),
            roles: policy.roles().map(RoleView::from).collect(),
        }
    }
}

/// A permission to grant: an object and an action of the policy, on every row (`ANY`) or
/// only on the rows the caller owns (`OWN`).
#[derive(InputObject, Clone)]
pub struct PermissionInput {
    pub object: String,
    pub action: String,
    #[graphql(default_with = "PermissionScope::Any")]
    pub scope: PermissionScope,
}

impl PermissionInput {
    /// The permission and its reach.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` on `action` when no guard asks for this object and action.
    pub fn parse(&self) -> AppResult<(Permission, Reach)> {
        permission_of(&self.object, &self.action, self.scope)
    }
}

/// The permission named by `object` and `action`, with the reach `scope` gives.
///
/// # Errors
/// `BAD_USER_INPUT` on `action` when no guard asks for this object and action.
pub fn permission_of(
    object: &str,
    action: &str,
    scope: PermissionScope,
) -> AppResult<(Permission, Reach)> {
    let permission = Permission::named(object, action).ok_or_else(|| {
        AppError::bad_input(
            "action",
            "no guard asks for this object and action (`myPermissions` and the docs list them)",
        )
    })?;
    let reach = match scope {
        PermissionScope::Any => Reach::Any,
        PermissionScope::Own => Reach::Own,
    };
    Ok((permission, reach))
}

/// A role the policy defines.
#[derive(SimpleObject, Clone)]
#[graphql(name = "Role")]
pub struct RoleView {
    /// `role:<name>`, as the policy names the role: a key for client caches, unique among
    /// every type's `id` (it is no `Node` id: `node` does not take it).
    pub id: ID,
    /// The name `setUserRole` takes (the policy writes it `role:<name>`).
    pub name: String,
    /// The roles it inherits every permission from, directly.
    pub inherits: Vec<String>,
    /// Everything it may do, inherited permissions included.
    pub permissions: Vec<PermissionGrant>,
}

impl From<&RoleDefinition> for RoleView {
    fn from(definition: &RoleDefinition) -> Self {
        Self {
            id: ID(format!("role:{}", definition.role)),
            name: definition.role.to_string(),
            inherits: definition
                .inherits
                .iter()
                .map(ToString::to_string)
                .collect(),
            permissions: definition
                .permissions()
                .into_iter()
                .map(PermissionGrant::from)
                .collect(),
        }
    }
}

/// The GraphQL object of `$outer`, a wrapper around the object async-graphql derives
/// (`$inner`, its `.0`): built by [`Plain::plain`] when it can be, else resolved as the derived
/// object, whose name, fields and type information it has.
macro_rules! plain_first {
    ($outer:ty, $inner:ty) => {
        impl OutputType for $outer {
            fn type_name() -> Cow<'static, str> {
                <$inner as OutputType>::type_name()
            }

            fn create_type_info(registry: &mut Registry) -> String {
                <$inner as OutputType>::create_type_info(registry)
            }

            async fn resolve(
                &self,
                ctx: &ContextSelectionSet<'_>,
                field: &Positioned<Field>,
            ) -> ServerResult<Value> {
                match self.plain(ctx) {
                    Some(value) => Ok(value),
                    None => self.0.resolve(ctx, field).await,
                }
            }
        }

        impl ContainerType for $outer {
            async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
                self.0.resolve_field(ctx).await
            }

            fn collect_all_fields<'a>(
                &'a self,
                ctx: &ContextSelectionSet<'a>,
                fields: &mut Fields<'a>,
            ) -> ServerResult<()> {
                self.0.collect_all_fields(ctx, fields)
            }
        }

        impl ObjectType for $outer {}
    };
}

/// A view of a stored product that is cheap to clone: pages of the catalog are shared between
/// requests (see `catalog`), and each field is made when a query selects it. Resolved through
/// [`plain::object`] when every field selected is plain, else as [`ProductObject`].
#[derive(Clone)]
pub struct Product(ProductObject);

/// The product's GraphQL object as async-graphql derives it (the schema's `Product`).
#[derive(Clone)]
struct ProductObject(Arc<product::Model>);

impl ProductObject {
    fn id_value(&self) -> ID {
        // As `to_string` writes it, without `fmt`'s machinery (every product in a page).
        let mut text = Uuid::encode_buffer();
        ID(self.0.id.hyphenated().encode_lower(&mut text).to_owned())
    }

    fn price_value(&self) -> Decimal {
        Decimal(validation::format_cents(self.0.price_cents))
    }

    /// A field that needs nothing but the product (no argument, guard or context), as the
    /// resolver below answers it; `None` for the others.
    fn plain_field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "id" => self.id_value().to_value(),
            "name" => Value::String(self.0.name.clone()),
            "description" => Value::String(self.0.description.clone()),
            "price" => self.price_value().to_value(),
            "stock" => self.0.stock.to_value(),
            "createdAt" => Timestamp(self.0.created_at).to_value(),
            "updatedAt" => Timestamp(self.0.updated_at).to_value(),
            "version" => self.0.version.to_value(),
            _ => return None,
        })
    }
}

/// A product in the catalog.
#[Object(name = "Product")]
impl ProductObject {
    /// Unique among every `Node`.
    async fn id(&self) -> ID {
        self.id_value()
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn description(&self) -> &str {
        &self.0.description
    }

    async fn price(&self) -> Decimal {
        self.price_value()
    }

    async fn stock(&self) -> i32 {
        self.0.stock
    }

    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }

    async fn updated_at(&self) -> Timestamp {
        Timestamp(self.0.updated_at)
    }

    /// 1 when created, raised by 1 by every change (`updateProduct`, `adjustStock`). Pass it
    /// back as `expectedVersion` to change or delete the product only if nobody has changed
    /// it since.
    async fn version(&self) -> i32 {
        self.0.version
    }

    /// The admin who created the product; null for seeded products or deleted accounts.
    /// Only roles the policy allows may read it.
    #[graphql(
        guard = "Can(Permission::ProductReadCreator)",
        visible = "visible::product_read_creator"
    )]
    async fn created_by(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Account>> {
        let Some(id) = self.0.created_by else {
            return Ok(None);
        };
        ctx.data_unchecked::<DataLoader<AccountLoader>>()
            .load_one(id)
            .await
            .map_err(|err| AppError::internal(err).into())
    }

    /// The audit records of this product, newest first, `first` (1–100, default 20) at a
    /// time after the cursor `after`. Only roles the policy allows may read it.
    #[graphql(guard = "Can(Permission::AuditRead)", visible = "visible::audit_read")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<AuditEventConnection> {
        let request = PageRequest::new(first.unwrap_or(DEFAULT_PAGE_SIZE), after.as_deref())?;
        let filter = Filter::about(EntityKind::Product, self.0.id);
        let with_total = ctx.look_ahead().field("totalCount").exists();
        let page = ctx.state().audit.page(&filter, request, with_total).await?;
        Ok(AuditEventConnection::from_page(page, |event| event.id))
    }
}

impl Product {
    /// Unique among every `Node` (the `Node` interface's field, called as the derived object
    /// method it stands for).
    pub async fn id(&self, _: &Context<'_>) -> async_graphql::Result<ID> {
        Ok(self.0.id_value())
    }
}

impl Plain for Product {
    fn plain(&self, ctx: &ContextSelectionSet<'_>) -> Option<Value> {
        plain::object(ctx, &Self::type_name(), |_, selected| {
            self.0.plain_field(&selected.node.name.node)
        })
    }
}

/// Accounts and audit records are always resolved by async-graphql (their lists are short and
/// rare).
impl Plain for Account {
    fn plain(&self, _: &ContextSelectionSet<'_>) -> Option<Value> {
        None
    }
}

impl Plain for AuditEvent {
    fn plain(&self, _: &ContextSelectionSet<'_>) -> Option<Value> {
        None
    }
}

plain_first!(Product, ProductObject);

impl From<product::Model> for Product {
    fn from(row: product::Model) -> Self {
        Self(ProductObject(Arc::new(row)))
    }
}

impl From<Arc<product::Model>> for Product {
    fn from(row: Arc<product::Model>) -> Self {
        Self(ProductObject(row))
    }
}

impl From<Listed> for Product {
    fn from(listed: Listed) -> Self {
        Self(ProductObject(listed.product))
    }
}

/// What an edge's cursor is made from.
pub trait EdgeKey: Clone + Send + Sync {
    /// The opaque cursor.
    fn cursor(&self) -> String;
}

impl EdgeKey for Uuid {
    fn cursor(&self) -> String {
        encode_cursor(*self)
    }
}

/// A product in a list, and the list (its order and filter): its cursor carries the product's
/// sort keys, and is made only when a query selects it.
#[derive(Clone)]
pub struct ListedKey {
    list: Arc<ProductQuery>,
    listed: Listed,
}

impl EdgeKey for ListedKey {
    fn cursor(&self) -> String {
        self.list.cursor(&self.listed).encode()
    }
}

impl ProductConnection {
    /// The connection of a page of `list`.
    pub fn of_list(page: Page<Listed>, list: &Arc<ProductQuery>) -> Self {
        Self::from_page(page, |listed| ListedKey {
            list: list.clone(),
            listed: listed.clone(),
        })
    }
}

/// What a product list may be sorted on.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ProductSortField {
    /// The name, ignoring case (compared by Unicode code point).
    Name,
    Price,
    Stock,
    CreatedAt,
    UpdatedAt,
    /// How well a product matches `filter.search` (only with it): `DESC` puts the best first.
    Relevance,
}

#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum SortDirection {
    Asc,
    Desc,
}

/// One key of a product list's order. Products equal on every key are in the order of their
/// id, in the direction of the last key.
#[derive(InputObject, Clone, Copy)]
pub struct ProductOrder {
    pub field: ProductSortField,
    #[graphql(default_with = "SortDirection::Asc")]
    pub direction: SortDirection,
}

/// Which products to list; every condition given must hold.
#[derive(InputObject, Default)]
pub struct ProductFilter {
    /// Products that cost at least this much.
    pub price_min: Option<Decimal>,
    /// Products that cost at most this much (not less than `priceMin`).
    pub price_max: Option<Decimal>,
    /// `true`: products with stock; `false`: products out of stock.
    pub in_stock: Option<bool>,
    /// Only these products (at most 100 ids; ids of no product match nothing).
    pub ids: Option<Vec<ID>>,
    /// Products created after this time.
    pub created_after: Option<Timestamp>,
    /// Products created before this time (later than `createdAfter`).
    pub created_before: Option<Timestamp>,
    /// Full-text search (at most 200 characters): products whose name or description holds
    /// every word, ignoring case and accents, the last word as a prefix (`"tea"` finds
    /// "teapot"). Allows `orderBy: {field: RELEVANCE, direction: DESC}`.
    pub search: Option<String>,
    /// Products whose name contains this text (at most 200 characters), ignoring case.
    pub name_contains: Option<String>,
}

/// The list `products` reads: its order (default `CREATED_AT ASC`) and filter, validated;
/// `search` is the deprecated top-level argument (`filter.nameContains`).
///
/// # Errors
/// `BAD_USER_INPUT` naming the argument at fault (`orderBy`, `filter.priceMin`, …).
pub fn product_list(
    order_by: Option<Vec<ProductOrder>>,
    filter: Option<ProductFilter>,
    search: Option<&str>,
) -> AppResult<ProductQuery> {
    let filter = filter.unwrap_or_default();
    let order = order_by
        .unwrap_or_default()
        .into_iter()
        .map(|key| SortKey {
            field: match key.field {
                ProductSortField::Name => SortField::Name,
                ProductSortField::Price => SortField::Price,
                ProductSortField::Stock => SortField::Stock,
                ProductSortField::CreatedAt => SortField::CreatedAt,
                ProductSortField::UpdatedAt => SortField::UpdatedAt,
                ProductSortField::Relevance => SortField::Relevance,
            },
            direction: match key.direction {
                SortDirection::Asc => catalog::SortDirection::Asc,
                SortDirection::Desc => catalog::SortDirection::Desc,
            },
        })
        .collect();
    let price = |value: &Option<Decimal>, field: &'static str| {
        value
            .as_ref()
            .map(|price| validation::price_cents(&price.0).map_err(|err| refield(err, field)))
            .transpose()
    };
    let text = |value: &Option<String>, field: &'static str, rule: fn(&str) -> AppResult<()>| {
        match value {
            Some(text) => rule(text).map_err(|err| refield(err, field)),
            None => Ok(()),
        }
    };
    text(&filter.search, "filter.search", validation::search)?;
    text(
        &filter.name_contains,
        "filter.nameContains",
        validation::name_fragment,
    )?;
    if let Some(search) = search {
        validation::name_fragment(search)?;
        if filter.name_contains.is_some() {
            return Err(AppError::bad_input(
                "search",
                "search is filter.nameContains: give only one of them",
            ));
        }
    }
    let mut parsed = catalog::Filter {
        price_min_cents: price(&filter.price_min, "filter.priceMin")?,
        price_max_cents: price(&filter.price_max, "filter.priceMax")?,
        in_stock: filter.in_stock,
        ids: None,
        // Compared as answers show times: `createdAfter` leaves out the products shown at
        // that millisecond, `createdBefore` those shown at it or later.
        created_after: filter
            .created_after
            .map(|at| within_four_digit_years(timestamp::latest_shown_at_or_before(at.0))),
        created_before: filter
            .created_before
            .map(|at| within_four_digit_years(timestamp::earliest_shown_at_or_after(at.0))),
        search: filter.search.as_deref().and_then(Search::parse),
        name_contains: None,
    };
    if let Some(text) = filter.name_contains.as_deref().or(search) {
        parsed = parsed.with_name_containing(text);
    }
    if let Some(ids) = &filter.ids {
        let ids = ids
            .iter()
            .map(|id| {
                super::parse_id(id).ok_or_else(|| {
                    AppError::bad_input("filter.ids", "filter.ids must list product ids")
                })
            })
            .collect::<AppResult<Vec<_>>>()?;
        parsed = parsed.with_ids(ids)?;
    }
    ProductQuery::new(order, parsed)
}

/// The same refusal, naming `field` (a rule shared with another input names its own field).
fn refield(err: AppError, field: &'static str) -> AppError {
    match err {
        AppError::BadUserInput { message, .. } => AppError::BadUserInput { field, message },
        other => other,
    }
}

/// Where a page sits in the whole list.
#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

/// Defines a connection type (one page of a list) and its edge type over a node type.
/// Edges, cursors and the page info are made only when a query selects them.
macro_rules! connection {
    (
        $connection:ident,
        $edge:ident,
        $edge_object:ident,
        $edge_name:literal,
        $node:ty,
        $key:ty,
        $what:literal,
        $plural:literal
    ) => {
        /// Resolved through [`plain::object`] when its node can be (see [`plain::Plain`]),
        /// else as the derived object.
        pub struct $edge($edge_object);

        struct $edge_object {
            node: $node,
            key: $key,
        }

        #[doc = concat!($what, " with the cursor to pass as `after` to read the ones that follow it.")]
        #[Object(name = $edge_name)]
        impl $edge_object {
            async fn cursor(&self) -> String {
                self.key.cursor()
            }

            async fn node(&self) -> &$node {
                &self.node
            }
        }

        impl Plain for $edge {
            fn plain(&self, ctx: &ContextSelectionSet<'_>) -> Option<Value> {
                let edge = &self.0;
                plain::object(ctx, &Self::type_name(), |ctx, selected| {
                    match selected.node.name.node.as_str() {
                        "cursor" => Some(Value::String(edge.key.cursor())),
                        "node" => edge.node.plain(
                            &ctx.with_field(selected)
                                .with_selection_set(&selected.node.selection_set),
                        ),
                        _ => None,
                    }
                })
            }
        }

        plain_first!($edge, $edge_object);

        pub struct $connection {
            nodes: Vec<$node>,
            keys: Vec<$key>,
            has_next_page: bool,
            has_previous_page: bool,
            total_count: Option<u64>,
        }

        #[doc = concat!("One page of ", $plural, ".")]
        #[Object]
        impl $connection {
            async fn edges(&self) -> Vec<$edge> {
                self.nodes
                    .iter()
                    .zip(&self.keys)
                    .map(|(node, key)| {
                        $edge($edge_object {
                            node: node.clone(),
                            key: key.clone(),
                        })
                    })
                    .collect()
            }

            async fn nodes(&self) -> &Vec<$node> {
                &self.nodes
            }

            async fn page_info(&self) -> PageInfo {
                PageInfo {
                    has_next_page: self.has_next_page,
                    has_previous_page: self.has_previous_page,
                    start_cursor: self.keys.first().map(EdgeKey::cursor),
                    end_cursor: self.keys.last().map(EdgeKey::cursor),
                }
            }

            /// The number of items in the whole list (with the same filter).
            async fn total_count(&self) -> i32 {
                // Counted only when the query selects it; otherwise never sent.
                self.total_count
                    .map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX))
            }
        }

        impl $connection {
            /// A connection from a page of rows, each with what its cursor is made from.
            pub fn from_page<R>(page: Page<R>, key_of: impl Fn(&R) -> $key) -> Self
            where
                $node: From<R>,
            {
                let keys = page.items.iter().map(&key_of).collect();
                Self {
                    nodes: page.items.into_iter().map(<$node>::from).collect(),
                    keys,
                    has_next_page: page.has_next_page,
                    has_previous_page: page.has_previous_page,
                    total_count: page.total_count,
                }
            }
        }
    };
}

connection!(
    ProductConnection,
    ProductEdge,
    ProductEdgeObject,
    "ProductEdge",
    Product,
    ListedKey,
    "A product",
    "products"
);
connection!(
    AccountConnection,
    AccountEdge,
    AccountEdgeObject,
    "AccountEdge",
    Account,
    Uuid,
    "An account",
    "accounts"
);
connection!(
    AuditEventConnection,
    AuditEventEdge,
    AuditEventEdgeObject,
    "AuditEventEdge",
    AuditEvent,
    Uuid,
    "An audit record",
    "audit records"
);

/// A change made with admin power, on record: who made it, when, from which request, to what,
/// and each field's value before and after.
#[derive(SimpleObject, Clone)]
pub struct AuditEvent {
    pub id: ID,
    pub occurred_at: Timestamp,
    /// Who made the change; null when it was made from the command line (`create-admin`).
    pub actor: Option<AuditActor>,
    /// What was done: `product.create`, `product.update`, `product.delete`,
    /// `product.adjust_stock`, `account.set_role`, `account.deactivate`,
    /// `account.reactivate`, or a `policy.*` change.
    pub action: String,
    /// What kind of thing it was done to: `product` or `account`.
    pub entity: String,
    /// The id of the thing it was done to (it may no longer exist).
    pub entity_id: ID,
    /// The `x-request-id` of the request that made the change (the one the response carried);
    /// null for the command line.
    pub request_id: Option<String>,
    /// The fields that changed: every field of a created or deleted thing, only those whose
    /// value changed otherwise.
    pub changes: Vec<AuditChange>,
}

/// The account that made a change.
#[derive(SimpleObject, Clone)]
pub struct AuditActor {
    /// The account's id (it may no longer exist).
    pub id: ID,
    /// Its username when it made the change.
    pub username: String,
}

/// One field's value before and after a change, as the API shows it (a price as `"14.50"`,
/// a time as a `DateTime`).
#[derive(SimpleObject, Clone)]
pub struct AuditChange {
    /// The field's name in the API: `name`, `price`, `role`, `deactivatedAt`, …
    pub field: String,
    /// Null for a created thing (or a value that was not set).
    pub before: Option<String>,
    /// Null for a deleted thing (or a value that was cleared).
    pub after: Option<String>,
}

impl From<Event> for AuditEvent {
    fn from(event: Event) -> Self {
        Self {
            id: ID(event.id.to_string()),
            occurred_at: event.occurred_at.into(),
            actor: event.actor.map(|(id, username)| AuditActor {
                id: ID(id.to_string()),
                username,
            }),
            action: event.action,
            entity: event.entity,
            entity_id: ID(event.entity_id),
            request_id: event.request_id,
            changes: event.changes.into_iter().map(AuditChange::from).collect(),
        }
    }
}

impl From<audit::Change> for AuditChange {
    fn from(change: audit::Change) -> Self {
        Self {
            field: change.field,
            before: change.before,
            after: change.after,
        }
    }
}

/// Which audit records to list; every condition given must hold.
#[derive(InputObject, Default)]
pub struct AuditFilter {
    /// Changes made by this account.
    pub actor: Option<ID>,
    /// Changes to this kind of thing: `product` or `account`.
    pub entity: Option<String>,
    /// Changes to the thing with this id.
    pub entity_id: Option<ID>,
    /// Changes of this kind, e.g. `product.update` (see `AuditEvent.action`).
    pub action: Option<String>,
    /// Changes made at this time or later.
    pub since: Option<Timestamp>,
    /// Changes made at this time or earlier.
    pub until: Option<Timestamp>,
}

impl AuditFilter {
    /// The validated filter.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` naming the first field at fault (see [`Filter::parse`]).
    pub fn filter(&self) -> AppResult<Filter> {
        Filter::parse(FilterInput {
            actor: self.actor.as_ref().map(|id| id.as_str()),
            entity: self.entity.as_deref(),
            entity_id: self.entity_id.as_ref().map(|id| id.as_str()),
            action: self.action.as_deref(),
            since: self.since.map(|at| at.0),
            until: self.until.map(|at| at.0),
        })
    }
}

#[derive(InputObject)]
pub struct RegisterInput {
    /// 3–32 characters: letters, digits, `_`, `.` and `-`. Unique, ignoring case.
    pub username: String,
    /// 8–128 characters.
    pub password: String,
    /// Optional; unique, ignoring case.
    pub email: Option<String>,
}

#[derive(InputObject)]
pub struct LoginInput {
    pub username: String,
    pub password: String,
}

#[derive(InputObject)]
pub struct CreateProductInput {
    /// 1–200 characters after trimming.
    pub name: String,
    /// Up to 5000 characters.
    #[graphql(default)]
    pub description: String,
    /// 0 to 1000000000, at most 2 decimal places.
    pub price: Decimal,
    /// 0 or more.
    #[graphql(default)]
    pub stock: i32,
}

/// Fields to change; an omitted field keeps its value. None of them may be null.
#[derive(InputObject)]
pub struct UpdateProductInput {
    pub name: MaybeUndefined<String>,
    pub description: MaybeUndefined<String>,
    pub price: MaybeUndefined<Decimal>,
    pub stock: MaybeUndefined<i32>,
}

impl RegisterInput {
    /// The account to create, with the role every registration gets (`DEFAULT_ROLE`); takes
    /// the password out.
    pub fn new_account(&mut self) -> NewAccount<'_> {
        NewAccount {
            username: &self.username,
            password: std::mem::take(&mut self.password),
            email: self.email.as_deref(),
            role: None,
        }
    }
}

impl CreateProductInput {
    pub fn new_product(&self) -> NewProduct<'_> {
        NewProduct {
            name: &self.name,
            description: &self.description,
            price: &self.price.0,
            stock: self.stock,
        }
    }
}

impl UpdateProductInput {
    /// The fields to change; a field given as null is `BAD_USER_INPUT`.
    ///
    /// # Errors
    /// `BAD_USER_INPUT` naming the first field that is null.
    pub fn changes(&self) -> AppResult<ProductChanges<'_>> {
        Ok(ProductChanges {
            name: not_null(&self.name, "name")?.map(String::as_str),
            description: not_null(&self.description, "description")?.map(String::as_str),
            price: not_null(&self.price, "price")?.map(|price| price.0.as_str()),
            stock: not_null(&self.stock, "stock")?.copied(),
        })
    }
}

/// The value of an optional input field that, when given, must not be null.
fn not_null<'a, T>(value: &'a MaybeUndefined<T>, field: &'static str) -> AppResult<Option<&'a T>> {
    match value {
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Null => Err(AppError::bad_input(
            field,
            format!("{field} cannot be null"),
        )),
        MaybeUndefined::Value(value) => Ok(Some(value)),
    }
}
