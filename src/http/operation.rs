//! One operation of a request as the client sent it (`query`, `operationName`, `variables`,
//! `extensions`, `documentId`), its document found: sent in full, or named by a persisted id
//! (see [`crate::persisted`]).

use async_graphql::{Request as GqlRequest, ServerError, Value, Variables};
use serde_json::Value as Json;

use crate::{
    error::AppError,
    persisted::{self, PersistedDocuments, Reference, Refusal},
};

/// The operations of one request.
// Moved a few times per request, never stored: boxing the single operation would cost the
// common request an allocation to save copying a few hundred bytes.
#[allow(clippy::large_enum_variant)]
pub enum Operations {
    Single(Operation),
    /// A JSON array of operations (`GRAPHQL_MAX_BATCH`).
    Batch(Vec<Operation>),
}

/// One operation, its document found.
pub struct Operation {
    /// The request, its `query` the document to run (empty when none was found).
    pub request: GqlRequest,
    /// Why its document could not be found or may not run; or, once found, the APQ hash to
    /// remember it by when it has passed the limits.
    pub document: Result<Option<persisted::Hash>, ServerError>,
    /// Whether the client named the document by an id (`documentId`, `extensions.persistedQuery`).
    pub named: bool,
}

impl Operation {
    /// Reads an operation from its JSON parameters and finds its document in `persisted` when
    /// the client named it by an id.
    ///
    /// # Errors
    /// Why the parameters are malformed (a wrong type, no document and no id, both a document
    /// and a `documentId`), for a 400 answer. A document that cannot be found is not one: it is
    /// the operation's own error (in `document`).
    pub fn from_params(
        params: serde_json::Map<String, Json>,
        persisted: &PersistedDocuments,
    ) -> Result<Self, String> {
        let (mut request, query, reference) = params_of(params)?;
        let named = !reference.is_empty();
        let document = match persisted.resolve(query, &reference) {
            Ok(found) => {
                request.query = found.text;
                Ok(found.remember)
            }
            Err(refusal) => Err(refusal_error(&refusal)),
        };
        Ok(Self {
            request,
            document,
            named,
        })
    }
}

/// The request (its `query` left empty), the document sent, and how the client named it.
fn params_of(
    mut params: serde_json::Map<String, Json>,
) -> Result<(GqlRequest, Option<String>, Reference), String> {
    let query = match params.remove("query") {
        Some(Json::String(query)) => Some(query),
        None | Some(Json::Null) => None,
        Some(_) => return Err("the `query` parameter must be a string".to_owned()),
    };
    let mut reference = Reference::default();
    match params.remove("documentId") {
        None | Some(Json::Null) => {}
        Some(Json::String(id)) => reference.document_id = Some(id),
        Some(_) => return Err("the `documentId` parameter must be a string".to_owned()),
    }
    let mut request = GqlRequest::new(String::new());
    match params.remove("operationName") {
        None | Some(Json::Null) => {}
        Some(Json::String(name)) => request = request.operation_name(name),
        Some(_) => return Err("the `operationName` parameter must be a string".to_owned()),
    }
    match params.remove("variables") {
        None | Some(Json::Null) => {}
        Some(variables @ Json::Object(_)) => {
            request = request.variables(Variables::from_json(variables));
        }
        Some(_) => return Err("the `variables` parameter must be an object".to_owned()),
    }
    match params.remove("extensions") {
        None | Some(Json::Null) => {}
        Some(Json::Object(extensions)) => {
            for (name, value) in extensions {
                if name == "persistedQuery" {
                    reference.apq = Some(apq_of(&value)?);
                }
                let value = Value::from_json(value).map_err(|_| "bad `extensions`".to_owned())?;
                request.extensions.insert(name, value);
            }
        }
        Some(_) => return Err("the `extensions` parameter must be an object".to_owned()),
    }
    match (&query, &reference) {
        (None, reference) if reference.is_empty() => {
            return Err("the `query` parameter is missing".to_owned());
        }
        (
            Some(_),
            Reference {
                document_id: Some(_),
                ..
            },
        ) => {
            return Err(
                "send the document in `query` or its id in `documentId`, not both".to_owned(),
            );
        }
        (
            _,
            Reference {
                document_id: Some(_),
                apq: Some(_),
            },
        ) => {
            return Err(
                "name the document once: `documentId` or `extensions.persistedQuery`, not both"
                    .to_owned(),
            );
        }
        _ => {}
    }
    Ok((request, query, reference))
}

/// `extensions.persistedQuery`: its `version` and `sha256Hash`.
fn apq_of(value: &Json) -> Result<(i64, String), String> {
    let malformed = || {
        "`extensions.persistedQuery` must be an object with a whole number `version` and a \
         string `sha256Hash`"
            .to_owned()
    };
    let version = value.get("version").and_then(Json::as_i64);
    let hash = value.get("sha256Hash").and_then(Json::as_str);
    match (version, hash) {
        (Some(version), Some(hash)) => Ok((version, hash.to_owned())),
        _ => Err(malformed()),
    }
}

