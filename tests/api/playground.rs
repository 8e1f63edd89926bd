//! The GraphiQL page over HTTP: its security headers, the files it loads (served from the
//! binary, byte for byte the vendored ones whose SHA-256s `vendor/SHA256SUMS` records, with
//! the right types and cache headers), and its opening documents, valid for whoever sees them.
//! The page in a browser is `clients/playground.test.mjs`.

use std::collections::BTreeMap;

use base64::Engine as _;
use reqwest::header;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::kit::TestApp;

const HTML: &str = "text/html,application/xhtml+xml";
const VENDOR_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/playground/vendor");

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The values of every `name="…"` attribute in `html`, in order.
fn attribute_values(html: &str, name: &str) -> Vec<String> {
    let needle = format!(" {name}=\"");
    html.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest[..rest.find('"').expect("a closed attribute")].to_owned()
        })
        .collect()
}

/// The page's `Content-Security-Policy`, directive name to its sources.
fn policy(response: &reqwest::Response) -> BTreeMap<String, Vec<String>> {
    let header = response
        .headers()
        .get(header::CONTENT_SECURITY_POLICY)
        .expect("the page has a content security policy")
        .to_str()
        .unwrap();
    header
        .split(';')
        .filter(|d| !d.trim().is_empty())
        .map(|directive| {
            let mut words = directive.split_whitespace().map(str::to_owned);
            (words.next().unwrap(), words.collect())
        })
        .collect()
}

/// Every file the page's `<link>` and `<script>` elements load, with its `integrity` value.
fn loaded_files(html: &str) -> Vec<(String, Option<String>)> {
    html.match_indices('<')
        .map(|(at, _)| &html[at..at + html[at..].find('>').unwrap()])
        .filter(|tag| tag.starts_with("<link ") || tag.starts_with("<script "))
        .filter_map(|tag| {
            let url = attribute_values(tag, "src")
                .into_iter()
                .chain(attribute_values(tag, "href"))
                .next()?;
            Some((url, attribute_values(tag, "integrity").into_iter().next()))
        })
        .collect()
}

/// `vendor/SHA256SUMS`: file name to SHA-256.
fn recorded_sums() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(format!("{VENDOR_DIR}/SHA256SUMS")).unwrap();
    text.lines()
        .map(|line| {
            let (sum, name) = line.split_once("  ").expect("`<sha256>  <file>`");
            (name.to_owned(), sum.to_owned())
        })
        .collect()
}

