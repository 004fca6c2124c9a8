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

use sqlx::AnyConnection;

use crate::audit::merkle::{self, Hash, MissingNode, NodeId};
use crate::audit::record;
use crate::store::{self, Db};

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
    let ids: Vec<NodeId> = ids.iter().copied().collect();
    let mut found = HashMap::with_capacity(ids.len());
    for (id, text) in store::audit::tree_nodes(conn, &ids).await? {
        found.insert(id, decode_hash(id, &text)?);
    }
    Ok(found)
}

/// A stored node's hash: 32 bytes of hex, or the node is damaged.
pub(crate) fn decode_hash(id: NodeId, text: &str) -> Result<Hash, TreeError> {
    hex::decode(text)
        .ok()
        .and_then(|b| Hash::try_from(b).ok())
        .ok_or(TreeError::Malformed(id))
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
    let nodes: Vec<store::audit::TreeNode> = completed.iter().map(|(id, hash)| (*id, hex::encode(hash))).collect();
    store::audit::insert_tree_nodes(conn, &nodes).await
}

/// Builds the tree over records appended before it existed (a log from
/// before migration 0004), in batches, each under the head lock. Runs at
/// start; returns the number of records added.
pub async fn catch_up(db: &Db) -> Result<u64, sqlx::Error> {
    const BATCH: i64 = 10_000;
    let mut added = 0;
    loop {
        let mut tx = db.pool.begin().await?;
        // Advancing by nothing takes the head's lock: no append runs
        // beside this batch.
        let (head, _) = store::audit::advance_head(&mut tx, 0).await?;
        let size = store::audit::tree_size(&mut tx).await?;
        if size as i64 >= head {
            tx.commit().await?;
            return Ok(added);
        }
        let rows = store::audit::range(&mut *tx, size as i64 + 1, (size as i64 + BATCH).min(head), BATCH).await?;
        let mut leaves = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            if row.seq != size as i64 + 1 + i as i64 {
                return Err(sqlx::Error::Protocol(format!(
                    "audit record {} is missing: the tree cannot be built over it",
                    size as i64 + 1 + i as i64
                )));
            }
            leaves.push(record::leaf_of_row(row));
        }
        if leaves.is_empty() {
            // The head counts records that are not there: without this the
            // loop would never end.
            return Err(sqlx::Error::Protocol(format!(
                "audit record {} is missing: the tree cannot be built over it",
                size + 1
            )));
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
