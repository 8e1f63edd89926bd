//! Documents named by an id instead of sent in full.
//!
//! - **Automatic persisted queries** (APQ), as Apollo Client's `PersistedQueryLink` and urql's
//!   `persistedExchange` speak them: a client sends `extensions.persistedQuery { version: 1,
//!   sha256Hash }` without the document; a replica that does not know the hash answers
//!   `PersistedQueryNotFound`, and the client sends the document with its hash, which the
//!   replica remembers once the document has parsed and passed the limits. Each replica keeps
//!   its own bounded [`Store`]; nothing is shared, since a client re-sends the document to a
//!   replica that does not know it.
//! - **Trusted documents**: with `TRUSTED_DOCUMENTS`, a [`Manifest`] lists the only operations
//!   that run, named by id (`documentId`, as the GraphQL-over-HTTP persisted documents appendix
//!   has it, or `extensions.persistedQuery.sha256Hash`) or sent in full.
//!
//! Either way the document found here is then parsed and measured like any other: an id never
//! runs past the cost, depth and alias limits.

use std::{collections::HashMap, path::Path, sync::Arc};

use quick_cache::{Weighter, sync::Cache};
use sha2::{Digest, Sha256};

use crate::config::PersistedQueries;

/// The only APQ protocol version.
pub const APQ_VERSION: i64 = 1;

/// The `extensions.code` (and, as the clients match it, the message) of an id this server
/// does not know.
pub const NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
/// The `extensions.code` of a hash-only request while APQ is off (`APQ_MAX_DOCUMENTS=0`).
pub const NOT_SUPPORTED: &str = "PERSISTED_QUERY_NOT_SUPPORTED";
/// The `extensions.code` of a document that is not in the trusted-documents manifest.
pub const NOT_IN_LIST: &str = "PERSISTED_QUERY_NOT_IN_LIST";

/// Where errors about the APQ extension point (`extensions.field`).
pub const HASH_FIELD: &str = "extensions.persistedQuery.sha256Hash";
pub const VERSION_FIELD: &str = "extensions.persistedQuery.version";

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The SHA-256 of a document's text.
pub fn hash_of(text: &str) -> Hash {
    Sha256::digest(text.as_bytes()).into()
}

/// `hex` (64 hexadecimal digits, any case) as a digest.
fn parse_hex(hex: &str) -> Option<Hash> {
    if hex.len() != 64 {
        return None;
    }
    // Hexadecimal digits only: `u8::from_str_radix` would also take a sign (`+f`), so a
    // 64-character string that is not a hash could name a stored document.
    fn digit(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let mut hash = [0; 32];
    for (byte, pair) in hash.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(hash)
}

/// A document id that is a SHA-256 hash: `sha256:<hex>` (the persisted documents appendix's
/// form) or the bare hex (APQ's).
fn parse_id(id: &str) -> Option<Hash> {
    parse_hex(id.strip_prefix("sha256:").unwrap_or(id))
}

/// How a request names its document besides (or instead of) sending it.
#[derive(Clone, Debug, Default)]
pub struct Reference {
    /// `extensions.persistedQuery`: its `version` and `sha256Hash`.
    pub apq: Option<(i64, String)>,
    /// `documentId`.
    pub document_id: Option<String>,
}

impl Reference {
    pub fn is_empty(&self) -> bool {
        self.apq.is_none() && self.document_id.is_none()
    }
}

/// The document a request runs.
#[derive(Debug)]
pub struct Resolved {
    pub text: String,
    /// The APQ hash to remember `text` under once it has passed the limits.
    pub remember: Option<Hash>,
}

/// Why a request's document could not be found or is not allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The id names no document this replica knows.
    NotFound,
    /// A hash-only request while APQ is off.
    NotSupported,
    /// Trusted documents are on and the document sent is not listed.
    NotInList,
    /// `sha256Hash` is not the SHA-256 of the document sent with it.
    HashMismatch,
    /// `sha256Hash` is not 64 hexadecimal digits.
    MalformedHash,
    /// A `version` other than [`APQ_VERSION`].
    UnsupportedVersion(i64),
}

