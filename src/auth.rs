//! Authentication: who is calling. Passwords, access tokens, and the [`Viewer`] that the HTTP
//! layer hands to GraphQL. Only this module knows what a JWT is.

pub mod jwt;
pub mod password;
mod viewer;

pub use jwt::{AccessToken, TokenService};
pub use password::PasswordHasher;
pub use viewer::Viewer;
