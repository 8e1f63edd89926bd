//! The one error type. Typed inside, plain outside: every variant maps to an
//! `extensions.code`, and internal detail goes to the log, never into a response.

use async_graphql::ErrorExtensions;

mod unavailable;
pub(crate) use unavailable::{POOL_TIMED_OUT, sqlx_cause};
pub use unavailable::{Unavailable, unavailable_cause};

/// Every failure a client can see.
///
/// Deliberately not `Display`: async-graphql converts any `Display` type into an error that
/// carries its text to the client. [`AppError`] converts only through its own `From` impl,
/// which chooses what the client may see.
#[derive(Debug)]
pub enum AppError {
    /// No valid access token.
    Unauthenticated(&'static str),
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
    /// Too many attempts; try again after this many seconds.
    TooManyRequests { retry_after_secs: u64 },
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

/// How long a client is asked to wait before retrying when the database is unavailable.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

/// The answer to a request whose access token failed verification or was revoked.
pub const INVALID_TOKEN: &str =
    "the access token is invalid, expired or revoked; refresh it or sign in again";

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

    /// An internal error from anything displayable; the text is logged only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }

    /// The `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
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
        match unavailable_cause(&err) {
            Some(cause) => Self::ServiceUnavailable {
                cause,
                detail: Some(err.to_string()),
            },
            None => Self::internal(format_args!("database: {err}")),
        }
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
        let message = match err {
            AppError::Unauthenticated(message) => message.to_owned(),
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
            AppError::TooManyRequests { retry_after_secs } => {
                details.push(("retryAfter", retry_after_secs.into()));
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
        async_graphql::Error::new(message).extend_with(|_, ext| {
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
