//! The `storefront` command line.

use std::{
    io::{BufRead, IsTerminal, Write},
    sync::Arc,
};

use clap::{Parser, Subcommand};
use sea_orm::ConnectionTrait;

use crate::{
    accounts::Accounts,
    app::App,
    auth::PasswordHasher,
    authz::{Authorizer, PolicyError, SharedAuthorizer},
    catalog::products,
    config::{self, AdminPassword, Config, Database, Policy, PolicyStore},
    db,
    error::AppError,
    graphql,
};

/// Storefront: a GraphQL API for accounts and products, authorized by a Casbin policy.
///
/// Configuration comes from environment variables and `.env` (DATABASE_URL, JWT_SECRET,
/// LISTEN_ADDR, APP_ENV, POLICY_DIR, …); docs/configuration.md lists every variable.
#[derive(Parser, Debug)]
#[command(name = "storefront", version, about,
    after_help = "`storefront --help` and `storefront config` list every environment variable.",
    after_long_help = config::text())]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the API on LISTEN_ADDR (the default command).
    Serve,
    /// Apply pending database migrations.
    Migrate,
    /// Print the GraphQL schema (SDL), as `schema.graphql` holds it.
    PrintSchema,
    /// Store the three demo products (idempotent).
    Seed,
    /// Create an admin account, or promote an existing account to admin (or to `--role`).
    ///
    /// The password comes from ADMIN_PASSWORD or, if unset, from the first line of stdin.
    CreateAdmin {
        /// The admin's username.
        #[arg(long)]
        username: String,
        /// The role to give: one the policy (POLICY_DIR) defines.
        #[arg(long, default_value = "admin")]
        role: String,
    },
    /// Inspect the authorization policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Copy the live SQLite database (DATABASE_URL) to FILE, consistently, while the server
    /// runs. Refuses to overwrite FILE. For PostgreSQL, use pg_dump (see docs/operations.md).
    Backup {
        /// Where to write the copy; must not exist yet.
        file: std::path::PathBuf,
    },
    /// Print every configuration variable: its default, the values it accepts and what it
    /// does.
    Config {
        /// Print the table the docs hold (Markdown) instead of text.
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Print the role × permission table the policy grants.
    Show {
        /// The policy folder (default: POLICY_DIR, or ./policies, or the built-in copy).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Check a policy folder; exits non-zero, saying why, when it is broken.
    Check {
        /// The policy folder (default: POLICY_DIR or ./policies).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

/// Runs a command; the process exit code follows the result.
///
/// # Errors
/// A message for the operator, already naming what failed.
pub async fn run(cli: Cli) -> Result<(), String> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Migrate => {
            connect().await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::PrintSchema => {
            print!("{}", graphql::sdl());
            Ok(())
        }
        Command::Seed => {
            let db = connect().await?;
            let added = products::seed_demo(&db)
                .await
                .map_err(|e| format!("seed failed: {e:?}"))?;
            eprintln!("demo products: {added} added");
            Ok(())
        }
        Command::CreateAdmin { username, role } => create_admin(&username, &role).await,
        Command::Policy(command) => policy(command).await,
        Command::Backup { file } => backup(&file).await,
        Command::Config { markdown } => {
            print!(
                "{}",
                if markdown {
                    config::markdown()
                } else {
                    config::text()
                }
            );
            Ok(())
        }
    }
}

/// Writes a consistent copy of the SQLite database to `file` with `VACUUM INTO`, which reads
/// one snapshot of the database (writers carry on meanwhile).
async fn backup(file: &std::path::Path) -> Result<(), String> {
    let url = config::from_env::<Database>()
        .map_err(|e| e.to_string())?
        .url;
    if !url.as_str().starts_with("sqlite:") {
        return Err(format!(
            "backup copies SQLite databases only; for PostgreSQL use pg_dump:\n  \
             pg_dump --format=custom --file=storefront.dump \"$DATABASE_URL\"\n\
             and restore with:\n  \
             pg_restore --clean --if-exists --no-owner --dbname=\"$DATABASE_URL\" storefront.dump\n\
             (database {url})"
        ));
    }
    let source = sqlite_path(url.as_str());
    if !source.exists() {
        return Err(format!("no SQLite database at {}", source.display()));
    }
    if file.exists() {
        return Err(format!(
            "{} already exists; backup never overwrites a file",
            file.display()
        ));
    }
    let target = file
        .to_str()
        .ok_or_else(|| format!("{} is not a UTF-8 path", file.display()))?;
    let db = db::connect(url.as_str())
        .await
        .map_err(|e| format!("database {url}: {e}"))?;
    // On the writer: the readers' `query_only` refuses `VACUUM INTO`, although it takes no
    // write lock on the database it copies.
    db.writer()
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Sqlite,
            "VACUUM INTO ?",
            [target.into()],
        ))
        .await
        .map_err(|e| format!("backup to {} failed: {e}", file.display()))?;
    db.close().await.ok();
    eprintln!("backed up {} to {}", source.display(), file.display());
    Ok(())
}

