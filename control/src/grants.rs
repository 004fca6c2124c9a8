//! Grants: minting on approval (with the `grant` crate, so every proxy
//! reads them as the spec says), revocation, and what proxies sync: the
//! revocation list and the active grant set.

use grant::GrantClaims;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::audit::{self, Entry};
use crate::auth::Principal;
use crate::clock::new_id;
use crate::error::ApiError;
use crate::requests::{self, RequestRow};
use crate::{notify, policy, App};

/// A grant as the API shows it (never the token).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GrantView {
    /// Grant id (the token's `jti`).
    pub id: String,
    /// The key that signed it.
    pub kid: String,
    /// Issued (seconds).
    pub issued_at: i64,
    /// Expires (seconds).
    pub expires_at: i64,
    /// Revoked (ms).
    pub revoked_at: Option<i64>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
    /// Why.
    pub revoke_reason: Option<String>,
}

/// `GET /v1/requests/{id}/grant`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// Grant id.
    pub grant_id: String,
    /// The grant token, for the `x-jit-grant` header.
    pub token: String,
    /// Expiry (seconds since the epoch).
    pub expires_at: i64,
}

/// `POST /v1/grants/{id}/revoke`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// Why (required; not blank).
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// The answer to `POST /v1/grants/{id}/revoke`: the grant, and whether it
/// had already been revoked before this call (revoking is idempotent).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Revocation {
    /// The grant, revoked.
    #[serde(flatten)]
    pub grant: GrantView,
    /// True when an earlier call had revoked it (this one changed nothing).
    pub already_revoked: bool,
}

const VIEW: &str = "SELECT id, kid, issued_at_s, expires_at_s, revoked_at, revoked_by, revoke_reason FROM grants";

fn view(r: &sqlx::any::AnyRow) -> Result<GrantView, sqlx::Error> {
    Ok(GrantView {
        id: r.try_get("id")?,
        kid: r.try_get("kid")?,
        issued_at: r.try_get("issued_at_s")?,
        expires_at: r.try_get("expires_at_s")?,
        revoked_at: r.try_get("revoked_at")?,
        revoked_by: r.try_get("revoked_by")?,
        revoke_reason: r.try_get("revoke_reason")?,
    })
}

/// The grant of a request, if any.
pub async fn for_request(conn: &mut AnyConnection, request_id: &str) -> Result<Option<GrantView>, sqlx::Error> {
    sqlx::query(&format!("{VIEW} WHERE request_id = $1"))
        .bind(request_id.to_owned())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(view)
        .transpose()
}

