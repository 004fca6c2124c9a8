//! Proofs for auditors: that one record is in a signed checkpoint
//! (inclusion), and that a later checkpoint extends an earlier one
//! (consistency), RFC 9162 style, so an auditor can show a third party that
//! an approval is in the log without handing over the log.
//!
//! Each answer carries the signed checkpoint notes it is relative to; the
//! caller checks their signatures with the public key and the proof against
//! the roots they carry, never against anything else in the answer.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::handlers::auditor;
use super::{AppState, Caller};
use crate::audit_tree::{self, TreeError};
use crate::error::ApiError;
use crate::merkle::Hash;

/// `?checkpoint=N`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct InclusionQuery {
    /// The size of a signed checkpoint (default: the latest).
    pub checkpoint: Option<i64>,
}

/// `?from=N&to=M`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ConsistencyQuery {
    /// The earlier checkpoint's size.
    pub from: Option<i64>,
    /// The later checkpoint's size (default: the latest).
    pub to: Option<i64>,
}

/// An inclusion proof of one record in a signed checkpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct InclusionProof {
    /// The record.
    pub seq: i64,
    /// Its leaf index (seq - 1).
    pub leaf_index: i64,
    /// The record's canonical bytes (RFC 9162 leaf input): the JSON array
    /// `[seq,at,actor,action,resource,request_id,grant_id,channel,details]`.
    pub leaf_input: String,
    /// SHA-256(0x00 || leaf_input), hex.
    pub leaf_hash: String,
    /// The tree size of the checkpoint.
    pub tree_size: i64,
    /// The audit path, hex, leaf to root.
    pub proof: Vec<String>,
    /// The signed checkpoint note (C2SP tlog-checkpoint).
    pub checkpoint: String,
}

/// A consistency proof between two signed checkpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyProof {
    /// The earlier size.
    pub from: i64,
    /// The later size.
    pub to: i64,
    /// The proof, hex.
    pub proof: Vec<String>,
    /// The earlier signed checkpoint note.
    pub from_checkpoint: String,
    /// The later signed checkpoint note.
    pub to_checkpoint: String,
}

fn hexes(hashes: Vec<Hash>) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

fn tree_error(e: TreeError) -> ApiError {
    match e {
        TreeError::Db(e) => e.into(),
        other => ApiError::Internal(other.into()),
    }
}

/// The signed checkpoint of `size`, or the latest (`None`): (size, note).
async fn checkpoint(app: &AppState, size: Option<i64>, field: &str) -> Result<(i64, String), ApiError> {
    let row = match size {
        Some(size) => {
            sqlx::query("SELECT size, note FROM audit_checkpoints WHERE size = $1")
                .bind(size)
                .fetch_optional(&app.db.read)
                .await?
        }
        None => {
            sqlx::query("SELECT size, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(&app.db.read)
                .await?
        }
    };
    let row = row.ok_or_else(|| {
        ApiError::NotFound(
            "checkpoint_not_found",
            match size {
                Some(size) => format!("`{field}`: no signed checkpoint of size {size}"),
                None => format!("`{field}`: no checkpoint has been signed yet"),
            },
        )
    })?;
    Ok((row.try_get("size")?, row.try_get("note")?))
}

/// The inclusion proof of record `seq` in a signed checkpoint.
#[utoipa::path(get, path = "/v1/audit/{seq}/proof", params(("seq" = i64, Path, description = "The record"), InclusionQuery),
    responses((status = 200, body = InclusionProof), (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
pub async fn inclusion(
    State(app): State<AppState>,
    Caller(p): Caller,
    Path(seq): Path<i64>,
    Query(q): Query<InclusionQuery>,
) -> Result<Json<InclusionProof>, ApiError> {
    auditor(&app, &p)?;
    let (size, note) = checkpoint(&app, q.checkpoint, "checkpoint").await?;
    if seq < 1 || seq > size {
        return Err(ApiError::Invalid(
            "record_not_in_checkpoint",
            format!("`seq`: record {seq} is not in the checkpoint of size {size}"),
        ));
    }
    let row = sqlx::query(&format!("{} WHERE seq = $1", crate::audit::SELECT))
        .bind(seq)
        .fetch_one(&app.db.read)
        .await?;
    let (_, leaf_input) = crate::audit::leaf_input_of_row(&row)?;
    let proof = audit_tree::inclusion_proof(&app.db, seq as u64, size as u64)
        .await
        .map_err(tree_error)?;
    Ok(Json(InclusionProof {
        seq,
        leaf_index: seq - 1,
        leaf_hash: hex::encode(crate::merkle::leaf_hash(leaf_input.as_bytes())),
        leaf_input,
        tree_size: size,
        proof: hexes(proof),
        checkpoint: note,
    }))
}

/// The consistency proof between two signed checkpoints.
#[utoipa::path(get, path = "/v1/audit/consistency", params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyProof), (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
pub async fn consistency(
    State(app): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    auditor(&app, &p)?;
    let Some(from) = q.from else {
        return Err(ApiError::Invalid(
            "missing_parameter",
            "`from`: the earlier checkpoint's size is required".into(),
        ));
    };
    let (to, to_note) = checkpoint(&app, q.to, "to").await?;
    if from > to {
        return Err(ApiError::Invalid(
            "checkpoints_out_of_order",
            format!("`from`: {from} is after `to` ({to})"),
        ));
    }
    let (from, from_note) = checkpoint(&app, Some(from), "from").await?;
    let proof = audit_tree::consistency_proof(&app.db, from as u64, to as u64)
        .await
        .map_err(tree_error)?;
    Ok(Json(ConsistencyProof {
        from,
        to,
        proof: hexes(proof),
        from_checkpoint: from_note,
        to_checkpoint: to_note,
    }))
}
