//! Configuration from environment variables (and `.env`), declared once and checked at start.
//!
//! Each concern is a struct that derives [`clap::Args`]; every field declares its variable
//! (`env`), default, value parser (a `rules` function, which holds the allowed range) and,
//! in its doc comment, what it does. The same declarations give `storefront --help` its list of
//! variables and `storefront config --markdown` the docs' table (`reference`).
//!
//! Parsing never lets clap read the process environment: clap's `env` reads it when a command
//! is built, so [`from_lookup`] removes those values and hands clap only what its lookup
//! returns, as `--long=value` arguments. A configuration built from a map (as the tests build
//! theirs) therefore sees nothing but that map, and [`from_env`] is the same path with
//! [`std::env::var`] as the lookup. Rules that need more than one variable, or whether a
//! variable was set at all, live in [`Settings::resolve`].

mod reference;
mod rules;
mod secret;

use std::{collections::BTreeSet, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Args, Command, FromArgMatches, error::ContextValue};

pub use reference::{markdown, names, text};
pub use secret::{
    DatabaseUrl, JwtSecret, MIN_JWT_SECRET_BYTES, MIN_METRICS_TOKEN_BYTES, MetricsToken, Secret,
    redact_url,
};

use crate::server::ConnectionLimits;

/// The database used when `DATABASE_URL` is unset: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://storefront.db?mode=rwc";

/// `CORS_ALLOWED_HEADERS` when unset.
pub const DEFAULT_CORS_ALLOWED_HEADERS: &str = "authorization,content-type,x-request-id,\
idempotency-key,traceparent,tracestate,baggage,sentry-trace,apollographql-client-name,\
apollographql-client-version";

/// Everything `serve` reads. (Logging and `create-admin` have their own [`Logging`] and
/// [`AdminPassword`].)
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Where the server runs: `development` is forgiving; `production` refuses to start without
    /// `JWT_SECRET` and turns `INTROSPECTION`, `FIELD_SUGGESTIONS` and `GRAPHIQL` off unless
    /// they are set.
    #[arg(long, env = "APP_ENV", default_value = "development", value_parser = rules::app_env(),
        help_heading = "Server")]
    pub app_env: AppEnv,
    #[command(flatten)]
    pub server: Server,
    #[command(flatten)]
    pub database: Database,
    #[command(flatten)]
    pub auth: Auth,
    #[command(flatten)]
    pub policy: Policy,
    #[command(flatten)]
    pub limits: Limits,
    #[command(flatten)]
    pub subscriptions: Subscriptions,
    #[command(flatten)]
    pub discovery: Discovery,
    #[command(flatten)]
    pub caches: Caches,
    #[command(flatten)]
    pub persisted: PersistedQueries,
    #[command(flatten)]
    pub metrics: MetricsEndpoint,
    #[command(flatten)]
    pub audit: Audit,
}

/// Where the policy's rules are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyStore {
    /// `POLICY_DIR`'s `policy.csv`, read again when it changes.
    Files,
    /// The database (`casbin_rules`), managed through GraphQL; seeded from `policy.csv` on the
    /// first start.
    Database,
}

/// Where the server runs: development is forgiving, production refuses unsafe defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

/// The listener, its connections and shutdown.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Server")]
pub struct Server {
    /// Address and port to serve on. Use `0.0.0.0:8000` to accept connections from other
    /// machines or containers.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8000",
        value_parser = rules::address("127.0.0.1:8000"))]
    pub listen_addr: SocketAddr,
    /// Take the client IP from the last address in `X-Forwarded-For`. Turn it on only behind a
    /// proxy you control that sets that header; otherwise clients could choose their own IP.
    #[arg(long, env = "TRUST_PROXY_HEADERS", default_value = "false", action = ArgAction::Set,
        value_parser = rules::switch())]
    pub trust_proxy_headers: bool,
    /// Browser origins that may call the API, e.g.
    /// `https://shop.example.com,http://localhost:3000`: each `http://` or `https://`, a host and
    /// an optional port, with no path and no wildcard (a trailing `/` is dropped). `*` allows every origin. Unset, no CORS headers are sent, so only
    /// pages on the API's own origin can call it. Credentials (cookies) are never allowed.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", default_value = "",
        value_parser = rules::cors_origins())]
    pub cors_allowed_origins: CorsOrigins,
    /// Request headers a page on an allowed origin may send (the preflight's
    /// `Access-Control-Allow-Headers`), comma-separated, case-insensitive. The default holds the
    /// API's own (`authorization`, `content-type`, `x-request-id`, `idempotency-key`) and what
    /// common GraphQL clients and tracing send (W3C Trace Context and Baggage, Sentry, Apollo
    /// client awareness). Setting it replaces the whole list.
    #[arg(long, env = "CORS_ALLOWED_HEADERS", default_value = DEFAULT_CORS_ALLOWED_HEADERS,
        value_parser = rules::header_names())]
    pub cors_allowed_headers: std::vec::Vec<String>,
    /// A request's headers must arrive within this many seconds of its first byte, or the
    /// connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_SECS", default_value = "10",
        value_parser = rules::seconds(1, 3600))]
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this many seconds of its headers, or the request gets
    /// HTTP 408 and the connection is closed.
    #[arg(long, env = "BODY_READ_TIMEOUT_SECS", default_value = "30",
        value_parser = rules::seconds(1, 3600))]
    pub body_read_timeout: Duration,
    /// Seconds after which a connection with no request in flight and no new request starting
    /// is closed.
    #[arg(long, env = "IDLE_TIMEOUT_SECS", default_value = "60",
        value_parser = rules::seconds(1, 3600))]
    pub idle_timeout: Duration,
    /// Connections open at once. The server lowers it to its descriptor limit (raised to the
    /// hard limit at start) minus 128. Further connections wait in the listen backlog until one
    /// closes.
    #[arg(long, env = "MAX_CONNECTIONS", default_value = "10000",
        value_parser = rules::number::<usize>(16, 1_000_000))]
    pub max_connections: usize,
    /// After SIGTERM, SIGQUIT or Ctrl-C, how many seconds requests in flight may run before the
    /// process exits anyway.
    #[arg(long, env = "SHUTDOWN_TIMEOUT_SECS", default_value = "30",
        value_parser = rules::seconds(0, 3600))]
    pub shutdown_timeout: Duration,
}

