//! Device-bound grants on the control side (issue 16 point 4), on SQLite
//! and PostgreSQL: proxies' sync calls are recorded per resource, a bound
//! grant is minted only while every proxy seen in the window reports grant
//! spec 1.1 or later, resources may require binding, and the thumbprint
//! field is checked. Each refusal leaves nothing stored.

mod common;

use base64::Engine as _;
use common::TestApp;
use serde_json::{json, Value};
use sqlx::Row;

const X5T: &str = "dGhpcyBpcyBhIDMyLWJ5dGUgZGlnZXN0ISEhISEhISE";
const INGEST: &str = "dev-ingest-key-0123456789";

/// A proxy's sync call naming itself, its spec and its resources.
async fn sync(app: &TestApp, proxy: &str, spec: &str, resources: &str) {
    let resp = app
        .http
        .get(format!("{}/v1/revocations", app.base))
        .bearer_auth(INGEST)
        .header("x-jitgate-proxy", proxy)
        .header("x-jitgate-grant-spec", spec)
        .header("x-jitgate-resources", resources)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

async fn ask_bound(app: &TestApp, user: &str, resource: &str, x5t: Option<&str>) -> (u16, Value) {
    let (methods, paths) = match resource {
        "hr-api" => (vec!["GET"], vec!["/v1/employees/*"]),
        _ => (vec!["GET", "HEAD"], vec!["/v1/invoices/*"]),
    };
    app.post(
        "/v1/requests",
        user,
        json!({"resource": resource, "scope": [{"methods": methods, "paths": paths}], "duration_seconds": 600,
               "reason": "device-bound access", "cnf_x5t_s256": x5t}),
    )
    .await
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

async fn sightings(app: &TestApp) -> Vec<(String, String, String)> {
    sqlx::query("SELECT proxy, resource, grant_spec FROM proxy_sightings ORDER BY proxy, resource")
        .fetch_all(&app.app.db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("proxy"), r.get("resource"), r.get("grant_spec")))
        .collect()
}

async fn issued_details(app: &TestApp) -> Value {
    let row = sqlx::query("SELECT details FROM audit_log WHERE action = 'grant.issued' ORDER BY seq DESC")
        .fetch_one(&app.app.db.pool)
        .await
        .unwrap();
    serde_json::from_str(&row.get::<String, _>("details")).unwrap()
}

async fn a_bound_grant_carries_cnf_once_every_proxy_reports_1_1(app: &TestApp) {
    sync(app, "edge-1", "1.1", "payments-api,hr-api").await;
    sync(app, "edge-2", "1.2", "payments-api").await;
    let (status, req) = ask_bound(app, "alice", "payments-api", Some(X5T)).await;
    assert_eq!(status, 201, "{req}");
    assert_eq!(req["cnf_x5t_s256"], X5T);
    let id = req["id"].as_str().unwrap();
    let (status, body) = app.post(&format!("/v1/requests/{id}/approve"), "bob", json!({})).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("approved")), "{body}");
    let (_, token) = app.get(&format!("/v1/requests/{id}/grant"), "alice").await;
    assert_eq!(
        claims(token["token"].as_str().unwrap())["cnf"],
        json!({"x5t#S256": X5T})
    );
    let audit = issued_details(app).await;
    assert_eq!(audit["device_binding"]["decision"], "bound");
    assert_eq!(audit["device_binding"]["cnf"], json!({"x5t#S256": X5T}));
    assert_eq!(audit["device_binding"]["proxies_checking_cnf"], 2);
    // Repeated polls update in place: one row per proxy and resource.
    sync(app, "edge-1", "1.1", "payments-api,hr-api").await;
    assert_eq!(
        sightings(app).await,
        [
            ("edge-1".into(), "hr-api".into(), "1.1".into()),
            ("edge-1".into(), "payments-api".into(), "1.1".into()),
            ("edge-2".into(), "payments-api".into(), "1.2".into()),
        ]
    );
    // An unbound grant says so in its audit record and carries no cnf.
    let plain = app.request_access("alice", "payments-api", 600).await;
    let pid = plain["id"].as_str().unwrap();
    app.post(&format!("/v1/requests/{pid}/approve"), "bob", json!({})).await;
    assert_eq!(
        issued_details(app).await["device_binding"],
        json!({"decision": "unbound"})
    );
    let (_, token) = app.get(&format!("/v1/requests/{pid}/grant"), "alice").await;
    assert!(claims(token["token"].as_str().unwrap()).get("cnf").is_none());
}

