//! The real `storefront` binary, for what only a process shows (signals, logs, the working
//! directory, the commands besides `serve`).

use std::{
    io::Write,
    path::Path,
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use super::{
    actor::{Actor, Server},
    app::JWT_SECRET,
    config::policy_dir,
    db::TestDb,
};

/// A local port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free local port")
        .port()
}

/// The `storefront` binary with only the variables the test chooses (no `.env`, no outer
/// configuration leaking in).
pub fn bare_storefront(work_dir: &Path, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_storefront"));
    command.env_clear().current_dir(work_dir);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// Runs a one-shot `storefront` command and panics with its output if it fails.
pub fn run_storefront(work_dir: &Path, env: &[(&str, String)], args: &[&str]) {
    let output = bare_storefront(work_dir, env)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run storefront {args:?}: {e}"));
    assert!(
        output.status.success(),
        "storefront {args:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// `storefront ARGS`, to configure and then run to its end ([`Storefront::run`]).
pub fn storefront(args: &[&str]) -> Storefront {
    let mut command = Command::new(env!("CARGO_BIN_EXE_storefront"));
    command.args(args);
    Storefront {
        command,
        args: args.join(" "),
        stdin: None,
    }
}

/// A `storefront` command to run to its end (`serve` only to see it refuse to start; a server
/// to talk to is a [`ServerProcess`]).
pub struct Storefront {
    command: Command,
    args: String,
    stdin: Option<String>,
}

impl Storefront {
    /// Sets the variable `name`.
    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.env(name, value);
        self
    }

    /// Runs without the variable `name`, whatever the tests' environment holds.
    pub fn env_remove(mut self, name: &str) -> Self {
        self.command.env_remove(name);
        self
    }

    /// `DATABASE_URL`: the test database `db`.
    pub fn on(self, db: &TestDb) -> Self {
        self.env("DATABASE_URL", &db.url)
    }

    /// Runs in `dir`.
    pub fn in_dir(mut self, dir: &Path) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Writes `text` to its standard input (otherwise it reads an empty one).
    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.to_owned());
        self
    }

    /// Runs it to its end and returns what it printed.
    pub fn run(mut self) -> Output {
        let mut child = self
            .command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("storefront runs");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = &self.stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Runs it, asserting that it succeeds.
    pub fn succeeds(self) -> Output {
        let args = self.args.clone();
        let out = self.run();
        assert!(
            out.status.success(),
            "storefront {args} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs it, asserting that it fails, and returns its standard error.
    pub fn fails(self) -> String {
        let args = self.args.clone();
        let out = self.run();
        assert!(!out.status.success(), "storefront {args} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

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
        let port = free_port();
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

/// A child process (and, on Unix, every process it started) killed when this is dropped, so a
/// failing assertion or a panic never leaves a server or a browser behind.
pub struct ChildGuard {
    child: Child,
    name: &'static str,
}

impl ChildGuard {
    pub fn spawn(name: &'static str, command: &mut Command) -> Self {
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(command, 0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self { child, name }
    }

    /// The process itself (to take its piped standard streams).
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status once the process has ended, or `None` while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", self.name))
    }

    /// Waits for the process to end; kills it and returns `None` after `timeout`.
    pub fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills it (and its process group) with SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        #[cfg(unix)]
        {
            // The process group holds the children too (node's test workers, Chromium).
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
    }
}
