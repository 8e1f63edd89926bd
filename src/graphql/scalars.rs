//! The API's own scalars: `DateTime` and `Decimal`, each with the specification its
//! `@specifiedBy` names (docs/api.md#scalars-datetime-and-decimal says what each
//! holds and why these URLs).

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use chrono::{DateTime, Utc};

use crate::timestamp;

/// Where `Decimal`'s format is specified: docs/money.md, as a relative reference that resolves
/// both against `schema.graphql` (at the repository's root, wherever it is hosted) and against
/// the API's URL (`…/graphql` → `…/docs/money.md`, which the server serves).
pub const DECIMAL_SPECIFIED_BY: &str = "docs/money.md";

/// A point in time (see the scalar's description).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<Utc>);

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Self(at)
    }
}

/// A point in time, written as JavaScript's `Date.prototype.toISOString()` writes it: UTC,
/// always with milliseconds, e.g. `"2026-01-05T09:12:44.127Z"` (times are kept more precisely;
/// sorting and cursors use every digit). Read as any RFC 3339 date-time, with `Z` or an offset,
/// e.g. `"2026-01-05T10:12:44+01:00"`.
#[Scalar(
    name = "DateTime",
    specified_by_url = "https://datatracker.ietf.org/doc/html/rfc3339"
)]
impl ScalarType for Timestamp {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => text
                .parse::<DateTime<Utc>>()
                .map(Self)
                .map_err(InputValueError::custom),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(timestamp::format(self.0))
    }
}

/// An amount of money (see the scalar's description).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decimal(pub String);

/// Money: a string of digits with exactly two decimal places, from `"0.00"` to
/// `"1000000000.00"`, e.g. `"19.99"`. Input may have fewer places (`"19.9"`, `"19"`) or be a
/// JSON number; it is never rounded (a third decimal place is refused). The specification is
/// docs/money.md.
#[Scalar(name = "Decimal", specified_by_url = "docs/money.md")]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(text) => Ok(Decimal(text)),
            Value::Number(number) => Ok(Decimal(number.to_string())),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}
