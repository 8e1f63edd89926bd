//! Configuration read from the environment (and `.env`), validated once at start.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use rand::RngCore;

use crate::server::ConnectionLimits;

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
    /// Secrets accepted for verification only (`JWT_PREVIOUS_SECRETS`), for key rotation.
    pub jwt_previous_secrets: Vec<JwtSecret>,
    /// How long a refresh token lives (`REFRESH_TOKEN_TTL_DAYS`, default 30).
    pub refresh_token_ttl: Duration,
    /// How often each replica reads new revocations (`REVOCATION_POLL_MS`, default 250).
    pub revocation_poll: Duration,
    /// Memory for cached catalog pages, per replica (`CATALOG_CACHE_MB`, default 16; 0: none).
    pub catalog_cache_bytes: usize,
    /// How often each replica checks whether the catalog changed (`CATALOG_POLL_MS`, default 250).
    pub catalog_poll: Duration,
    /// The policy folder, and whether it was named explicitly by `POLICY_DIR`.
    pub policy_dir: PathBuf,
    pub policy_dir_is_default: bool,
    /// Sign-in attempts per client IP per minute (`AUTH_RATE_LIMIT_PER_MINUTE`, 0 = off).
    pub auth_rate_limit_per_minute: u32,
    /// Read the client IP from `X-Forwarded-For` (`TRUST_PROXY_HEADERS`, default false).
    pub trust_proxy_headers: bool,
    /// Password hashes that may wait or run at once (`PASSWORD_HASH_QUEUE`; 0, the default,
    /// means 16 per core); more are refused with `TOO_MANY_REQUESTS`.
    pub password_hash_queue: usize,
    /// GraphQL and HTTP limits.
    pub limits: Limits,
    /// Introspection (`INTROSPECTION`), field suggestions (`FIELD_SUGGESTIONS`) and the GraphiQL
    /// page (`GRAPHIQL`): on in development, off by default in production.
    pub introspection: bool,
    pub field_suggestions: bool,
    pub graphiql: bool,
    /// Origins allowed to call the API from a browser (`CORS_ALLOWED_ORIGINS`, comma-separated;
    /// none by default; `*` for any, never with credentials).
    pub cors_allowed_origins: CorsOrigins,
    /// Serve `/metrics` on this address instead of the API's (`METRICS_ADDR`).
    pub metrics_addr: Option<SocketAddr>,
    /// A bearer token `/metrics` requires (`METRICS_TOKEN`); in production, `/metrics` is on
    /// the API's address only with one.
    pub metrics_token: Option<MetricsToken>,
    /// How long in-flight requests may take to finish after SIGTERM (`SHUTDOWN_TIMEOUT_SECS`).
    pub shutdown_timeout: Duration,
    /// Header, body and idle timeouts and the connection cap.
    pub connections: ConnectionLimits,
}

/// The bearer token Prometheus sends for `/metrics`. Its `Debug` never shows it.
#[derive(Clone)]
pub struct MetricsToken(String);

/// The shortest `METRICS_TOKEN` accepted.
pub const MIN_METRICS_TOKEN_BYTES: usize = 16;

impl MetricsToken {
    /// Whether `presented` is this token, compared in constant time (the digests are compared,
    /// so neither the content nor the length of the token shows in the timing).
    pub fn matches(&self, presented: &[u8]) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        let expected = Sha256::digest(self.0.as_bytes());
        let presented = Sha256::digest(presented);
        expected.ct_eq(&presented).into()
    }
}

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(<redacted>)")
    }
}

/// Which browser origins may call the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    None,
    Any,
    List(Vec<String>),
}

/// Limits on what one request may ask of the server.
#[derive(Clone, Debug)]
pub struct Limits {
    /// `MAX_BODY_BYTES` (65536): larger bodies get HTTP 413.
    pub max_body_bytes: usize,
    /// `GRAPHQL_MAX_DEPTH` (15): the deepest selection nesting.
    pub max_depth: usize,
    /// `GRAPHQL_MAX_COMPLEXITY` (2000): the cost budget of a request (a batch adds up): each
    /// field 1, list items multiplied by `first` (see `graphql::cost`).
    pub max_complexity: usize,
    /// `GRAPHQL_MAX_ALIASES` (30): aliased fields in one document.
    pub max_aliases: usize,
    /// `GRAPHQL_MAX_DIRECTIVES` (10): directives on one field.
    pub max_directives: usize,
    /// `GRAPHQL_MAX_BATCH` (10): operations in one JSON array; 0 refuses batches.
    pub max_batch: usize,
    /// `REQUEST_TIMEOUT_MS` (10000): a request running longer is cancelled.
    pub request_timeout: Duration,
    /// `MAX_RESPONSE_BYTES` (4194304): a larger response is replaced by an error.
    pub max_response_bytes: usize,
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
            .field("jwt_previous_secrets", &self.jwt_previous_secrets.len())
            .field("policy_dir", &self.policy_dir)
            .field("limits", &self.limits)
            .field("metrics_token", &self.metrics_token)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
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

