//! Layers around every route: request ids (and the span that carries them) and CORS; and the
//! rate-limit headers of a refused request.

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue, Method, header},
};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{config::CorsOrigins, error::RateLimited};

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

/// The `RateLimit` header (draft-ietf-httpapi-ratelimit-headers-10 and -11).
pub const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// The `RateLimit-Policy` header (draft-ietf-httpapi-ratelimit-headers-10 and -11).
pub const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// CORS for the configured origins, allowing the request headers `allowed_headers`; without
/// origins, no CORS headers are sent (same-origin only). Credentials are never allowed: the API
/// uses Bearer tokens, not cookies.
pub fn cors_layer(origins: &CorsOrigins, allowed_headers: &[String]) -> CorsLayer {
    // The names were checked when the configuration was read.
    let allowed: Vec<HeaderName> = allowed_headers
        .iter()
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST])
        .allow_headers(allowed)
        .expose_headers([
            REQUEST_ID,
            HeaderName::from_static(crate::idempotency::REPLAYED_HEADER),
            header::RETRY_AFTER,
            RATE_LIMIT,
            RATE_LIMIT_POLICY,
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

/// The headers of an answer refused by a rate limit: `Retry-After` (seconds), and the limit as
/// draft-ietf-httpapi-ratelimit-headers (-10, -11) describes it, both Structured Field lists:
/// `RateLimit-Policy: "<name>";q=<quota>[;w=<window seconds>]` and
/// `RateLimit: "<name>";r=0;t=<seconds until the next attempt is allowed>`.
pub fn rate_limit_headers(headers: &mut axum::http::HeaderMap, limited: RateLimited) {
    let RateLimited {
        retry_after_secs,
        policy,
    } = limited;
    let mut described = format!("\"{}\";q={}", policy.name, policy.quota);
    if let Some(window) = policy.window_secs {
        described.push_str(&format!(";w={window}"));
    }
    let current = format!("\"{}\";r=0;t={retry_after_secs}", policy.name);
    for (name, value) in [
        (header::RETRY_AFTER, retry_after_secs.to_string()),
        (RATE_LIMIT_POLICY, described),
        (RATE_LIMIT, current),
    ] {
        // Policy names are ours: plain ASCII.
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
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
