//! The jitgate control service: access requests, approval policies, grant
//! issuance, revocation and a tamper-evident audit log, behind a JSON API.
//!
//! - [`config`]: the TOML configuration, validated at start;
//! - [`states`]: the states of requests, votes, grants and deliveries,
//!   and their database spelling;
//! - [`store`]: the database (SQLite or PostgreSQL), its migrations, and
//!   per table its rows and SQL;
//! - [`auth`]: who is calling (bearer JWTs from trusted OpenID issuers);
//! - [`identity`]: canonical user ids and emails, to tell people apart;
//! - [`policy`]: every rule of the workflow (pure functions);
//! - [`requests`]: access requests as the API carries them;
//! - [`workflow`]: the state changes, one transaction each;
//! - [`grants`]: minting and what proxies sync;
//! - [`audit`]: the hash-chained log, its Merkle tree, signed checkpoints,
//!   witnesses, proofs and offline exports;
//! - [`notify`]: the outbox and its sender (webhooks, Slack);
//! - [`signature`]: webhook and Slack request signatures;
//! - [`text`]: human text fields: what may be stored, how it is shown;
//! - [`api`]: HTTP handlers, thin, over the modules above;
//! - [`web`]: the web console (pages, sessions, CSRF) under `/`;
//! - [`cli`]: the `jitgate` command's subcommands.

pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod grants;
pub mod identity;
pub mod insight;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod preview;
pub mod requests;
pub mod signature;
pub mod states;
pub mod store;
pub mod text;
pub mod web;
pub mod workflow;

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::Db;

/// Everything a request handler needs, shared through axum `State`.
pub struct App {
    /// Configuration.
    pub cfg: Config,
    /// Database.
    pub db: Db,
    /// Caller authentication.
    pub auth: Authenticator,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Counters.
    pub metrics: Metrics,
    /// Failed authentications not yet written to the audit log.
    pub auth_failures: api::auth_failures::AuthFailures,
    /// What the audit checkpoint publisher last did.
    pub checkpoints: audit::publish::Publisher,
}

impl App {
    /// Connects to (and migrates) the database and prepares the keys.
    pub async fn new(cfg: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<App>> {
        let db = Db::connect(&cfg.database_url).await?;
        let added = audit::tree::catch_up(&db).await?;
        if added > 0 {
            tracing::info!(records = added, "built the audit Merkle tree over older records");
        }
        let auth = Authenticator::new(&cfg.auth)?;
        auth.warm_up().await;
        Ok(Arc::new(App {
            cfg,
            db,
            auth,
            clock,
            metrics: Metrics::default(),
            auth_failures: Default::default(),
            checkpoints: audit::publish::Publisher::default(),
        }))
    }
}

/// Serves the API on `listener` until the process is asked to stop, with
/// the background sweeper (timeouts, expiry records), the WAL checkpointer
/// (SQLite) and the notification sender running beside it.
pub async fn serve(app: Arc<App>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let sweeper = tokio::spawn(sweep(Arc::clone(&app)));
    let checkpointer = {
        let db = app.db.clone();
        tokio::spawn(async move { db.checkpoint_in_background().await })
    };
    let sender = tokio::spawn(notify::run(Arc::clone(&app)));
    let publisher = tokio::spawn(audit::publish::run(Arc::clone(&app)));
    // The peer address keys the aggregation of authentication failures.
    let service =
        api::router(Arc::clone(&app), web::router()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let result = axum::serve(listener, service).with_graceful_shutdown(shutdown()).await;
    sweeper.abort();
    checkpointer.abort();
    sender.abort();
    publisher.abort();
    if let Err(e) = api::auth_failures::flush(&app, true).await {
        tracing::warn!(error = %e, "could not record the last authentication failures");
    }
    result
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Records what time alone changes: timed-out requests, expired grants.
/// Safe on several replicas (each record is claimed with a conditional
/// update).
async fn sweep(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        if let Err(e) = workflow::sweep_timeouts(&app).await {
            tracing::warn!(error = %e, "timeout sweep failed");
        }
        if let Err(e) = workflow::sweep_expiries(&app).await {
            tracing::warn!(error = %e, "expiry sweep failed");
        }
        if let Err(e) = workflow::sweep_expiring_soon(&app).await {
            tracing::warn!(error = %e, "expiring-soon sweep failed");
        }
        if let Err(e) = web::reminders::sweep(&app).await {
            tracing::warn!(error = %e, "reminder sweep failed");
        }
        if let Err(e) = web::session::sweep(&app).await {
            tracing::warn!(error = %e, "session sweep failed");
        }
        if let Err(e) = api::auth_failures::flush(&app, false).await {
            tracing::warn!(error = %e, "recording authentication failures failed");
        }
        let forget_before = app.clock.now_ms() - store::reports::RETENTION_MS;
        if let Err(e) = store::reports::prune(&app.db.pool, forget_before).await {
            tracing::warn!(error = %e, "pruning report cursors failed");
        }
    }
}