        let jwt_previous_secrets = match get("JWT_PREVIOUS_SECRETS") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    JwtSecret::new(s.as_bytes().to_vec()).map_err(|_| {
                        ConfigError::invalid(
                            "JWT_PREVIOUS_SECRETS",
                            format!("each secret must be at least {MIN_JWT_SECRET_BYTES} bytes"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let refresh_token_ttl =
            Duration::from_secs(number(&get, "REFRESH_TOKEN_TTL_DAYS", 30, 1..=365)? * 86_400);
        let revocation_poll =
            Duration::from_millis(number(&get, "REVOCATION_POLL_MS", 250, 10..=1000)?);
        let catalog_cache_bytes =
            number(&get, "CATALOG_CACHE_MB", 16, 0..=4096)? as usize * 1_000_000;
        let catalog_poll = Duration::from_millis(number(&get, "CATALOG_POLL_MS", 250, 10..=1000)?);
        let auth_rate_limit_per_minute =
            number(&get, "AUTH_RATE_LIMIT_PER_MINUTE", 60, 0..=1_000_000)? as u32;
        let trust_proxy_headers = flag(&get, "TRUST_PROXY_HEADERS", false)?;
        let password_hash_queue = number(&get, "PASSWORD_HASH_QUEUE", 0, 0..=100_000)? as usize;
        let production = app_env == AppEnv::Production;
        let introspection = flag(&get, "INTROSPECTION", !production)?;
        let field_suggestions = flag(&get, "FIELD_SUGGESTIONS", !production)?;
        let graphiql = flag(&get, "GRAPHIQL", !production)?;
        let limits = Limits {
            max_body_bytes: number(&get, "MAX_BODY_BYTES", 65_536, 1024..=16 * 1024 * 1024)?
                as usize,
            max_depth: number(&get, "GRAPHQL_MAX_DEPTH", 15, 1..=1000)? as usize,
            max_complexity: number(&get, "GRAPHQL_MAX_COMPLEXITY", 2000, 1..=1_000_000)? as usize,
            max_aliases: number(&get, "GRAPHQL_MAX_ALIASES", 30, 0..=10_000)? as usize,
            max_directives: number(&get, "GRAPHQL_MAX_DIRECTIVES", 10, 0..=1000)? as usize,
            max_batch: number(&get, "GRAPHQL_MAX_BATCH", 10, 0..=1000)? as usize,
            request_timeout: Duration::from_millis(number(
                &get,
                "REQUEST_TIMEOUT_MS",
                10_000,
                1..=600_000,
            )?),
            max_response_bytes: number(
                &get,
                "MAX_RESPONSE_BYTES",
                4 * 1024 * 1024,
                1024..=1024 * 1024 * 1024,
            )? as usize,
        };

        let cors_allowed_origins = match get("CORS_ALLOWED_ORIGINS") {
            None => CorsOrigins::None,
            Some(list) if list.trim() == "*" => CorsOrigins::Any,
            Some(list) => {
                let origins: Vec<String> = list
                    .split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect();
                if origins.iter().any(|o| {
                    !(o.starts_with("http://") || o.starts_with("https://"))
                        || o.contains('*')
                        || o[o.find("://").unwrap_or(0) + 3..].contains('/')
                }) {
                    return Err(ConfigError::invalid(
                        "CORS_ALLOWED_ORIGINS",
                        "must be `*` or a comma-separated list of origins like https://shop.example.com",
                    ));
                }
                CorsOrigins::List(origins)
            }
        };
        let metrics_addr = match get("METRICS_ADDR") {
            Some(v) => Some(v.parse().map_err(|_| {
                ConfigError::invalid("METRICS_ADDR", "must be an address like 127.0.0.1:9100")
            })?),
            None => None,
        };
        let metrics_token = match get("METRICS_TOKEN") {
            Some(token) if token.trim().len() < MIN_METRICS_TOKEN_BYTES => {
                return Err(ConfigError::invalid(
                    "METRICS_TOKEN",
                    format!("must be at least {MIN_METRICS_TOKEN_BYTES} bytes long"),
                ));
            }
            Some(token) => Some(MetricsToken(token.trim().to_owned())),
            None => None,
        };
        let shutdown_timeout =
            Duration::from_secs(number(&get, "SHUTDOWN_TIMEOUT_SECS", 30, 0..=3600)?);
        let connections = ConnectionLimits {
            header_read_timeout: Duration::from_secs(number(
                &get,
                "HEADER_READ_TIMEOUT_SECS",
                10,
                1..=3600,
            )?),
            body_read_timeout: Duration::from_secs(number(
                &get,
                "BODY_READ_TIMEOUT_SECS",
                30,
                1..=3600,
            )?),
            idle_timeout: Duration::from_secs(number(&get, "IDLE_TIMEOUT_SECS", 60, 1..=3600)?),
            max_connections: number(&get, "MAX_CONNECTIONS", 10_000, 16..=1_000_000)? as usize,
        };

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
            jwt_previous_secrets,
            refresh_token_ttl,
            revocation_poll,
            catalog_cache_bytes,
            catalog_poll,
            policy_dir,
            policy_dir_is_default,
            auth_rate_limit_per_minute,
            trust_proxy_headers,
            password_hash_queue,
            limits,
            introspection,
            field_suggestions,
            graphiql,
            cors_allowed_origins,
            metrics_addr,
            metrics_token,
            shutdown_timeout,
            connections,
        })
    }
}

/// A whole number from `var` within `range`, or `default` when unset.
fn number(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(text) => match text.trim().parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(ConfigError::invalid(
                var,
                format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )),
        },
    }
}

