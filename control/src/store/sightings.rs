//! The `proxy_sightings` table: which proxy serves which resource with
//! which grant-spec version, as its latest sync call said, and when. One
//! row per proxy and resource, replaced in place by each sync.

use sqlx::{AnyConnection, Row};

/// One proxy seen serving a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The proxy's id (`x-jitgate-proxy`).
    pub proxy: String,
    /// The grant-spec version it reported (`x-jitgate-grant-spec`), as sent.
    pub grant_spec: String,
    /// When (ms).
    pub seen_at_ms: i64,
}

/// Records that `proxy` serves each of `resources` with `grant_spec` now.
pub async fn upsert(
    conn: &mut AnyConnection,
    proxy: &str,
    grant_spec: &str,
    resources: &[&str],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    for resource in resources {
        sqlx::query(
            "INSERT INTO proxy_sightings (proxy, resource, grant_spec, seen_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (proxy, resource) DO UPDATE SET grant_spec = excluded.grant_spec, seen_at = excluded.seen_at",
        )
        .bind(proxy.to_owned())
        .bind((*resource).to_owned())
        .bind(grant_spec.to_owned())
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The proxies seen for `resource` since `since_ms` (rows under `any`,
/// the key of callers that did not say which resources they serve,
/// included: they may serve this one).
pub async fn for_resource(
    conn: &mut AnyConnection,
    resource: &str,
    any: &str,
    since_ms: i64,
) -> Result<Vec<Sighting>, sqlx::Error> {
    sqlx::query(
        "SELECT proxy, grant_spec, seen_at FROM proxy_sightings WHERE resource IN ($1, $2) AND seen_at >= $3 \
         ORDER BY proxy",
    )
    .bind(resource.to_owned())
    .bind(any.to_owned())
    .bind(since_ms)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Sighting {
            proxy: r.try_get("proxy")?,
            grant_spec: r.try_get("grant_spec")?,
            seen_at_ms: r.try_get("seen_at")?,
        })
    })
    .collect()
}
