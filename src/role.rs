//! Account roles. A role is data: the policy defines which roles exist (every `role:NAME`
//! subject in it) and what each may do; the code names none of them.

use std::{borrow::Borrow, fmt, sync::Arc};

/// The longest role name.
pub const MAX_ROLE_NAME: usize = 32;

/// The name of the subject that callers without a token are asked about (`role:anonymous`):
/// a subject of the policy, never a role an account can have.
pub const ANONYMOUS: &str = "anonymous";

/// The name of a role, as stored on an account, carried in its access tokens and written after
/// `role:` in the policy: 1–32 characters of `a`–`z`, `0`–`9`, `_` and `-`, starting with a
/// letter. Cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Role(Arc<str>);

impl Role {
    /// The role with this name, when the name is well-formed (whether the policy defines it is
    /// the authorizer's to say).
    pub fn parse(name: &str) -> Option<Self> {
        let mut chars = name.chars();
        let well_formed = name.len() <= MAX_ROLE_NAME
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        well_formed.then(|| Self(Arc::from(name)))
    }

    /// The role's name, without the policy's `role:` prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Role {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "role:{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn role_names_are_short_lowercase_words() {
        for good in ["user", "admin", "catalog-editor", "seller_2", "a"] {
            assert_eq!(Role::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "Admin",
            "2admin",
            "role:admin",
            "admin ",
            "ädmin",
            "a,b",
            &"a".repeat(33),
        ] {
            assert!(Role::parse(bad).is_none(), "{bad:?}");
        }
    }
}
