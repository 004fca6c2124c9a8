//! The jitgate control service: access requests, approval policies, grant
//! issuance, revocation and a tamper-evident audit log, behind a JSON API.
//!
//! - [`config`]: the TOML configuration, validated at start;
//! - [`store`]: the database (SQLite or PostgreSQL) and its migrations;
//! - [`auth`]: who is calling (bearer JWTs);
//! - [`policy`]: who may do what (pure);
//! - [`requests`]: the access-request workflow;
//! - [`grants`]: minting, revocation and what proxies sync;
//! - [`audit`]: the hash-chained log;
//! - [`audit_export`]: range exports with proofs, verified offline;
//! - [`audit_publish`]: signs checkpoints and publishes them to witnesses;
//! - [`audit_tree`]: the log's Merkle tree as stored, its roots and proofs;
//! - [`audit_witness`]: verifies the log against a witness's signed checkpoints;
//! - [`checkpoint`]: signed checkpoints (C2SP signed notes, Ed25519);
//! - [`merkle`]: RFC 9162 tree hashing and proofs over the log (pure);
//! - [`notify`]: the outbox and its sender (webhooks, Slack);
//! - [`signature`]: webhook and Slack request signatures;
//! - [`api`]: HTTP handlers, thin, over the modules above;
//! - [`cli`]: the `jitgate` command's subcommands.

pub mod api;
pub mod audit;
pub mod audit_export;
pub mod audit_publish;
pub mod audit_tree;
pub mod audit_witness;
pub mod auth;
pub mod checkpoint;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod grants;
pub mod merkle;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod requests;
pub mod signature;
pub mod store;

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
    /// What the audit checkpoint publisher last did.
    pub checkpoints: audit_publish::Publisher,
}

impl App {
    /// Connects to (and migrates) the database and prepares the keys.
    pub async fn new(cfg: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<App>> {
        let db = Db::connect(&cfg.database_url).await?;
        let added = audit_tree::catch_up(&db).await?;
        if added > 0 {
            tracing::info!(records = added, "built the audit Merkle tree over older records");
        }
        let auth = Authenticator::new(&cfg.auth)?;
        Ok(Arc::new(App {
            cfg,
            db,
            auth,
            clock,
            metrics: Metrics::default(),
            checkpoints: audit_publish::Publisher::default(),
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
    let publisher = tokio::spawn(audit_publish::run(Arc::clone(&app)));
    let result = axum::serve(listener, api::router(app))
        .with_graceful_shutdown(shutdown())
        .await;
    sweeper.abort();
    checkpointer.abort();
    sender.abort();
    publisher.abort();
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
        if let Err(e) = requests::sweep_timeouts(&app).await {
            tracing::warn!(error = %e, "timeout sweep failed");
        }
        if let Err(e) = grants::sweep_expiries(&app).await {
            tracing::warn!(error = %e, "expiry sweep failed");
        }
        if let Err(e) = grants::sweep_expiring_soon(&app).await {
            tracing::warn!(error = %e, "expiring-soon sweep failed");
        }
    }
}
