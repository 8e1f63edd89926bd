//! HS256 access tokens: issued at sign-in, verified once per request.

use std::{collections::HashSet, fmt};

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use quick_cache::sync::Cache;
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

/// The `typ` header of access tokens (RFC 9068), so no other JWT passes for one.
const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// The claims of an access token. Every one is required on verification.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    /// The session the token belongs to (ends at logout).
    sid: String,
    /// The account's token version when issued (raised to revoke every token at once).
    ver: i32,
    iat: i64,
    nbf: i64,
    exp: i64,
    iss: String,
    aud: String,
    jti: String,
}

/// What a verified access token says about its bearer.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub account_id: Uuid,
    pub role: Role,
    pub session_id: Uuid,
    pub version: i32,
    /// Its `exp` (Unix seconds): when it stops being valid, leeway aside.
    pub expires_at: i64,
}

/// A freshly issued access token.
pub struct AccessToken {
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Its claims as JSON: with the signing key, enough to sign the identical token again
    /// ([`TokenService::reissue_access_token`]); without it, nothing a caller could use.
    pub claims: String,
}

/// Why a token was refused. Logged at debug level, never sent to the client.
#[derive(Debug)]
pub enum TokenError {
    TooLong,
    WrongType,
    UnsupportedCritical,
    UnknownKey,
    Invalid(jsonwebtoken::errors::Error),
    IssuedInFuture,
    BadClaim(&'static str),
}

impl TokenError {
    /// Whether the token was refused only because it expired (its signature and claims are
    /// good): the one refusal a refresh cures.
    pub fn is_expiry(&self) -> bool {
        matches!(self, TokenError::Invalid(e)
            if *e.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature)
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::TooLong => f.write_str("token too long"),
            TokenError::WrongType => f.write_str("not an access token (typ)"),
            TokenError::UnknownKey => f.write_str("unknown kid"),
            TokenError::UnsupportedCritical => f.write_str("unsupported crit header"),
            TokenError::Invalid(e) => write!(f, "{e}"),
            TokenError::IssuedInFuture => f.write_str("iat is in the future"),
            TokenError::BadClaim(claim) => write!(f, "malformed claim {claim}"),
        }
    }
}

/// Issues access tokens with the current HMAC key and verifies them with the current or a
/// previous one (named by the `kid` header), for one issuer and audience.
pub struct TokenService {
    /// Tokens verified before, with what they proved (see [`VerifiedTokens`]).
    verified: VerifiedTokens,
    encoding: EncodingKey,
    /// `(kid, key)`: the current key first, then the previous ones.
    decoding: Vec<(String, DecodingKey)>,
    validation: Validation,
    header: Header,
    issuer: String,
    audience: String,
}

impl TokenService {
    /// A token service for the configured secret, issuer and audience.
    pub fn new(config: &Config) -> Self {
        let config = &config.auth;
        let secret = config.jwt_secret.as_bytes();
        let decoding = std::iter::once(&config.jwt_secret)
            .chain(&config.jwt_previous_secrets)
            .map(|s| (key_id(s.as_bytes()), DecodingKey::from_secret(s.as_bytes())))
            .collect();
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
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(key_id(secret));
        Self {
            verified: VerifiedTokens::default(),
            encoding: EncodingKey::from_secret(secret),
            decoding,
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
    pub fn issue_access_token(
        &self,
        account_id: Uuid,
        role: &Role,
        session_id: Uuid,
        version: i32,
    ) -> AppResult<AccessToken> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: account_id.to_string(),
            role: role.as_str().to_owned(),
            sid: session_id.to_string(),
            ver: version,
            iat: now,
            nbf: now,
            exp: now + ACCESS_TOKEN_TTL_SECS,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: Uuid::new_v4().to_string(),
        };
        self.sign(&claims, now)
    }

    /// Signs again the access token whose claims [`AccessToken::claims`] gave: the identical
    /// token (HS256 signatures are deterministic) while the signing key is the same. `None`
    /// when the claims do not parse or the token has expired.
    ///
    /// # Errors
    /// Only if signing fails, which would be a bug.
    pub fn reissue_access_token(&self, claims: &str) -> AppResult<Option<AccessToken>> {
        let Ok(claims) = serde_json::from_str::<Claims>(claims) else {
            return Ok(None);
        };
        let now = Utc::now().timestamp();
        if claims.exp <= now {
            return Ok(None);
        }
        self.sign(&claims, now).map(Some)
    }