impl Server {
    /// The header, body and idle timeouts and the connection cap.
    pub fn connections(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
        }
    }
}

/// Which browser origins may call the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    None,
    Any,
    List(Vec<String>),
}

/// The database.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Database")]
pub struct Database {
    /// The database to use. `mode=rwc` lets SQLite create the file. With the default, the first
    /// `serve` of a new database adds the demo products. Logs show the URL with its password
    /// replaced.
    #[arg(long = "database-url", env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL,
        value_parser = rules::database_url())]
    pub url: DatabaseUrl,
    /// PostgreSQL only: where each replica keeps the one connection that `LISTEN`s for the
    /// others' changes (subscription events, revocations, policy changes), when that is not
    /// `DATABASE_URL`: behind PgBouncer in transaction mode, which cannot hold a `LISTEN`,
    /// name the database directly or a PgBouncer pool in session mode.
    #[arg(long = "database-listen-url", env = "DATABASE_LISTEN_URL",
        value_parser = rules::database_url())]
    pub listen_url: Option<DatabaseUrl>,
    /// True when `DATABASE_URL` was not set and the embedded SQLite default is in use.
    #[arg(skip)]
    pub is_default: bool,
}

/// Access and refresh tokens, sign-in throttling and password hashing.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Authentication")]
pub struct Auth {
    /// HMAC key for access tokens (HS256), used as given (not base64-decoded). Required when
    /// `APP_ENV=production`; unset in development, a random key is made for each process (with
    /// a warning), so access tokens stop working when the server restarts. Changing it without
    /// `JWT_PREVIOUS_SECRETS` ends every access token (refresh tokens keep working). Generate
    /// one with `openssl rand -base64 48`.
    #[arg(long, env = "JWT_SECRET", default_value = "", value_parser = rules::jwt_secret())]
    pub jwt_secret: JwtSecret,
    /// Former `JWT_SECRET` values (so a secret cannot contain a comma). They verify access
    /// tokens but never sign, so the key can be rotated without signing anyone out. Remove an
    /// old secret an hour after rotating, when its tokens have expired.
    // `std::vec::Vec`, spelled out, makes clap's derive take the whole list from one value.
    #[arg(long, env = "JWT_PREVIOUS_SECRETS", default_value = "",
        value_parser = rules::jwt_secrets())]
    pub jwt_previous_secrets: std::vec::Vec<JwtSecret>,
    /// `iss` claim of access tokens, set on issue and checked on verification. Every replica
    /// must use the same value.
    #[arg(long, env = "JWT_ISSUER", default_value = "storefront",
        value_parser = rules::text("any text"))]
    pub jwt_issuer: String,
    /// `aud` claim of access tokens, set on issue and checked on verification. Every replica
    /// must use the same value.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "storefront",
        value_parser = rules::text("any text"))]
    pub jwt_audience: String,
    /// Lifetime of each refresh token, in days. Each refresh issues a new one with a full
    /// lifetime.
    #[arg(long, env = "REFRESH_TOKEN_TTL_DAYS", default_value = "30",
        value_parser = rules::days(1, 365))]
    pub refresh_token_ttl: Duration,
    /// Seconds after a refresh during which presenting the refresh token it spent again (two
    /// tabs refreshing at once, a retry after a timeout) answers the same new pair instead of
    /// ending the session. Only the token just spent counts, and only while its successor is
    /// unspent; any other reuse ends the session. `0` turns it off: every reuse ends the
    /// session.
    #[arg(long, env = "REFRESH_REUSE_INTERVAL_SECS", default_value = "10",
        value_parser = rules::seconds(0, 60))]
    pub refresh_reuse_interval: Duration,
    /// How often each replica reads new revocations (logout, password and role changes) from
    /// the database, in milliseconds. On PostgreSQL replicas also hear of each revocation at
    /// once (a notification), and the poll only repairs a missed one; on SQLite it is how a
    /// server learns of revocations made by another process (`storefront create-admin`).
    #[arg(long, env = "REVOCATION_POLL_MS", default_value = "250",
        value_parser = rules::millis(10, 60_000))]
    pub revocation_poll: Duration,
    /// `login`, `register`, `changePassword`, `refreshToken` and `logout(refreshToken:)` attempts
    /// per client address per minute, per replica (an IPv6 address counts by its /64, an
    /// IPv4-mapped IPv6 address as the IPv4 address). Every alias and batch item counts. `0`
    /// turns the limit off.
    #[arg(long, env = "AUTH_RATE_LIMIT_PER_MINUTE", default_value = "60",
        value_parser = rules::number::<u32>(0, 1_000_000))]
    pub rate_limit_per_minute: u32,
    /// Password hashes and verifications that may wait or run at once, per replica; beyond it
    /// `login`, `register` and `changePassword` get `TOO_MANY_REQUESTS` at once instead of
    /// waiting. `0` means 16 per core: a full queue is a few hundred milliseconds of waiting.
    #[arg(long, env = "PASSWORD_HASH_QUEUE", default_value = "0",
        value_parser = rules::number::<usize>(0, 100_000))]
    pub password_hash_queue: usize,
}

