//! `HEAD` and `OPTIONS` (and every other method) on every route behave as docs/api.md
//! says.

use reqwest::Method;

use crate::kit::*;

/// Every route the API's address serves in development, with the methods it answers.
const ROUTES: [(&str, &str); 6] = [
    ("/", "GET,HEAD"),
    ("/docs/money.md", "GET,HEAD"),
    ("/graphql", "GET,HEAD,POST"),
    ("/healthz", "GET,HEAD"),
    ("/readyz", "GET,HEAD"),
    ("/metrics", "GET,HEAD"),
];

fn allowed(response: &reqwest::Response) -> String {
    let mut methods: Vec<String> = response
        .headers()
        .get_all("allow")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|m| m.trim().to_owned())
        .collect();
    methods.sort();
    methods.join(",")
}

#[tokio::test]
async fn head_answers_as_get_without_a_body_on_every_route() {
    let app = TestApp::spawn().await;
    for (path, _) in ROUTES {
        // `/graphql` with a query, as a GET that runs one; without, as a GET that is refused.
        for path in [path.to_owned(), format!("{path}?query=%7B__typename%7D")] {
            let get = app.get(&path).await;
            let head = app.request(Method::HEAD, &path).send().await.unwrap();
            assert_eq!(head.status(), get.status(), "HEAD {path}");
            assert_eq!(
                head.headers().get("content-type"),
                get.headers().get("content-type"),
                "HEAD {path}"
            );
            assert!(head.text().await.unwrap().is_empty(), "HEAD {path}");
        }
    }
}

#[tokio::test]
async fn other_methods_get_405_with_allow_and_an_empty_body_on_every_route() {
    let app = TestApp::spawn().await;
    for (path, allow) in ROUTES {
        for method in ["PUT", "DELETE", "PATCH", "TRACE", "PROPFIND"] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            let response = app.request(method.clone(), path).send().await.unwrap();
            assert_eq!(response.status(), 405, "{method} {path}");
            assert_eq!(allowed(&response), allow, "{method} {path}");
            assert!(
                response.bytes().await.unwrap().is_empty(),
                "{method} {path}"
            );
        }
    }
    // A route that does not exist is 404 whatever the method (but OPTIONS, below).
    for method in [Method::GET, Method::HEAD, Method::POST, Method::PUT] {
        let response = app
            .request(method.clone(), "/nowhere")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method}");
    }
}

/// Every `OPTIONS` request is answered as a CORS preflight: 200, an empty body, and
/// `Access-Control-Allow-*` headers only for a listed origin; nothing else runs.
#[tokio::test]
async fn options_is_answered_as_a_preflight_on_every_path_granting_only_listed_origins() {
    for (origins, origin, granted) in [
        (None, Some("https://shop.example"), false),
        (None, None, false),
        (
            Some("https://shop.example"),
            Some("https://shop.example"),
            true,
        ),
        (
            Some("https://shop.example"),
            Some("https://evil.example"),
            false,
        ),
        (Some("https://shop.example"), None, false),
    ] {
        let mut builder = TestApp::builder();
        if let Some(origin) = origins {
            builder = builder.cors_origins(&[origin]);
        }
        let app = builder.spawn().await;
        for path in ROUTES.iter().map(|(path, _)| *path).chain(["/nowhere"]) {
            let mut request = app.request(Method::OPTIONS, path);
            if let Some(origin) = origin {
                request = request
                    .header("Origin", origin)
                    .header("Access-Control-Request-Method", "POST");
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200, "preflight {path} {origins:?}");
            assert_eq!(
                response
                    .headers()
                    .get("access-control-allow-origin")
                    .is_some(),
                granted,
                "preflight {path} {origins:?} from {origin:?}"
            );
            assert!(response.bytes().await.unwrap().is_empty());
        }
    }
}
