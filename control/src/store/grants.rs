//! The `grants` table: minted tokens, their revocation, and the flags the
//! sweeps claim (expiry recorded, expiry announced).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use utoipa::ToSchema;

use super::{one, placeholders};

/// A grant as the API shows it (never the token).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantView {
    /// Grant id (the token's `jti`).
    pub id: String,
    /// The key that signed it.
    pub kid: String,
    /// Issued: when it was signed (seconds).
    pub issued_at: i64,
    /// Its window opens (seconds; the token's `nbf`): after `issued_at`
    /// for a scheduled request approved ahead of its start.
    pub not_before: i64,
    /// Expires (seconds).
    pub expires_at: i64,
    /// Revoked (ms).
    pub revoked_at: Option<i64>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
    /// Why.
    pub revoke_reason: Option<String>,
}

/// A new grant row.
#[derive(Debug, Clone)]
pub struct NewGrant {
    /// The token's `jti`.
    pub id: String,
    /// The request it was minted for.
    pub request_id: String,
    /// Its holder.
    pub subject: String,
    /// Its resource.
    pub resource: String,
    /// The signing key.
    pub kid: String,
    /// The token.
    pub token: String,
    /// Issued: when it was signed (seconds).
    pub issued_at_s: i64,
    /// Its window opens (seconds).
    pub not_before_s: i64,
    /// Expires (seconds).
    pub expires_at_s: i64,
}

/// Who and what a grant is about, for revocation and sweeps.
#[derive(Debug, Clone)]
pub struct GrantRef {
    /// Grant id.
    pub id: String,
    /// Its request.
    pub request_id: String,
    /// Its resource.
    pub resource: String,
    /// Its holder.
    pub subject: String,
    /// Expires (seconds).
    pub expires_at_s: i64,
    /// Revoked (ms).
    pub revoked_at: Option<i64>,
}

/// A grant's token.
#[derive(Debug, Clone)]
pub struct StoredToken {
    /// Grant id.
    pub id: String,
    /// The token.
    pub token: String,
    /// Its window opens (seconds).
    pub not_before_s: i64,
    /// Expires (seconds).
    pub expires_at_s: i64,
    /// Revoked (ms).
    pub revoked_at: Option<i64>,
}

const VIEW: &str = "SELECT id, request_id, kid, issued_at_s, not_before_s, expires_at_s, revoked_at, revoked_by, \
    revoke_reason FROM grants";
const REF: &str = "SELECT id, request_id, resource, subject, expires_at_s, revoked_at FROM grants";

fn view(r: &AnyRow) -> Result<GrantView, sqlx::Error> {
    let issued_at: i64 = r.try_get("issued_at_s")?;
    // Grants minted before the column existed opened when issued.
    let not_before: Option<i64> = r.try_get("not_before_s")?;
    Ok(GrantView {
        id: r.try_get("id")?,
        kid: r.try_get("kid")?,
        issued_at,
        not_before: not_before.unwrap_or(issued_at),
        expires_at: r.try_get("expires_at_s")?,
        revoked_at: r.try_get("revoked_at")?,
        revoked_by: r.try_get("revoked_by")?,
        revoke_reason: r.try_get("revoke_reason")?,
    })
}

fn grant_ref(r: &AnyRow) -> Result<GrantRef, sqlx::Error> {
    Ok(GrantRef {
        id: r.try_get("id")?,
        request_id: r.try_get("request_id")?,
        resource: r.try_get("resource")?,
        subject: r.try_get("subject")?,
        expires_at_s: r.try_get("expires_at_s")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

/// The grant of a request, if any.
pub async fn for_request(conn: &mut AnyConnection, request_id: &str) -> Result<Option<GrantView>, sqlx::Error> {
    one(conn, &format!("{VIEW} WHERE request_id = $1"), request_id, view).await
}

/// The grants of several requests, by request id, in one query.
pub async fn for_requests(conn: &mut AnyConnection, ids: &[String]) -> Result<HashMap<String, GrantView>, sqlx::Error> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let sql = format!("{VIEW} WHERE request_id IN ({})", placeholders(1, ids.len()));
    let mut query = sqlx::query(&sql);
    for id in ids {
        query = query.bind(id.clone());
    }
    for r in query.fetch_all(&mut *conn).await? {
        out.insert(r.try_get("request_id")?, view(&r)?);
    }
    Ok(out)
}

/// A grant by id.
pub async fn by_id(conn: &mut AnyConnection, id: &str) -> Result<Option<GrantView>, sqlx::Error> {
    one(conn, &format!("{VIEW} WHERE id = $1"), id, view).await
}

/// Who and what a grant is about.
pub async fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<GrantRef>, sqlx::Error> {
    one(conn, &format!("{REF} WHERE id = $1"), id, grant_ref).await
}

/// The token of a request's grant.
pub async fn token_of_request(conn: &mut AnyConnection, request_id: &str) -> Result<Option<StoredToken>, sqlx::Error> {
    sqlx::query(
        "SELECT id, token, COALESCE(not_before_s, issued_at_s) AS not_before_s, expires_at_s, revoked_at FROM grants \
         WHERE request_id = $1",
    )
    .bind(request_id.to_owned())
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| {
        Ok(StoredToken {
            id: r.try_get("id")?,
            token: r.try_get("token")?,
            not_before_s: r.try_get("not_before_s")?,
            expires_at_s: r.try_get("expires_at_s")?,
            revoked_at: r.try_get("revoked_at")?,
        })
    })
    .transpose()
}

/// Stores a minted grant.
pub async fn insert(conn: &mut AnyConnection, g: &NewGrant) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO grants (id, request_id, subject, resource, kid, token, issued_at_s, expires_at_s, not_before_s) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(g.id.clone())
    .bind(g.request_id.clone())
    .bind(g.subject.clone())
    .bind(g.resource.clone())
    .bind(g.kid.clone())
    .bind(g.token.clone())
    .bind(g.issued_at_s)
    .bind(g.expires_at_s)
    .bind(g.not_before_s)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Revokes the grant of a request if it is still active; returns its id
/// and resource, or `None` if nothing active was revoked.
pub async fn revoke_active(
    conn: &mut AnyConnection,
    request_id: &str,
    by: &str,
    reason: &str,
    now_ms: i64,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query(
        "UPDATE grants SET revoked_at = $1, revoked_by = $2, revoke_reason = $3 \
         WHERE request_id = $4 AND revoked_at IS NULL AND expires_at_s > $5 RETURNING id, resource",
    )
    .bind(now_ms)
    .bind(by.to_owned())
    .bind(reason.to_owned())
    .bind(request_id.to_owned())
    .bind(now_ms / 1000)
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| Ok((r.try_get("id")?, r.try_get("resource")?)))
    .transpose()
}

