//! HS256 access tokens: issued at sign-in, verified once per request.

use std::{collections::HashSet, fmt};

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    config::Config,
    error::{AppError, AppResult},
    role::Role,
};

/// Access tokens are valid for exactly this long.
pub const ACCESS_TOKEN_TTL_SECS: i64 = 3600;
/// The clock skew tolerated on `exp`, `nbf` and `iat`.
pub const CLOCK_SKEW_SECS: u64 = 5;
/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 4096;

/// The claims of an access token. Every one is required on verification.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    iss: String,
    aud: String,
    jti: String,
}

/// What a verified access token says about its bearer.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedToken {
    pub account_id: Uuid,
    pub role: Role,
}

/// A freshly issued access token.
pub struct AccessToken {
    pub token: String,
    pub expires_in: i64,
}

/// Why a token was refused. Logged at debug level, never sent to the client.
#[derive(Debug)]
pub enum TokenError {
    TooLong,
    Invalid(jsonwebtoken::errors::Error),
    IssuedInFuture,
    BadClaim(&'static str),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::TooLong => f.write_str("token too long"),
            TokenError::Invalid(e) => write!(f, "{e}"),
            TokenError::IssuedInFuture => f.write_str("iat is in the future"),
            TokenError::BadClaim(claim) => write!(f, "malformed claim {claim}"),
        }
    }
}

/// Issues and verifies access tokens with one HMAC key, issuer and audience.
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    header: Header,
    issuer: String,
    audience: String,
}

impl TokenService {
    /// A token service for the configured secret, issuer and audience.
    pub fn new(config: &Config) -> Self {
        let secret = config.jwt_secret.as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = CLOCK_SKEW_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&config.jwt_issuer]);
        validation.set_audience(&[&config.jwt_audience]);
        validation.required_spec_claims = ["exp", "nbf", "iss", "aud", "sub"]
            .into_iter()
            .map(String::from)
            .collect::<HashSet<_>>();
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("JWT".to_owned());
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            header,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
        }
    }

    /// Signs a new access token for the account, valid for [`ACCESS_TOKEN_TTL_SECS`].
    ///
    /// # Errors
    /// Only if signing fails, which would be a bug.
    pub fn issue_access_token(&self, account_id: Uuid, role: Role) -> AppResult<AccessToken> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: account_id.to_string(),
            role: role.as_str().to_owned(),
            iat: now,
            nbf: now,
            exp: now + ACCESS_TOKEN_TTL_SECS,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: Uuid::new_v4().to_string(),
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.encoding)
            .map_err(AppError::internal)?;
        Ok(AccessToken {
            token,
            expires_in: ACCESS_TOKEN_TTL_SECS,
        })
    }

    /// Verifies signature (HS256 only), `exp`, `nbf`, `iat`, `iss` and `aud`, with at most
    /// [`CLOCK_SKEW_SECS`] of skew, and that every claim is present and well-typed.
    ///
    /// # Errors
    /// A [`TokenError`] saying why the token was refused.
    pub fn verify_access_token(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(TokenError::Invalid)?;
        let claims = data.claims;
        let skew = CLOCK_SKEW_SECS as i64;
        if claims.iat > Utc::now().timestamp() + skew {
            return Err(TokenError::IssuedInFuture);
        }
        if claims.jti.is_empty() {
            return Err(TokenError::BadClaim("jti"));
        }
        let account_id = Uuid::parse_str(&claims.sub).map_err(|_| TokenError::BadClaim("sub"))?;
        let role = Role::from_name(&claims.role).ok_or(TokenError::BadClaim("role"))?;
        Ok(VerifiedToken { account_id, role })
    }
}
