//! The GraphiQL page and every file it loads, served from the binary: React, ReactDOM and
//! GraphiQL at the versions vendored in `playground/vendor/` (see its `VERSIONS`; re-created by
//! `clients/scripts/vendor-playground.mjs`), and the page's own script, which starts GraphiQL
//! with the sign-in control and runs subscriptions over a WebSocket to this origin
//! (`playground/storefront-playground.js`).
//!
//! Each file is served at `/playground/<hash>/<name>`, `<hash>` being the start of its SHA-256,
//! so a URL always names the same bytes and browsers may keep them for a year. The page itself
//! is never cached and carries a content security policy that allows nothing from another
//! origin and no inline script.

use std::sync::LazyLock;

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

/// The path every file of the page is served under.
pub const ASSETS_PATH: &str = "/playground";

/// The page's policy. Nothing may come from another origin, and scripts only from files of
/// this origin (the page's bootstrap is one of them, so no inline script runs).
///
/// `style-src` allows this origin's style sheets, plus `<style>` elements carrying the page's
/// nonce: GraphiQL's dialogs and menus (Radix UI's scroll lock, through react-style-singleton)
/// add one while they are open, stamped with `__webpack_nonce__`, which the bootstrap sets to
/// that nonce. Everything else GraphiQL styles it sets through the CSSOM (`element.style`),
/// which a policy does not govern, so neither `'unsafe-inline'` nor `style-src-attr` is needed.
/// `img-src` and `font-src` allow `data:` for the icons and fonts inlined in GraphiQL's CSS.
/// `connect-src 'self'` lets the page call `/graphql` over HTTP and open its subscriptions'
/// WebSockets there: CSP Level 3 matches `'self'` against the `ws:` and `wss:` URLs of the
/// page's own host and port too (`wss:` only, for a page served over `https:`).
fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; \
         img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'"
    )
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// A file of the page, as compiled in.
struct Source {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const SOURCES: [Source; 8] = [
    Source {
        name: "react.production.min.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("playground/vendor/react.production.min.js"),
    },
    Source {
        name: "react-dom.production.min.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("playground/vendor/react-dom.production.min.js"),
    },
    Source {
        name: "graphiql.min.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("playground/vendor/graphiql.min.js"),
    },
    Source {
        name: "graphiql.min.css",
        content_type: CSS,
        bytes: include_bytes!("playground/vendor/graphiql.min.css"),
    },
    Source {
        name: "LICENSES.txt",
        content_type: TEXT,
        bytes: include_bytes!("playground/vendor/LICENSES.txt"),
    },
    Source {
        name: "storefront-playground.js",
        content_type: JAVASCRIPT,
        bytes: include_bytes!("playground/storefront-playground.js"),
    },
    Source {
        name: "storefront-playground.css",
        content_type: CSS,
        bytes: include_bytes!("playground/storefront-playground.css"),
    },
    Source {
        name: "favicon.svg",
        content_type: SVG,
        bytes: include_bytes!("playground/favicon.svg"),
    },
];

/// What the page opens on: a document valid for an anonymous visitor, and one for a signed-in
/// account (the page's script picks one, and swaps one for the other when the visitor signs in
/// or out while the editor still holds it unchanged).
const OPENING_ANONYMOUS: &str = include_str!("playground/opening-anonymous.graphql");
const OPENING_SIGNED_IN: &str = include_str!("playground/opening-signed-in.graphql");

/// A file as served: its URL, its Subresource Integrity value, and its gzip encoding, made on
/// the first request that accepts it.
struct Asset {
    source: &'static Source,
    hash: String,
    path: String,
    integrity: String,
    gzip: OnceCell<Option<Bytes>>,
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    SOURCES
        .iter()
        .map(|source| {
            let digest = Sha256::digest(source.bytes);
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            let hash = hex[..16].to_owned();
            Asset {
                path: format!("{ASSETS_PATH}/{hash}/{}", source.name),
                hash,
                integrity: format!(
                    "sha256-{}",
                    base64::engine::general_purpose::STANDARD.encode(digest)
                ),
                source,
                gzip: OnceCell::new(),
            }
        })
        .collect()
});

fn asset(name: &str) -> &'static Asset {
    ASSETS
        .iter()
        .find(|asset| asset.source.name == name)
        .unwrap_or_else(|| unreachable!("{name} is one of SOURCES"))
}