/// The request a grant was minted for.
pub async fn request_of(pool: &AnyPool, grant_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query("SELECT request_id FROM grants WHERE id = $1")
        .bind(grant_id.to_owned())
        .fetch_optional(pool)
        .await?
        .map(|row| row.try_get("request_id"))
        .transpose()
}

/// Revocations at or after `since_ms` of grants that expire after
/// `alive_after_s`, oldest revocation first: (id, expires_at_s).
pub async fn revoked_since(
    pool: &AnyPool,
    since_ms: i64,
    alive_after_s: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query(
        "SELECT id, expires_at_s FROM grants WHERE revoked_at IS NOT NULL AND revoked_at >= $1 AND expires_at_s > $2 \
         ORDER BY revoked_at",
    )
    .bind(since_ms)
    .bind(alive_after_s)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("id")?, r.try_get("expires_at_s")?)))
    .collect()
}

/// Grants neither revoked nor expired at `now_s`, by id: (id, token).
pub async fn active_tokens(pool: &AnyPool, now_s: i64) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query("SELECT id, token FROM grants WHERE revoked_at IS NULL AND expires_at_s > $1 ORDER BY id")
        .bind(now_s)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("token")?)))
        .collect()
}

/// Unrevoked grants whose expiry is not recorded yet and has passed.
pub async fn expired_unrecorded(pool: &AnyPool, now_s: i64, limit: i64) -> Result<Vec<GrantRef>, sqlx::Error> {
    sqlx::query(&format!(
        "{REF} WHERE expires_at_s <= $1 AND revoked_at IS NULL AND expiry_recorded = 0 LIMIT $2"
    ))
    .bind(now_s)
    .bind(limit)
    .fetch_all(pool)
    .await?
    .iter()
    .map(grant_ref)
    .collect()
}

/// Unrevoked grants that expire in `(now_s, horizon_s]` and were not
/// announced yet.
pub async fn expiring_unannounced(
    pool: &AnyPool,
    now_s: i64,
    horizon_s: i64,
    limit: i64,
) -> Result<Vec<GrantRef>, sqlx::Error> {
    sqlx::query(&format!(
        "{REF} WHERE expires_at_s <= $1 AND expires_at_s > $2 AND revoked_at IS NULL AND expiring_notified = 0 LIMIT $3"
    ))
    .bind(horizon_s)
    .bind(now_s)
    .bind(limit)
    .fetch_all(pool)
    .await?
    .iter()
    .map(grant_ref)
    .collect()
}

/// Which once-only flag of a grant a sweep claims.
#[derive(Debug, Clone, Copy)]
pub enum Flag {
    /// The expiry is recorded in the audit log.
    ExpiryRecorded,
    /// The coming expiry was announced.
    ExpiringNotified,
}

/// Sets a flag unless it is already set; true if this call set it.
pub async fn claim(conn: &mut AnyConnection, id: &str, flag: Flag) -> Result<bool, sqlx::Error> {
    let sql = match flag {
        Flag::ExpiryRecorded => "UPDATE grants SET expiry_recorded = 1 WHERE id = $1 AND expiry_recorded = 0",
        Flag::ExpiringNotified => "UPDATE grants SET expiring_notified = 1 WHERE id = $1 AND expiring_notified = 0",
    };
    let done = sqlx::query(sql).bind(id.to_owned()).execute(&mut *conn).await?;
    Ok(done.rows_affected() == 1)
}

/// The requests whose grants are active at `now_s`, soonest expiry first
/// (at most `limit`).
pub async fn active_requests(pool: &AnyPool, now_s: i64, limit: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query(
        "SELECT request_id FROM grants WHERE revoked_at IS NULL AND expires_at_s > $1 ORDER BY expires_at_s LIMIT $2",
    )
    .bind(now_s)
    .bind(limit)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| r.try_get("request_id"))
    .collect()
}

/// A grant issued in a period, as the insights report counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The grant.
    pub id: String,
    /// Its resource.
    pub resource: String,
    /// Its holder.
    pub subject: String,
}

/// Grants issued at or after `since_s`, by resource then id.
pub async fn issued_since(pool: &AnyPool, since_s: i64) -> Result<Vec<Issued>, sqlx::Error> {
    sqlx::query("SELECT id, resource, subject FROM grants WHERE issued_at_s >= $1 ORDER BY resource, id")
        .bind(since_s)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Issued {
                id: r.try_get("id")?,
                resource: r.try_get("resource")?,
                subject: r.try_get("subject")?,
            })
        })
        .collect()
}
