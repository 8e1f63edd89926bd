//! Authentication: who is calling. Passwords, access tokens, and the [`Viewer`] that the HTTP
//! layer hands to GraphQL. Only this module knows what a JWT is.

pub mod jwt;
pub mod password;
pub mod revocation;
pub mod throttle;
mod viewer;

pub use jwt::{AccessToken, TokenService};
pub use password::PasswordHasher;
pub use revocation::Revocations;
pub use throttle::IpRateLimiter;
pub use viewer::{ClientIp, Viewer};

/// The SHA-256 of `bytes`, as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