impl Refusal {
    /// The `extensions.code`; `BAD_USER_INPUT` ones have a [`Refusal::field`].
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound => NOT_FOUND,
            Self::NotSupported => NOT_SUPPORTED,
            Self::NotInList => NOT_IN_LIST,
            Self::HashMismatch | Self::MalformedHash | Self::UnsupportedVersion(_) => {
                "BAD_USER_INPUT"
            }
        }
    }

    /// The `extensions.field` of a `BAD_USER_INPUT`.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::HashMismatch | Self::MalformedHash => Some(HASH_FIELD),
            Self::UnsupportedVersion(_) => Some(VERSION_FIELD),
            Self::NotFound | Self::NotSupported | Self::NotInList => None,
        }
    }

    /// The message. Apollo Client and urql recognise `PersistedQueryNotFound` and
    /// `PersistedQueryNotSupported` by these exact words (urql by the message alone).
    pub fn message(&self) -> String {
        match self {
            Self::NotFound => "PersistedQueryNotFound".to_owned(),
            Self::NotSupported => "PersistedQueryNotSupported".to_owned(),
            Self::NotInList => "this server runs only the operations of its trusted documents; \
                                this document is not one of them"
                .to_owned(),
            Self::HashMismatch => {
                "`sha256Hash` is not the SHA-256 of the document sent with it".to_owned()
            }
            Self::MalformedHash => "`sha256Hash` must be 64 hexadecimal digits".to_owned(),
            Self::UnsupportedVersion(version) => format!(
                "persisted query version {version} is not supported; use version {APQ_VERSION}"
            ),
        }
    }
}

/// The documents a request may name: this replica's APQ store, or the trusted manifest.
pub struct PersistedDocuments {
    mode: Mode,
}

enum Mode {
    /// APQ; `None` when turned off.
    Automatic(Option<Store>),
    /// Only the manifest's documents run.
    Trusted(Manifest),
}

impl PersistedDocuments {
    /// APQ with a store of at most `max_documents` documents and `max_bytes` bytes of text
    /// (`max_documents == 0` turns APQ off).
    pub fn automatic(max_documents: usize, max_bytes: usize) -> Self {
        let store = (max_documents > 0).then(|| Store::new(max_documents, max_bytes));
        Self {
            mode: Mode::Automatic(store),
        }
    }

    /// Only `manifest`'s documents run.
    pub fn trusted(manifest: Manifest) -> Self {
        Self {
            mode: Mode::Trusted(manifest),
        }
    }

    /// As configured: the manifest of `TRUSTED_DOCUMENTS` when set, APQ otherwise.
    ///
    /// # Errors
    /// A [`ManifestError`] when the manifest cannot be read or is not a manifest.
    pub fn from_config(config: &PersistedQueries) -> Result<Self, ManifestError> {
        match &config.trusted_documents {
            Some(path) => Manifest::load(path).map(Self::trusted),
            None => Ok(Self::automatic(
                config.apq_max_documents,
                config.apq_max_bytes,
            )),
        }
    }

    /// The manifest in force, if any.
    pub fn manifest(&self) -> Option<&Manifest> {
        match &self.mode {
            Mode::Trusted(manifest) => Some(manifest),
            Mode::Automatic(_) => None,
        }
    }

