//! The audit log: append-only and hash-chained.
//!
//! Each record stores the hash of the one before it, and its own hash over
//! that and a canonical encoding of its fields, so editing or deleting any
//! record breaks the chain from there on. Records are appended in the same
//! transaction as the change they describe; appends are serialized by
//! locking the chain head row, so replicas sharing one PostgreSQL never
//! fork the chain.
//!
//! The records are also the leaves of an RFC 9162 Merkle tree
//! ([`crate::audit::tree`]), extended in the same transaction under the same
//! lock: the chain finds an edit by someone who cannot recompute it, the
//! tree lets a checkpoint signed outside the database commit to every
//! record, and proves one record or the log's growth in O(log n).
//!
//! The submodules, from the pure core outwards:
//! - [`merkle`]: RFC 9162 tree hashing and proofs (pure);
//! - [`checkpoint`]: signed checkpoints (C2SP signed notes, Ed25519);
//! - [`record`]: a record's canonical bytes and hashes (pure);
//! - [`counts`]: a batch of counted requests as one record (pure);
//! - [`tree`]: the tree as stored, extended in each append's transaction;
//! - [`publish`]: signs checkpoints and publishes them to witnesses;
//! - [`witness`]: verifies the log against a witness's signed checkpoints;
//! - [`export`]: range exports with proofs, verified offline.

pub mod checkpoint;
pub mod counts;
pub mod export;
pub mod merkle;
pub mod publish;
pub mod record;
pub mod tree;
mod verify;
pub mod witness;

pub use record::{leaf_input, leaf_of_row};
pub use verify::{verify, BrokenLink, Scope, Verification};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::audit::record::{canonical_tail, chain_hash, record_leaf, RecordFields};
use crate::store::audit::AuditRow;
use crate::store::{self, Db};

/// One record to append.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// Who acted (user id, `proxy:<id>`, `system`, `anonymous`).
    pub actor: String,
    /// What happened (`request.created`, `vote.approve`, `grant.issued`, ...).
    pub action: String,
    /// The resource concerned.
    pub resource: Option<String>,
    /// The access request concerned.
    pub request_id: Option<String>,
    /// The grant concerned.
    pub grant_id: Option<String>,
    /// The channel (`api`, `slack`, `webhook`, `proxy`, `auto`).
    pub channel: Option<String>,
    /// Everything else: reason, comment, duration, scope, outcome...
    pub details: Value,
}

/// A stored record.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Record {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// Who acted.
    pub actor: String,
    /// What happened.
    pub action: String,
    /// Resource.
    pub resource: Option<String>,
    /// Access request.
    pub request_id: Option<String>,
    /// Grant.
    pub grant_id: Option<String>,
    /// Channel.
    pub channel: Option<String>,
    /// Details.
    #[schema(value_type = Object)]
    pub details: Value,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

/// Appends records inside the caller's transaction; returns the last seq.
///
/// The head row is locked first (`UPDATE ... RETURNING`), which serializes
/// appends everywhere; the records' hashes chain from the head's hash, and
/// the head's hash follows the last inserted record through the
/// `audit_log_head_follows` trigger (migration 0003), in the insert itself.
/// Everything that does not depend on the head is prepared before the lock
/// is taken, so the lock is held only for hashing and inserting.
pub async fn append(conn: &mut AnyConnection, at: i64, entries: &[Entry]) -> Result<i64, sqlx::Error> {
    if entries.is_empty() {
        return Ok(0);
    }
    let n = entries.len() as i64;
    let mut rows: Vec<AuditRow> = entries
        .iter()
        .map(|e| AuditRow {
            seq: 0,
            at,
            actor: e.actor.clone(),
            action: e.action.clone(),
            resource: e.resource.clone(),
            request_id: e.request_id.clone(),
            grant_id: e.grant_id.clone(),
            channel: e.channel.clone(),
            details: e.details.to_string(),
            prev_hash: String::new(),
            hash: String::new(),
        })
        .collect();
    let tails: Vec<String> = rows
        .iter()
        .map(|r| {
            let fields = RecordFields {
                actor: &r.actor,
                action: &r.action,
                resource: r.resource.as_deref(),
                request_id: r.request_id.as_deref(),
                grant_id: r.grant_id.as_deref(),
                channel: r.channel.as_deref(),
                details: &r.details,
            };
            canonical_tail(at, &fields)
        })
        .collect();
    // Locks the head row until commit: appends are serialized everywhere.
    let (last_seq, mut prev) = store::audit::advance_head(conn, n).await?;
    let first = last_seq - n + 1;
    let mut leaves = Vec::with_capacity(rows.len());
    for (i, (row, tail)) in rows.iter_mut().zip(&tails).enumerate() {
        let seq = first + i as i64;
        let hash = chain_hash(&prev, seq, tail);
        leaves.push(record_leaf(seq, tail));
        row.seq = seq;
        row.prev_hash = std::mem::replace(&mut prev, hash.clone());
        row.hash = hash;
    }
    store::audit::insert(conn, &rows).await?;
    crate::audit::tree::extend(conn, (first - 1) as u64, &leaves).await?;
    Ok(last_seq)
}

