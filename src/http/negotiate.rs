//! Content negotiation for GraphQL over HTTP.

use axum::http::{HeaderMap, header};

/// The media type of a GraphQL response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/graphql-response+json`: request errors get HTTP 400.
    GraphqlResponseJson,
    /// `application/json`: the legacy format, always HTTP 200 for a well-formed request.
    Json,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
            Format::Json => "application/json; charset=utf-8",
        }
    }
}

/// The response format the `Accept` header prefers; `None` when it accepts neither.
/// No `Accept` header means `application/json`.
pub fn response_format(headers: &HeaderMap) -> Option<Format> {
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if accept.iter().all(|v| v.trim().is_empty()) {
        return Some(Format::Json);
    }
    let mut best: Option<(f32, Format)> = None;
    for range in accept.iter().flat_map(|v| v.split(',')) {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let format = match media.as_str() {
            "application/graphql-response+json" => Format::GraphqlResponseJson,
            "application/json" | "application/*" | "*/*" => Format::Json,
            _ => continue,
        };
        if q <= 0.0 {
            continue;
        }
        let better = match best {
            None => true,
            Some((best_q, best_format)) => {
                q > best_q
                    || (q == best_q
                        && format == Format::GraphqlResponseJson
                        && best_format != Format::GraphqlResponseJson)
            }
        };
        if better {
            best = Some((q, format));
        }
    }
    best.map(|(_, format)| format)
}

/// Whether the request body is declared as JSON in UTF-8 (the only charset accepted).
pub fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim();
    media.eq_ignore_ascii_case("application/json")
        && parts.all(|param| {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            !name.trim().eq_ignore_ascii_case("charset")
                || value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        })
}

/// Whether a browser is asking for a page.
pub fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[test]
    fn accept_picks_the_preferred_format() {
        let format = |v: &str| response_format(&with(header::ACCEPT, v));
        assert_eq!(response_format(&HeaderMap::new()), Some(Format::Json));
        assert_eq!(format("*/*"), Some(Format::Json));
        assert_eq!(format("application/json"), Some(Format::Json));
        assert_eq!(
            format("application/graphql-response+json, application/json;q=0.9"),
            Some(Format::GraphqlResponseJson)
        );
        assert_eq!(
            format("application/graphql-response+json;q=0.5, application/json"),
            Some(Format::Json)
        );
        assert_eq!(format("text/html"), None);
    }

    #[test]
    fn only_json_bodies_in_utf8_are_accepted() {
        let ok = |v: &str| is_json_content_type(&with(header::CONTENT_TYPE, v));
        assert!(ok("application/json"));
        assert!(ok("application/json; charset=utf-8"));
        assert!(ok("Application/JSON; charset=\"UTF-8\""));
        assert!(!ok("application/json; charset=latin1"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(!ok("multipart/form-data; boundary=x"));
        assert!(!is_json_content_type(&HeaderMap::new()));
    }
}
