//! Parsed documents, kept by query text: clients send the same few documents again and again,
//! and parsing (pest) is a visible share of a small query's cost.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_graphql::{
    ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::ExecutableDocument,
};

/// Documents kept at most; when full, the cache starts over (no LRU bookkeeping on the hot path).
const MAX_DOCUMENTS: usize = 512;
/// Longer documents are parsed every time rather than kept.
const MAX_QUERY_BYTES: usize = 8 * 1024;

/// The document cache, shared by every request.
#[derive(Default)]
pub struct DocumentCache {
    documents: Arc<Mutex<HashMap<String, ExecutableDocument>>>,
}

impl ExtensionFactory for DocumentCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(DocumentCacheExtension {
            documents: self.documents.clone(),
        })
    }
}

struct DocumentCacheExtension {
    documents: Arc<Mutex<HashMap<String, ExecutableDocument>>>,
}

#[async_trait::async_trait]
impl Extension for DocumentCacheExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if let Some(document) = self
            .documents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(query)
        {
            return Ok(document.clone());
        }
        let document = next.run(ctx, query, variables).await?;
        if query.len() <= MAX_QUERY_BYTES {
            let mut documents = self.documents.lock().unwrap_or_else(|e| e.into_inner());
            if documents.len() >= MAX_DOCUMENTS {
                documents.clear();
            }
            documents.insert(query.to_owned(), document.clone());
        }
        Ok(document)
    }
}
