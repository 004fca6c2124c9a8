//! Proofs for auditors: that one record is in a signed checkpoint
//! (inclusion), and that a later checkpoint extends an earlier one
//! (consistency), RFC 9162 style, so an auditor can show a third party that
//! an approval is in the log without handing over the log.
//!
//! Each answer carries the signed checkpoint notes it is relative to; the
//! caller checks their signatures with the public key and the proof against
//! the roots they carry, never against anything else in the answer.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::handlers::auditor;
use super::{ApiPath, ApiQuery, AppState, Caller, Problem};
use crate::audit::export::{ConsistencyProof, InclusionProof};
use crate::audit::merkle::Hash;
use crate::audit::tree::{self, TreeError};
use crate::error::ApiError;
use crate::store;

/// `?checkpoint=N`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    /// The size of a signed checkpoint (default: the latest).
    #[param(minimum = 1)]
    pub checkpoint: Option<u64>,
}

/// `?from=N&to=M`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// The earlier checkpoint's size.
    #[param(minimum = 1)]
    pub from: u64,
    /// The later checkpoint's size (default: the latest).
    #[param(minimum = 1)]
    pub to: Option<u64>,
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

/// A size that the store's signed integers hold, or the parameter named.
fn size_param(field: &str, value: u64) -> Result<i64, ApiError> {
    i64::try_from(value)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| ApiError::Field {
            code: "invalid_query",
            field: field.into(),
            message: "must be a checkpoint size from 1".into(),
        })
}

/// The signed checkpoint of `size`, or the latest (`None`): (size, note).
async fn checkpoint(app: &AppState, size: Option<u64>, field: &str) -> Result<(u64, String), ApiError> {
    let wanted = size.map(|size| size_param(field, size)).transpose()?;
    let row = store::audit::checkpoint(&app.db.read, wanted).await?;
    let row = row.ok_or_else(|| {
        ApiError::NotFound(
            "checkpoint_not_found",
            match size {
                Some(size) => format!("`{field}`: no signed checkpoint of size {size}"),
                None => format!("`{field}`: no checkpoint has been signed yet"),
            },
        )
    })?;
    Ok((row.size as u64, row.note))
}

/// The inclusion proof of record `seq` in a signed checkpoint.
#[utoipa::path(get, path = "/v1/audit/{seq}/proof", operation_id = "audit_inclusion_proof", tag = "audit",
    security(("bearer" = [])),
    params(("seq" = u64, Path, minimum = 1, description = "The record"), InclusionQuery),
    responses(
        (status = 200, description = "The record's bytes and its audit path in the signed checkpoint", body = InclusionProof),
        (status = 403, description = "Not an auditor or admin (`not_an_auditor`)", body = Problem),
        (status = 404, description = "No such signed checkpoint, or none yet (`checkpoint_not_found`)", body = Problem),
        (status = 422, description = "The record is not in that checkpoint (`record_not_in_checkpoint`)", body = Problem)))]
pub async fn inclusion(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiPath(seq): ApiPath<u64>,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> Result<Json<InclusionProof>, ApiError> {
    auditor(&app, &p)?;
    let (size, note) = checkpoint(&app, q.checkpoint, "checkpoint").await?;
    if seq < 1 || seq > size {
        return Err(ApiError::Invalid(
            "record_not_in_checkpoint",
            format!("`seq`: record {seq} is not in the checkpoint of size {size}"),
        ));
    }
    let Some(row) = store::audit::by_seq(&app.db.read, seq as i64).await? else {
        return Err(ApiError::Invalid(
            "record_not_in_checkpoint",
            format!("`seq`: record {seq} is not stored"),
        ));
    };
    let leaf_input = crate::audit::record::leaf_input(&row);
    let proof = tree::inclusion_proof(&app.db, seq, size).await.map_err(tree_error)?;
    Ok(Json(InclusionProof {
        seq,
        leaf_index: seq - 1,
        leaf_hash: hex::encode(crate::audit::merkle::leaf_hash(leaf_input.as_bytes())),
        leaf_input,
        tree_size: size,
        proof: hexes(proof),
        checkpoint: note,
    }))
}

/// The consistency proof between two signed checkpoints.
#[utoipa::path(get, path = "/v1/audit/consistency", operation_id = "audit_consistency_proof", tag = "audit",
    security(("bearer" = [])), params(ConsistencyQuery),
    responses(
        (status = 200, description = "The proof that the later signed tree extends the earlier", body = ConsistencyProof),
        (status = 403, description = "Not an auditor or admin (`not_an_auditor`)", body = Problem),
        (status = 404, description = "No signed checkpoint of that size, or none yet (`checkpoint_not_found`)", body = Problem),
        (status = 422, description = "`from` is after `to` (`checkpoints_out_of_order`)", body = Problem)))]
pub async fn consistency(
    State(app): State<AppState>,
    Caller(p): Caller,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    auditor(&app, &p)?;
    let (to, to_note) = checkpoint(&app, q.to, "to").await?;
    if q.from > to {
        return Err(ApiError::Invalid(
            "checkpoints_out_of_order",
            format!("`from`: {} is after `to` ({to})", q.from),
        ));
    }
    let (from, from_note) = checkpoint(&app, Some(q.from), "from").await?;
    let proof = tree::consistency_proof(&app.db, from, to).await.map_err(tree_error)?;
    Ok(Json(ConsistencyProof {
        from,
        to,
        proof: hexes(proof),
        from_checkpoint: from_note,
        to_checkpoint: to_note,
    }))
}
