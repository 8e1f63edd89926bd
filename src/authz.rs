//! Authorization: what a caller may do. Decided by the Casbin policy in `POLICY_DIR`
//! (`model.conf` + `policy.csv`), the only place a permission is granted.

pub mod adapter;
mod policy;

pub use adapter::DbAdapter;
pub use policy::{
    Authorizer, Permission, PolicyChange, PolicyError, PolicySource, Reach, RoleDefinition, Rows,
    Rule, SharedAuthorizer, Subject, parse,
};
