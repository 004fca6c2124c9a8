//! Insights from real traffic: grants for the payments API's whole
//! requestable read scope (`GET, HEAD` on `/v1/invoices/**` and
//! `/v1/reports/**`), used through real Envoy for invoice reads only. The
//! proxy's decision reports become per-grant usage, matched to the API's
//! OpenAPI templates, and `GET /v1/insights` suggests the narrower rule
//! that covers exactly that use; the denial shows as a hot spot.

use std::time::{Duration, Instant};

use jitgate_e2e::control::Control;
use jitgate_e2e::envoy::{Envoy, EnvoyOptions};
use jitgate_e2e::http::{get_with_grant, request};
use jitgate_e2e::upstream::Upstream;
use serde_json::{json, Value};

#[test]
fn use_through_envoy_suggests_the_narrower_rule_it_needed() {
    let document = jitgate_e2e::workspace_root().join("control/tests/data/openapi/payments.yaml");
    let control = Control::start(|c| {
        c.replacen(
            "approvals_required = 1\n",
            &format!(
                "approvals_required = 1\nopenapi = {:?}\n",
                document.display().to_string()
            ),
            1,
        )
    });
    let upstream = Upstream::start();
    let mut options = EnvoyOptions::new(
        control.filter_config("", r#","report_interval_ms":200,"report_allowed":"each""#),
        upstream.port,
    );
    options.control_port = control.port;
    let envoy = Envoy::start(options);

    let whole = json!([{"methods": ["GET", "HEAD"], "paths": ["/v1/invoices/**", "/v1/reports/**"]}]);
    let (_, first, a) = control.approved_grant("alice", "bob", whole.clone(), 600);
    let (_, second, b) = control.approved_grant("alice", "bob", whole.clone(), 600);
    let (_, never, _) = control.approved_grant("alice", "bob", whole, 600);
    for (token, path) in [
        (&a, "/v1/invoices/INV-1"),
        (&a, "/v1/invoices/INV-2"),
        (&b, "/v1/invoices/INV-3"),
    ] {
        assert_eq!(get_with_grant(envoy.port, path, token).status, 200, "{path}");
    }
    // Outside the grant's scope: refused, and counted as a denial.
    let refused = request(envoy.port, "POST", "/v1/refunds", &[("x-jit-grant", a.as_bytes())]);
    assert_eq!(refused.error_code(), "request_out_of_scope");

    let report = eventually_reported(&control);
    let payments = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "payments-api")
        .cloned()
        .unwrap();
    assert_eq!(
        payments["used"],
        json!([{"method": "GET", "operation": "/v1/invoices/{id}", "calls": 3, "grants": 2}]),
        "{payments}"
    );
    assert_eq!(payments["never_used"], json!([never]), "{payments}");
    let suggestion = &payments["suggestion"];
    assert_eq!(
        suggestion["scope"],
        json!([{"methods": ["GET"], "paths": ["/v1/invoices/*"]}]),
        "{suggestion}"
    );
    assert_eq!(suggestion["read_only"], true);
    assert!(
        suggestion["derived_from"]
            .as_str()
            .unwrap()
            .starts_with("3 allowed calls to 1 operations under 3 grants"),
        "{suggestion}"
    );
    let spots = report["denials"].to_string();
    assert!(
        spots.contains("/v1/refunds") && spots.contains("request_out_of_scope"),
        "{spots}"
    );
    let _ = (first, second);
    drop(envoy);
}

/// The insights once the proxy's reports of the four decisions are in.
fn eventually_reported(control: &Control) -> Value {
    let start = Instant::now();
    loop {
        let r = control.as_user("ada", "GET", "/v1/insights?since_s=0", None);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let report = r.json();
        let calls: i64 = report["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["used"].as_array().cloned().unwrap_or_default())
            .map(|u| u["calls"].as_i64().unwrap_or(0))
            .sum();
        if calls >= 3 && report["denials"].as_array().is_some_and(|d| !d.is_empty()) {
            return report;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not reported within 20 s: {report}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
