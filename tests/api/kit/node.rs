//! Node.js and the npm packages of `clients/`, for the tests that run the JavaScript clients
//! (`clients.rs`, `nginx.rs`).

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::Mutex,
    time::Duration,
};

use super::process::ChildGuard;

/// How long `npm ci` and `npm test` may run.
pub const NPM_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The version `node --version` prints, or `None` when there is no `node` on PATH.
pub fn node_version() -> Option<String> {
    let output = Command::new("node").arg("--version").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The `clients/` folder.
pub fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// The text of the file at `path`, or a note saying why it cannot be read.
pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// Runs `npm ARGS` in `clients/` with its output in `log`; returns the exit status (`None`
/// when it was killed after [`NPM_TIMEOUT`]) and the output.
pub fn run_npm(args: &[&str], env: &[(&str, String)], log: &Path) -> (Option<ExitStatus>, String) {
    run_in_clients("npm", args, env, log)
}

/// Runs `program ARGS` in `clients/` (`node --test …`), as [`run_npm`] does.
pub fn run_in_clients(
    program: &'static str,
    args: &[&str],
    env: &[(&str, String)],
    log: &Path,
) -> (Option<ExitStatus>, String) {
    let out = File::create(log).expect("create the log");
    let err = out.try_clone().expect("clone the log");
    let mut child = ChildGuard::spawn(
        program,
        Command::new(program)
            .args(args)
            .current_dir(clients_dir())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err),
    );
    let status = child.wait_for(NPM_TIMEOUT);
    (status, read_log(log))
}

/// Whether `node_modules` holds what `package-lock.json` says: npm writes
/// `node_modules/.package-lock.json` when it installs, so one older than the lock file was
/// installed from an earlier lock (a checkout that added a package).
fn installed_packages_are_current() -> bool {
    let modified = |path: PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let dir = clients_dir();
    match (
        modified(dir.join("node_modules").join(".package-lock.json")),
        modified(dir.join("package-lock.json")),
    ) {
        (Some(installed), Some(locked)) => installed >= locked,
        _ => false,
    }
}

/// Two tests of this binary must not run `npm ci` in `clients/` at the same time.
static INSTALLING: Mutex<()> = Mutex::new(());

/// Runs `npm ci` in `clients/` unless `node_modules` is current, with its log in `work_dir`.
///
/// # Panics
/// When `npm ci` fails.
pub fn install_client_packages(work_dir: &Path) {
    let _one_at_a_time = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if installed_packages_are_current() {
        return;
    }
    let (status, output) = run_npm(
        &["ci", "--no-audit", "--no-fund"],
        &[],
        &work_dir.join("npm-ci.log"),
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "npm ci in clients/ failed ({status:?}):\n{output}"
    );
}
