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
//! - [`tree`]: the tree as stored, extended in each append's transaction;
//! - [`publish`]: signs checkpoints and publishes them to witnesses;
//! - [`witness`]: verifies the log against a witness's signed checkpoints;
//! - [`export`]: range exports with proofs, verified offline.

pub mod checkpoint;
pub mod export;
pub mod merkle;
pub mod publish;
pub mod tree;
mod verify;
pub mod witness;

pub use verify::{verify, BrokenLink, Scope, Verification};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::store::Db;

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

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The record's hash: SHA-256 over the previous hash and a JSON array of
/// the fields (an unambiguous encoding):
/// `[seq, at, actor, action, resource, request_id, grant_id, channel, details]`.
#[cfg(test)]
fn record_hash(prev_hash: &str, seq: i64, at: i64, e: &RecordFields<'_>) -> String {
    chain_hash(prev_hash, seq, &canonical_tail(at, e))
}

/// The canonical array of [`record_hash`] without its opening bracket and
/// first element (`seq`): `at,actor,...,details]`. It does not depend on
/// the chain, so appends prepare it before locking the head.
fn canonical_tail(at: i64, e: &RecordFields<'_>) -> String {
    let mut all = json!([
        at,
        e.actor,
        e.action,
        e.resource,
        e.request_id,
        e.grant_id,
        e.channel,
        e.details
    ])
    .to_string();
    all.remove(0);
    all
}

/// SHA-256 over the previous hash, a newline and the canonical array
/// `[seq,` + `tail`.
fn chain_hash(prev_hash: &str, seq: i64, tail: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n[");
    h.update(seq.to_string().as_bytes());
    h.update(b",");
    h.update(tail.as_bytes());
    hex(&h.finalize())
}

/// A stored record's chain hash from the previous hash and its leaf input
/// (`[seq,` + tail, as [`leaf_input_of_row`] gives it): the same bytes
/// [`chain_hash`] hashes.
pub(crate) fn chain_hash_of_input(prev_hash: &str, leaf_input: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(leaf_input.as_bytes());
    hex(&h.finalize())
}

/// A record's Merkle leaf hash: RFC 9162's SHA-256(0x00 || bytes) over
/// the record's canonical array `[seq,` + `tail` (the bytes [`chain_hash`]
/// hashes after the previous hash).
fn record_leaf(seq: i64, tail: &str) -> crate::audit::merkle::Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(b"[");
    h.update(seq.to_string().as_bytes());
    h.update(b",");
    h.update(tail.as_bytes());
    h.finalize().into()
}

/// The canonical array a stored record's leaf hashes (the leaf input of
/// RFC 9162), from its row as stored.
pub fn leaf_input_of_row(row: &sqlx::any::AnyRow) -> Result<(i64, String), sqlx::Error> {
    let seq: i64 = row.try_get("seq")?;
    let at: i64 = row.try_get("at")?;
    let actor: String = row.try_get("actor")?;
    let action: String = row.try_get("action")?;
    let resource: Option<String> = row.try_get("resource")?;
    let request_id: Option<String> = row.try_get("request_id")?;
    let grant_id: Option<String> = row.try_get("grant_id")?;
    let channel: Option<String> = row.try_get("channel")?;
    let details: String = row.try_get("details")?;
    let fields = RecordFields {
        actor: &actor,
        action: &action,
        resource: resource.as_deref(),
        request_id: request_id.as_deref(),
        grant_id: grant_id.as_deref(),
        channel: channel.as_deref(),
        details: &details,
    };
    Ok((seq, format!("[{seq},{}", canonical_tail(at, &fields))))
}

/// A stored record's seq and Merkle leaf hash, recomputed from its fields.
pub fn leaf_of_row(row: &sqlx::any::AnyRow) -> Result<(i64, crate::audit::merkle::Hash), sqlx::Error> {
    let (seq, input) = leaf_input_of_row(row)?;
    Ok((seq, crate::audit::merkle::leaf_hash(input.as_bytes())))
}