    /// The document a request runs: `query` as sent, or the one `reference` names.
    ///
    /// # Errors
    /// A [`Refusal`]: an id no one registered (or the manifest does not list), a document the
    /// manifest does not list, a hash that is not the document's, an unsupported version.
    pub fn resolve(
        &self,
        query: Option<String>,
        reference: &Reference,
    ) -> Result<Resolved, Refusal> {
        let apq_hash = match &reference.apq {
            Some((version, _)) if *version != APQ_VERSION => {
                return Err(Refusal::UnsupportedVersion(*version));
            }
            Some((_, hash)) => Some(hash.as_str()),
            None => None,
        };
        let id = reference.document_id.as_deref().or(apq_hash);
        match &self.mode {
            Mode::Trusted(manifest) => match (query, id) {
                (Some(text), _) if manifest.lists(&text) => Ok(Resolved {
                    text,
                    remember: None,
                }),
                (Some(_), _) => Err(Refusal::NotInList),
                (None, Some(id)) => manifest.find(id).map(|text| Resolved {
                    text: text.to_string(),
                    remember: None,
                }),
                (None, None) => Err(Refusal::NotFound),
            },
            Mode::Automatic(store) => {
                let apq_hash = apq_hash
                    .map(|hex| parse_hex(hex).ok_or(Refusal::MalformedHash))
                    .transpose()?;
                match (query, apq_hash, store) {
                    (Some(text), Some(hash), store) => {
                        if hash_of(&text) != hash {
                            return Err(Refusal::HashMismatch);
                        }
                        Ok(Resolved {
                            text,
                            remember: store.is_some().then_some(hash),
                        })
                    }
                    (Some(text), None, _) => Ok(Resolved {
                        text,
                        remember: None,
                    }),
                    (None, Some(_), None) => Err(Refusal::NotSupported),
                    (None, _, store) => {
                        let hash = id.and_then(parse_id).ok_or(Refusal::NotFound)?;
                        let text = store
                            .as_ref()
                            .and_then(|store| store.get(&hash))
                            .ok_or(Refusal::NotFound)?;
                        Ok(Resolved {
                            text: text.to_string(),
                            remember: None,
                        })
                    }
                }
            }
        }
    }

    /// Remembers `text` under `hash` (its SHA-256, checked by [`Self::resolve`]).
    pub fn remember(&self, hash: Hash, text: &str) {
        if let Mode::Automatic(Some(store)) = &self.mode {
            store.insert(hash, text);
        }
    }

    /// The APQ documents this replica keeps now, and their bytes of text.
    pub fn stored(&self) -> (u64, u64) {
        match &self.mode {
            Mode::Automatic(Some(store)) => store.size(),
            _ => (0, 0),
        }
    }
}

/// The APQ documents of one replica, bounded in number and in bytes of text. When full, the
/// documents seldom used make room first (quick_cache's S3-FIFO): a flood of one-off documents
/// does not push out those in use.
struct Store {
    documents: Cache<Hash, Arc<str>, TextWeight>,
}

/// The share of the store's bytes that its documents in use may hold (quick_cache's default);
/// a document longer than this share of `APQ_MAX_BYTES` is not kept.
const HOT_ALLOCATION: f64 = 0.97;

/// A document's weight: its length, but at least `floor`, the budget's bytes over its number
/// of documents (or the heaviest weight the store admits, if less). So the weights add up to
/// at most the byte budget only while both the bytes and the number of documents are within
/// theirs.
#[derive(Clone)]
struct TextWeight {
    floor: u64,
}

impl Weighter<Hash, Arc<str>> for TextWeight {
    fn weight(&self, _hash: &Hash, text: &Arc<str>) -> u64 {
        (text.len() as u64).max(self.floor)
    }
}

impl Store {
    fn new(max_documents: usize, max_bytes: usize) -> Self {
        let max_bytes = max_bytes as u64;
        // quick_cache admits no entry heavier than its hot section: with a floor above that
        // (a store of one document), nothing would ever be kept.
        let heaviest = ((max_bytes as f64 * HOT_ALLOCATION) as u64).max(1);
        let floor = max_bytes.div_ceil(max_documents as u64).clamp(1, heaviest);
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(max_documents)
            .weight_capacity(max_bytes)
            .hot_allocation(HOT_ALLOCATION)
            // One shard: the bounds hold for the whole store, and a document may use nearly
            // all of it.
            .shards(1)
            .build()
            .expect("valid cache options");
        Self {
            documents: Cache::with_options(
                options,
                TextWeight { floor },
                quick_cache::DefaultHashBuilder::default(),
                quick_cache::sync::DefaultLifecycle::default(),
            ),
        }
    }

    fn get(&self, hash: &Hash) -> Option<Arc<str>> {
        self.documents.get(hash)
    }

