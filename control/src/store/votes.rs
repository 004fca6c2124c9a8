//! The `votes` table: who voted how on which request.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::{placeholders, undecodable};
use crate::states::VoteDecision;

/// A vote.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Vote {
    /// Who.
    pub approver: String,
    /// `approve` or `deny`.
    pub decision: VoteDecision,
    /// Comment.
    pub comment: Option<String>,
    /// Where it came from (`api`, `slack`, `webhook`).
    pub channel: String,
    /// When (ms).
    pub at: i64,
}

const SELECT: &str = "SELECT request_id, approver, decision, comment, channel, created_at FROM votes";

fn decode(r: &AnyRow) -> Result<(String, Vote), sqlx::Error> {
    let request_id: String = r.try_get("request_id")?;
    let decision: String = r.try_get("decision")?;
    let decision = VoteDecision::from_db(&decision).map_err(|e| undecodable("decision", &request_id, e))?;
    Ok((
        request_id,
        Vote {
            approver: r.try_get("approver")?,
            decision,
            comment: r.try_get("comment")?,
            channel: r.try_get("channel")?,
            at: r.try_get("created_at")?,
        },
    ))
}

/// The votes on a request, oldest first.
pub async fn for_request(conn: &mut AnyConnection, request_id: &str) -> Result<Vec<Vote>, sqlx::Error> {
    sqlx::query(&format!("{SELECT} WHERE request_id = $1 ORDER BY created_at, approver"))
        .bind(request_id.to_owned())
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| decode(r).map(|(_, v)| v))
        .collect()
}

/// The votes on each of several requests, oldest first, in one query.
pub async fn for_requests(conn: &mut AnyConnection, ids: &[String]) -> Result<HashMap<String, Vec<Vote>>, sqlx::Error> {
    let mut out: HashMap<String, Vec<Vote>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "{SELECT} WHERE request_id IN ({}) ORDER BY created_at, approver",
        placeholders(1, ids.len())
    );
    let mut query = sqlx::query(&sql);
    for id in ids {
        query = query.bind(id.clone());
    }
    for r in query.fetch_all(&mut *conn).await? {
        let (id, vote) = decode(&r)?;
        out.entry(id).or_default().push(vote);
    }
    Ok(out)
}

/// Stores a vote.
pub async fn insert(conn: &mut AnyConnection, request_id: &str, vote: &Vote) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO votes (request_id, approver, decision, comment, channel, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(request_id.to_owned())
        .bind(vote.approver.clone())
        .bind(vote.decision.as_str())
        .bind(vote.comment.clone())
        .bind(vote.channel.clone())
        .bind(vote.at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
