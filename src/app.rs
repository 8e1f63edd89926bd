//! Start-up: one `App::build` for the binary and the tests alike.

use std::{net::SocketAddr, sync::Arc};

use tokio::net::TcpListener;

use crate::{
    accounts::Accounts,
    audit::Audit,
    auth::{IpRateLimiter, PasswordHasher, Revocations, TokenService},
    authz::SharedAuthorizer,
    catalog::Catalog,
    config::{AppEnv, Config, PolicyStore},
    db,
    graphql::{self, AppSchema},
    http,
    metrics::Metrics,
    persisted::PersistedDocuments,
    replicas,
    server::{ConnectionLimits, Server, Stop},
    sessions::{RefreshPolicy, Sessions},
    signals::Signals,
    state::AppState,
    subscriptions::{Hub, SubscriptionLimits},
};

/// A built server: connected, migrated, policy loaded, schema built and port bound.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    /// `/metrics` on its own address, when `METRICS_ADDR` is set.
    metrics: Option<(TcpListener, axum::Router)>,
    shutdown_timeout: std::time::Duration,
    connections: ConnectionLimits,
    state: Arc<AppState>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("policy: {0}")]
    Policy(#[from] crate::authz::PolicyError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    TrustedDocuments(#[from] crate::persisted::ManifestError),
    #[error("{0:?}")]
    Internal(crate::error::AppError),
}

