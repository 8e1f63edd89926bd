//! The value parsers of the configuration: each checks one variable's text and says, for the
//! reference table and `--help`, which values it accepts.

use std::{ffi::OsStr, net::SocketAddr, sync::Arc, time::Duration};

use clap::{
    Arg, Command,
    builder::{PossibleValue, TypedValueParser},
    error::{ContextKind, ContextValue, ErrorKind},
};

use super::{
    AppEnv, CorsOrigins, LogFormat,
    secret::{JwtSecret, MIN_JWT_SECRET_BYTES, MIN_METRICS_TOKEN_BYTES, MetricsToken},
};

/// A value parser: `parse` turns a variable's text into its value or says what is wrong
/// ("must be …"), and `allowed` describes the values it accepts.
///
/// `allowed` travels as the parser's one possible value, the only description of a parser
/// that clap keeps once the parser is stored in an `Arg`; `super::reference` reads it back.
/// It is a description ("1–365"), not a literal value.
#[derive(Clone)]
pub struct Rule<T> {
    allowed: String,
    parse: Parse<T>,
}

/// Text to value, or the reason it is refused.
type Parse<T> = Arc<dyn Fn(&str) -> Result<T, String> + Send + Sync>;

impl<T> Rule<T> {
    fn new(
        allowed: impl Into<String>,
        parse: impl Fn(&str) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            allowed: allowed.into(),
            parse: Arc::new(parse),
        }
    }

    fn map<U>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Rule<U>
    where
        T: 'static,
    {
        let parse = self.parse;
        Rule {
            allowed: self.allowed,
            parse: Arc::new(move |text| parse(text).map(&f)),
        }
    }
}

/// The context keys a failed [`Rule`] fills in: the argument's long name and the reason.
pub(super) const ARG: ContextKind = ContextKind::InvalidArg;
pub(super) const REASON: ContextKind = ContextKind::Custom;

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Rule<T> {
    type Value = T;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, value: &OsStr) -> Result<T, clap::Error> {
        // The values come from `String`s (see `super::from_lookup`), so they are UTF-8.
        let text = value.to_str().unwrap_or_default();
        (self.parse)(text).map_err(|reason| {
            let mut err = clap::Error::new(ErrorKind::ValueValidation).with_cmd(cmd);
            let long = arg.and_then(Arg::get_long).unwrap_or_default();
            err.insert(ARG, ContextValue::String(long.to_owned()));
            err.insert(REASON, ContextValue::String(reason));
            err
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(std::iter::once(PossibleValue::new(
            self.allowed.clone(),
        ))))
    }
}

/// A whole number from `min` to `max`.
pub fn number<T: TryFrom<u64>>(min: u64, max: u64) -> Rule<T> {
    Rule::new(format!("{min}–{max}"), move |text| {
        text.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| format!("must be a whole number from {min} to {max}"))
    })
}

/// A whole number of milliseconds from `min` to `max`.
pub fn millis(min: u64, max: u64) -> Rule<Duration> {
    number(min, max).map(Duration::from_millis)
}

/// A whole number of seconds from `min` to `max`.
pub fn seconds(min: u64, max: u64) -> Rule<Duration> {
    number(min, max).map(Duration::from_secs)
}

/// A whole number of days from `min` to `max`.
pub fn days(min: u64, max: u64) -> Rule<Duration> {
    number(min, max).map(|days: u64| Duration::from_secs(days * 86_400))
}

/// A whole number of megabytes (10⁶ bytes) from `min` to `max`, as bytes.
pub fn megabytes(min: u64, max: u64) -> Rule<usize> {
    number(min, max).map(|mb: usize| mb * 1_000_000)
}

/// A role name (whether the policy defines it is checked at start-up).
pub fn role() -> Rule<crate::role::Role> {
    Rule::new("a role the policy defines, e.g. `user`", |text| {
        crate::role::Role::parse(text.trim()).ok_or_else(|| {
            "must be a role name: 1–32 characters of a–z, 0–9, `_` and `-`, starting with a letter"
                .to_owned()
        })
    })
}

/// A switch: `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`, in any case.
pub fn switch() -> Rule<bool> {
    Rule::new(
        "`true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`)",
        |text| match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("must be true or false".to_owned()),
        },
    )
}

/// A socket address, described by an example such as `127.0.0.1:8000`.
pub fn address(example: &'static str) -> Rule<SocketAddr> {
    Rule::new(format!("an address like `{example}`"), move |text| {
        text.parse()
            .map_err(|_| format!("must be an address like {example}"))
    })
}

/// Any text, used as written.
pub fn text(allowed: &'static str) -> Rule<String> {
    Rule::new(allowed, |text| Ok(text.to_owned()))
}

/// A folder.
pub fn folder() -> Rule<std::path::PathBuf> {
    Rule::new("a folder", |text| Ok(text.into()))
}

/// A file (whether it can be read is checked at start-up).
pub fn file() -> Rule<std::path::PathBuf> {
    Rule::new("a file", |text| Ok(text.into()))
}

