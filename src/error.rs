//! The one error type. Typed inside, plain outside: every variant maps to an
//! `extensions.code`, and internal detail goes to the log, never into a response.

use async_graphql::ErrorExtensions;

mod unavailable;
pub(crate) use unavailable::{POOL_TIMED_OUT, sqlite_cause, sqlx_cause};
pub use unavailable::{Unavailable, unavailable_cause};

/// Every failure a client can see.
///
/// Deliberately not `Display`: async-graphql converts any `Display` type into an error that
/// carries its text to the client. [`AppError`] converts only through its own `From` impl,
/// which chooses what the client may see.
#[derive(Debug)]
pub enum AppError {
    /// Not signed in, or not any more: why (`extensions.reason`), and a message for humans.
    Unauthenticated(AuthFailure, &'static str),
    /// Signed in, but the policy does not grant the permission (object, action).
    Forbidden {
        object: &'static str,
        action: &'static str,
    },
    /// The named thing does not exist.
    NotFound(&'static str),
    /// A field of the input is invalid.
    BadUserInput {
        field: &'static str,
        message: String,
    },
    /// The input conflicts with stored data (a taken username or email).
    Conflict {
        field: &'static str,
        message: &'static str,
    },
    /// The caller's `expectedVersion` is not the stored version: someone changed the thing since
    /// the caller read it (`CONFLICT` on `expectedVersion`, with `currentVersion`).
    StaleVersion { current_version: i32 },
    /// Too many attempts; try again after this many seconds. `policy` names the limit that
    /// refused (`extensions.policy`, and the HTTP `RateLimit` header's policy).
    TooManyRequests {
        retry_after_secs: u64,
        policy: RateLimitPolicy,
    },
    /// The database cannot be reached or cannot store anything right now (full, read-only,
    /// locked, connection lost): retry later. `detail` is the database's own error, logged at
    /// ERROR with the cause; `None` when the request was refused without trying.
    ServiceUnavailable {
        cause: Unavailable,
        detail: Option<String>,
    },
    /// Something failed on our side; the detail is logged, not returned.
    Internal(String),
}

/// Why a caller is `UNAUTHENTICATED` (`extensions.reason`): what a client should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token where one is required: sign in (or send the token).
    Missing,
    /// The access token expired: refresh it.
    TokenExpired,
    /// The token is malformed, forged, of the wrong kind or unknown: sign in again.
    TokenInvalid,
    /// The session is over (logged out, revoked, ended by refresh-token reuse, the refresh token
    /// expired, the account deactivated or deleted): sign in again.
    SessionEnded,
    /// A username and password (or the password checked) that do not match.
    InvalidCredentials,
}

impl AuthFailure {
    /// The `extensions.reason` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "MISSING",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::TokenInvalid => "TOKEN_INVALID",
            Self::SessionEnded => "SESSION_ENDED",
            Self::InvalidCredentials => "INVALID_CREDENTIALS",
        }
    }

    /// The answer to a request whose access token was refused for this reason.
    pub fn access_token_message(self) -> &'static str {
        match self {
            Self::TokenExpired => "the access token expired; refresh it",
            Self::SessionEnded => "this session has ended; sign in again",
            Self::Missing => "sign in to do this: send `Authorization: Bearer <accessToken>`",
            Self::TokenInvalid | Self::InvalidCredentials => INVALID_TOKEN,
        }
    }
}

/// The limit behind a `TOO_MANY_REQUESTS`: its name in `extensions.policy` and in the HTTP
/// `RateLimit` and `RateLimit-Policy` headers (draft-ietf-httpapi-ratelimit-headers), with its
/// quota and window when it has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitPolicy {
    pub name: &'static str,
    /// Units of quota (attempts) per window.
    pub quota: u64,
    /// The window in seconds, when the quota is per window.
    pub window_secs: Option<u64>,
}

/// What a `TOO_MANY_REQUESTS` error carries to the HTTP layer (as its source), which turns
/// it into the `Retry-After`, `RateLimit` and `RateLimit-Policy` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimited {
    pub retry_after_secs: u64,
    pub policy: RateLimitPolicy,
}

/// How long a client is asked to wait before retrying when the database is unavailable.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