/// The authorization policy.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Authorization")]
pub struct Policy {
    /// Folder with `model.conf` and `policy.csv`. If the default folder does not exist, the copy
    /// built into the binary is used; if `POLICY_DIR` is set and the folder is missing, start-up
    /// fails. The log names the policy that was loaded (`source=folder …` or
    /// `source=built-in copy`).
    #[arg(long = "policy-dir", env = "POLICY_DIR", default_value = "./policies",
        value_parser = rules::folder())]
    pub dir: PathBuf,
    /// How often each replica reads the policy files again (or, with `POLICY_SOURCE=database`,
    /// the stored policy's version); a change is put in force as SIGHUP does (a policy that is
    /// refused leaves the one in force, and the log says why). 0: only on SIGHUP. Nothing is
    /// read while the built-in copy of the files is in use.
    #[arg(long, env = "POLICY_POLL_MS", default_value = "1000",
        value_parser = rules::millis(0, 3_600_000))]
    pub poll: Duration,
    /// Where the rules live: `files` (`policy.csv` in `POLICY_DIR`, edited by hand) or
    /// `database` (managed through GraphQL by roles with `policy manage`; every replica applies
    /// a change within `POLICY_POLL_MS`). The first start with `database` stores `policy.csv`'s
    /// rules; `model.conf` is always read from `POLICY_DIR`.
    #[arg(long, env = "POLICY_SOURCE", default_value = "files", value_parser = rules::policy_store())]
    pub source: PolicyStore,
    /// The role every account made by `register` gets. Start-up fails when the policy does not
    /// define it.
    #[arg(long, env = "DEFAULT_ROLE", default_value = "user", value_parser = rules::role())]
    pub default_role: crate::role::Role,
    /// True when `POLICY_DIR` was not set, so a missing folder falls back to the built-in copy.
    #[arg(skip)]
    pub is_default: bool,
}

/// Limits on what one request may ask of the server.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Request limits")]
pub struct Limits {
    /// Larger request bodies get HTTP 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value = "65536",
        value_parser = rules::number::<usize>(1024, 16_777_216))]
    pub max_body_bytes: usize,
    /// Deepest selection nesting.
    #[arg(long, env = "GRAPHQL_MAX_DEPTH", default_value = "15",
        value_parser = rules::number::<usize>(1, 1000))]
    pub max_depth: usize,
    /// The cost budget of one request, a batch's operations added up: each field costs 1, and
    /// the items of a list count as many times as `first` asks for (see the cost model under
    /// GraphQL and HTTP limits).
    #[arg(long, env = "GRAPHQL_MAX_COMPLEXITY", default_value = "2000",
        value_parser = rules::number::<usize>(1, 1_000_000))]
    pub max_complexity: usize,
    /// Aliased fields per document.
    #[arg(long, env = "GRAPHQL_MAX_ALIASES", default_value = "30",
        value_parser = rules::number::<usize>(0, 10_000))]
    pub max_aliases: usize,
    /// Directives on one field.
    #[arg(long, env = "GRAPHQL_MAX_DIRECTIVES", default_value = "10",
        value_parser = rules::number::<usize>(0, 1000))]
    pub max_directives: usize,
    /// Operations in one JSON-array request. `0` refuses batches.
    #[arg(long, env = "GRAPHQL_MAX_BATCH", default_value = "10",
        value_parser = rules::number::<usize>(0, 1000))]
    pub max_batch: usize,
    /// Milliseconds after which a request (a whole batch) still running is cancelled with
    /// HTTP 503.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value = "10000",
        value_parser = rules::millis(1, 600_000))]
    pub request_timeout: Duration,
    /// A response (a whole batch) that would be larger is replaced by a `RESPONSE_TOO_LARGE`
    /// error.
    #[arg(long, env = "MAX_RESPONSE_BYTES", default_value = "4194304",
        value_parser = rules::number::<usize>(1024, 1_073_741_824))]
    pub max_response_bytes: usize,
}

