//! The database: one pool over SQLite (embedded default, one file, WAL) or
//! PostgreSQL (several replicas), chosen by URL, migrated at start; and,
//! per table, its rows and SQL ([`requests`], [`votes`], [`grants`],
//! [`outbox`], [`audit`], [`sightings`], [`usage`], [`reports`], [`counts`]). No rule of the workflow lives here: these modules read and
//! write what they are told to.
//!
//! Queries are written once in SQL that both accept (`$n` placeholders in
//! order, `RETURNING`, integers for times and flags). Writers are
//! serialized where it matters by locking rows with a conditional
//! `UPDATE` first, which works the same on both: SQLite takes the database
//! write lock, PostgreSQL the row lock.

pub mod audit;
pub mod counts;
pub mod grants;
pub mod outbox;
pub mod reports;
pub mod requests;
pub mod sightings;
pub mod usage;
pub mod votes;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};

/// A stored value that does not decode into its type: the row is refused
/// (fail closed), never read as a default that could widen a grant.
#[derive(Debug, thiserror::Error)]
#[error("stored {column} of {id} does not decode: {reason}")]
pub struct Undecodable {
    /// The column.
    pub column: &'static str,
    /// The row's id.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// [`Undecodable`] as the database error it is to callers.
pub(crate) fn undecodable(column: &'static str, id: &str, reason: impl ToString) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(Undecodable {
            column,
            id: id.to_owned(),
            reason: reason.to_string(),
        }),
    }
}

/// The row `sql` finds for one key (`$1`), decoded, if any.
pub(crate) async fn one<T>(
    conn: &mut sqlx::AnyConnection,
    sql: &str,
    key: &str,
    decode: fn(&sqlx::any::AnyRow) -> Result<T, sqlx::Error>,
) -> Result<Option<T>, sqlx::Error> {
    sqlx::query(sql)
        .bind(key.to_owned())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(decode)
        .transpose()
}

/// `VALUES` lists for a multi-row insert of `rows` rows of `columns`
/// values: anonymous `?` on SQLite, whose driver looks each named
/// parameter up by a linear scan (`sqlite3_bind_parameter_name`), which
/// made binding a 4400-parameter insert quadratic and the bulk of the cost
/// of ingesting proxy decisions; `$n` on PostgreSQL.
pub(crate) fn values(sqlite: bool, rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..columns {
            if c > 0 {
                sql.push(',');
            }
            if sqlite {
                sql.push('?');
            } else {
                sql.push_str(&format!("${}", i * columns + c + 1));
            }
        }
        sql.push(')');
    }
    sql
}

/// Placeholders `$from, $from+1, ...` for an `IN (...)` list of `n` values.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

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
    /// On SQLite, a connection of its own that checkpoints the WAL in the
    /// background ([`Db::checkpoint_in_background`]); `None` on PostgreSQL.
    pub checkpointer: Option<AnyPool>,
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
            // SQLITE_BUSY errors under concurrent approvals. A connection
            // to a local file does not go stale, so it is not pinged
            // before each use (a round trip to its worker thread that the
            // queue would wait for).
            Backend::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            // FULL: the WAL is synced at every commit, so an
                            // acknowledged write survives a power loss too
                            // (NORMAL syncs only at checkpoints).
                            conn.execute("PRAGMA synchronous = FULL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 5000").await?;
                            Ok(())
                        })
                    })
                    // sqlx counts the transaction depth itself. When SQLite
                    // rolls a transaction back on its own (SQLITE_FULL on a
                    // full disk, an I/O error), sqlx's ROLLBACK fails, the
                    // count stays one too high, and the next transaction is
                    // a SAVEPOINT; if that one fails too, sqlx rolls back
                    // to the savepoint, which leaves SQLite inside a
                    // transaction that nothing will ever commit: every later
                    // write would be acknowledged and lost. So a connection
                    // that comes back to the pool inside a transaction is
                    // closed (and replaced) instead of reused.
                    .after_release(|conn, _| {
                        Box::pin(async move {
                            if conn.execute("BEGIN").await.is_err() {
                                return Ok(false);
                            }
                            conn.execute("ROLLBACK").await?;
                            Ok(true)
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
            checkpointer: None,
        };
        db.migrate().await?;
        if backend == Backend::Sqlite {
            db.read = AnyPoolOptions::new()
                .max_connections(4)
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA query_only = ON").await?;
                        Ok(())
                    })
                })
                .connect_with(options.clone())
                .await?;
            db.checkpointer = Some(
                AnyPoolOptions::new()
                    .max_connections(1)
                    .min_connections(0)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await?,
            );
        }
        Ok(db)
    }

    /// Copies the WAL into the database file from a connection of its own,
    /// off the writer's path (SQLite; returns at once on PostgreSQL). Runs
    /// until the task is aborted.
    ///
    /// The writer still checkpoints every 1000 pages (SQLite's default), so
    /// the WAL stays as small as before; but most of those pages have
    /// already been copied and synced here, and the writer's checkpoint
    /// (an fsync of the WAL and of the database, inside some commit) is
    /// short. Without this, every thousandth page made one commit wait for
    /// a full checkpoint, a stall of tens of milliseconds that every queued
    /// request waited behind. A PASSIVE checkpoint never blocks the writer
    /// or readers, and durability is unchanged (`synchronous = FULL`: every
    /// commit is already synced in the WAL).
    pub async fn checkpoint_in_background(&self) {
        let Some(pool) = &self.checkpointer else { return };
        let mut last = (-1i64, -1i64);
        loop {
            let pass = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(pool).await;
            let now = match &pass {
                Ok(row) => (
                    row.try_get::<i64, _>(1).unwrap_or(-1),
                    row.try_get::<i64, _>(2).unwrap_or(-1),
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "background WAL checkpoint failed");
                    (-1, -1)
                }
            };
            // While commits keep coming, keep up with them (a thousand
            // pages take a few tens of milliseconds under load); idle, look
            // rarely.
            let busy = pass.is_ok() && now != last;
            last = now;
            tokio::time::sleep(Duration::from_millis(if busy { 10 } else { 250 })).await;
        }
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