/// The answer to a request whose access token failed verification.
pub const INVALID_TOKEN: &str = "the access token is invalid; sign in again";

/// The answer to a signed-in caller whose account was deleted or deactivated since its token
/// was issued (`accounts::GONE`; here for the services below `accounts` too).
pub const ACCOUNT_GONE: &str = "this account no longer exists or was deactivated";

/// The result of every fallible operation below the GraphQL layer.
pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    /// A field error with a message for humans.
    pub fn bad_input(field: &'static str, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            field,
            message: message.into(),
        }
    }

    /// `UNAUTHENTICATED` for an access token refused (or missing) for `reason`.
    pub fn access_refused(reason: AuthFailure) -> Self {
        Self::Unauthenticated(reason, reason.access_token_message())
    }

    /// An internal error from anything displayable; the text is logged only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }

    /// A database failure: `SERVICE_UNAVAILABLE` when `cause` says why the database cannot
    /// serve now, internal otherwise; `err`'s text is logged only.
    pub(crate) fn database(cause: Option<Unavailable>, err: impl std::fmt::Display) -> Self {
        match cause {
            Some(cause) => Self::ServiceUnavailable {
                cause,
                detail: Some(err.to_string()),
            },
            None => Self::internal(format_args!("database: {err}")),
        }
    }

    /// The `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(..) => "UNAUTHENTICATED",
            Self::Forbidden { .. } => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::BadUserInput { .. } => "BAD_USER_INPUT",
            Self::Conflict { .. } | Self::StaleVersion { .. } => "CONFLICT",
            Self::TooManyRequests { .. } => "TOO_MANY_REQUESTS",
            Self::ServiceUnavailable { .. } => "SERVICE_UNAVAILABLE",
            Self::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::database(unavailable_cause(&err), err)
    }
}

impl From<sea_orm::TransactionError<AppError>> for AppError {
    fn from(err: sea_orm::TransactionError<AppError>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(db) => db.into(),
            sea_orm::TransactionError::Transaction(app) => app,
        }
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        let code = err.code();
        let mut field = None;
        let mut details: Vec<(&str, async_graphql::Value)> = Vec::new();
        let mut source: Option<std::sync::Arc<dyn std::any::Any + Send + Sync>> = None;
        let message = match err {
            AppError::Unauthenticated(reason, message) => {
                details.push(("reason", reason.as_str().into()));
                message.to_owned()
            }
            AppError::Forbidden { object, action } => {
                details.push(("object", object.into()));
                details.push(("action", action.into()));
                format!("you do not have permission to {action} {object}")
            }
            AppError::NotFound(what) => format!("{what} not found"),
            AppError::BadUserInput { field: f, message } => {
                field = Some(f);
                message
            }
            AppError::Conflict { field: f, message } => {
                field = Some(f);
                message.to_owned()
            }
            AppError::StaleVersion { current_version } => {
                field = Some("expectedVersion");
                details.push(("currentVersion", current_version.into()));
                format!(
                    "changed since you read it: it is at version {current_version}; read it again \
                     and reapply your change"
                )
            }
            AppError::TooManyRequests {
                retry_after_secs,
                policy,
            } => {
                details.push(("retryAfter", retry_after_secs.into()));
                details.push(("policy", policy.name.into()));
                source = Some(std::sync::Arc::new(RateLimited {
                    retry_after_secs,
                    policy,
                }));
                format!("too many attempts; try again in {retry_after_secs} s")
            }
            AppError::ServiceUnavailable { cause, detail } => {
                match detail {
                    Some(detail) => {
                        tracing::error!(cause = cause.cause(), error = %detail, "database unavailable");
                    }
                    None => tracing::debug!(cause = cause.cause(), "refused: database unavailable"),
                }
                details.push(("retryAfter", UNAVAILABLE_RETRY_AFTER_SECS.into()));
                "the database is unavailable right now; try again shortly".to_owned()
            }
            AppError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal server error".to_owned()
            }
        };
        let mut error = async_graphql::Error::new(message);
        error.source = source;
        error.extend_with(|_, ext| {
            ext.set("code", code);
            if let Some(field) = field {
                ext.set("field", field);
            }
            for (name, value) in details {
                ext.set(name, value);
            }
        })
    }
}