/// GraphQL subscriptions over WebSocket (`graphql-transport-ws` at `/graphql`).
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Subscriptions")]
pub struct Subscriptions {
    /// Seconds a new WebSocket has to send `connection_init`; then it is closed with 4408.
    #[arg(long, env = "WS_INIT_TIMEOUT_SECS", default_value = "10",
        value_parser = rules::seconds(1, 300))]
    pub init_timeout: Duration,
    /// Subscriptions open at once on one WebSocket; a further `subscribe` gets an `error`
    /// message (`TOO_MANY_REQUESTS`).
    #[arg(long, env = "WS_MAX_SUBSCRIPTIONS_PER_CONNECTION", default_value = "20",
        value_parser = rules::number::<usize>(1, 1000))]
    pub max_per_connection: usize,
    /// Subscriptions open at once for one account, over all its WebSockets on this replica.
    #[arg(long, env = "WS_MAX_SUBSCRIPTIONS_PER_ACCOUNT", default_value = "100",
        value_parser = rules::number::<usize>(1, 100_000))]
    pub max_per_account: usize,
    /// Events queued for one subscription while its client has not read them; when more
    /// come, its WebSocket is closed with 1008 rather than buffered without end.
    #[arg(long, env = "WS_MAX_QUEUED_EVENTS", default_value = "256",
        value_parser = rules::number::<usize>(1, 65_536))]
    pub max_queued_events: usize,
    /// Seconds between the WebSocket pings the server sends each socket; a socket from which
    /// nothing (a pong, a message) was read since the previous ping is closed with 1001, so a
    /// peer gone without closing does not hold its place. Browsers and WebSocket libraries
    /// answer pings by themselves.
    #[arg(long, env = "WS_PING_INTERVAL_SECS", default_value = "30",
        value_parser = rules::seconds(1, 3600))]
    pub ping_interval: Duration,
    /// Seconds an initialised WebSocket may stay open without a subscription; then it is
    /// closed with 1000.
    #[arg(long, env = "WS_IDLE_TIMEOUT_SECS", default_value = "120",
        value_parser = rules::seconds(1, 86_400))]
    pub idle_socket_timeout: Duration,
    /// WebSockets open at once from one client address (as `TRUST_PROXY_HEADERS` decides it);
    /// one more upgrade is answered with HTTP 429.
    #[arg(long, env = "WS_MAX_CONNECTIONS_PER_ADDRESS", default_value = "50",
        value_parser = rules::number::<usize>(1, 1_000_000))]
    pub max_connections_per_address: usize,
}

/// What the API tells a caller about its schema.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Schema discovery")]
pub struct Discovery {
    /// Answer `__schema` and `__type`; when off, they return `null`. `false` by default in
    /// production.
    #[arg(long, env = "INTROSPECTION", default_value = "true", action = ArgAction::Set,
        value_parser = rules::switch())]
    pub introspection: bool,
    /// "Did you mean …" hints in validation errors. `false` by default in production.
    #[arg(long, env = "FIELD_SUGGESTIONS", default_value = "true", action = ArgAction::Set,
        value_parser = rules::switch())]
    pub field_suggestions: bool,
    /// Serve the GraphiQL page at `GET /` and, for browsers, `GET /graphql`. `false` by default
    /// in production, where it also needs `INTROSPECTION=true` to show docs.
    #[arg(long, env = "GRAPHIQL", default_value = "true", action = ArgAction::Set,
        value_parser = rules::switch())]
    pub graphiql: bool,
}