/// A refusal as the operation's error.
fn refusal_error(refusal: &Refusal) -> ServerError {
    let mut error = match refusal.field() {
        Some(field) => async_graphql::Error::from(AppError::bad_input(field, refusal.message())),
        None => async_graphql::Error::new(refusal.message()),
    };
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", refusal.code());
    let mut server_error = ServerError::new(error.message, None);
    server_error.extensions = error.extensions;
    server_error
}

/// The `Idempotency-Key` fingerprint of a request: the SHA-256 of its JSON body read as JSON
/// (so the order of keys and white space do not count), each operation's document given by
/// its SHA-256 however the client sent or named it, and with empty `variables`/`extensions`
/// and a null `operationName` as if absent. A retry that sends the hash where the first
/// attempt sent the document (as APQ clients do), even to a replica that does not know the
/// hash, or drops the hash once the server said it does not know it, is the same request;
/// another document, other variables or another operation are not. A body that is not JSON
/// counts byte for byte.
pub fn fingerprint(body: &[u8], json: Option<Json>, operations: &Operations) -> String {
    let Some(mut json) = json else {
        return crate::idempotency::fingerprint(body);
    };
    let ops: Vec<&Operation> = match operations {
        Operations::Single(operation) => vec![operation],
        Operations::Batch(operations) => operations.iter().collect(),
    };
    let items: Vec<&mut Json> = match &mut json {
        Json::Array(items) => items.iter_mut().collect(),
        one => vec![one],
    };
    for (item, operation) in items.into_iter().zip(ops) {
        let Json::Object(params) = item else {
            continue;
        };
        let document = document_key(params, operation);
        params.remove("query");
        params.remove("documentId");
        if let Some(Json::Object(extensions)) = params.get_mut("extensions") {
            extensions.remove("persistedQuery");
        }
        params.retain(|name, value| match (name.as_str(), &*value) {
            ("variables" | "extensions", Json::Object(map)) => !map.is_empty(),
            ("variables" | "extensions" | "operationName", Json::Null) => false,
            _ => true,
        });
        params.insert("document".to_owned(), Json::String(document));
    }
    // serde_json's maps are ordered by key, so this is the same text for the same JSON.
    let canonical = serde_json::to_vec(&json).unwrap_or_default();
    crate::idempotency::fingerprint(&canonical)
}

/// The document an operation runs, as the fingerprint names it: the lower-case hex SHA-256 of
/// its text, whether the text was sent (`query`), found by an id, or only named by an APQ hash
/// this replica may not know. An id that names no document stays itself (`id:<documentId>`).
fn document_key(params: &serde_json::Map<String, Json>, operation: &Operation) -> String {
    let hash_of = |text: &str| hex(&persisted::hash_of(text));
    if let Some(Json::String(text)) = params.get("query") {
        return hash_of(text);
    }
    if operation.named && operation.document.is_ok() {
        return hash_of(&operation.request.query);
    }
    let apq_hash = params
        .get("extensions")
        .and_then(|extensions| extensions.get("persistedQuery"))
        .and_then(|apq| apq.get("sha256Hash"))
        .and_then(Json::as_str);
    if let Some(hash) = apq_hash {
        let hash = hash.strip_prefix("sha256:").unwrap_or(hash);
        return hash.to_ascii_lowercase();
    }
    match params.get("documentId").and_then(Json::as_str) {
        Some(id) => format!("id:{id}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Json) -> Result<Option<String>, String> {
        params_of(v.as_object().unwrap().clone()).map(|(_, query, _)| query)
    }

    #[test]
    fn request_parameters_are_type_checked() {
        assert!(params(serde_json::json!({"query": "{ a }", "variables": null})).is_ok());
        assert!(params(serde_json::json!({"query": 7})).is_err());
        assert!(params(serde_json::json!({})).is_err());
        assert!(params(serde_json::json!({"query": "{ a }", "variables": "x"})).is_err());
        assert!(params(serde_json::json!({"query": "{ a }", "operationName": 1})).is_err());
        assert!(params(serde_json::json!({"query": "{ a }", "extensions": []})).is_err());
    }

    #[test]
    fn a_document_is_sent_or_named_once() {
        let apq = serde_json::json!({"persistedQuery": {"version": 1, "sha256Hash": "ab"}});
        assert_eq!(
            params(serde_json::json!({"extensions": apq})).unwrap(),
            None
        );
        assert!(params(serde_json::json!({"documentId": "x"})).is_ok());
        assert!(params(serde_json::json!({"documentId": 1})).is_err());
        assert!(params(serde_json::json!({"query": "{ a }", "documentId": "x"})).is_err());
        assert!(params(serde_json::json!({"documentId": "x", "extensions": apq})).is_err());
        for bad in [
            serde_json::json!({"persistedQuery": 1}),
            serde_json::json!({"persistedQuery": {"version": "1", "sha256Hash": "ab"}}),
            serde_json::json!({"persistedQuery": {"version": 1}}),
        ] {
            assert!(params(serde_json::json!({"extensions": bad})).is_err());
        }
        // Other extensions alone do not name a document.
        assert!(params(serde_json::json!({"extensions": {"tracing": true}})).is_err());
    }
}