/// The page, with `{nonce}` where each response puts its own.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    let config = serde_json::json!({
        "endpoint": "/graphql",
        "documents": { "anonymous": OPENING_ANONYMOUS, "signedIn": OPENING_SIGNED_IN },
        "licences": asset("LICENSES.txt").path,
    });
    // A JSON data block is not run as script (so the policy allows it); `<` is escaped so the
    // text can never close the element.
    let config = config.to_string().replace('<', "\\u003c");
    let stylesheet = |name| {
        let asset = asset(name);
        format!(
            r#"<link rel="stylesheet" href="{}" integrity="{}">"#,
            asset.path, asset.integrity
        )
    };
    let script = |name, extra: &str| {
        let asset = asset(name);
        format!(
            r#"<script src="{}" integrity="{}" defer{extra}></script>"#,
            asset.path, asset.integrity
        )
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Storefront GraphiQL</title>
<link rel="icon" href="{favicon}" type="image/svg+xml">
{graphiql_css}
{page_css}
{react}
{react_dom}
{graphiql}
<script type="application/json" id="storefront-playground">{config}</script>
{page}
</head>
<body>
<div id="graphiql"><p class="storefront-loading">Loading GraphiQL…</p></div>
<noscript>GraphiQL needs JavaScript. The API itself is at <code>/graphql</code>.</noscript>
</body>
</html>
"#,
        favicon = asset("favicon.svg").path,
        graphiql_css = stylesheet("graphiql.min.css"),
        page_css = stylesheet("storefront-playground.css"),
        react = script("react.production.min.js", ""),
        react_dom = script("react-dom.production.min.js", ""),
        graphiql = script("graphiql.min.js", ""),
        page = script("storefront-playground.js", r#" nonce="{nonce}""#),
    )
});

/// The GraphiQL page, with its content security policy and a nonce of its own.
pub fn page() -> Response {
    let nonce = nonce();
    let html = PAGE.replace("{nonce}", &nonce);
    let mut response = (StatusCode::OK, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(policy) = HeaderValue::from_str(&content_security_policy(&nonce)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    // A nonce is good for one response only: never stored, never served twice.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // For browsers older than `frame-ancestors`.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    no_sniff(headers);
    response
}

/// A random nonce, 128 bits in base64.
fn nonce() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn no_sniff(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// `GET /playground/<hash>/<name>`: a file of the page, gzipped when the client accepts it;
/// `None` when no file has that name and hash (an old URL after an upgrade, or a made-up one).
pub async fn asset_response(hash: &str, name: &str, request: &HeaderMap) -> Option<Response> {
    let asset = ASSETS
        .iter()
        .find(|asset| asset.source.name == name && asset.hash == hash)?;
    let gzip = if accepts_gzip(request) {
        asset
            .gzip
            .get_or_init(|| async {
                let bytes = asset.source.bytes;
                tokio::task::spawn_blocking(move || gzipped(bytes))
                    .await
                    .ok()
                    .flatten()
            })
            .await
            .clone()
    } else {
        None
    };
    let encoded = gzip.is_some();
    let body = gzip.map_or_else(|| Body::from(asset.source.bytes), Body::from);
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.source.content_type),
    );
    // The URL names these exact bytes: a new version is a new URL.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if encoded {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    no_sniff(headers);
    Some(response)
}

/// `bytes` gzipped, or `None` when that would not make them smaller.
fn gzipped(bytes: &[u8]) -> Option<Bytes> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3),
        flate2::Compression::default(),
    );
    encoder.write_all(bytes).ok()?;
    let compressed = encoder.finish().ok()?;
    (compressed.len() < bytes.len()).then(|| Bytes::from(compressed))
}

/// Whether `Accept-Encoding` lists gzip (or `*`) with a weight above zero.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let weight = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (name.eq_ignore_ascii_case("gzip") || name == "*") && weight > 0.0
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_accepted_only_with_a_positive_weight() {
        let accepts = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
            accepts_gzip(&headers)
        };
        assert!(accepts("gzip"));
        assert!(accepts("br, GZIP;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("br, deflate"));
        assert!(!accepts("identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn gzip_round_trips() {
        let text = "GraphiQL ".repeat(1000);
        let compressed = gzipped(text.as_bytes()).unwrap();
        let mut decoded = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(compressed.as_ref()),
            &mut decoded,
        )
        .unwrap();
        assert_eq!(decoded, text);
        assert!(gzipped(b"x").is_none(), "not larger than the original");
    }

    #[test]
    fn every_file_the_page_loads_is_named_with_its_hash_and_integrity() {
        let page = PAGE.replace("{nonce}", "n");
        for asset in ASSETS.iter() {
            assert!(page.contains(&asset.path), "{}", asset.source.name);
        }
        assert_eq!(page.matches("integrity=").count(), 6, "{page}");
        assert!(!page.contains("</script><"), "config escaped: {page}");
    }
}