/// Appends in a transaction of its own (for events that change nothing
/// else, such as refused requests and authentication failures).
pub async fn append_alone(db: &Db, at: i64, entries: &[Entry]) -> Result<i64, sqlx::Error> {
    let mut tx = db.pool.begin().await?;
    let seq = append(&mut tx, at, entries).await?;
    tx.commit().await?;
    Ok(seq)
}

/// A stored row as the API shows it (`details` parsed; text that is not
/// JSON is shown as a string rather than dropped).
fn to_record(row: AuditRow) -> Record {
    let details = serde_json::from_str(&row.details).unwrap_or(Value::String(row.details));
    Record {
        seq: row.seq,
        at: row.at,
        actor: row.actor,
        action: row.action,
        resource: row.resource,
        request_id: row.request_id,
        grant_id: row.grant_id,
        channel: row.channel,
        details,
        prev_hash: row.prev_hash,
        hash: row.hash,
    }
}

/// Filters for reading the log.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Query {
    /// Only records about this access request.
    pub request_id: Option<String>,
    /// Only records about this grant.
    pub grant_id: Option<String>,
    /// Only records about this resource.
    pub resource: Option<String>,
    /// Only records by this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only records after this seq.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Only records at or after this time (milliseconds since the epoch).
    #[param(minimum = 0)]
    pub from_ms: Option<i64>,
    /// Only records before this time (milliseconds since the epoch).
    #[param(minimum = 0)]
    pub until_ms: Option<i64>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// `asc` (default: the oldest matching records first) or `desc` (the
    /// newest first, for `jitgate audit tail`).
    #[param(inline)]
    pub order: Option<Order>,
}

/// The order of records in an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Oldest first.
    #[default]
    Asc,
    /// Newest first.
    Desc,
}

/// Reads records matching the filters, oldest first (newest first with
/// `order=desc`).
pub async fn query(db: &Db, q: &Query) -> Result<Vec<Record>, sqlx::Error> {
    let filter = store::audit::Filter {
        request_id: q.request_id.as_deref(),
        grant_id: q.grant_id.as_deref(),
        resource: q.resource.as_deref(),
        actor: q.actor.as_deref(),
        action: q.action.as_deref(),
        after: q.after.unwrap_or(0),
        from_ms: q.from_ms,
        until_ms: q.until_ms,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
        newest_first: q.order.unwrap_or_default() == Order::Desc,
    };
    Ok(store::audit::select(db, &filter)
        .await?
        .into_iter()
        .map(to_record)
        .collect())
}

/// The counted allowed requests of a grant or of a request's grants
/// (stored by [`counts`]'s records), oldest record first: those held by
/// records after `after`, at most `limit`.
pub async fn counted(
    db: &Db,
    of: store::counts::Of<'_>,
    after: i64,
    limit: i64,
) -> Result<Vec<store::counts::StoredCount>, sqlx::Error> {
    store::counts::select(&db.read, of, after, limit).await
}
