//! sea-orm entities: database rows, internal to the crate. GraphQL types live in
//! [`crate::graphql`] and are built from these, never the other way round.

pub mod account;
pub mod audit_event;
pub mod casbin_rule;
pub mod idempotency_key;
pub mod login_throttle;
pub mod product;
pub mod refresh_token;
pub mod revocation;
pub mod session;