/// The file a `sqlite:` URL names.
fn sqlite_path(url: &str) -> std::path::PathBuf {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    std::path::PathBuf::from(rest.split('?').next().unwrap_or(rest))
}

async fn policy(command: PolicyCommand) -> Result<(), String> {
    let (dir, check) = match command {
        PolicyCommand::Show { dir } => (dir, false),
        PolicyCommand::Check { dir } => (dir, true),
    };
    let stored = dir.is_none()
        && config::from_env::<Policy>()
            .map_err(|e| e.to_string())?
            .source
            == PolicyStore::Database;
    let (dir, is_default) = match dir {
        Some(dir) => (dir, false),
        None => {
            let policy = config::from_env::<Policy>().map_err(|e| e.to_string())?;
            // `check` never falls back to the built-in copy of the files.
            (policy.dir, policy.is_default && (stored || !check))
        }
    };
    // Loading validates: the same checks as at start and on SIGHUP.
    let (authz, name) = if stored {
        let db = connect().await?;
        let model = Authorizer::load(&dir, is_default)
            .await
            .map_err(|e| format!("policy {}: {e}", dir.display()))?
            .model()
            .to_owned();
        let authz = Authorizer::from_store(&model, db.reader())
            .await
            .map_err(|e| match e {
                rejected @ PolicyError::Rejected(_) => {
                    format!("the stored policy: {rejected}")
                }
                other => format!(
                    "the stored policy: {other} (none is stored before the first `serve` with \
                     POLICY_SOURCE=database)"
                ),
            })?;
        (authz, "the stored policy".to_owned())
    } else {
        let authz = Authorizer::load(&dir, is_default)
            .await
            .map_err(|e| format!("policy {}: {e}", dir.display()))?;
        (authz, format!("policy {}", dir.display()))
    };
    if check {
        println!("{name} is valid (version {})", authz.version());
    } else {
        println!("policy: {} (version {})\n", authz.source(), authz.version());
        print!("{}", authz.table());
    }
    Ok(())
}

async fn serve() -> Result<(), String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    if config.auth.jwt_secret.generated {
        tracing::warn!(
            "JWT_SECRET is not set: using a random secret for this process only; \
             tokens will not survive a restart (set JWT_SECRET, at least 32 bytes)"
        );
    }
    let app = App::build(&config).await.map_err(|e| e.to_string())?;
    if config.database.is_default {
        let added = products::seed_demo_once(&app.state().db)
            .await
            .map_err(|e| format!("seed failed: {e:?}"))?;
        if added > 0 {
            tracing::info!(added, "new embedded database: demo products seeded");
        }
    }
    crate::auth::password::release_freed_memory();
    app.run().await.map_err(|e| format!("server failed: {e}"))
}

async fn connect() -> Result<db::Db, String> {
    let url = config::from_env::<Database>()
        .map_err(|e| e.to_string())?
        .url;
    db::connect_and_migrate(url.as_str())
        .await
        .map_err(|e| format!("database {url}: {e}"))
}

async fn create_admin(username: &str, role: &str) -> Result<(), String> {
    let policy = config::from_env::<Policy>().map_err(|e| e.to_string())?;
    let db = connect().await?;
    // The roles of the policy `serve` would use: the stored one under POLICY_SOURCE=database.
    let authz = match policy.source {
        PolicyStore::Files => SharedAuthorizer::load(&policy.dir, policy.is_default, None).await,
        PolicyStore::Database => {
            SharedAuthorizer::load_stored(&policy.dir, policy.is_default, db.clone()).await
        }
    }
    .map_err(|e| format!("policy {}: {e}", policy.dir.display()))?;
    let message = |err: AppError| match err {
        AppError::BadUserInput { message, .. } => message,
        AppError::Conflict { message, .. } => message.to_owned(),
        other => format!("create-admin failed: {other:?}"),
    };
    let hasher = PasswordHasher::new(1)
        .await
        .map_err(|e| format!("password hashing failed: {e:?}"))?;
    // The CLI has no replica to tell: the revocation rows reach the running servers.
    let accounts = Accounts::new(
        db,
        hasher,
        Default::default(),
        Arc::new(authz),
        policy.default_role,
    );
    if let Some(account) = accounts.promote(username, role).await.map_err(message)? {
        eprintln!(
            "gave existing account {} ({}) the role {role}; its password is unchanged",
            account.username, account.id
        );
        return Ok(());
    }
    let password = match config::from_env::<AdminPassword>()
        .map_err(|e| e.to_string())?
        .admin_password
    {
        Some(password) => password.expose().clone(),
        None => read_password_line()?,
    };
    let (account, _) = accounts
        .create_or_promote(username, password, role)
        .await
        .map_err(message)?;
    eprintln!(
        "created account {} ({}) with the role {role}",
        account.username, account.id
    );
    Ok(())
}

/// One line of stdin without its line ending; nothing else is changed.
fn read_password_line() -> Result<String, String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password for the admin account: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line)
        .to_owned();
    if password.is_empty() {
        return Err("no password: set ADMIN_PASSWORD or write it on stdin".to_owned());
    }
    Ok(password)
}
