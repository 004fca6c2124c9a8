//! The database: one pool over SQLite (embedded default, one file, WAL) or
//! PostgreSQL (several replicas), chosen by URL, migrated at start.
//!
//! Queries are written once in SQL that both accept (`$n` placeholders in
//! order, `RETURNING`, integers for times and flags). Writers are
//! serialized where it matters by locking rows with a conditional
//! `UPDATE` first, which works the same on both: SQLite takes the database
//! write lock, PostgreSQL the row lock.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (one writer at a time).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The connection pools.
#[derive(Debug, Clone)]
pub struct Db {
    /// Writes (and reads inside write transactions).
    pub pool: AnyPool,
    /// Reads that need no transaction: proxy sync, audit queries. On
    /// SQLite a separate pool, so a proxy's revocation poll never waits
    /// behind a burst of writes (WAL lets readers run beside the writer);
    /// on PostgreSQL the same pool.
    pub read: AnyPool,
    /// The backend.
    pub backend: Backend,
}

impl Db {
    /// Connects (creating a SQLite file if needed) and applies migrations.
    pub async fn connect(url: &str) -> Result<Db, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = match backend {
            // One connection: SQLite allows one writer, and a single
            // connection turns lock contention into a queue instead of
            // SQLITE_BUSY errors under concurrent approvals.
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 5000").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options.clone())
                    .await?
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options.clone())
                    .await?
            }
        };
        let mut db = Db {
            read: pool.clone(),
            pool,
            backend,
        };
        db.migrate().await?;
        if backend == Backend::Sqlite {
            db.read = AnyPoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA query_only = ON").await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await?;
        }
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), sqlx::Error> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&self.pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&self.pool).await?,
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}