    fn sign(&self, claims: &Claims, now: i64) -> AppResult<AccessToken> {
        let token = jsonwebtoken::encode(&self.header, claims, &self.encoding)
            .map_err(AppError::internal)?;
        Ok(AccessToken {
            token,
            expires_in: claims.exp - now,
            claims: serde_json::to_string(claims).map_err(AppError::internal)?,
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
        let now = Utc::now().timestamp();
        if let Some(verified) = self.verified.get(token, now) {
            return Ok(verified);
        }
        let header = jsonwebtoken::decode_header(token).map_err(TokenError::Invalid)?;
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(TokenError::WrongType);
        }
        // RFC 7515 §4.1.11: an extension marked critical that we do not implement (we
        // implement none) makes the token invalid.
        if header.crit.is_some() {
            return Err(TokenError::UnsupportedCritical);
        }
        let key = match header.kid.as_deref() {
            Some(kid) => self
                .decoding
                .iter()
                .find(|(id, _)| id == kid)
                .map(|(_, key)| key)
                .ok_or(TokenError::UnknownKey)?,
            None => return Err(TokenError::UnknownKey),
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
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
        let role = Role::parse(&claims.role).ok_or(TokenError::BadClaim("role"))?;
        let session_id = Uuid::parse_str(&claims.sid).map_err(|_| TokenError::BadClaim("sid"))?;
        let verified = VerifiedToken {
            account_id,
            role,
            session_id,
            version: claims.ver,
            expires_at: claims.exp,
        };
        self.verified
            .put(token, verified.clone(), claims.nbf, claims.exp);
        Ok(verified)
    }
}

/// Tokens that passed every check, with what they proved and when they are valid.
///
/// A client sends the same access token with every request for up to an hour, and checking
/// it (base64, JSON, HMAC) was a tenth of a small query's CPU. What a check proves about a
/// token cannot change while the process runs (the keys are fixed at start-up), except
/// with time: so a token seen before is only checked against `nbf` and `exp` again, with the
/// same leeway. Revocation is checked separately on every request. Only tokens that passed
/// are kept, so a client cannot fill this with garbage; when full, those seldom sent make room.
struct VerifiedTokens {
    /// What each token proved, with its `nbf` and `exp`.
    tokens: Cache<Box<str>, (VerifiedToken, i64, i64)>,
}

/// Tokens kept at most (a few MiB at most).
const MAX_VERIFIED_TOKENS: usize = 10_000;

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self {
            tokens: Cache::new(MAX_VERIFIED_TOKENS),
        }
    }
}

impl VerifiedTokens {
    fn get(&self, token: &str, now: i64) -> Option<VerifiedToken> {
        let skew = CLOCK_SKEW_SECS as i64;
        let (verified, nbf, exp) = self.tokens.get(token)?;
        (now >= nbf - skew && now <= exp + skew).then_some(verified)
    }

    fn put(&self, token: &str, verified: VerifiedToken, nbf: i64, exp: i64) {
        self.tokens.insert(token.into(), (verified, nbf, exp));
    }
}

/// The `kid` of a key: the start of its SHA-256, which names the key without revealing it.
fn key_id(secret: &[u8]) -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use sha2::{Digest, Sha256};
    URL_SAFE_NO_PAD.encode(&Sha256::digest(secret)[..9])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_token_is_still_held_to_its_validity_window() {
        let tokens = VerifiedTokens::default();
        let verified = VerifiedToken {
            account_id: Uuid::now_v7(),
            role: Role::parse("user").unwrap(),
            session_id: Uuid::now_v7(),
            version: 3,
            expires_at: 4_600,
        };
        let (nbf, exp) = (1_000, 4_600);
        assert!(
            tokens.get("t", 2_000).is_none(),
            "nothing before it is verified"
        );
        tokens.put("t", verified, nbf, exp);
        assert_eq!(tokens.get("t", 2_000).map(|v| v.version), Some(3));
        assert!(tokens.get("other", 2_000).is_none());
        let skew = CLOCK_SKEW_SECS as i64;
        assert!(tokens.get("t", exp + skew).is_some(), "the leeway applies");
        assert!(tokens.get("t", exp + skew + 1).is_none(), "expired");
        assert!(tokens.get("t", nbf - skew - 1).is_none(), "not yet valid");
    }

    #[test]
    fn remembered_tokens_stay_bounded_and_those_in_use_stay() {
        let tokens = VerifiedTokens::default();
        let verified = VerifiedToken {
            account_id: Uuid::now_v7(),
            role: Role::parse("user").unwrap(),
            session_id: Uuid::now_v7(),
            version: 1,
            expires_at: 100,
        };
        tokens.put("in use", verified.clone(), 0, 100);
        for i in 0..3 * MAX_VERIFIED_TOKENS {
            tokens.put(&format!("once {i}"), verified.clone(), 0, 100);
            if i % 64 == 0 {
                assert!(tokens.get("in use", 50).is_some());
            }
        }
        assert!(tokens.tokens.len() <= MAX_VERIFIED_TOKENS);
        assert!(tokens.get("in use", 50).is_some());
    }
}
