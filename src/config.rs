//! Configuration read from the environment (and `.env`), validated once at start.

use std::{net::SocketAddr, path::PathBuf};

use rand::RngCore;

/// Where the server runs: development is forgiving, production refuses unsafe defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

/// The database used when `DATABASE_URL` is unset: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://storefront.db?mode=rwc";
/// The minimum length of `JWT_SECRET`, in bytes (HS256 wants a key at least as long as its hash).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// Everything the server needs to start, from `DATABASE_URL`, `JWT_SECRET`, `LISTEN_ADDR`,
/// `APP_ENV`, `POLICY_DIR`, `JWT_ISSUER` and `JWT_AUDIENCE`.
#[derive(Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub database_url: String,
    /// True when `DATABASE_URL` was not set and the embedded SQLite default is in use.
    pub database_is_default: bool,
    pub listen_addr: SocketAddr,
    pub jwt_secret: JwtSecret,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// The policy folder, and whether it was named explicitly by `POLICY_DIR`.
    pub policy_dir: PathBuf,
    pub policy_dir_is_default: bool,
}

/// The HMAC key for access tokens. Its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct JwtSecret {
    bytes: Vec<u8>,
    /// True when no secret was configured and one was generated for this process.
    pub generated: bool,
}

impl JwtSecret {
    /// A secret from configured bytes.
    ///
    /// # Errors
    /// When it is shorter than [`MIN_JWT_SECRET_BYTES`].
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ConfigError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_JWT_SECRET_BYTES {
            return Err(ConfigError::invalid(
                "JWT_SECRET",
                format!(
                    "must be at least {MIN_JWT_SECRET_BYTES} bytes long (got {})",
                    bytes.len()
                ),
            ));
        }
        Ok(Self {
            bytes,
            generated: false,
        })
    }

    /// A fresh random 256-bit secret, valid for this process only.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self {
            bytes,
            generated: true,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("app_env", &self.app_env)
            .field("database_url", &redact_url(&self.database_url))
            .field("listen_addr", &self.listen_addr)
            .field("jwt_secret", &self.jwt_secret)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("policy_dir", &self.policy_dir)
            .finish()
    }
}

/// A configuration value that is missing or malformed; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var} {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn invalid(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            reason: reason.into(),
        }
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first variable with a bad value.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `get`, so tests can supply their own variables.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first variable with a bad value.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());

        let app_env = match get("APP_ENV").as_deref().map(str::to_ascii_lowercase) {
            None => AppEnv::Development,
            Some(v) if v == "development" || v == "dev" => AppEnv::Development,
            Some(v) if v == "production" || v == "prod" => AppEnv::Production,
            Some(_) => {
                return Err(ConfigError::invalid(
                    "APP_ENV",
                    "must be `development` or `production`",
                ));
            }
        };

        let (database_url, database_is_default) = database_url_from(get)?;

        let listen_addr = match get("LISTEN_ADDR") {
            Some(v) => v.parse().map_err(|_| {
                ConfigError::invalid("LISTEN_ADDR", "must be an address like 127.0.0.1:8000")
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8000)),
        };

        let jwt_secret = match get("JWT_SECRET") {
            Some(secret) => JwtSecret::new(secret.into_bytes())?,
            None if app_env == AppEnv::Production => {
                return Err(ConfigError::invalid(
                    "JWT_SECRET",
                    "is required when APP_ENV=production",
                ));
            }
            None => JwtSecret::generate(),
        };

        let jwt_issuer = get("JWT_ISSUER").unwrap_or_else(|| "storefront".to_owned());
        let jwt_audience = get("JWT_AUDIENCE").unwrap_or_else(|| "storefront".to_owned());

        let (policy_dir, policy_dir_is_default) = match get("POLICY_DIR") {
            Some(dir) => (PathBuf::from(dir), false),
            None => (PathBuf::from("./policies"), true),
        };

        Ok(Self {
            app_env,
            database_url,
            database_is_default,
            listen_addr,
            jwt_secret,
            jwt_issuer,
            jwt_audience,
            policy_dir,
            policy_dir_is_default,
        })
    }
}

/// The database URL from `DATABASE_URL` through `get`, or the embedded SQLite default; the
/// flag is true for the default.
///
/// # Errors
/// When `DATABASE_URL` names a database Storefront does not support.
pub fn database_url_from(
    get: impl Fn(&str) -> Option<String>,
) -> Result<(String, bool), ConfigError> {
    match get("DATABASE_URL").filter(|v| !v.trim().is_empty()) {
        Some(url) => {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return Err(ConfigError::invalid(
                    "DATABASE_URL",
                    "must start with sqlite:, postgres:// or postgresql://",
                ));
            }
            Ok((url, false))
        }
        None => Ok((DEFAULT_DATABASE_URL.to_owned(), true)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_are_development_on_embedded_sqlite() {
        let c = config(&[]).unwrap();
        assert_eq!(c.app_env, AppEnv::Development);
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert!(c.database_is_default);
        assert!(c.jwt_secret.generated);
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(c.jwt_issuer, "storefront");
    }

    #[test]
    fn production_requires_a_secret() {
        let err = config(&[("APP_ENV", "production")]).err().unwrap();
        assert_eq!(err.var, "JWT_SECRET");
    }

    #[test]
    fn short_secret_is_refused() {
        let err = config(&[("JWT_SECRET", "short")]).err().unwrap();
        assert_eq!(err.var, "JWT_SECRET");
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert_eq!(
            config(&[("LISTEN_ADDR", "nope")]).err().unwrap().var,
            "LISTEN_ADDR"
        );
        assert_eq!(
            config(&[("APP_ENV", "staging")]).err().unwrap().var,
            "APP_ENV"
        );
        assert_eq!(
            config(&[("DATABASE_URL", "mysql://x")]).err().unwrap().var,
            "DATABASE_URL"
        );
    }

    #[test]
    fn secret_is_not_in_debug_output() {
        let c = config(&[
            ("JWT_SECRET", "a-very-long-secret-value-of-40-bytes-xyz"),
            ("DATABASE_URL", "postgres://app:hunter2@db/store"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("a-very-long-secret"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