/// Caches each replica keeps.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Caches")]
pub struct Caches {
    /// Memory in MB for the `products` pages and `totalCount`s each replica keeps until the
    /// catalog changes. `0` reads every page from the database.
    #[arg(long = "catalog-cache-mb", env = "CATALOG_CACHE_MB", default_value = "16",
        value_parser = rules::megabytes(0, 4096))]
    pub catalog_bytes: usize,
    /// How often each replica checks whether another writer changed the catalog, in
    /// milliseconds. On PostgreSQL replicas also hear of each new catalog version at once (a
    /// notification), and the poll only repairs a missed one.
    #[arg(long, env = "CATALOG_POLL_MS", default_value = "250",
        value_parser = rules::millis(10, 60_000))]
    pub catalog_poll: Duration,
}

/// Documents named by an id instead of sent in full: automatic persisted queries (APQ) and
/// trusted documents (docs/clients.md#persisted-queries).
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Persisted queries")]
pub struct PersistedQueries {
    /// Documents each replica remembers for automatic persisted queries (Apollo Client's
    /// `PersistedQueryLink`, urql's `persistedExchange`); when full, those seldom used make room.
    /// Each replica has its own: a client that meets one that does not know a hash gets
    /// `PERSISTED_QUERY_NOT_FOUND` and sends the document again. `0` turns APQ off: a hash-only
    /// request gets `PERSISTED_QUERY_NOT_SUPPORTED`, and the clients stop sending hashes.
    #[arg(long, env = "APQ_MAX_DOCUMENTS", default_value = "2000",
        value_parser = rules::number::<usize>(0, 1_000_000))]
    pub apq_max_documents: usize,
    /// Bytes of document text each replica keeps for automatic persisted queries, at most.
    #[arg(long, env = "APQ_MAX_BYTES", default_value = "8388608",
        value_parser = rules::number::<usize>(65_536, 1_073_741_824))]
    pub apq_max_bytes: usize,
    /// A trusted-documents manifest (JSON): GraphQL Code Generator's `persisted-documents.json`
    /// (`{ "<id>": "<document>" }`) or Apollo's persisted query manifest
    /// (`"format": "apollo-persisted-query-manifest"`). When set, only its operations run,
    /// named by id (`documentId`, `extensions.persistedQuery.sha256Hash`) or sent in full;
    /// any other document gets `PERSISTED_QUERY_NOT_IN_LIST`, APQ stores nothing, and the
    /// GraphiQL page is off. A manifest that cannot be read stops start-up.
    #[arg(long, env = "TRUSTED_DOCUMENTS", value_parser = rules::file())]
    pub trusted_documents: Option<PathBuf>,
}

/// Where `/metrics` is served and what it asks for.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Metrics")]
pub struct MetricsEndpoint {
    /// Serve `GET /metrics` on this address instead (e.g. an internal interface,
    /// `10.0.0.5:9100`), and not on `LISTEN_ADDR`, where anyone who reaches the API can read it.
    #[arg(long = "metrics-addr", env = "METRICS_ADDR",
        value_parser = rules::address("127.0.0.1:9100"))]
    pub addr: Option<SocketAddr>,
    /// When set, `/metrics` (on either address) answers only requests with
    /// `Authorization: Bearer <token>` (compared in constant time), and 401 otherwise. In
    /// production, `/metrics` is served on `LISTEN_ADDR` only when this is set; otherwise use
    /// `METRICS_ADDR`.
    #[arg(long = "metrics-token", env = "METRICS_TOKEN", value_parser = rules::metrics_token())]
    pub token: Option<MetricsToken>,
}

/// The audit trail of admins' changes.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Audit")]
pub struct Audit {
    /// Days an audit record (`auditEvents`) is kept; older records are deleted by the pruning
    /// every replica runs every 10 minutes. Unset: records are kept for ever.
    #[arg(long = "audit-retention-days", env = "AUDIT_RETENTION_DAYS",
        value_parser = rules::days(1, 36_500))]
    pub retention: Option<Duration>,
}

/// Logging, which every command sets up.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Logs")]
pub struct Logging {
    /// Log filter (tracing `EnvFilter` syntax). Logs go to stderr.
    #[arg(long, env = "RUST_LOG", default_value = "info,sqlx=warn,sea_orm=warn",
        value_parser = rules::log_filter())]
    pub rust_log: String,
    /// `text`, or `json` for one JSON object per line (with `request_id` on request logs).
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = rules::log_format())]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The password `create-admin` uses.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Commands")]
pub struct AdminPassword {
    /// Used only by `create-admin`; if unset, it reads the first line of stdin. Prefer not to
    /// keep a real password in `.env`.
    #[arg(long, env = "ADMIN_PASSWORD",
        value_parser = rules::secret_text("a password that follows the password rules"))]
    pub admin_password: Option<Secret<String>>,
}

/// A configuration value that is missing or malformed; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var} {reason}")]
pub struct ConfigError {
    pub var: String,
    pub reason: String,
}

