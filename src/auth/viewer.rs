use std::net::IpAddr;

use axum::http::{HeaderMap, header::AUTHORIZATION};
use uuid::Uuid;

use super::{Revocations, TokenService};
use crate::{error::AuthFailure, role::Role};

/// The IP address a request came from: the socket's peer, or the last `X-Forwarded-For` hop
/// when `TRUST_PROXY_HEADERS` is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Who is making a request, decided once per request from its `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Viewer {
    /// No `Authorization` header.
    Anonymous,
    /// An `Authorization` header that is not a valid, current Bearer access token, and why:
    /// [`AuthFailure::TokenExpired`], [`AuthFailure::SessionEnded`] (revoked) or
    /// [`AuthFailure::TokenInvalid`].
    InvalidToken(AuthFailure),
    /// A verified, unrevoked access token.
    Account {
        id: Uuid,
        role: Role,
        session_id: Uuid,
    },
}

impl Viewer {
    /// Reads and verifies the Bearer token in `headers`, and checks it was not revoked.
    pub fn from_headers(
        headers: &HeaderMap,
        tokens: &TokenService,
        revocations: &Revocations,
    ) -> Self {
        // An empty header is no header: clients send `authorization: ""` for a visitor who is
        // not signed in (Apollo Client's own authentication example does).
        let Some(value) = headers
            .get(AUTHORIZATION)
            .filter(|value| !value.as_bytes().trim_ascii().is_empty())
        else {
            return Viewer::Anonymous;
        };
        let Some(token) = value.to_str().ok().and_then(bearer_token) else {
            return Viewer::InvalidToken(AuthFailure::TokenInvalid);
        };
        match tokens.verify_access_token(token) {
            Ok(claims)
                if revocations.is_revoked(claims.account_id, claims.session_id, claims.version) =>
            {
                tracing::debug!("rejected a revoked access token");
                Viewer::InvalidToken(AuthFailure::SessionEnded)
            }
            Ok(claims) => Viewer::Account {
                id: claims.account_id,
                role: claims.role,
                session_id: claims.session_id,
            },
            Err(reason) => {
                tracing::debug!(%reason, "rejected access token");
                Viewer::InvalidToken(if reason.is_expiry() {
                    AuthFailure::TokenExpired
                } else {
                    AuthFailure::TokenInvalid
                })
            }
        }
    }
}

/// The token of a `Bearer <token>` header value; the scheme is case-insensitive.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }
}