struct RecordFields<'a> {
    actor: &'a str,
    action: &'a str,
    resource: Option<&'a str>,
    request_id: Option<&'a str>,
    grant_id: Option<&'a str>,
    channel: Option<&'a str>,
    details: &'a str,
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
    const COLUMNS: usize = 11;
    const CHUNK: usize = 400;
    let details: Vec<String> = entries.iter().map(|e| e.details.to_string()).collect();
    let tails: Vec<String> = entries
        .iter()
        .zip(&details)
        .map(|(e, d)| {
            let fields = RecordFields {
                actor: &e.actor,
                action: &e.action,
                resource: e.resource.as_deref(),
                request_id: e.request_id.as_deref(),
                grant_id: e.grant_id.as_deref(),
                channel: e.channel.as_deref(),
                details: d,
            };
            canonical_tail(at, &fields)
        })
        .collect();
    // Anonymous `?` placeholders on SQLite: its driver looks each named
    // parameter up by a linear scan (`sqlite3_bind_parameter_name`), which
    // made binding a 4400-parameter insert quadratic and the bulk of the
    // cost of ingesting proxy decisions. PostgreSQL needs `$n`.
    let anonymous = conn.backend_name() == "SQLite";
    let sql_for = |rows: usize| {
        let mut sql = String::from(
            "INSERT INTO audit_log (seq, at, actor, action, resource, request_id, grant_id, channel, details, prev_hash, hash) VALUES ",
        );
        for i in 0..rows {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for c in 0..COLUMNS {
                if c > 0 {
                    sql.push(',');
                }
                if anonymous {
                    sql.push('?');
                } else {
                    sql.push_str(&format!("${}", i * COLUMNS + c + 1));
                }
            }
            sql.push(')');
        }
        sql
    };
    let statements: Vec<String> = entries.chunks(CHUNK).map(|c| sql_for(c.len())).collect();
    // Locks the head row until commit: appends are serialized everywhere.
    let head = sqlx::query("UPDATE audit_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, hash")
        .bind(n)
        .fetch_one(&mut *conn)
        .await?;
    let last_seq: i64 = head.try_get("seq")?;
    let mut prev: String = head.try_get("hash")?;
    let first = last_seq - n + 1;
    let mut links = Vec::with_capacity(entries.len());
    for (i, tail) in tails.iter().enumerate() {
        let hash = chain_hash(&prev, first + i as i64, tail);
        links.push((std::mem::replace(&mut prev, hash.clone()), hash));
    }
    let leaves: Vec<crate::audit::merkle::Hash> = tails
        .iter()
        .enumerate()
        .map(|(i, tail)| record_leaf(first + i as i64, tail))
        .collect();
    for (chunk_index, (chunk, sql)) in entries.chunks(CHUNK).zip(&statements).enumerate() {
        let mut q = sqlx::query(sql);
        for (i, e) in chunk.iter().enumerate() {
            let k = chunk_index * CHUNK + i;
            let (prev_hash, hash) = &links[k];
            q = q
                .bind(first + k as i64)
                .bind(at)
                .bind(e.actor.clone())
                .bind(e.action.clone())
                .bind(e.resource.clone())
                .bind(e.request_id.clone())
                .bind(e.grant_id.clone())
                .bind(e.channel.clone())
                .bind(details[k].clone())
                .bind(prev_hash.clone())
                .bind(hash.clone());
        }
        q.execute(&mut *conn).await?;
    }
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

fn row_to_record(row: &sqlx::any::AnyRow) -> Result<Record, sqlx::Error> {
    let details: String = row.try_get("details")?;
    Ok(Record {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        resource: row.try_get("resource")?,
        request_id: row.try_get("request_id")?,
        grant_id: row.try_get("grant_id")?,
        channel: row.try_get("channel")?,
        details: serde_json::from_str(&details).unwrap_or(Value::String(details)),
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// Selects every stored column of the log.
pub(crate) const SELECT: &str =
    "SELECT seq, at, actor, action, resource, request_id, grant_id, channel, details, prev_hash, hash FROM audit_log";

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
    let mut sql = format!("{SELECT} WHERE seq > $1");
    let mut binds: Vec<String> = Vec::new();
    for (column, value) in [
        ("request_id", &q.request_id),
        ("grant_id", &q.grant_id),
        ("resource", &q.resource),
        ("actor", &q.actor),
        ("action", &q.action),
    ] {
        if let Some(v) = value {
            binds.push(v.clone());
            sql.push_str(&format!(" AND {column} = ${}", binds.len() + 1));
        }
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let order = match q.order.unwrap_or_default() {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    sql.push_str(&format!(" ORDER BY seq {order} LIMIT {limit}"));
    let mut query = sqlx::query(&sql).bind(q.after.unwrap_or(0));
    for b in binds {
        query = query.bind(b);
    }
    query.fetch_all(&db.read).await?.iter().map(row_to_record).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A known answer, worked out outside this crate (the pre-image written
    /// by hand, hashed with another SHA-256): any change to the canonical
    /// encoding (field order, separators, escaping, how `details` is
    /// embedded) changes this hash and fails here: such a change would make every
    /// chain already stored fail verification.
    #[test]
    fn the_hash_of_a_fixed_record_is_the_pinned_known_answer() {
        let fields = RecordFields {
            actor: "bob",
            action: "vote.approve",
            resource: Some("payments-api"),
            request_id: Some("req_1"),
            grant_id: None,
            channel: Some("api"),
            details: r#"{"comment":"ok \"quoted\""}"#,
        };
        assert_eq!(
            canonical_tail(1_700_000_000_000, &fields),
            r#"1700000000000,"bob","vote.approve","payments-api","req_1",null,"api","{\"comment\":\"ok \\\"quoted\\\"\"}"]"#
        );
        assert_eq!(
            record_hash("abc", 7, 1_700_000_000_000, &fields),
            "1aa286e3a9593229c6c8f9aa46ca8f243cf20c9328d62ab5f8ae4f97d18d8013"
        );
        // Verification hashes the stored row's leaf input: the same bytes.
        let input = format!("[7,{}", canonical_tail(1_700_000_000_000, &fields));
        assert_eq!(
            chain_hash_of_input("abc", &input),
            "1aa286e3a9593229c6c8f9aa46ca8f243cf20c9328d62ab5f8ae4f97d18d8013"
        );
    }
}
