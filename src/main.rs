use clap::Parser;
use storefront::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

/// Runs before anything allocates (an ELF constructor; Rust's runtime starts after these), so
/// the allocator's options apply to its first arena too. Elsewhere mimalloc keeps its defaults.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static CONFIGURE_ALLOCATOR: extern "C" fn() = {
    extern "C" fn configure() {
        storefront::configure_allocator();
    }
    configure
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => match EnvFilter::try_new(&value) {
            Ok(filter) => filter,
            Err(err) => {
                eprintln!("error: invalid configuration: RUST_LOG {err}");
                return std::process::ExitCode::FAILURE;
            }
        },
        _ => EnvFilter::new("info,sqlx=warn,sea_orm=warn"),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("LOG_FORMAT").as_deref().map(str::trim) {
        Ok("json") => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        Ok("text" | "") | Err(_) => logs.init(),
        Ok(_) => {
            eprintln!("error: invalid configuration: LOG_FORMAT must be `text` or `json`");
            return std::process::ExitCode::FAILURE;
        }
    }
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
