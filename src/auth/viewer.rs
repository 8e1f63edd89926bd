use std::net::IpAddr;

use axum::http::{HeaderMap, header::AUTHORIZATION};
use uuid::Uuid;

use super::{Revocations, TokenService, jwt::VerifiedToken};
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
        let value = match headers.get(AUTHORIZATION) {
            None => None,
            Some(value) => match value.to_str() {
                Ok(value) => Some(value),
                Err(_) => return Viewer::InvalidToken(AuthFailure::TokenInvalid),
            },
        };
        Self::from_authorization(value, tokens, revocations).0
    }

    /// Who an `Authorization` value (`None`: none was sent) names, as [`Viewer::from_headers`]
    /// decides it, with the verified token when there is one: what a WebSocket's
    /// `connection_init` payload carries is checked exactly as a header is. An empty (or
    /// blank) value is none.
    pub fn from_authorization(
        value: Option<&str>,
        tokens: &TokenService,
        revocations: &Revocations,
    ) -> (Self, Option<VerifiedToken>) {
        let Some(value) = value.filter(|value| !value.trim().is_empty()) else {
            return (Viewer::Anonymous, None);
        };
        let Some(token) = bearer_token(value) else {
            return (Viewer::InvalidToken(AuthFailure::TokenInvalid), None);
        };
        match tokens.verify_access_token(token) {
            Ok(claims)
                if revocations.is_revoked(claims.account_id, claims.session_id, claims.version) =>
            {
                tracing::debug!("rejected a revoked access token");
                (Viewer::InvalidToken(AuthFailure::SessionEnded), None)
            }
            Ok(claims) => (
                Viewer::Account {
                    id: claims.account_id,
                    role: claims.role.clone(),
                    session_id: claims.session_id,
                },
                Some(claims),
            ),
            Err(reason) => {
                tracing::debug!(%reason, "rejected access token");
                let failure = if reason.is_expiry() {
                    AuthFailure::TokenExpired
                } else {
                    AuthFailure::TokenInvalid
                };
                (Viewer::InvalidToken(failure), None)
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