    fn insert(&self, hash: Hash, text: &str) {
        if self.documents.peek(&hash).is_none() {
            self.documents.insert(hash, Arc::from(text));
        }
    }

    fn size(&self) -> (u64, u64) {
        let bytes = self
            .documents
            .iter()
            .map(|(_, text)| text.len() as u64)
            .sum();
        (self.documents.len() as u64, bytes)
    }
}

/// The trusted documents: every operation that may run, by id and by the SHA-256 of its text.
pub struct Manifest {
    by_id: HashMap<String, Arc<str>>,
    by_hash: HashMap<Hash, Arc<str>>,
    /// Which tool's format it was written in.
    pub format: ManifestFormat,
}

/// The manifest formats read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestFormat {
    /// GraphQL Code Generator's client preset (`persistedDocuments: true`):
    /// `{ "<id>": "<document>" }`.
    CodegenPersistedDocuments,
    /// `@apollo/generate-persisted-query-manifest`: `{ "format":
    /// "apollo-persisted-query-manifest", "version": 1, "operations": [{ "id", "name", "type",
    /// "body" }] }`.
    ApolloPersistedQueryManifest,
}

impl std::fmt::Display for ManifestFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::CodegenPersistedDocuments => "GraphQL Code Generator persisted documents",
            Self::ApolloPersistedQueryManifest => "Apollo persisted query manifest",
        })
    }
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
#[error("TRUSTED_DOCUMENTS {path}: {reason}")]
pub struct ManifestError {
    pub path: String,
    pub reason: String,
}