/// `APP_ENV`: `development` or `production`, also `dev` or `prod`, in any case.
pub fn app_env() -> Rule<AppEnv> {
    Rule::new(
        "`development` or `production` (also `dev`, `prod`; any case)",
        |text| match text.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(AppEnv::Development),
            "production" | "prod" => Ok(AppEnv::Production),
            _ => Err("must be `development` or `production`".to_owned()),
        },
    )
}

/// `POLICY_SOURCE`: the policy files, or the database.
pub fn policy_store() -> Rule<super::PolicyStore> {
    Rule::new("`files` or `database`", |text| {
        match text.trim().to_ascii_lowercase().as_str() {
            "files" => Ok(super::PolicyStore::Files),
            "database" => Ok(super::PolicyStore::Database),
            _ => Err("must be `files` or `database`".to_owned()),
        }
    })
}

/// `DATABASE_URL`: a SQLite or PostgreSQL URL.
pub fn database_url() -> Rule<super::DatabaseUrl> {
    Rule::new(
        "`sqlite:…`, `postgres://…` or `postgresql://…`",
        |text| {
            if ["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|scheme| text.starts_with(scheme))
            {
                Ok(super::DatabaseUrl::new(text))
            } else {
                Err("must start with sqlite:, postgres:// or postgresql://".to_owned())
            }
        },
    )
}

/// `JWT_SECRET`: at least [`MIN_JWT_SECRET_BYTES`] bytes, used as written. Its declared
/// default, the empty text (a variable that is unset or blank), generates a secret for this
/// process; production refuses that (see `Config::resolve`).
pub fn jwt_secret() -> Rule<JwtSecret> {
    Rule::new(
        format!("at least {MIN_JWT_SECRET_BYTES} bytes"),
        |text| match text {
            "" => Ok(JwtSecret::generate()),
            secret => JwtSecret::new(secret.as_bytes()),
        },
    )
}

/// `JWT_PREVIOUS_SECRETS`: comma-separated secrets, each at least [`MIN_JWT_SECRET_BYTES`].
pub fn jwt_secrets() -> Rule<Vec<JwtSecret>> {
    Rule::new(
        format!("comma-separated, each at least {MIN_JWT_SECRET_BYTES} bytes"),
        |text| {
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    JwtSecret::new(s.as_bytes()).map_err(|_| {
                        format!("each secret must be at least {MIN_JWT_SECRET_BYTES} bytes")
                    })
                })
                .collect()
        },
    )
}

/// `METRICS_TOKEN`: at least [`MIN_METRICS_TOKEN_BYTES`] bytes once trimmed.
pub fn metrics_token() -> Rule<MetricsToken> {
    Rule::new(
        format!("at least {MIN_METRICS_TOKEN_BYTES} bytes"),
        MetricsToken::new,
    )
}

/// `CORS_ALLOWED_ORIGINS`: `*`, or origins (scheme, host, optional port) separated by commas.
/// The empty text (unset) allows none.
pub fn cors_origins() -> Rule<CorsOrigins> {
    Rule::new(
        "`*`, or comma-separated origins like `https://shop.example.com`",
        |text| {
            if text.trim().is_empty() {
                return Ok(CorsOrigins::None);
            }
            if text.trim() == "*" {
                return Ok(CorsOrigins::Any);
            }
            let origins: Vec<String> = text
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect();
            if origins.iter().any(|o| {
                !(o.starts_with("http://") || o.starts_with("https://"))
                    || o.contains('*')
                    || o[o.find("://").unwrap_or(0) + 3..].contains('/')
            }) {
                return Err("must be `*` or a comma-separated list of origins like \
                            https://shop.example.com"
                    .to_owned());
            }
            Ok(CorsOrigins::List(origins))
        },
    )
}

/// `CORS_ALLOWED_HEADERS`: comma-separated HTTP header names, kept in lower case.
pub fn header_names() -> Rule<Vec<String>> {
    Rule::new("comma-separated header names", |text| {
        let names: Vec<String> = text
            .split(',')
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect();
        if names.is_empty()
            || names.iter().any(|name| {
                name == "*" || axum::http::HeaderName::from_bytes(name.as_bytes()).is_err()
            })
        {
            return Err(
                "must be a comma-separated list of header names like `traceparent` (no `*`)"
                    .to_owned(),
            );
        }
        Ok(names)
    })
}

/// `RUST_LOG`: a `tracing` filter, checked here and built again when logging starts.
pub fn log_filter() -> Rule<String> {
    Rule::new("a tracing `EnvFilter` directive list", |text| {
        tracing_subscriber::EnvFilter::try_new(text)
            .map(|_| text.to_owned())
            .map_err(|err| err.to_string())
    })
}

/// `LOG_FORMAT`: `text` or `json`.
pub fn log_format() -> Rule<LogFormat> {
    Rule::new("`text` or `json`", |text| match text.trim() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err("must be `text` or `json`".to_owned()),
    })
}

/// A secret text, used as written.
pub fn secret_text(allowed: &'static str) -> Rule<super::Secret<String>> {
    Rule::new(allowed, |text| Ok(super::Secret::new(text.to_owned())))
}
