//! Grants: minting (with the `grant` crate, so every proxy reads them as
//! the spec says) from a small [`MintInput`], and what proxies sync: the
//! revocation list and the active grant set. Revoking a grant and fetching
//! its token are state changes of the workflow ([`crate::workflow`]).

use grant::scope::ScopeRule;
use grant::GrantClaims;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::clock::new_id;
use crate::config::Config;
use crate::error::ApiError;
use crate::store::grants::{self as rows, NewGrant};
use crate::App;

pub use crate::store::grants::GrantView;

/// `GET /v1/requests/{id}/grant`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// Grant id.
    pub grant_id: String,
    /// The grant token, for the `x-jit-grant` header.
    pub token: String,
    /// When proxies start accepting it (seconds since the epoch; later
    /// than now for a scheduled request).
    pub not_before: i64,
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

/// What a grant is minted from.
#[derive(Debug, Clone, Copy)]
pub struct MintInput<'a> {
    /// The approved request (the token's `req`).
    pub request_id: &'a str,
    /// Its holder (`sub`).
    pub subject: &'a str,
    /// Its resource (`aud`).
    pub resource: &'a str,
    /// What it allows.
    pub scope: &'a [ScopeRule],
    /// The client address blocks it is limited to.
    pub source_cidrs: Option<&'a [String]>,
    /// For how long from the window's start.
    pub duration_seconds: i64,
    /// When the window starts (seconds), for a scheduled request; `None`:
    /// at minting.
    pub starts_at_s: Option<i64>,
    /// The client certificate thumbprint (`x5t#S256`) it is bound to;
    /// the workflow has checked that every proxy of the resource checks it.
    pub cnf_x5t_s256: Option<&'a str>,
}

/// The digest an `x5t#S256` thumbprint spells. Stored thumbprints were
/// checked on the way in; one that no longer decodes fails the mint
/// rather than minting an unbound grant.
fn thumbprint_digest(x5t: &str) -> Result<[u8; 32], ApiError> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(x5t)
        .ok()
        .and_then(|d| <[u8; 32]>::try_from(d).ok())
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("stored thumbprint {x5t:?} does not decode")))
}

/// The window of a grant minted at `now` (seconds): `(nbf, exp)`. It opens
/// at approval, or at the scheduled start if that is later, and closes
/// the requested duration after the start (a scheduled request approved
/// late gets what is left of its window).
pub fn window(now: u64, starts_at_s: Option<i64>, duration_seconds: i64) -> (u64, u64) {
    let start = starts_at_s.map_or(now, |s| u64::try_from(s).unwrap_or(0));
    (
        start.max(now),
        start.saturating_add(u64::try_from(duration_seconds).unwrap_or(0)),
    )
}

/// Mints and stores a grant for [`window`].
///
/// The token's `iat` is the window's start, not the signing time: the
/// spec bounds a grant's lifetime as `exp - iat`, so a grant signed a day
/// ahead of a one-hour window would otherwise exceed every proxy's
/// `max_ttl`. The signing time is kept in the row (`issued_at`) and the
/// audit record.
pub async fn mint(
    cfg: &Config,
    conn: &mut AnyConnection,
    input: MintInput<'_>,
    now_ms: i64,
) -> Result<GrantView, ApiError> {
    let now = (now_ms / 1000) as u64;
    let (nbf, exp) = window(now, input.starts_at_s, input.duration_seconds);
    let claims = GrantClaims {
        iss: cfg.issuer.clone(),
        sub: input.subject.to_owned(),
        aud: input.resource.to_owned(),
        jti: new_id("g"),
        iat: nbf,
        nbf,
        exp,
        scope: input.scope.to_vec(),
        src: input.source_cidrs.map(<[String]>::to_vec),
        req: Some(input.request_id.to_owned()),
        cnf: input.cnf_x5t_s256.map(thumbprint_digest).transpose()?,
    };
    let token = grant::mint(&claims, &cfg.signing_key)
        .map_err(|e| ApiError::Invalid(e.code(), format!("the grant cannot be minted: {e}")))?;
    let row = NewGrant {
        id: claims.jti,
        request_id: input.request_id.to_owned(),
        subject: claims.sub,
        resource: claims.aud,
        kid: cfg.signing_key.kid().to_owned(),
        token,
        issued_at_s: now as i64,
        not_before_s: claims.nbf as i64,
        expires_at_s: claims.exp as i64,
    };
    rows::insert(conn, &row).await?;
    Ok(GrantView {
        id: row.id,
        kid: row.kid,
        issued_at: row.issued_at_s,
        not_before: row.not_before_s,
        expires_at: row.expires_at_s,
        revoked_at: None,
        revoked_by: None,
        revoke_reason: None,
    })
}

/// The access request a grant was minted for, if the grant exists (read
/// from the read pool: grants are committed before anyone refers to them).
pub async fn request_of(app: &App, grant_id: &str) -> Result<Option<String>, sqlx::Error> {
    rows::request_of(&app.db.read, grant_id).await
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
    let revoked = rows::revoked_since(&app.db.read, since - OVERLAP_MS, now / 1000 - 120)
        .await?
        .into_iter()
        .map(|(jti, exp)| Revoked { jti, exp })
        .collect();
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
    use sha2::{Digest, Sha256};
    let rows = rows::active_tokens(&app.db.read, app.clock.now_s()).await?;
    let mut h = Sha256::new();
    let mut grants = Vec::with_capacity(rows.len());
    for (id, token) in rows {
        h.update(id.as_bytes());
        grants.push(token);
    }
    let cursor = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(GrantSet { cursor, grants })
}

#[cfg(test)]
mod tests {
    use super::window;

    #[test]
    fn an_unscheduled_grant_opens_at_minting_for_its_duration() {
        assert_eq!(window(1_000, None, 600), (1_000, 1_600));
    }

    #[test]
    fn a_grant_approved_ahead_opens_at_its_start() {
        assert_eq!(window(1_000, Some(5_000), 600), (5_000, 5_600));
    }

    #[test]
    fn a_grant_approved_after_its_start_keeps_the_scheduled_end() {
        assert_eq!(window(5_100, Some(5_000), 600), (5_100, 5_600));
    }
}