impl Manifest {
    /// Reads the manifest at `path`.
    ///
    /// # Errors
    /// A [`ManifestError`] naming the file and what is wrong with it.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let error = |reason: String| ManifestError {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        Self::parse(&text).map_err(error)
    }

    /// Reads a manifest from its JSON text.
    ///
    /// # Errors
    /// What is wrong with it: not JSON, neither format, an operation without an id or a body,
    /// a document that does not parse, an id listed twice, no operations at all.
    pub fn parse(json: &str) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("not valid JSON: {e}"))?;
        let serde_json::Value::Object(object) = value else {
            return Err("a manifest is a JSON object".to_owned());
        };
        let (format, entries) = if object.contains_key("format") {
            (
                ManifestFormat::ApolloPersistedQueryManifest,
                apollo_operations(&object)?,
            )
        } else {
            let entries = object
                .into_iter()
                .map(|(id, body)| match body {
                    serde_json::Value::String(body) => Ok((id, body)),
                    _ => Err(format!(
                        "the document of `{id}` is not a string (GraphQL Code Generator's \
                         persisted-documents.json maps each id to its document)"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            (ManifestFormat::CodegenPersistedDocuments, entries)
        };
        if entries.is_empty() {
            return Err("it lists no operations, so nothing could run".to_owned());
        }
        let mut by_id = HashMap::with_capacity(entries.len());
        let mut by_hash = HashMap::with_capacity(entries.len());
        for (id, body) in entries {
            if id.is_empty() {
                return Err("an operation has an empty id".to_owned());
            }
            if let Err(err) = async_graphql::parser::parse_query(&body) {
                let at = err
                    .positions()
                    .next()
                    .map(|pos| format!(" at line {}, column {}", pos.line, pos.column))
                    .unwrap_or_default();
                return Err(format!("the document of `{id}` does not parse{at}"));
            }
            let body: Arc<str> = Arc::from(body);
            by_hash.insert(hash_of(&body), body.clone());
            if by_id.insert(id.clone(), body).is_some() {
                return Err(format!("the id `{id}` is listed twice"));
            }
        }
        Ok(Self {
            by_id,
            by_hash,
            format,
        })
    }

    /// How many operations it lists.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Whether `text` is one of its documents, exactly.
    fn lists(&self, text: &str) -> bool {
        self.by_hash.contains_key(&hash_of(text))
    }

    /// The document `id` names: an id as listed, or the SHA-256 of a listed document
    /// (`sha256:<hex>` or the bare hex).
    fn find(&self, id: &str) -> Result<&Arc<str>, Refusal> {
        self.by_id
            .get(id)
            .or_else(|| parse_id(id).and_then(|hash| self.by_hash.get(&hash)))
            .ok_or(Refusal::NotFound)
    }
}

/// The `(id, body)` pairs of an Apollo persisted query manifest.
fn apollo_operations(
    object: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<(String, String)>, String> {
    if object.get("format").and_then(|f| f.as_str()) != Some("apollo-persisted-query-manifest") {
        return Err(
            "`format` is not \"apollo-persisted-query-manifest\", the only format with a \
             `format` field read here"
                .to_owned(),
        );
    }
    if object.get("version").and_then(serde_json::Value::as_i64) != Some(1) {
        return Err("an Apollo persisted query manifest must be `\"version\": 1`".to_owned());
    }
    let operations = object
        .get("operations")
        .and_then(|o| o.as_array())
        .ok_or("an Apollo persisted query manifest has an `operations` array")?;
    operations
        .iter()
        .enumerate()
        .map(|(i, operation)| {
            let text = |name: &str| operation.get(name).and_then(|v| v.as_str());
            match (text("id"), text("body")) {
                (Some(id), Some(body)) => Ok((id.to_owned(), body.to_owned())),
                _ => Err(format!(
                    "operation {i} of `operations` needs a string `id` and `body`"
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(hash: &Hash) -> String {
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn apq(hash: &str) -> Reference {
        Reference {
            apq: Some((1, hash.to_owned())),
            document_id: None,
        }
    }

    #[test]
    fn apq_needs_the_document_once_and_checks_its_hash() {
        let documents = PersistedDocuments::automatic(10, 65_536);
        let text = "{ __typename }";
        let hash = hex(&hash_of(text));
        assert_eq!(
            documents.resolve(None, &apq(&hash)).unwrap_err(),
            Refusal::NotFound
        );
        let resolved = documents
            .resolve(Some(text.to_owned()), &apq(&hash.to_uppercase()))
            .unwrap();
        assert_eq!(resolved.remember, Some(hash_of(text)));
        documents.remember(hash_of(text), text);
        assert_eq!(documents.resolve(None, &apq(&hash)).unwrap().text, text);
        assert_eq!(
            documents
                .resolve(Some("{ a: __typename }".to_owned()), &apq(&hash))
                .unwrap_err(),
            Refusal::HashMismatch
        );
        assert_eq!(
            documents.resolve(None, &apq("abc")).unwrap_err(),
            Refusal::MalformedHash
        );
        let v2 = Reference {
            apq: Some((2, hash.clone())),
            document_id: None,
        };
        assert_eq!(
            documents.resolve(None, &v2).unwrap_err(),
            Refusal::UnsupportedVersion(2)
        );
        let by_id = Reference {
            apq: None,
            document_id: Some(format!("sha256:{hash}")),
        };
        assert_eq!(documents.resolve(None, &by_id).unwrap().text, text);
    }

    #[test]
    fn a_hash_is_sixty_four_hexadecimal_digits_and_nothing_else() {
        let hash: Hash = std::array::from_fn(|i| i as u8 * 8);
        let text = hex(&hash);
        assert_eq!(parse_hex(&text), Some(hash));
        assert_eq!(parse_hex(&text.to_uppercase()), Some(hash));
        // `00` -> `+0`, `08` -> `+8`: the same bytes to `u8::from_str_radix`.
        for fake in [
            format!("+{}", &text[1..]),
            format!("{}+8{}", &text[..2], &text[4..]),
            format!("-{}", &text[1..]),
            format!("{} ", &text[..63]),
            format!("{}g", &text[..63]),
            format!("{}é", &text[..62]),
            text[..62].to_owned(),
        ] {
            assert_eq!(parse_hex(&fake), None, "{fake:?}");
        }
    }

    #[test]
    fn apq_off_says_not_supported_and_runs_documents_sent_with_a_hash() {
        let documents = PersistedDocuments::automatic(0, 65_536);
        let text = "{ __typename }";
        let hash = hex(&hash_of(text));
        assert_eq!(
            documents.resolve(None, &apq(&hash)).unwrap_err(),
            Refusal::NotSupported
        );
        let resolved = documents
            .resolve(Some(text.to_owned()), &apq(&hash))
            .unwrap();
        assert_eq!(resolved.remember, None);
    }

    #[test]
    fn the_store_stays_within_its_documents_and_bytes() {
        let store = Store::new(20, 65_536);
        for i in 0..200 {
            let text = format!("{{ a{i}: __typename }}");
            store.insert(hash_of(&text), &text);
        }
        let (count, bytes) = store.size();
        assert!((10..=20).contains(&count), "{count}");
        assert!(bytes <= 65_536);
        let store = Store::new(1000, 65_536);
        let padding = "#".repeat(4000);
        for i in 0..100 {
            let text = format!("{{ a{i}: __typename }} {padding}");
            store.insert(hash_of(&text), &text);
        }
        let (count, bytes) = store.size();
        assert!(bytes <= 65_536, "{bytes}");
        assert!(count >= 8, "{count}");
    }

    #[test]
    fn a_store_of_one_document_keeps_one() {
        for max_bytes in [1, 100, 65_536] {
            let store = Store::new(1, max_bytes);
            let mut kept = Vec::new();
            for i in 0..3 {
                let text = format!("{{ a{i}: __typename }}");
                let text = &text[..text.len().min(max_bytes)];
                store.insert(hash_of(text), text);
                kept.push(store.get(&hash_of(text)).is_some());
                assert!(store.size().0 <= 1, "{max_bytes}: {:?}", store.size());
            }
            if max_bytes > 30 {
                assert_eq!(kept, [true; 3], "{max_bytes}: the newest is kept");
            }
        }
    }

    #[test]
    fn both_manifest_formats_are_read_and_bad_ones_say_why() {
        let text = "query A { __typename }";
        let hash = hex(&hash_of(text));
        let codegen = Manifest::parse(&format!(r#"{{ "sha256:{hash}": "{text}" }}"#)).unwrap();
        assert_eq!(codegen.format, ManifestFormat::CodegenPersistedDocuments);
        let apollo = Manifest::parse(&format!(
            r#"{{ "format": "apollo-persisted-query-manifest", "version": 1,
                 "operations": [{{ "id": "custom-id", "name": "A", "type": "query",
                 "body": "{text}" }}] }}"#
        ))
        .unwrap();
        assert_eq!(apollo.format, ManifestFormat::ApolloPersistedQueryManifest);
        for manifest in [codegen, apollo] {
            let documents = PersistedDocuments::trusted(manifest);
            for id in [hash.clone(), format!("sha256:{hash}")] {
                assert_eq!(documents.resolve(None, &apq(&id)).unwrap().text, text);
            }
            assert_eq!(
                documents
                    .resolve(Some(text.to_owned()), &apq("x"))
                    .unwrap()
                    .text,
                text
            );
            assert_eq!(
                documents
                    .resolve(Some("{ __typename }".to_owned()), &Reference::default())
                    .unwrap_err(),
                Refusal::NotInList
            );
            assert_eq!(
                documents.resolve(None, &apq("nope")).unwrap_err(),
                Refusal::NotFound
            );
        }
        for (bad, says) in [
            ("[]", "JSON object"),
            ("{", "not valid JSON"),
            ("{}", "no operations"),
            (r#"{ "a": 1 }"#, "not a string"),
            (r#"{ "a": "{ x" }"#, "does not parse at line 1"),
            (r#"{ "format": "other" }"#, "`format`"),
            (
                r#"{ "format": "apollo-persisted-query-manifest", "version": 2, "operations": [] }"#,
                "version",
            ),
            (
                r#"{ "format": "apollo-persisted-query-manifest", "version": 1,
                     "operations": [{ "id": "a" }] }"#,
                "operation 0",
            ),
            (
                r#"{ "format": "apollo-persisted-query-manifest", "version": 1,
                     "operations": [{ "id": "a", "body": "{ a }" }, { "id": "a", "body": "{ b }" }] }"#,
                "listed twice",
            ),
        ] {
            let err = Manifest::parse(bad).err().unwrap();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
