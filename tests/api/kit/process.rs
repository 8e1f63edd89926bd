//! The real `storefront` binary, for what only a process shows (signals, logs, the working
//! directory).

use std::process::{Command, Stdio};

use serde_json::Value;

use super::{
    actor::{Actor, Server},
    app::JWT_SECRET,
    config::policy_dir,
};

/// A `storefront serve` process on a free port, for what only the real binary shows (signals,
/// logs, the working directory).
pub struct ServerProcess {
    pub child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl ServerProcess {
    /// Starts `storefront serve` in `cwd` with the test secret and policy, no `DATABASE_URL`
    /// unless `env` gives one, and `env` on top.
    pub fn start(cwd: &std::path::Path, env: &[(&str, String)], stderr: Stdio) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_storefront"));
        command
            .arg("serve")
            .current_dir(cwd)
            .env_remove("DATABASE_URL")
            .env("JWT_SECRET", JWT_SECRET)
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("POLICY_DIR", policy_dir())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in env {
            command.env(k, v);
        }
        Self {
            child: command.spawn().unwrap(),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits until `/healthz` answers.
    pub async fn wait_until_up(&self) {
        for _ in 0..200 {
            if reqwest::get(format!("{}/healthz", self.url)).await.is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("server did not start");
    }

    /// Posts a query, retrying while the server starts.
    pub async fn gql(&self, body: Value, token: Option<&str>) -> Value {
        let client = reqwest::Client::new();
        for _ in 0..150 {
            let mut request = client.post(format!("{}/graphql", self.url)).json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if let Ok(response) = request.send().await {
                return response.json().await.unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("server did not answer");
    }

    /// A caller with no token.
    pub fn anonymous(&self) -> Actor {
        Actor::anonymous(reqwest::Client::new(), self.graphql_url())
    }

    pub fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Server for ServerProcess {
    fn graphql_url(&self) -> String {
        format!("{}/graphql", self.url)
    }
}
