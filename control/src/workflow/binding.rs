//! Device binding (issue 16): recording which proxies serve which
//! resource with which grant-spec version (from their sync calls), and the
//! check before a bound grant is requested or minted.

use crate::error::ApiError;
use crate::store::sightings;
use crate::{policy, App};

/// How far back a sync call counts as "seen in the last poll window".
/// Proxies poll every few seconds (`poll_interval_ms`), so a proxy that is
/// running has always been seen within it; one that stopped is forgotten
/// after it, so a retired old proxy stops blocking bound grants.
pub const WINDOW_MS: i64 = 60_000;

/// The resource key of sightings from callers that did not say (or said
/// unreadably) which resources they serve: such a poller may serve any of
/// them, so it counts for every resource.
pub const ANY_RESOURCE: &str = "*";

/// What a sync call said about its poller, already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poller {
    /// It named itself, its spec and the configured resources it serves.
    Named {
        /// `x-jitgate-proxy`.
        proxy: String,
        /// `x-jitgate-grant-spec`, as sent (compared by policy).
        grant_spec: String,
        /// Those of `x-jitgate-resources` that are configured here.
        resources: Vec<String>,
    },
    /// It did not say, or said something unreadable: an older proxy, or
    /// one we cannot trust to check `cnf`.
    Unidentified,
}

/// The proxy id recorded for [`Poller::Unidentified`].
pub const UNIDENTIFIED: &str = "(unidentified)";
/// The spec recorded for [`Poller::Unidentified`] (never a version).
pub const UNKNOWN_SPEC: &str = "unknown";

/// Records a sync call's poller (one row per proxy and resource, in place).
pub async fn record(app: &App, poller: &Poller) -> Result<(), ApiError> {
    let now = app.clock.now_ms();
    let mut conn = app.db.pool.acquire().await?;
    match poller {
        Poller::Named {
            proxy,
            grant_spec,
            resources,
        } => {
            let ids: Vec<&str> = resources.iter().map(String::as_str).collect();
            sightings::upsert(&mut conn, proxy, grant_spec, &ids, now).await?;
        }
        Poller::Unidentified => {
            sightings::upsert(&mut conn, UNIDENTIFIED, UNKNOWN_SPEC, &[ANY_RESOURCE], now).await?;
        }
    }
    Ok(())
}

/// Whether a grant bound to a certificate may be minted for `resource`
/// now (see [`policy::binding_mintable`]); the number of proxies that
/// vouch for it.
pub async fn mintable(conn: &mut sqlx::AnyConnection, resource: &str, now_ms: i64) -> Result<usize, ApiError> {
    let seen = sightings::for_resource(conn, resource, ANY_RESOURCE, now_ms - WINDOW_MS).await?;
    policy::binding_mintable(
        resource,
        seen.iter()
            .map(|s| (s.proxy.as_str(), s.grant_spec.as_str(), s.seen_at_ms)),
        now_ms,
        WINDOW_MS,
    )
}