/// Mints and stores the grant of an approved request. The window starts
/// now, at approval, and lasts the requested duration.
pub async fn mint(app: &App, conn: &mut AnyConnection, row: &RequestRow, now_ms: i64) -> Result<GrantView, ApiError> {
    let now = (now_ms / 1000) as u64;
    let claims = GrantClaims {
        iss: app.cfg.issuer.clone(),
        sub: row.requester.clone(),
        aud: row.resource.clone(),
        jti: new_id("g"),
        iat: now,
        nbf: now,
        exp: now + row.duration_seconds as u64,
        scope: row.scope.iter().cloned().map(Into::into).collect(),
        src: row.source_cidrs.clone(),
        req: Some(row.id.clone()),
        // Device binding waits for the control service to learn which
        // proxies check `cnf` (spec 1.1): until then no grant is bound.
        cnf: None,
    };
    let token = grant::mint(&claims, &app.cfg.signing_key)
        .map_err(|e| ApiError::Invalid(e.code(), format!("the grant cannot be minted: {e}")))?;
    sqlx::query(
        "INSERT INTO grants (id, request_id, subject, resource, kid, token, issued_at_s, expires_at_s) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(claims.jti.clone())
    .bind(row.id.clone())
    .bind(claims.sub.clone())
    .bind(claims.aud.clone())
    .bind(app.cfg.signing_key.kid().to_owned())
    .bind(token)
    .bind(claims.iat as i64)
    .bind(claims.exp as i64)
    .execute(&mut *conn)
    .await?;
    Ok(GrantView {
        id: claims.jti,
        kid: app.cfg.signing_key.kid().to_owned(),
        issued_at: claims.iat as i64,
        expires_at: claims.exp as i64,
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
    })
}

/// Revokes the active grant of a request inside a transaction; returns the
/// audit entry, or `None` if there was nothing active to revoke.
pub async fn revoke_for_request(
    conn: &mut AnyConnection,
    request_id: &str,
    actor: &Principal,
    reason: &str,
    now_ms: i64,
) -> Result<Option<Entry>, sqlx::Error> {
    let revoked = sqlx::query(
        "UPDATE grants SET revoked_at = $1, revoked_by = $2, revoke_reason = $3 \
         WHERE request_id = $4 AND revoked_at IS NULL AND expires_at_s > $5 RETURNING id, resource",
    )
    .bind(now_ms)
    .bind(actor.id.clone())
    .bind(reason.to_owned())
    .bind(request_id.to_owned())
    .bind(now_ms / 1000)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = revoked else { return Ok(None) };
    sqlx::query("UPDATE access_requests SET state = 'revoked', updated_at = $1 WHERE id = $2")
        .bind(now_ms)
        .bind(request_id.to_owned())
        .execute(&mut *conn)
        .await?;
    Ok(Some(Entry {
        actor: actor.id.clone(),
        action: "grant.revoked".into(),
        resource: row.try_get("resource")?,
        request_id: Some(request_id.to_owned()),
        grant_id: row.try_get("id")?,
        channel: Some("api".into()),
        details: json!({"reason": reason}),
    }))
}

/// Revokes a grant: approvers of its resource, admins, or its holder.
pub async fn revoke(app: &App, p: &Principal, grant_id: &str, input: Revoke) -> Result<Revocation, ApiError> {
    policy::text("reason", "reason_invalid", &input.reason, policy::MAX_REASON)?;
    let now = app.clock.now_ms();
    let mut tx = app.db.pool.begin().await?;
    let found = sqlx::query("SELECT request_id, resource, subject, expires_at_s, revoked_at FROM grants WHERE id = $1")
        .bind(grant_id.to_owned())
        .fetch_optional(&mut *tx)
        .await?;
    let not_found = || ApiError::NotFound("grant_not_found", "no such grant".into());
    let row = found.ok_or_else(not_found)?;
    let (request_id, resource, subject): (String, String, String) = (
        row.try_get("request_id")?,
        row.try_get("resource")?,
        row.try_get("subject")?,
    );
    let allowed = subject == p.id
        || app.auth.is_admin(p)
        || app.cfg.resource(&resource).is_some_and(|r| policy::can_approve(r, p));
    if !allowed {
        let may_see = app.auth.is_auditor(p);
        return Err(if may_see {
            ApiError::Forbidden(
                "not_an_approver",
                "only approvers of the resource or admins can revoke".into(),
            )
        } else {
            not_found()
        });
    }
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    let expires_at: i64 = row.try_get("expires_at_s")?;
    if revoked_at.is_none() {
        if expires_at * 1000 <= now {
            return Err(ApiError::Conflict(
                "grant_expired",
                "the grant has already expired".into(),
            ));
        }
        if let Some(e) = revoke_for_request(&mut tx, &request_id, p, &input.reason, now).await? {
            audit::append(&mut tx, now, &[e]).await?;
            if let Some(row) = requests::load(&mut tx, &request_id).await? {
                notify::enqueue(
                    app,
                    &mut tx,
                    "grant.revoked",
                    &row,
                    json!({"by": p.id, "reason": input.reason}),
                    now,
                )
                .await?;
            }
            app.metrics.grants_revoked.inc();
        }
    }
    let out = sqlx::query(&format!("{VIEW} WHERE id = $1"))
        .bind(grant_id.to_owned())
        .fetch_one(&mut *tx)
        .await?;
    let out = view(&out)?;
    tx.commit().await?;
    Ok(Revocation {
        grant: out,
        already_revoked: revoked_at.is_some(),
    })
}

/// The access request a grant was minted for, if the grant exists (read
/// from the read pool: grants are committed before anyone refers to them).
pub async fn request_of(app: &App, grant_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query("SELECT request_id FROM grants WHERE id = $1")
        .bind(grant_id.to_owned())
        .fetch_optional(&app.db.read)
        .await?
        .map(|row| row.try_get("request_id"))
        .transpose()
}

/// The token of a request's grant: only for its requester, only while the
/// grant is active; every fetch is audited.
pub async fn fetch_token(app: &App, p: &Principal, request_id: &str) -> Result<TokenResponse, ApiError> {
    let now = app.clock.now_ms();
    // Read (and check visibility) before taking a connection for the
    // transaction: SQLite's pool has one.
    let req = requests::get(app, p, request_id).await?;
    if !requests::is_requester(app, p, &req.requester) {
        return Err(ApiError::Forbidden(
            "not_the_requester",
            "only the requester can fetch the grant".into(),
        ));
    }
    if req.state != "approved" {
        return Err(ApiError::Conflict(
            "grant_not_active",
            format!("the request is {}; no active grant", req.state),
        ));
    }
    let mut tx = app.db.pool.begin().await?;
    let row = sqlx::query("SELECT id, token, expires_at_s FROM grants WHERE request_id = $1")
        .bind(request_id.to_owned())
        .fetch_one(&mut *tx)
        .await?;
    let out = TokenResponse {
        grant_id: row.try_get("id")?,
        token: row.try_get("token")?,
        expires_at: row.try_get("expires_at_s")?,
    };
    let e = Entry {
        actor: p.id.clone(),
        action: "grant.token_fetched".into(),
        resource: Some(req.resource.clone()),
        request_id: Some(req.id.clone()),
        grant_id: Some(out.grant_id.clone()),
        channel: Some("api".into()),
        details: json!({}),
    };
    audit::append(&mut tx, now, &[e]).await?;
    tx.commit().await?;
    app.metrics.tokens_fetched.inc();
    Ok(out)
}

/// One revoked grant, for proxies.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Revoked {
    /// Grant id.
    pub jti: String,
    /// Its expiry (seconds): proxies drop the entry after it.
    pub exp: i64,
}