async fn an_old_proxy_in_the_window_stops_bound_requests_and_approvals(app: &TestApp) {
    // No proxy seen at all: refused, nothing stored.
    let (status, body) = ask_bound(app, "alice", "payments-api", Some(X5T)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("device_binding_unavailable")),
        "{body}"
    );
    assert_eq!(app.count("access_requests").await, 0);
    sync(app, "edge-1", "1.1", "payments-api").await;
    let (status, req) = ask_bound(app, "alice", "payments-api", Some(X5T)).await;
    assert_eq!(status, 201, "{req}");
    let id = req["id"].as_str().unwrap();
    // An old proxy appears before approval: the approval would mint, so it
    // is refused and the request stays pending with no grant and no vote.
    sync(app, "edge-old", "1.0", "payments-api").await;
    let (status, body) = app.post(&format!("/v1/requests/{id}/approve"), "bob", json!({})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("device_binding_unavailable")),
        "{body}"
    );
    assert!(body["detail"].as_str().unwrap().contains("edge-old"), "{body}");
    assert_eq!((app.count("grants").await, app.count("votes").await), (0, 0));
    let (_, now) = app.get(&format!("/v1/requests/{id}"), "alice").await;
    assert_eq!(now["state"], "pending");
    // A new bound request is refused too; an old proxy of another resource
    // does not matter.
    let (status, body) = ask_bound(app, "alice", "payments-api", Some(X5T)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("device_binding_unavailable")),
        "{body}"
    );
    assert_eq!(app.count("access_requests").await, 1);
    // Once the old proxy has not been seen for a window, it no longer counts.
    app.clock.advance(61);
    sync(app, "edge-1", "1.1", "payments-api").await;
    let (status, body) = app.post(&format!("/v1/requests/{id}/approve"), "bob", json!({})).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("approved")), "{body}");
}

async fn an_unidentified_poller_counts_as_an_old_proxy_for_every_resource(app: &TestApp) {
    sync(app, "edge-1", "1.1", "payments-api").await;
    // A sync call without the headers (a proxy from before spec 1.1).
    let resp = app
        .http
        .get(format!("{}/v1/proxy/grants", app.base))
        .bearer_auth(INGEST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (status, body) = ask_bound(app, "alice", "payments-api", Some(X5T)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("device_binding_unavailable")),
        "{body}"
    );
    // Malformed headers do not get a proxy more trust: same outcome, and
    // resources not configured here are not recorded.
    app.clock.advance(61);
    sync(app, "edge 1", "1.1", "payments-api").await;
    sync(app, "edge-2", "9.9", "payments-api,no-such-resource").await;
    let (status, body) = ask_bound(app, "alice", "payments-api", Some(X5T)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("device_binding_unavailable")),
        "{body}"
    );
    let rows = sightings(app).await;
    assert!(rows.iter().all(|(_, r, _)| r != "no-such-resource"), "{rows:?}");
    assert!(
        rows.contains(&("(unidentified)".into(), "*".into(), "unknown".into())),
        "{rows:?}"
    );
}

async fn thumbprints_are_checked_and_named(app: &TestApp) {
    sync(app, "edge-1", "1.1", "payments-api").await;
    for bad in [
        "short",
        "dGhpcyBpcyBhIDMyLWJ5dGUgZGlnZXN0ISEhISEhISE=",
        "dGhpcyBpcyBhIDMyLWJ5dGUgZGlnZXN0ISEhISEhIS+",
    ] {
        let (status, body) = ask_bound(app, "alice", "payments-api", Some(bad)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("thumbprint_invalid")),
            "{bad}: {body}"
        );
        assert_eq!(body["errors"][0]["field"], "cnf_x5t_s256", "{body}");
    }
    assert_eq!(app.count("access_requests").await, 0);
}

async fn a_resource_that_requires_binding_refuses_unbound_requests(app: &TestApp) {
    sync(app, "edge-1", "1.1", "hr-api").await;
    let (status, body) = ask_bound(app, "alice", "hr-api", None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("device_binding_required")),
        "{body}"
    );
    assert_eq!(app.count("access_requests").await, 0);
    let (status, body) = ask_bound(app, "alice", "hr-api", Some(X5T)).await;
    assert_eq!(status, 201, "{body}");
}

on_both!(
    a_bound_grant_carries_cnf_once_every_proxy_reports_1_1,
    an_old_proxy_in_the_window_stops_bound_requests_and_approvals,
    an_unidentified_poller_counts_as_an_old_proxy_for_every_resource,
    thumbprints_are_checked_and_named,
);

mod requiring {
    use super::*;

    fn hr_requires_binding(text: String) -> String {
        text.replace(
            "approvals_required = 2",
            "approvals_required = 2\nrequire_device_binding = true",
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        let app = common::spawn_app_with(common::Backend::Sqlite, hr_requires_binding)
            .await
            .unwrap();
        a_resource_that_requires_binding_refuses_unbound_requests(&app).await;
        app.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        if let Some(app) = common::spawn_app_with(common::Backend::Postgres, hr_requires_binding).await {
            a_resource_that_requires_binding_refuses_unbound_requests(&app).await;
            app.finish().await;
        }
    }
}