/// The page's configuration block (`<script type="application/json">`).
fn page_config(html: &str) -> Value {
    let start = html
        .find(r#"<script type="application/json" id="storefront-playground">"#)
        .expect("the configuration block");
    let json = &html[html[start..].find('>').unwrap() + start + 1..];
    serde_json::from_str(&json[..json.find("</script>").unwrap()]).unwrap()
}

async fn page_html(app: &TestApp) -> String {
    let response = app.get_accepting("/", HTML).await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test]
async fn the_page_is_sent_with_a_strict_content_security_policy_and_safe_headers() {
    let app = TestApp::spawn().await;
    let mut nonces = Vec::new();
    for path in ["/", "/graphql", "/"] {
        let response = app.get_accepting(path, HTML).await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        let header = |name: header::HeaderName| headers.get(name).unwrap().to_str().unwrap();
        assert_eq!(header(header::CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(header(header::REFERRER_POLICY), "no-referrer");
        assert_eq!(header(header::X_FRAME_OPTIONS), "DENY");
        assert_eq!(header(header::CACHE_CONTROL), "no-store");

        let policy = policy(&response);
        let sources = |directive: &str| policy[directive].join(" ");
        assert_eq!(sources("default-src"), "'none'");
        assert_eq!(sources("script-src"), "'self'", "no inline script, no eval");
        // 'self' covers the page's own ws:/wss: origin too (CSP Level 3), for subscriptions;
        // playground.test.mjs opens one in Chromium with no violation.
        assert_eq!(sources("connect-src"), "'self'", "this origin only");
        assert_eq!(sources("img-src"), "'self' data:");
        assert_eq!(sources("font-src"), "'self' data:");
        assert_eq!(sources("frame-ancestors"), "'none'");
        assert_eq!(sources("base-uri"), "'none'");
        assert_eq!(sources("form-action"), "'none'");
        let style = &policy["style-src"];
        assert_eq!(style.len(), 2, "{style:?}");
        assert_eq!(style[0], "'self'");
        let nonce = style[1]
            .strip_prefix("'nonce-")
            .and_then(|n| n.strip_suffix('\''))
            .expect("a nonce")
            .to_owned();
        assert!(nonce.len() >= 22, "at least 128 bits: {nonce}");

        // The page's script carries the nonce (it hands it to GraphiQL's style elements).
        let html = response.text().await.unwrap();
        assert_eq!(
            attribute_values(&html, "nonce"),
            std::slice::from_ref(&nonce)
        );
        nonces.push(nonce);
    }
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), 3, "a new nonce for every response");
}

#[tokio::test]
async fn the_page_refers_to_nothing_off_origin_and_runs_no_inline_script() {
    let app = TestApp::spawn().await;
    let html = page_html(&app).await;
    let mut urls: Vec<String> = loaded_files(&html)
        .into_iter()
        .map(|(url, _)| url)
        .collect();
    urls.push(page_config(&html)["licences"].as_str().unwrap().to_owned());
    urls.push(page_config(&html)["endpoint"].as_str().unwrap().to_owned());
    assert_eq!(urls.len(), 9, "{urls:?}");
    for url in &urls {
        assert!(
            url.starts_with('/') && !url.starts_with("//"),
            "{url} is on this origin"
        );
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    // Every <script> element loads a file, except the configuration, which is data.
    for (at, _) in html.match_indices("<script") {
        let tag = &html[at..at + html[at..].find('>').unwrap()];
        assert!(
            tag.contains(" src=\"") || tag.contains(r#"type="application/json""#),
            "{tag}"
        );
    }
    let checked = loaded_files(&html)
        .into_iter()
        .filter(|(_, integrity)| integrity.is_some())
        .count();
    assert_eq!(
        checked, 6,
        "every script and stylesheet has an integrity value"
    );
}

#[tokio::test]
async fn the_page_loads_the_vendored_files_byte_for_byte_with_long_caching() {
    let app = TestApp::spawn().await;
    let html = page_html(&app).await;
    let sums = recorded_sums();
    let mut served_vendored = Vec::new();
    let mut files = loaded_files(&html);
    files.push((
        page_config(&html)["licences"].as_str().unwrap().to_owned(),
        None,
    ));
    for (url, integrity) in files {
        let (hash, name) = url
            .strip_prefix("/playground/")
            .and_then(|rest| rest.split_once('/'))
            .unwrap_or_else(|| panic!("{url} is under /playground/<hash>/"));
        let response = app.get(&url).await;
        assert_eq!(response.status(), 200, "{url}");
        let headers = response.headers().clone();
        let header = |name: header::HeaderName| {
            headers
                .get(&name)
                .unwrap_or_else(|| panic!("{url}: no {name}"))
                .to_str()
                .unwrap()
                .to_owned()
        };
        let expected_type = match name.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "txt" => "text/plain; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("unexpected file type {other}"),
        };
        assert_eq!(header(header::CONTENT_TYPE), expected_type, "{url}");
        assert_eq!(
            header(header::CACHE_CONTROL),
            "public, max-age=31536000, immutable",
            "{url}"
        );
        assert_eq!(header(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{url}");
        assert!(headers.get(header::CONTENT_ENCODING).is_none(), "not asked");
        let bytes = response.bytes().await.unwrap();
        let sum = sha256_hex(&bytes);
        assert!(sum.starts_with(hash), "{url}: the URL names its bytes");
        if let Some(recorded) = sums.get(name) {
            assert_eq!(&sum, recorded, "{name} is the vendored file");
            served_vendored.push(name.to_owned());
        }
        if let Some(value) = integrity {
            let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
            assert_eq!(value, format!("sha256-{digest}"), "{url}");
        }
    }
    served_vendored.sort();
    let mut recorded: Vec<String> = sums.into_keys().filter(|n| n != "VERSIONS").collect();
    recorded.sort();
    assert_eq!(served_vendored, recorded, "every vendored file is served");
}

#[test]
fn the_vendored_files_are_the_ones_recorded_at_the_versions_clients_pins() {
    for (name, sum) in recorded_sums() {
        let bytes = std::fs::read(format!("{VENDOR_DIR}/{name}")).unwrap();
        assert_eq!(sha256_hex(&bytes), sum, "{name}");
    }
    let package: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/package.json"))
            .unwrap(),
    )
    .unwrap();
    let versions = std::fs::read_to_string(format!("{VENDOR_DIR}/VERSIONS")).unwrap();
    let mut count = 0;
    for line in versions.lines() {
        let (name, version) = line.split_once(' ').unwrap();
        assert_eq!(
            package["devDependencies"][name], version,
            "clients/package.json pins the vendored {name}: re-run clients/scripts/vendor-playground.mjs"
        );
        count += 1;
    }
    assert_eq!(count, 3, "react, react-dom, graphiql");
}

#[tokio::test]
async fn files_are_gzipped_for_clients_that_accept_it() {
    let app = TestApp::spawn().await;
    let html = page_html(&app).await;
    let url = attribute_values(&html, "src")
        .into_iter()
        .find(|u| u.ends_with("/graphiql.min.js"))
        .unwrap();
    let plain = app.get(&url).await.bytes().await.unwrap();
    for _ in 0..2 {
        let response = app
            .request(reqwest::Method::GET, &url)
            .header(header::ACCEPT_ENCODING, "br;q=1, gzip;q=0.8")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(response.headers()[header::VARY], "accept-encoding");
        let compressed = response.bytes().await.unwrap();
        assert!(compressed.len() < plain.len() / 2, "{}", compressed.len());
        let mut decoded = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(compressed.as_ref()),
            &mut decoded,
        )
        .unwrap();
        assert!(decoded == plain, "the same bytes");
    }
    let refused = app
        .request(reqwest::Method::GET, &url)
        .header(header::ACCEPT_ENCODING, "gzip;q=0")
        .send()
        .await
        .unwrap();
    assert!(refused.headers().get(header::CONTENT_ENCODING).is_none());
}

#[tokio::test]
async fn a_file_url_with_another_hash_or_name_is_not_found() {
    let app = TestApp::spawn().await;
    let html = page_html(&app).await;
    let url = attribute_values(&html, "src")
        .into_iter()
        .find(|u| u.ends_with("/graphiql.min.js"))
        .unwrap();
    let stale = "/playground/0000000000000000/graphiql.min.js".to_owned();
    let unknown = url.replace("graphiql.min.js", "graphiql.js");
    let outside = url.replace("graphiql.min.js", "..%2F..%2FCargo.toml");
    for path in [stale, unknown, outside] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn with_graphiql_off_neither_the_page_nor_its_files_are_served() {
    let on = TestApp::spawn().await;
    let html = page_html(&on).await;
    let off = TestApp::builder().env("GRAPHIQL", "false").spawn().await;
    for path in ["/", "/graphql"] {
        let response = off.get_accepting(path, HTML).await;
        assert_ne!(response.status(), 200, "{path}");
        assert!(
            response
                .headers()
                .get(header::CONTENT_SECURITY_POLICY)
                .is_none()
        );
    }
    for url in attribute_values(&html, "src") {
        assert_eq!(on.get(&url).await.status(), 200, "{url}");
        assert_eq!(off.get(&url).await.status(), 404, "{url}");
    }
}

/// The fields of `Query` an operation of `document` selects at its top.
fn top_level_fields(document: &str, operation: &str) -> Vec<String> {
    use async_graphql::parser::types::{DocumentOperations, Selection};
    let parsed = async_graphql::parser::parse_query(document).unwrap();
    let DocumentOperations::Multiple(operations) = parsed.operations else {
        panic!("named operations");
    };
    operations[&async_graphql::Name::new(operation)]
        .node
        .selection_set
        .node
        .items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => field.node.name.node.to_string(),
            _ => panic!("fields only"),
        })
        .collect()
}

/// The fields of `Query` introspection shows `actor`.
async fn visible_query_fields(actor: &crate::kit::Actor) -> Vec<String> {
    let answer = actor
        .query("{ __schema { queryType { fields { name } } } }", json!({}))
        .await;
    answer.assert_ok();
    answer.raw_data()["__schema"]["queryType"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

/// GraphiQL checks a document against the schema introspection shows the visitor (the
/// browser test sees no error mark); here each opening document runs without an error for
/// its visitor, and selects only what introspection shows them.
#[tokio::test]
async fn the_opening_documents_are_valid_for_who_sees_them() {
    let app = TestApp::spawn().await;
    let config = page_config(&page_html(&app).await);
    let anonymous_document = config["documents"]["anonymous"].as_str().unwrap();
    let signed_in_document = config["documents"]["signedIn"].as_str().unwrap();
    let run =
        |document: &str, operation: &str| json!({ "query": document, "operationName": operation });

    let anonymous = app.anonymous();
    let seen = visible_query_fields(&anonymous).await;
    for field in top_level_fields(anonymous_document, "MyPermissions") {
        assert!(seen.contains(&field), "{field} is visible anonymously");
    }
    anonymous
        .post(&run(anonymous_document, "MyPermissions"))
        .await
        .assert_ok();
    // The other one is not for them: it selects what they cannot see.
    assert!(!seen.contains(&"products".to_owned()));
    assert!(top_level_fields(signed_in_document, "Products").contains(&"products".to_owned()));
    let refused = anonymous.post(&run(signed_in_document, "Me")).await;
    assert_eq!(refused.codes(), ["UNAUTHENTICATED"], "{refused}");

    let user = app.user("reader").await;
    let admin = app.admin().await;
    for actor in [&user, &admin] {
        let seen = visible_query_fields(actor).await;
        for operation in ["Products", "Me"] {
            for field in top_level_fields(signed_in_document, operation) {
                assert!(
                    seen.contains(&field),
                    "{field} is visible to {}",
                    actor.username()
                );
            }
            actor
                .post(&run(signed_in_document, operation))
                .await
                .assert_ok();
        }
    }
    let products = user.post(&run(signed_in_document, "Products")).await;
    assert!(products.raw_data()["products"]["totalCount"].is_number());
}