/// `GET /v1/revocations`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RevocationList {
    /// Pass back as `since` on the next poll.
    pub cursor: String,
    /// Revocations of grants that have not expired.
    pub revoked: Vec<Revoked>,
}

/// How far back every poll looks before its cursor: covers transactions
/// that committed late and modest clock differences between replicas.
const OVERLAP_MS: i64 = 10_000;

/// Revocations since a cursor (all current ones without a cursor). Entries
/// whose grant has expired are left out: proxies refuse those anyway.
pub async fn revocations(app: &App, since: Option<&str>) -> Result<RevocationList, ApiError> {
    let now = app.clock.now_ms();
    let since: i64 = since.and_then(|s| s.parse().ok()).unwrap_or(0);
    let rows = sqlx::query(
        "SELECT id, expires_at_s FROM grants WHERE revoked_at IS NOT NULL AND revoked_at >= $1 AND expires_at_s + 120 > $2 \
         ORDER BY revoked_at",
    )
    .bind(since - OVERLAP_MS)
    .bind(now / 1000)
    .fetch_all(&app.db.read)
    .await?;
    let revoked = rows
        .iter()
        .map(|r| {
            Ok(Revoked {
                jti: r.try_get("id")?,
                exp: r.try_get("expires_at_s")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(RevocationList {
        cursor: now.to_string(),
        revoked,
    })
}

/// `GET /v1/proxy/grants`: the active grants, for identity-aware proxies.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct GrantSet {
    /// Changes whenever the set changes.
    pub cursor: String,
    /// The grant tokens (proxies verify each one).
    pub grants: Vec<String>,
}

/// Every active grant.
pub async fn active_set(app: &App) -> Result<GrantSet, ApiError> {
    let now = app.clock.now_s();
    let rows = sqlx::query("SELECT id, token FROM grants WHERE revoked_at IS NULL AND expires_at_s > $1 ORDER BY id")
        .bind(now)
        .fetch_all(&app.db.read)
        .await?;
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut grants = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: String = r.try_get("id")?;
        h.update(id.as_bytes());
        grants.push(r.try_get("token")?);
    }
    let cursor = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(GrantSet { cursor, grants })
}

/// Records the expiry of grants whose time has passed (enforcement needs
/// no job: proxies check `exp`; this only writes the audit record).
pub async fn sweep_expiries(app: &App) -> Result<usize, sqlx::Error> {
    let now = app.clock.now_ms();
    let rows = sqlx::query(
        "SELECT id, request_id, resource, subject FROM grants WHERE expires_at_s <= $1 AND revoked_at IS NULL AND expiry_recorded = 0 LIMIT 200",
    )
    .bind(now / 1000)
    .fetch_all(&app.db.pool)
    .await?;
    let mut n = 0;
    for r in &rows {
        let id: String = r.try_get("id")?;
        let mut tx = app.db.pool.begin().await?;
        let claimed = sqlx::query("UPDATE grants SET expiry_recorded = 1 WHERE id = $1 AND expiry_recorded = 0")
            .bind(id.clone())
            .execute(&mut *tx)
            .await?;
        if claimed.rows_affected() == 1 {
            let subject: String = r.try_get("subject")?;
            let e = Entry {
                actor: "system".into(),
                action: "grant.expired".into(),
                resource: r.try_get("resource")?,
                request_id: r.try_get("request_id")?,
                grant_id: Some(id),
                channel: Some("system".into()),
                details: json!({"subject": subject}),
            };
            audit::append(&mut tx, now, &[e]).await?;
            let request_id: String = r.try_get("request_id")?;
            if let Some(row) = requests::load(&mut tx, &request_id).await? {
                notify::enqueue(app, &mut tx, "grant.expired", &row, json!({}), now).await?;
            }
            n += 1;
        }
        tx.commit().await?;
    }
    Ok(n)
}

/// Announces grants that expire within the configured lead time, once.
pub async fn sweep_expiring_soon(app: &App) -> Result<usize, sqlx::Error> {
    if app.cfg.targets.is_empty() {
        return Ok(0);
    }
    let now = app.clock.now_ms();
    let horizon = now / 1000 + app.cfg.expiring_soon_seconds as i64;
    let rows = sqlx::query(
        "SELECT id, request_id FROM grants WHERE expires_at_s <= $1 AND expires_at_s > $2 AND revoked_at IS NULL          AND expiring_notified = 0 LIMIT 200",
    )
    .bind(horizon)
    .bind(now / 1000)
    .fetch_all(&app.db.pool)
    .await?;
    let mut n = 0;
    for r in &rows {
        let id: String = r.try_get("id")?;
        let request_id: String = r.try_get("request_id")?;
        let mut tx = app.db.pool.begin().await?;
        let claimed = sqlx::query("UPDATE grants SET expiring_notified = 1 WHERE id = $1 AND expiring_notified = 0")
            .bind(id.clone())
            .execute(&mut *tx)
            .await?;
        if claimed.rows_affected() == 1 {
            if let Some(row) = requests::load(&mut tx, &request_id).await? {
                notify::enqueue(app, &mut tx, "grant.expiring_soon", &row, json!({"grant_id": id}), now).await?;
                n += 1;
            }
        }
        tx.commit().await?;
    }
    Ok(n)
}
