//! The audit log's Merkle tree as stored: complete subtree hashes written
//! in each append's transaction, and the roots and proofs read from them.
//!
//! [`extend`] runs under the chain head's row lock that every append
//! already takes, so replicas sharing one PostgreSQL add leaves in one
//! order and never fork the tree. It reads the O(log n) frontier nodes,
//! adds the new leaves ([`crate::audit::merkle::Appender`]) and inserts every
//! subtree they complete (about two rows per record). Roots and proofs read
//! only the O(log n) nodes they need ([`crate::audit::merkle::needed`]).
//!
//! These rows are a cache of hashes the service computed, not evidence:
//! whoever can write the database can rewrite them. Evidence is a
//! checkpoint signed with a key the database never holds, checked against
//! hashes recomputed from the records (`jitgate audit verify --witness`).

use std::collections::{BTreeSet, HashMap};

use sqlx::{AnyConnection, Row};

use crate::audit;
use crate::audit::merkle::{self, Hash, MissingNode, NodeId};
use crate::store::Db;

/// Why a root or proof could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// A node the computation needs is not stored (the tree is shorter
    /// than asked, or damaged).
    #[error(transparent)]
    Missing(#[from] MissingNode),
    /// A stored hash is not 32 bytes of hex.
    #[error("Merkle tree node (level {}, index {}) holds a malformed hash", .0 .0, .0 .1)]
    Malformed(NodeId),
}

fn missing_as_sqlx(e: TreeError) -> sqlx::Error {
    match e {
        TreeError::Db(e) => e,
        other => sqlx::Error::Decode(Box::new(other)),
    }
}

/// Reads the stored nodes `ids`.
async fn fetch(conn: &mut AnyConnection, ids: &BTreeSet<NodeId>) -> Result<HashMap<NodeId, Hash>, TreeError> {
    let mut found = HashMap::with_capacity(ids.len());
    let ids: Vec<&NodeId> = ids.iter().collect();
    for chunk in ids.chunks(200) {
        let mut sql = String::from("SELECT level, idx, hash FROM audit_tree WHERE ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            sql.push_str(&format!("(level = ${} AND idx = ${})", 2 * i + 1, 2 * i + 2));
        }
        let mut q = sqlx::query(&sql);
        for (level, index) in chunk {
            q = q.bind(i64::from(*level)).bind(*index as i64);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let id: NodeId = (
                row.try_get::<i64, _>("level")? as u32,
                row.try_get::<i64, _>("idx")? as u64,
            );
            let text: String = row.try_get("hash")?;
            let hash = hex::decode(&text)
                .ok()
                .and_then(|b| Hash::try_from(b).ok())
                .ok_or(TreeError::Malformed(id))?;
            found.insert(id, hash);
        }
    }
    Ok(found)
}

/// Runs `compute` over exactly the stored nodes it needs.
async fn with_nodes<T>(
    conn: &mut AnyConnection,
    compute: impl Fn(&dyn merkle::Nodes) -> Result<T, MissingNode>,
) -> Result<T, TreeError> {
    let ids = merkle::needed(&compute);
    let nodes = fetch(conn, &ids).await?;
    Ok(compute(&nodes)?)
}

/// An appender over the stored tree of `size` leaves (its frontier, read
/// from the stored nodes: O(log n) rows).
pub async fn appender_at(conn: &mut AnyConnection, size: u64) -> Result<merkle::Appender, TreeError> {
    let ids: BTreeSet<NodeId> = merkle::frontier(size).into_iter().collect();
    let stored = fetch(conn, &ids).await?;
    let hashes = merkle::frontier(size)
        .into_iter()
        .map(|id| stored.get(&id).copied().ok_or(MissingNode(id)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(merkle::Appender::new(size, hashes)?)
}

/// Adds the leaves of records `size + 1 ..= size + leaves.len()` to a tree
/// of `size` leaves, inside the caller's transaction, which must hold the
/// chain head's lock. A tree shorter than `size` fails the append: the
/// service never writes a record the tree does not cover.
pub async fn extend(conn: &mut AnyConnection, size: u64, leaves: &[Hash]) -> Result<(), sqlx::Error> {
    let mut appender = appender_at(conn, size).await.map_err(missing_as_sqlx)?;
    let mut completed = Vec::with_capacity(leaves.len() * 2 + 1);
    for leaf in leaves {
        appender.push(*leaf, &mut completed);
    }
    // Anonymous placeholders on SQLite, as in `audit::append` (its driver
    // looks named ones up by a linear scan).
    let anonymous = conn.backend_name() == "SQLite";
    for chunk in completed.chunks(300) {
        let mut sql = String::from("INSERT INTO audit_tree (level, idx, hash) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            if anonymous {
                sql.push_str("(?,?,?)");
            } else {
                sql.push_str(&format!("(${},${},${})", 3 * i + 1, 3 * i + 2, 3 * i + 3));
            }
        }
        let mut q = sqlx::query(&sql);
        for ((level, index), hash) in chunk {
            q = q.bind(i64::from(*level)).bind(*index as i64).bind(hex::encode(hash));
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The number of leaves stored (from the last leaf node, by primary key).
async fn stored_size(conn: &mut AnyConnection) -> Result<u64, sqlx::Error> {
    let row = sqlx::query("SELECT MAX(idx) AS last FROM audit_tree WHERE level = 0")
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get::<Option<i64>, _>("last")?.map_or(0, |last| last as u64 + 1))
}

/// Builds the tree over records appended before it existed (a log from
/// before migration 0004), in batches, each under the head lock. Runs at
/// start; returns the number of records added.
pub async fn catch_up(db: &Db) -> Result<u64, sqlx::Error> {
    const BATCH: i64 = 10_000;
    let mut added = 0;
    loop {
        let mut tx = db.pool.begin().await?;
        let head = sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq")
            .fetch_one(&mut *tx)
            .await?;
        let head: i64 = head.try_get("seq")?;
        let size = stored_size(&mut tx).await?;
        if size as i64 >= head {
            tx.commit().await?;
            return Ok(added);
        }
        let rows = sqlx::query(&format!("{} WHERE seq > $1 AND seq <= $2 ORDER BY seq", audit::SELECT))
            .bind(size as i64)
            .bind((size as i64 + BATCH).min(head))
            .fetch_all(&mut *tx)
            .await?;
        let mut leaves = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let (seq, leaf) = audit::leaf_of_row(row)?;
            if seq != size as i64 + 1 + i as i64 {
                return Err(sqlx::Error::Protocol(format!(
                    "audit record {} is missing: the tree cannot be built over it",
                    size as i64 + 1 + i as i64
                )));
            }
            leaves.push(leaf);
        }
        extend(&mut tx, size, &leaves).await?;
        tx.commit().await?;
        added += leaves.len() as u64;
    }
}

/// The root of the first `size` records, from stored nodes.
pub async fn root(db: &Db, size: u64) -> Result<Hash, TreeError> {
    let mut conn = db.read.acquire().await?;
    with_nodes(&mut conn, |n| merkle::root(n, size)).await
}

/// The inclusion proof of record `seq` (from 1) in the tree of `size`.
pub async fn inclusion_proof(db: &Db, seq: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
    let mut conn = db.read.acquire().await?;
    with_nodes(&mut conn, |n| merkle::inclusion_proof(n, seq - 1, size)).await
}

/// The consistency proof between the trees of `old` and `new` records.
pub async fn consistency_proof(db: &Db, old: u64, new: u64) -> Result<Vec<Hash>, TreeError> {
    let mut conn = db.read.acquire().await?;
    with_nodes(&mut conn, |n| merkle::consistency_proof(n, old, new)).await
}
