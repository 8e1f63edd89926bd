//! sea-orm entities: database rows, internal to the crate. GraphQL types live in
//! [`crate::graphql`] and are built from these, never the other way round.

pub mod account;
pub mod product;
