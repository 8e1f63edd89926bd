//! Values that must never reach a log: their `Debug` (and, for URLs, `Display`) hide them.

use std::fmt;

use rand::RngCore;

/// The minimum length of `JWT_SECRET`, in bytes (HS256 wants a key at least as long as its hash).
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// The shortest `METRICS_TOKEN` accepted.
pub const MIN_METRICS_TOKEN_BYTES: usize = 16;

/// A value that never prints: its `Debug` shows `<redacted>`, and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The HMAC key for access tokens.
#[derive(Clone, Debug)]
pub struct JwtSecret {
    bytes: Secret<Vec<u8>>,
    /// True when no secret was configured and one was generated for this process.
    pub generated: bool,
}

impl JwtSecret {
    /// A secret from configured bytes.
    ///
    /// # Errors
    /// When it is shorter than [`MIN_JWT_SECRET_BYTES`]; the message says how long it was.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, String> {
        let bytes = bytes.into();
        if bytes.len() < MIN_JWT_SECRET_BYTES {
            return Err(format!(
                "must be at least {MIN_JWT_SECRET_BYTES} bytes long (got {})",
                bytes.len()
            ));
        }
        Ok(Self {
            bytes: Secret::new(bytes),
            generated: false,
        })
    }

    /// A fresh random 256-bit secret, valid for this process only.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self {
            bytes: Secret::new(bytes),
            generated: true,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.expose()
    }
}

/// The bearer token Prometheus sends for `/metrics`.
#[derive(Clone, Debug)]
pub struct MetricsToken(Secret<String>);

impl MetricsToken {
    /// A token of at least [`MIN_METRICS_TOKEN_BYTES`] after trimming.
    ///
    /// # Errors
    /// When it is shorter.
    pub fn new(token: &str) -> Result<Self, String> {
        let token = token.trim();
        if token.len() < MIN_METRICS_TOKEN_BYTES {
            return Err(format!(
                "must be at least {MIN_METRICS_TOKEN_BYTES} bytes long"
            ));
        }
        Ok(Self(Secret::new(token.to_owned())))
    }

    /// Whether `presented` is this token, compared in constant time (the digests are compared,
    /// so neither the content nor the length of the token shows in the timing).
    pub fn matches(&self, presented: &[u8]) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let expected = Sha256::digest(self.0.expose().as_bytes());
        let presented = Sha256::digest(presented);
        expected.ct_eq(&presented).into()
    }
}

/// A database URL. `Debug` and `Display` show it with its password replaced, so it can be
/// logged; [`DatabaseUrl::as_str`] is for connecting.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for connecting.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

/// The URL with any password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
