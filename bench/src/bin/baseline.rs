//! The ceiling of Storefront's HTTP stack: a bare axum handler at `POST /graphql` that answers
//! every request with the same 20 products as the `products(first: 20)` query, serialized from
//! memory. No GraphQL, no database, no authentication: what is left is axum, hyper, tokio and
//! serde_json, built exactly as the real server builds them.
//!
//! Usage: `baseline [ADDR]`, or `BASELINE_ADDR=127.0.0.1:8001 baseline` (default 127.0.0.1:8001).

use std::{net::SocketAddr, sync::Arc};

use axum::{Router, body::Bytes, extract::State, http::header, response::IntoResponse};
use serde::Serialize;

#[derive(Serialize)]
struct Response<'a> {
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    products: Connection<'a>,
}

#[derive(Serialize)]
struct Connection<'a> {
    edges: Vec<Edge<'a>>,
}

#[derive(Serialize)]
struct Edge<'a> {
    node: &'a Product,
}

#[derive(Serialize)]
struct Product {
    id: String,
    name: String,
    price: String,
    stock: i32,
}

/// The 20 products of the first page, shaped as the benchmark's products query returns them.
fn catalog() -> Vec<Product> {
    (1..=20u32)
        .map(|i| Product {
            id: format!("01900000-0000-7000-8000-{i:012x}"),
            name: format!("Bench product {i:07}"),
            price: format!("{}.{:02}", 1 + i % 500, i % 100),
            stock: (i % 1000) as i32,
        })
        .collect()
}

/// Reads the request body (as the GraphQL extractor would) and serializes the page anew.
async fn products(State(catalog): State<Arc<Vec<Product>>>, body: Bytes) -> impl IntoResponse {
    let response = Response {
        data: Data {
            products: Connection {
                edges: catalog.iter().map(|node| Edge { node }).collect(),
            },
        },
    };
    let json = serde_json::to_vec(&response).unwrap_or_default();
    drop(body);
    ([(header::CONTENT_TYPE, "application/json")], json)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("BASELINE_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:8001".to_owned());
    let addr: SocketAddr = match addr.parse() {
        Ok(addr) => addr,
        Err(_) => {
            eprintln!("baseline: `{addr}` is not an address like 127.0.0.1:8001");
            return std::process::ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("baseline: cannot listen on {addr}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let router = Router::new()
        .route("/graphql", axum::routing::post(products))
        .with_state(Arc::new(catalog()));
    eprintln!("baseline listening on {addr}; POST /graphql");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baseline: server failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
