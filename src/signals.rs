//! What the process does on each signal: SIGTERM, SIGINT and SIGQUIT drain and exit; SIGHUP
//! reloads the authorization policy; SIGUSR1, SIGUSR2 and SIGALRM are logged and ignored
//! (their default action would kill the process mid-request).

use std::sync::Arc;

use crate::state::AppState;

/// The signal handlers, installed as soon as this is built (before that, SIGHUP would end
/// the process).
pub struct Signals {
    #[cfg(unix)]
    handlers: unix::Handlers,
}

impl Signals {
    /// Installs the handlers.
    ///
    /// # Errors
    /// When the operating system refuses a handler.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            handlers: unix::Handlers::install()?,
        })
    }

    /// Resolves at the first SIGTERM, SIGINT or SIGQUIT; reloads the policy at each SIGHUP.
    pub async fn until_shutdown(self, state: Arc<AppState>) {
        #[cfg(unix)]
        self.handlers.until_shutdown(&state).await;
        #[cfg(not(unix))]
        {
            let _ = state;
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!(signal = "ctrl-c", "shutting down");
        }
    }
}

/// Reloads the policy; a policy that is refused leaves the one in force.
pub async fn reload_policy(state: &AppState) {
    let before = state.authz.version();
    match state.authz.reload().await {
        Ok(policy) => tracing::info!(
            source = %policy.source(),
            version = policy.version(),
            previous_version = before,
            "SIGHUP: authorization policy reloaded (other settings need a restart)"
        ),
        Err(err) => tracing::error!(
            error = %err,
            version = before,
            "SIGHUP: the new authorization policy was refused; the previous one stays in force"
        ),
    }
}

#[cfg(unix)]
mod unix {
    use tokio::signal::unix::{Signal, SignalKind, signal};

    use crate::state::AppState;

    pub struct Handlers {
        hangup: Signal,
        terminate: Signal,
        interrupt: Signal,
        quit: Signal,
        user1: Signal,
        user2: Signal,
        alarm: Signal,
    }

    impl Handlers {
        pub fn install() -> std::io::Result<Self> {
            Ok(Self {
                hangup: signal(SignalKind::hangup())?,
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
                quit: signal(SignalKind::quit())?,
                user1: signal(SignalKind::user_defined1())?,
                user2: signal(SignalKind::user_defined2())?,
                alarm: signal(SignalKind::alarm())?,
            })
        }

        pub async fn until_shutdown(mut self, state: &AppState) {
            loop {
                let ignored = tokio::select! {
                    _ = self.terminate.recv() => return stopping("SIGTERM"),
                    _ = self.interrupt.recv() => return stopping("SIGINT"),
                    _ = self.quit.recv() => return stopping("SIGQUIT"),
                    _ = self.hangup.recv() => {
                        super::reload_policy(state).await;
                        continue;
                    }
                    _ = self.user1.recv() => "SIGUSR1",
                    _ = self.user2.recv() => "SIGUSR2",
                    _ = self.alarm.recv() => "SIGALRM",
                };
                tracing::warn!(signal = ignored, "signal ignored");
            }
        }
    }

    fn stopping(signal: &'static str) {
        tracing::info!(signal, "shutting down");
    }
}
