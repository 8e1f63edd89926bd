//! Layers around every route: request ids (and the span that carries them) and CORS.

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue, Method, header},
};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::CorsOrigins;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Keeps a client's `x-request-id` only when it is 1 to 128 printable ASCII bytes (a log line
/// must not carry anything else) and drops it otherwise, so that `SetRequestIdLayer` makes a
/// new one.
pub fn keep_usable_request_id(mut request: Request) -> Request {
    let usable = request
        .headers()
        .get(&REQUEST_ID)
        .filter(|v| {
            let bytes = v.as_bytes();
            !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
        })
        .cloned();
    match usable {
        // One id, even if the client sent several.
        Some(id) => request.headers_mut().insert(REQUEST_ID, id),
        None => request.headers_mut().remove(REQUEST_ID),
    };
    request
}

/// The request's id, as [`keep_usable_request_id`] and `SetRequestIdLayer` left it (always
/// there behind those layers).
pub fn request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The span every request's logs are recorded in, carrying its request id.
pub fn request_span(request: &Request) -> tracing::Span {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// CORS for the configured origins; without any, no CORS headers are sent (same-origin only).
/// Credentials are never allowed: the API uses Bearer tokens, not cookies.
pub fn cors_layer(origins: &CorsOrigins) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            REQUEST_ID,
            HeaderName::from_static(crate::idempotency::HEADER),
        ])
        .expose_headers([
            REQUEST_ID,
            HeaderName::from_static(crate::idempotency::REPLAYED_HEADER),
        ])
        .max_age(std::time::Duration::from_secs(600));
    match origins {
        CorsOrigins::None => CorsLayer::new(),
        CorsOrigins::Any => base.allow_origin(AllowOrigin::any()),
        CorsOrigins::List(list) => base.allow_origin(AllowOrigin::list(
            list.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_request_id_is_kept_only_when_short_printable_ascii() {
        let kept = |id: &[u8]| {
            let request = Request::builder()
                .header(REQUEST_ID, HeaderValue::from_bytes(id).unwrap())
                .body(axum::body::Body::empty())
                .unwrap();
            keep_usable_request_id(request)
                .headers()
                .get(&REQUEST_ID)
                .map(|v| v.as_bytes().to_vec())
        };
        assert_eq!(kept(b"trace-me-42"), Some(b"trace-me-42".to_vec()));
        assert!(kept(&[b'x'; 128]).is_some());
        assert_eq!(kept(&[b'x'; 129]), None);
        assert_eq!(kept(b""), None);
        assert_eq!(kept(b"has space"), None);
        assert_eq!(kept("caf\u{e9}".as_bytes()), None);
    }
}
