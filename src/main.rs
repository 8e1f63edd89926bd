use clap::Parser;
use storefront::{
    cli::{self, Cli},
    config::{self, LogFormat, Logging},
};
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
    let logging = match config::from_env::<Logging>() {
        Ok(logging) => logging,
        Err(err) => {
            eprintln!("error: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(&logging.rust_log))
        .with_writer(std::io::stderr);
    match logging.log_format {
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => logs.init(),
    }
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
