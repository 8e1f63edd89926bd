//! An HTTP answer from the GraphQL endpoint, with its GraphQL errors typed.

use std::{fmt, marker::PhantomData};

use reqwest::header::HeaderMap;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Map, Value};

/// One entry of `errors`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct GraphQLError {
    pub message: String,
    pub path: Option<Vec<Value>>,
    pub locations: Option<Vec<Location>>,
    pub extensions: Option<Map<String, Value>>,
    /// Any other key, so that comparing two errors compares all of them.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Location {
    pub line: u64,
    pub column: u64,
}

impl GraphQLError {
    /// `extensions.code`, or `<none>`.
    pub fn code(&self) -> &str {
        self.extension("code").as_str().unwrap_or("<none>")
    }

    /// `extensions.field`: the input the error is about.
    pub fn field(&self) -> Option<&str> {
        self.extension("field").as_str()
    }

    /// `extensions.retryAfter`, in seconds.
    pub fn retry_after(&self) -> Option<i64> {
        self.extension("retryAfter").as_i64()
    }

    /// `extensions.reason`: why the caller is `UNAUTHENTICATED`.
    pub fn reason(&self) -> Option<&str> {
        self.extension("reason").as_str()
    }

    /// `extensions.<name>`, or null.
    pub fn extension(&self, name: &str) -> &Value {
        self.extensions
            .as_ref()
            .and_then(|e| e.get(name))
            .unwrap_or(&Value::Null)
    }

    /// The path, each segment as text.
    pub fn path(&self) -> Vec<String> {
        self.path
            .iter()
            .flatten()
            .map(|segment| match segment {
                Value::String(name) => name.clone(),
                other => other.to_string(),
            })
            .collect()
    }
}

/// The answer to a request: its status, headers and body, the body's `errors`, and, for a
/// document of the kit, its root field's value typed as `T`.
#[derive(Clone)]
pub struct Response<T = Value> {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as it came.
    pub text: String,
    /// The body as JSON (null when it is not JSON).
    pub body: Value,
    pub errors: Vec<GraphQLError>,
    /// The root field `T` is read from; `None`: `T` is all of `data`.
    field: Option<&'static str>,
    answer: PhantomData<fn() -> T>,
}

impl<T> Response<T> {
    /// Reads a response; `field` names the root field `T` is read from.
    pub async fn read(response: reqwest::Response, field: Option<&'static str>) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let errors = match body.get("errors") {
            Some(errors) => serde_json::from_value(errors.clone())
                .unwrap_or_else(|e| panic!("malformed errors ({e}): {text}")),
            None => Vec::new(),
        };
        Self {
            status,
            headers,
            text,
            body,
            errors,
            field,
            answer: PhantomData,
        }
    }

    /// The same answer, its data left untyped (to treat answers of several documents alike).
    pub fn into_untyped(self) -> Response {
        Response {
            status: self.status,
            headers: self.headers,
            text: self.text,
            body: self.body,
            errors: self.errors,
            field: self.field,
            answer: PhantomData,
        }
    }

    /// The `extensions.code` of every error, in order.
    pub fn codes(&self) -> Vec<&str> {
        self.errors.iter().map(GraphQLError::code).collect()
    }

    /// The first error.
    ///
    /// # Panics
    /// When there is none.
    pub fn error(&self) -> &GraphQLError {
        self.errors
            .first()
            .unwrap_or_else(|| panic!("no error in {self}"))
    }

    /// `extensions.reason` of every error, in order (`<none>` where there is none).
    pub fn reasons(&self) -> Vec<&str> {
        self.errors
            .iter()
            .map(|error| error.reason().unwrap_or("<none>"))
            .collect()
    }

    /// `retryAfter` of the first error.
    pub fn retry_after(&self) -> Option<i64> {
        self.errors.first().and_then(GraphQLError::retry_after)
    }

    /// No `errors` entry and a `data` that is not null: the request ran and every field
    /// answered.
    pub fn is_ok(&self) -> bool {
        self.body.get("errors").is_none() && !self.body["data"].is_null()
    }

    /// Asserts [`Response::is_ok`].
    pub fn assert_ok(&self) {
        assert!(self.is_ok(), "unexpected errors: {self}");
    }

    /// A request error (GraphQL over HTTP): a JSON object with no `data` entry at all, as the
    /// document never ran (a field error has one, possibly null).
    pub fn is_request_error(&self) -> bool {
        self.body.is_object() && self.body.get("data").is_none()
    }

    /// `data` as it came (null when absent).
    pub fn raw_data(&self) -> &Value {
        &self.body["data"]
    }

    /// `data.<name>`, read as `U`; `None` when it is absent or null.
    pub fn field<U: DeserializeOwned>(&self, name: &str) -> Option<U> {
        let value = &self.body["data"][name];
        (!value.is_null()).then(|| {
            serde_json::from_value(value.clone())
                .unwrap_or_else(|e| panic!("unexpected {name} ({e}): {self}"))
        })
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The answers of a batch, in order.
    ///
    /// # Panics
    /// When the body is not a JSON array.
    pub fn batch(&self) -> Vec<Response> {
        self.body
            .as_array()
            .unwrap_or_else(|| panic!("not a batch answer: {self}"))
            .iter()
            .map(|item| Response {
                status: self.status,
                headers: self.headers.clone(),
                text: item.to_string(),
                body: item.clone(),
                errors: item
                    .get("errors")
                    .map(|e| serde_json::from_value(e.clone()).unwrap())
                    .unwrap_or_default(),
                field: None,
                answer: PhantomData,
            })
            .collect()
    }
}

impl Response {
    /// Sends `request` (to any endpoint) and reads its answer.
    pub async fn send(request: reqwest::RequestBuilder) -> Self {
        Self::read(request.send().await.expect("server answers"), None).await
    }
}

impl<T: DeserializeOwned> Response<T> {
    /// The answer, asserting that there was no error.
    pub fn ok(&self) -> T {
        self.assert_ok();
        self.parse()
    }

    /// The answer when there is one (there may be errors beside it, as with a refused field).
    pub fn data(&self) -> Option<T> {
        (!self.answer_value().is_null()).then(|| self.parse())
    }

    fn answer_value(&self) -> &Value {
        match self.field {
            Some(field) => &self.body["data"][field],
            None => &self.body["data"],
        }
    }

    fn parse(&self) -> T {
        serde_json::from_value(self.answer_value().clone())
            .unwrap_or_else(|e| panic!("unexpected answer ({e}): {self}"))
    }
}

impl<T> fmt::Display for Response<T> {
    /// The body, cut to the precision if one is given (`{r:.300}`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.body.is_null() {
            f.pad(&format!("HTTP {} {}", self.status, self.text))
        } else {
            f.pad(&self.body.to_string())
        }
    }
}

impl<T> fmt::Debug for Response<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {} {:?} {}", self.status, self.headers, self.text)
    }
}