impl App {
    /// Connects to the database and applies pending migrations, loads the policy, builds the
    /// schema and binds `config.server.listen_addr` (port 0 picks a free port).
    ///
    /// # Errors
    /// A [`StartError`] saying which step failed.
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        // Read first: a bad manifest stops start-up before anything else is done.
        let persisted = PersistedDocuments::from_config(&config.persisted)?;
        if let Some(manifest) = persisted.manifest() {
            tracing::info!(
                operations = manifest.len(),
                format = %manifest.format,
                "trusted documents: only the manifest's operations run"
            );
        }
        let db = db::connect_and_migrate(config.database.url.as_str()).await?;
        tracing::info!(database = %config.database.url, "database ready");
        let (dir, dir_is_default) = (&config.policy.dir, config.policy.is_default);
        let authz = Arc::new(match config.policy.source {
            PolicyStore::Files => {
                SharedAuthorizer::load(dir, dir_is_default, Some(db.clone())).await?
            }
            PolicyStore::Database => {
                SharedAuthorizer::load_stored(dir, dir_is_default, db.clone()).await?
            }
        });
        authz.check_default_role(&config.policy.default_role)?;
        authz
            .check_someone_manages()
            .await
            .map_err(StartError::Internal)?;
        let wakes = replicas::Wakes::default();
        authz.spawn_watcher(config.policy.poll, wakes.policy.clone());
        tracing::info!(
            source = %authz.source(),
            version = authz.version(),
            "authorization policy loaded"
        );
        let passwords = PasswordHasher::for_this_machine(config.auth.password_hash_queue)
            .await
            .map_err(StartError::Internal)?;
        let revocations = Revocations::load(&db).await?;
        revocations.spawn_poller(
            db.reader().clone(),
            config.auth.revocation_poll,
            wakes.revocations.clone(),
        );
        let caches = &config.caches;
        let ws = &config.subscriptions;
        let limits = SubscriptionLimits {
            per_connection: ws.max_per_connection,
            per_account: ws.max_per_account,
            queued_events: ws.max_queued_events,
        };
        let events = Hub::new(limits, revocations.clone(), authz.clone(), db.reader());
        let catalog = Catalog::load(
            db.clone(),
            caches.catalog_bytes,
            caches.catalog_poll,
            wakes.catalog.clone(),
            events.clone(),
        )
        .await?;
        let listen_url = config.database.listen_url.as_ref();
        let listen_url = listen_url.unwrap_or(&config.database.url).as_str();
        replicas::listen(&db, listen_url, &catalog, events.clone(), wakes).await?;
        crate::pruning::start_pruner(db.clone(), config.audit.retention).await;
        db::checkpoint::spawn_wal_checkpointer(db.clone());
        let tokens = Arc::new(TokenService::new(config));
        let metrics = Arc::new(Metrics::default());
        let accounts = Accounts::new(
            db.clone(),
            passwords.clone(),
            revocations.clone(),
            authz.clone(),
            config.policy.default_role.clone(),
        );
        let sessions = Sessions::new(
            accounts.clone(),
            tokens.clone(),
            RefreshPolicy::from_config(&config.auth),
            IpRateLimiter::new(config.auth.rate_limit_per_minute),
            metrics.clone(),
        );
        let audit = Audit::new(db.clone(), config.audit.retention);
        let state = Arc::new(AppState {
            health: db::DbHealth::new(db.clone(), config.database.url.as_str()),
            db,
            tokens,
            revocations,
            passwords,
            authz,
            accounts,
            sessions,
            catalog,
            audit,
            metrics,
            persisted,
            events,
        });
        let schema: AppSchema = graphql::build_schema(state.clone(), config);
        let settings = http::HttpSettings {
            limits: config.limits.clone(),
            ws_init_timeout: config.subscriptions.init_timeout,
            ws_ping_interval: config.subscriptions.ping_interval,
            ws_idle_timeout: config.subscriptions.idle_socket_timeout,
            ws_max_per_address: config.subscriptions.max_connections_per_address,
            graphiql: config.discovery.graphiql,
            trust_proxy_headers: config.server.trust_proxy_headers,
            cors_allowed_origins: config.server.cors_allowed_origins.clone(),
            cors_allowed_headers: config.server.cors_allowed_headers.clone(),
            metrics_on_main_router: config.metrics.addr.is_none()
                && (config.app_env != AppEnv::Production || config.metrics.token.is_some()),
            metrics_token: config.metrics.token.clone(),
        };
        let router = http::router(schema, state.clone(), settings);
        let listener = TcpListener::bind(config.server.listen_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.server.listen_addr,
                source,
            })?;
        let metrics = match config.metrics.addr {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?;
                Some((
                    listener,
                    http::metrics_router(state.clone(), config.metrics.token.clone()),
                ))
            }
            None => None,
        };
        Ok(Self {
            listener,
            router,
            metrics,
            shutdown_timeout: config.server.shutdown_timeout,
            connections: config.server.connections(),
            state,
        })
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The shared state, for callers that need the database (the CLI, tests).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until SIGTERM, SIGINT or SIGQUIT, then finishes in-flight requests; SIGHUP reloads
    /// the policy.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run(self) -> std::io::Result<()> {
        let signals = Signals::install()?;
        tracing::info!(addr = %self.local_addr(), "storefront listening; GraphQL at /graphql");
        let state = self.state.clone();
        self.run_until(signals.until_shutdown(state)).await
    }

    /// Serves until `shutdown` resolves (for tests), then stops accepting and lets the
    /// requests in flight finish, for up to `SHUTDOWN_TIMEOUT_SECS`.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stop = Stop::new();
        let server = Server::new(self.listener, self.router, self.connections);
        tracing::info!(
            max_connections = server.max_connections(),
            header_read_timeout_secs = self.connections.header_read_timeout.as_secs(),
            body_read_timeout_secs = self.connections.body_read_timeout.as_secs(),
            idle_timeout_secs = self.connections.idle_timeout.as_secs(),
            "connection limits"
        );
        let metrics = self.metrics.map(|(listener, router)| {
            let server = Server::new(listener, router, self.connections);
            tokio::spawn(server.serve(stop.clone()))
        });
        let api = tokio::spawn(server.serve(stop.clone()));
        shutdown.await;
        // Stop accepting, let in-flight requests finish, but not for longer than the deadline.
        stop.stop();
        let drained = async {
            let api = api.await.map_err(std::io::Error::other)?;
            let metrics = match metrics {
                Some(metrics) => Some(metrics.await.map_err(std::io::Error::other)?),
                None => None,
            };
            api.await;
            if let Some(metrics) = metrics {
                metrics.await;
            }
            Ok::<(), std::io::Error>(())
        };
        match tokio::time::timeout(self.shutdown_timeout, drained).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    timeout_secs = self.shutdown_timeout.as_secs(),
                    "shutdown deadline passed; abandoning requests still in flight"
                );
                Ok(())
            }
        }
    }
}
