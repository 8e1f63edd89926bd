//! Account roles. A role is data: what a role may do is decided by the Casbin policy alone.

/// The role stored on an account and carried in its access token.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 2] = [Role::User, Role::Admin];

    /// The name stored in the database and in tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    /// The role with this stored name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == name)
    }
}