/// A boolean from `var` (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`), or `default`.
fn flag(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(var).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(_) => Err(ConfigError::invalid(var, "must be true or false")),
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
    fn production_turns_off_introspection_suggestions_and_graphiql_unless_asked() {
        let secret = ("JWT_SECRET", "a-very-long-secret-value-of-40-bytes-xyz");
        let c = config(&[("APP_ENV", "production"), secret]).unwrap();
        assert!(!c.introspection && !c.field_suggestions && !c.graphiql);
        let c = config(&[("APP_ENV", "production"), secret, ("GRAPHIQL", "true")]).unwrap();
        assert!(c.graphiql && !c.introspection);
        let c = config(&[]).unwrap();
        assert!(c.introspection && c.field_suggestions && c.graphiql);
        assert_eq!(
            config(&[("GRAPHIQL", "maybe")]).err().unwrap().var,
            "GRAPHIQL"
        );
    }

    #[test]
    fn limits_have_safe_defaults_and_bad_numbers_name_their_variable() {
        let c = config(&[]).unwrap();
        assert_eq!(c.limits.max_body_bytes, 65_536);
        assert_eq!(c.limits.max_batch, 10);
        assert_eq!(c.limits.max_complexity, 2000);
        assert_eq!(c.limits.max_response_bytes, 4 * 1024 * 1024);
        assert_eq!(c.auth_rate_limit_per_minute, 60);
        assert!(!c.trust_proxy_headers);
        for var in [
            "GRAPHQL_MAX_DEPTH",
            "MAX_BODY_BYTES",
            "MAX_RESPONSE_BYTES",
            "AUTH_RATE_LIMIT_PER_MINUTE",
        ] {
            assert_eq!(config(&[(var, "-3")]).err().unwrap().var, var);
        }
        assert_eq!(
            config(&[("JWT_PREVIOUS_SECRETS", "short")])
                .err()
                .unwrap()
                .var,
            "JWT_PREVIOUS_SECRETS"
        );
    }

    #[test]
    fn cors_origins_are_none_by_default_and_checked() {
        assert_eq!(config(&[]).unwrap().cors_allowed_origins, CorsOrigins::None);
        assert_eq!(
            config(&[("CORS_ALLOWED_ORIGINS", "*")])
                .unwrap()
                .cors_allowed_origins,
            CorsOrigins::Any
        );
        assert_eq!(
            config(&[(
                "CORS_ALLOWED_ORIGINS",
                "https://a.example, http://localhost:3000/"
            )])
            .unwrap()
            .cors_allowed_origins,
            CorsOrigins::List(vec![
                "https://a.example".to_owned(),
                "http://localhost:3000".to_owned()
            ])
        );
        for bad in ["a.example", "https://*.example", "https://a.example/path"] {
            assert_eq!(
                config(&[("CORS_ALLOWED_ORIGINS", bad)]).err().unwrap().var,
                "CORS_ALLOWED_ORIGINS",
                "{bad}"
            );
        }
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