impl ConfigError {
    fn invalid(var: &str, reason: impl Into<String>) -> Self {
        Self {
            var: var.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The variables a lookup set (not blank), among those declared.
pub struct SetVars {
    set: BTreeSet<String>,
    declared: BTreeSet<String>,
}

impl SetVars {
    /// Whether `var` was set.
    pub fn contains(&self, var: &str) -> bool {
        debug_assert!(self.declared.contains(var), "{var} is not declared");
        self.set.contains(var)
    }
}

/// A group of variables declared with clap's derive, read by [`from_lookup`].
pub trait Settings: Args + FromArgMatches {
    /// Rules beyond one variable's own parser: those involving several variables, or whether
    /// a variable was set at all.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the variable at fault.
    fn resolve(&mut self, _set: &SetVars) -> Result<(), ConfigError> {
        Ok(())
    }
}

impl Settings for Config {
    fn resolve(&mut self, set: &SetVars) -> Result<(), ConfigError> {
        self.database.resolve(set)?;
        self.policy.resolve(set)?;
        if self.app_env == AppEnv::Production {
            if self.auth.jwt_secret.generated {
                return Err(ConfigError::invalid(
                    "JWT_SECRET",
                    "is required when APP_ENV=production",
                ));
            }
            let discovery = &mut self.discovery;
            for (var, on) in [
                ("INTROSPECTION", &mut discovery.introspection),
                ("FIELD_SUGGESTIONS", &mut discovery.field_suggestions),
                ("GRAPHIQL", &mut discovery.graphiql),
            ] {
                if !set.contains(var) {
                    *on = false;
                }
            }
        }
        self.resolve_trusted_documents(set)
    }
}

impl Config {
    /// With trusted documents, the GraphiQL page is off: the documents typed in it are not in
    /// the manifest, so none of them would run.
    fn resolve_trusted_documents(&mut self, set: &SetVars) -> Result<(), ConfigError> {
        if self.persisted.trusted_documents.is_none() {
            return Ok(());
        }
        if set.contains("GRAPHIQL") && self.discovery.graphiql {
            return Err(ConfigError::invalid(
                "GRAPHIQL",
                "cannot be on with TRUSTED_DOCUMENTS: only the manifest's operations run, so \
                 nothing typed in the page would",
            ));
        }
        self.discovery.graphiql = false;
        Ok(())
    }
}

impl Settings for Database {
    fn resolve(&mut self, set: &SetVars) -> Result<(), ConfigError> {
        self.is_default = !set.contains("DATABASE_URL");
        Ok(())
    }
}

impl Settings for Policy {
    fn resolve(&mut self, set: &SetVars) -> Result<(), ConfigError> {
        self.is_default = !set.contains("POLICY_DIR");
        Ok(())
    }
}

impl Settings for Logging {}
impl Settings for AdminPassword {}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first variable with a bad value.
    pub fn from_env() -> Result<Self, ConfigError> {
        from_env()
    }

    /// Reads the configuration through `get` alone, so tests can supply their own variables.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the first variable with a bad value.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        from_lookup(get)
    }
}

/// Reads `T` from the process environment.
///
/// # Errors
/// A [`ConfigError`] naming the first variable with a bad value.
pub fn from_env<T: Settings>() -> Result<T, ConfigError> {
    from_lookup(|name| std::env::var(name).ok())
}

/// Reads `T` through `get` alone (never the process environment; see the module's doc). A blank
/// value counts as unset.
///
/// # Errors
/// A [`ConfigError`] naming the first variable with a bad value.
pub fn from_lookup<T: Settings>(get: impl Fn(&str) -> Option<String>) -> Result<T, ConfigError> {
    let command = T::augment_args(declarations());
    let mut args = vec![String::new()]; // the program name
    let mut set = BTreeSet::new();
    let mut declared = BTreeSet::new();
    let mut vars = Vec::new();
    for arg in command.get_arguments() {
        let (Some(var), Some(long)) = (arg.get_env().and_then(|v| v.to_str()), arg.get_long())
        else {
            continue;
        };
        if let Some(value) = get(var).filter(|v| !v.trim().is_empty()) {
            // `=` keeps a value that starts with `-` a value.
            args.push(format!("--{long}={value}"));
            set.insert(var.to_owned());
        }
        declared.insert(var.to_owned());
        vars.push((long.to_owned(), var.to_owned()));
    }
    let command = command.mut_args(|arg| arg.env(None));
    let invalid = |err: clap::Error| {
        let text = |kind| match err.get(kind) {
            Some(ContextValue::String(s)) => Some(s.clone()),
            _ => None,
        };
        let var = text(rules::ARG).and_then(|long| {
            vars.iter()
                .find(|(l, _)| *l == long)
                .map(|(_, v)| v.clone())
        });
        match (var, text(rules::REASON)) {
            (Some(var), Some(reason)) => ConfigError { var, reason },
            _ => ConfigError::invalid("configuration", err.to_string()),
        }
    };
    let matches = command.try_get_matches_from(args).map_err(invalid)?;
    let mut settings = T::from_arg_matches(&matches).map_err(invalid)?;
    settings.resolve(&SetVars { set, declared })?;
    Ok(settings)
}

/// The command that variables are declared on, for parsing and for the reference.
fn declarations() -> Command {
    Command::new("storefront")
        .disable_help_flag(true)
        .disable_version_flag(true)
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
        assert_eq!(c.database.url.as_str(), DEFAULT_DATABASE_URL);
        assert!(c.database.is_default);
        assert!(c.auth.jwt_secret.generated);
        assert_eq!(c.server.listen_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(c.auth.jwt_issuer, "storefront");
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
        let d = &c.discovery;
        assert!(!d.introspection && !d.field_suggestions && !d.graphiql);
        let c = config(&[("APP_ENV", "production"), secret, ("GRAPHIQL", "true")]).unwrap();
        assert!(c.discovery.graphiql && !c.discovery.introspection);
        let c = config(&[
            ("APP_ENV", "PROD"),
            secret,
            ("INTROSPECTION", "1"),
            ("FIELD_SUGGESTIONS", "yes"),
        ])
        .unwrap();
        let d = &c.discovery;
        assert!(d.introspection && d.field_suggestions && !d.graphiql);
        let c = config(&[]).unwrap();
        let d = &c.discovery;
        assert!(d.introspection && d.field_suggestions && d.graphiql);
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
        assert_eq!(c.auth.rate_limit_per_minute, 60);
        assert!(!c.server.trust_proxy_headers);
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
        assert_eq!(
            config(&[]).unwrap().server.cors_allowed_origins,
            CorsOrigins::None
        );
        assert_eq!(
            config(&[("CORS_ALLOWED_ORIGINS", "*")])
                .unwrap()
                .server
                .cors_allowed_origins,
            CorsOrigins::Any
        );
        assert_eq!(
            config(&[(
                "CORS_ALLOWED_ORIGINS",
                "https://a.example, http://localhost:3000/"
            )])
            .unwrap()
            .server
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
    fn cors_headers_default_to_what_clients_send_and_are_checked() {
        let headers = config(&[]).unwrap().server.cors_allowed_headers;
        for header in [
            "authorization",
            "content-type",
            "x-request-id",
            "idempotency-key",
            "traceparent",
            "tracestate",
            "baggage",
            "sentry-trace",
            "apollographql-client-name",
            "apollographql-client-version",
        ] {
            assert!(headers.iter().any(|h| h == header), "{header}: {headers:?}");
        }
        assert_eq!(
            config(&[("CORS_ALLOWED_HEADERS", " Authorization, X-Tenant ,")])
                .unwrap()
                .server
                .cors_allowed_headers,
            ["authorization", "x-tenant"]
        );
        for bad in ["*", "x tenant", "a,b:c", ","] {
            assert_eq!(
                config(&[("CORS_ALLOWED_HEADERS", bad)]).err().unwrap().var,
                "CORS_ALLOWED_HEADERS",
                "{bad}"
            );
        }
    }

    #[test]
    fn the_refresh_reuse_interval_defaults_to_ten_seconds_and_zero_turns_it_off() {
        let interval = |vars: &[(&str, &str)]| config(vars).map(|c| c.auth.refresh_reuse_interval);
        assert_eq!(interval(&[]).unwrap(), Duration::from_secs(10));
        assert_eq!(
            interval(&[("REFRESH_REUSE_INTERVAL_SECS", "0")]).unwrap(),
            Duration::ZERO
        );
        for bad in ["61", "-1", "ten"] {
            assert_eq!(
                interval(&[("REFRESH_REUSE_INTERVAL_SECS", bad)])
                    .err()
                    .unwrap()
                    .var,
                "REFRESH_REUSE_INTERVAL_SECS"
            );
        }
    }

    #[test]
    fn secret_is_not_in_debug_output() {
        let c = config(&[
            ("JWT_SECRET", "a-very-long-secret-value-of-40-bytes-xyz"),
            (
                "JWT_PREVIOUS_SECRETS",
                "a-previous-secret-value-of-40-bytes-xyz",
            ),
            ("METRICS_TOKEN", "a-metrics-token-value"),
            ("DATABASE_URL", "postgres://app:hunter2@db/store"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        for secret in ["a-very-long", "a-previous", "a-metrics", "hunter2"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("postgres://app:***@db/store"), "{shown}");
        let password: AdminPassword = from_lookup(|_| Some("admin passphrase".to_owned())).unwrap();
        assert!(!format!("{password:?}").contains("passphrase"));
    }

    #[test]
    fn errors_name_the_variable_and_the_allowed_range() {
        let shown = |vars: &[(&str, &str)]| config(vars).err().unwrap().to_string();
        assert_eq!(
            shown(&[("GRAPHQL_MAX_DEPTH", "1001")]),
            "invalid configuration: GRAPHQL_MAX_DEPTH must be a whole number from 1 to 1000"
        );
        assert_eq!(
            shown(&[("JWT_SECRET", "short")]),
            "invalid configuration: JWT_SECRET must be at least 32 bytes long (got 5)"
        );
        assert_eq!(
            shown(&[("METRICS_TOKEN", " too-short ")]),
            "invalid configuration: METRICS_TOKEN must be at least 16 bytes long"
        );
        assert_eq!(
            shown(&[("METRICS_ADDR", "internal")]),
            "invalid configuration: METRICS_ADDR must be an address like 127.0.0.1:9100"
        );
        for (var, low, high) in [
            ("REFRESH_TOKEN_TTL_DAYS", "1", "365"),
            ("REVOCATION_POLL_MS", "10", "60000"),
            ("CATALOG_POLL_MS", "10", "60000"),
            ("CATALOG_CACHE_MB", "0", "4096"),
            ("MAX_CONNECTIONS", "16", "1000000"),
            ("SHUTDOWN_TIMEOUT_SECS", "0", "3600"),
        ] {
            assert!(config(&[(var, low)]).is_ok(), "{var}={low}");
            assert!(config(&[(var, high)]).is_ok(), "{var}={high}");
            let above = (high.parse::<u64>().unwrap() + 1).to_string();
            let err = config(&[(var, &above)]).err().unwrap();
            assert_eq!(err.var, var);
            assert_eq!(
                err.reason,
                format!("must be a whole number from {low} to {high}")
            );
        }
    }

    #[test]
    fn values_become_durations_and_bytes() {
        let c = config(&[
            ("REFRESH_TOKEN_TTL_DAYS", " 2 "),
            ("CATALOG_CACHE_MB", "3"),
            ("REQUEST_TIMEOUT_MS", "1500"),
            ("IDLE_TIMEOUT_SECS", "7"),
            ("TRUST_PROXY_HEADERS", "ON"),
            ("METRICS_ADDR", "127.0.0.1:9100"),
        ])
        .unwrap();
        assert_eq!(c.auth.refresh_token_ttl, Duration::from_secs(2 * 86_400));
        assert_eq!(c.caches.catalog_bytes, 3_000_000);
        assert_eq!(c.limits.request_timeout, Duration::from_millis(1500));
        assert_eq!(c.server.connections().idle_timeout, Duration::from_secs(7));
        assert!(c.server.trust_proxy_headers);
        assert_eq!(
            c.metrics.addr,
            Some(SocketAddr::from(([127, 0, 0, 1], 9100)))
        );
    }

    #[test]
    fn blank_values_count_as_unset() {
        let c = config(&[
            ("DATABASE_URL", " "),
            ("POLICY_DIR", ""),
            ("JWT_SECRET", "  "),
            ("GRAPHQL_MAX_DEPTH", ""),
        ])
        .unwrap();
        assert!(c.database.is_default && c.policy.is_default && c.auth.jwt_secret.generated);
        assert_eq!(c.policy.dir, PathBuf::from("./policies"));
        assert_eq!(c.limits.max_depth, 15);
        let c = config(&[("DATABASE_URL", DEFAULT_DATABASE_URL), ("POLICY_DIR", "p")]).unwrap();
        assert!(!c.database.is_default && !c.policy.is_default);
    }

    #[test]
    fn every_variable_is_declared_once_with_what_it_does() {
        let names = names();
        let unique: BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert!(names.len() >= 30, "{names:?}");
        let table = markdown();
        for name in &names {
            let row = table
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("{name} has no row"));
            let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
            assert_eq!(cells.len(), 4, "{row}");
            assert!(cells.iter().all(|c| !c.trim().is_empty()), "{row}");
            assert!(cells[3].len() > 10, "{name} says too little: {row}");
        }
    }

    #[test]
    fn logging_is_checked() {
        let logging = |vars: &[(&str, &str)]| {
            from_lookup::<Logging>(|name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            })
        };
        let l = logging(&[]).unwrap();
        assert_eq!(l.rust_log, "info,sqlx=warn,sea_orm=warn");
        assert_eq!(l.log_format, LogFormat::Text);
        assert_eq!(
            logging(&[("LOG_FORMAT", " json ")]).unwrap().log_format,
            LogFormat::Json
        );
        assert_eq!(
            logging(&[("LOG_FORMAT", "xml")]).err().unwrap().to_string(),
            "invalid configuration: LOG_FORMAT must be `text` or `json`"
        );
        assert_eq!(
            logging(&[("RUST_LOG", "info,[")]).err().unwrap().var,
            "RUST_LOG"
        );
    }
}
