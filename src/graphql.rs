//! The GraphQL API: schema, types and thin resolvers over the services.

mod cost;
mod documents;
mod guard;
mod loaders;
mod mutation;
mod node;
mod plain;
mod query;
mod scalars;
mod subscription;
mod types;

use std::sync::Arc;

use async_graphql::{Context, SDLExportOptions, Schema, SchemaBuilder, dataloader::DataLoader};
use uuid::Uuid;

use crate::{
    auth::{ClientIp, Viewer},
    config::{Config, Limits},
    error::{AppError, AppResult, AuthFailure},
    state::AppState,
    subscriptions::Channel,
};
pub use cost::{Cost, CostModel};
pub use documents::{
    DocumentLimits, Documents, MAX_ERRORS, MAX_MESSAGE_CHARS, PARSE_FAILED, TOO_COMPLEX,
    VALIDATION_FAILED, argument_uses_variable, is_mutation, is_subscription, root_fields,
    truncated,
};
pub use mutation::Mutation;
pub use query::Query;
pub use scalars::DECIMAL_SPECIFIED_BY;
pub use subscription::Subscription;

/// Storefront's executable schema.
pub type AppSchema = Schema<Query, Mutation, Subscription>;

fn builder() -> SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(Query, Mutation, Subscription)
}

/// The schema with its shared state and the configured limits, ready to execute requests.
pub fn build_schema(state: Arc<AppState>, config: &Config) -> AppSchema {
    let accounts = DataLoader::with_cache(
        loaders::AccountLoader::new(state.db.reader().clone()),
        tokio::spawn,
        async_graphql::dataloader::NoCache,
    );
    let limits = &config.limits;
    let mut builder = builder()
        .data(state)
        .data(accounts)
        // Depth and cost are measured by `Documents` before validation, which is where
        // async-graphql's own checks expand every fragment spread (exponential work).
        .limit_directives(limits.max_directives);
    if !config.discovery.introspection {
        builder = builder.disable_introspection();
    }
    if !config.discovery.field_suggestions {
        builder = builder.disable_suggestions();
    }
    // No extension (`.extension(…)`): `plain` builds products and edges without the per-field
    // `resolve` hook an extension would be given; one added here needs that path gone.
    builder.finish()
}

/// The parsed-document cache and cost limits for `schema`.
pub fn documents(schema: &AppSchema, limits: &Limits) -> Documents {
    // The schema's SDL is our own output; it always parses.
    let model = CostModel::from_sdl(&schema.sdl(), crate::pagination::MAX_PAGE_SIZE as u64)
        .expect("the schema's own SDL parses");
    Documents::new(
        model,
        DocumentLimits {
            max_cost: limits.max_complexity as u64,
            max_depth: u32::try_from(limits.max_depth).unwrap_or(u32::MAX),
            max_aliases: limits.max_aliases as u64,
            max_directives: u32::try_from(limits.max_directives).unwrap_or(u32::MAX),
        },
    )
}

/// The schema in SDL, as `schema.graphql` holds it: with `@specifiedBy` on the scalars that
/// have a specification, as introspection shows them (`specifiedByURL`).
pub fn sdl() -> String {
    builder()
        .finish()
        .sdl_with_options(SDLExportOptions::new().include_specified_by())
}

/// Typed access to what every request carries; the only place that reads context data.
pub trait ContextExt {
    /// The shared application state.
    fn state(&self) -> &AppState;
    /// The WebSocket connection a subscription runs on (none over HTTP).
    fn channel(&self) -> Option<&Arc<Channel>>;
    /// Who is calling.
    fn viewer(&self) -> &Viewer;
    /// The signed-in caller's account id.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` when the caller is not signed in.
    fn account_id(&self) -> AppResult<Uuid>;
    /// The signed-in caller's account and session ids.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` when the caller is not signed in.
    fn session(&self) -> AppResult<(Uuid, Uuid)>;
    /// The signed-in caller's account id, if any: who an audit line names as the actor.
    fn actor(&self) -> Option<Uuid>;
    /// The caller's address (as the HTTP layer found it; 0.0.0.0 when unknown).
    fn client_ip(&self) -> std::net::IpAddr;
}

impl ContextExt for Context<'_> {
    fn state(&self) -> &AppState {
        self.data_unchecked::<Arc<AppState>>()
    }

    fn channel(&self) -> Option<&Arc<Channel>> {
        self.data_opt::<Arc<Channel>>()
    }

    fn viewer(&self) -> &Viewer {
        self.data_opt::<Viewer>().unwrap_or(&Viewer::Anonymous)
    }

    fn account_id(&self) -> AppResult<Uuid> {
        self.session().map(|(account, _)| account)
    }

    fn session(&self) -> AppResult<(Uuid, Uuid)> {
        match self.viewer() {
            Viewer::Account { id, session_id, .. } => Ok((*id, *session_id)),
            Viewer::InvalidToken(reason) => Err(AppError::access_refused(*reason)),
            Viewer::Anonymous => Err(AppError::access_refused(AuthFailure::Missing)),
        }
    }

    fn actor(&self) -> Option<Uuid> {
        self.account_id().ok()
    }

    fn client_ip(&self) -> std::net::IpAddr {
        self.data_opt::<ClientIp>()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |ip| ip.0)
    }
}

/// Parses an opaque id; one that cannot name anything is `None`.
fn parse_id(id: &async_graphql::ID) -> Option<Uuid> {
    Uuid::parse_str(id.as_str()).ok()
}

/// Parses the id of a `what` that must exist.
///
/// # Errors
/// `NOT_FOUND` naming `what` when the id cannot name anything.
fn id_of(what: &'static str, id: &async_graphql::ID) -> AppResult<Uuid> {
    parse_id(id).ok_or(AppError::NotFound(what))
}
