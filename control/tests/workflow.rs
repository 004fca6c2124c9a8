//! The workflow rules, over HTTP, on SQLite and PostgreSQL.

mod common;

use common::TestApp;
use serde_json::{json, Value};

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn approve(app: &TestApp, user: &str, req: &str) -> (u16, Value) {
    app.post(&format!("/v1/requests/{req}/approve"), user, json!({"comment": "ok"}))
        .await
}

async fn self_approval_is_refused(app: &TestApp) {
    // alice is both requester and (here) approver: still refused.
    let req = app.request_access("alice", "payments-api", 600).await;
    let (status, body) = approve(app, "alice", &id(&req)).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "self_approval", "{body}");
    assert_eq!(app.count("grants").await, 0);
}

async fn an_approver_outside_the_resource_groups_is_refused(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    // An auditor sees the request but may not decide on it.
    let (status, body) = approve(app, "ann", &id(&req)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_an_approver")));
    // Approvers of other resources, and everyone else, cannot even see it:
    // they learn nothing about the id.
    for user in ["dave", "eve"] {
        let (status, body) = approve(app, user, &id(&req)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("request_not_found")),
            "{user}"
        );
    }
    assert_eq!(app.count("votes").await, 0);
}

async fn two_of_three_needs_two_different_approvers(app: &TestApp) {
    let req = app.request_access("alice", "hr-api", 600).await;
    let r = id(&req);
    let (status, body) = approve(app, "dave", &r).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("pending")));
    // The same approver again changes nothing.
    let (status, body) = approve(app, "dave", &r).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("pending")));
    assert_eq!(body["votes"].as_array().unwrap().len(), 1);
    let (status, body) = approve(app, "erin", &r).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("approved")), "{body}");
    assert!(body["grant"]["id"].is_string());
}

async fn fifty_concurrent_approvals_give_one_grant(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    let r = id(&req);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let base = app.base.clone();
        let token = app.token(if i % 2 == 0 { "bob" } else { "carol" });
        let http = app.http.clone();
        let path = format!("{base}/v1/requests/{r}/approve");
        tasks.push(tokio::spawn(async move {
            http.post(path)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(statuses.iter().all(|s| *s == 200 || *s == 409), "{statuses:?}");
    assert_eq!(app.count("grants").await, 1, "exactly one grant");
    let (_, body) = app.get(&format!("/v1/requests/{r}"), "alice").await;
    assert_eq!(body["state"], "approved");
}

async fn only_the_requester_can_fetch_the_token(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    let r = id(&req);
    approve(app, "bob", &r).await;
    let (status, body) = app.get(&format!("/v1/requests/{r}/grant"), "bob").await;
    assert_eq!((status, body["code"].as_str()), (403, Some("not_the_requester")));
    let (status, _) = app.get(&format!("/v1/requests/{r}/grant"), "eve").await;
    assert_eq!(status, 404);
    let (status, body) = app.get(&format!("/v1/requests/{r}/grant"), "alice").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["token"].as_str().unwrap().split('.').count() == 3);
}

async fn a_minted_grant_passes_the_grant_verifier_and_a_standard_jwt_library(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    let r = id(&req);
    approve(app, "bob", &r).await;
    let (_, body) = app.get(&format!("/v1/requests/{r}/grant"), "alice").await;
    let token = body["token"].as_str().unwrap();
    let verifier = grant::Verifier::new("jit-control", app.cfg.keys.clone());
    let g = verifier
        .verify(token.as_bytes(), common::now_s() as u64)
        .expect("grant verifies");
    assert_eq!((g.sub(), g.aud(), g.req()), ("alice", "payments-api", Some(r.as_str())));
    assert!(g.allows(b"GET", b"/v1/invoices/7"));
    assert!(!g.allows(b"POST", b"/v1/invoices/7"));
    // The shared key, as any JWT library would use it.
    use base64::Engine;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode("nHq6SY5Wn3UwzrlAcsFzq-0vAZ3uHFHVU13ZQvQAlIU")
        .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["payments-api"]);
    validation.set_issuer(&["jit-control"]);
    let data = jsonwebtoken::decode::<Value>(token, &jsonwebtoken::DecodingKey::from_secret(&secret), &validation)
        .expect("jsonwebtoken verifies");
    assert_eq!(data.header.typ.as_deref(), Some("jit-grant+jwt"));
    assert_eq!(data.header.kid.as_deref(), Some("k2"));
    assert_eq!(data.claims["jti"], body["grant_id"]);
}

async fn editing_or_deleting_an_audit_row_makes_verify_fail_and_name_it(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    approve(app, "bob", &id(&req)).await;
    let (status, body) = app.get("/v1/audit/verify", "ada").await;
    assert_eq!(status, 200);
    assert_eq!(body["ok"], true, "{body}");
    let records = body["records"].as_i64().unwrap();
    assert!(records >= 3, "{body}");
    // (Later checks read every record: by default a check starts after
    // the last record found intact, and the edits below are before it.)
    // The database itself refuses edits...
    let refused = sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
        .execute(&app.app.db.pool)
        .await;
    assert!(refused.is_err(), "audit_log must be append-only");
    // ...so an attacker with direct access drops the guard first.
    drop_audit_guard(app).await;
    let original: String = sqlx::Row::get(
        &sqlx::query("SELECT actor FROM audit_log WHERE seq = 2")
            .fetch_one(&app.app.db.pool)
            .await
            .unwrap(),
        "actor",
    );
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
        .execute(&app.app.db.pool)
        .await
        .unwrap();
    let (_, body) = app.get("/v1/audit/verify?full=true", "ada").await;
    assert_eq!(body["ok"], false);
    assert_eq!(body["first_broken"]["seq"], 2, "{body}");
    sqlx::query("UPDATE audit_log SET actor = $1 WHERE seq = 2")
        .bind(original)
        .execute(&app.app.db.pool)
        .await
        .unwrap();
    let (_, body) = app.get("/v1/audit/verify?full=true", "ada").await;
    assert_eq!(body["ok"], true, "restored: {body}");
    sqlx::query("DELETE FROM audit_log WHERE seq = 3")
        .execute(&app.app.db.pool)
        .await
        .unwrap();
    let (_, body) = app.get("/v1/audit/verify?full=true", "ada").await;
    assert_eq!(body["ok"], false);
    assert_eq!(body["first_broken"]["seq"], 3, "{body}");
    // Non-auditors may not read it.
    let (status, _) = app.get("/v1/audit/verify", "alice").await;
    assert_eq!(status, 403);
}

async fn drop_audit_guard(app: &TestApp) {
    let statements: &[&str] = match app.backend {
        common::Backend::Sqlite => &["DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete"],
        common::Backend::Postgres => &["DROP TRIGGER audit_log_no_update ON audit_log"],
    };
    for s in statements {
        sqlx::query(s).execute(&app.app.db.pool).await.unwrap();
    }
}

async fn a_grant_approved_an_hour_later_runs_its_full_duration(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 1800).await;
    app.clock.advance(3600);
    let (status, body) = approve(app, "bob", &id(&req)).await;
    assert_eq!(status, 200, "{body}");
    let grant = &body["grant"];
    let issued = grant["issued_at"].as_i64().unwrap();
    assert_eq!(grant["expires_at"].as_i64().unwrap() - issued, 1800);
    assert!(
        (issued - (common::now_s() + 3600)).abs() <= 2,
        "the clock starts at approval"
    );
}

async fn a_timed_out_request_cannot_be_approved(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    app.clock.advance(25 * 3600);
    let (_, body) = app.get(&format!("/v1/requests/{}", id(&req)), "alice").await;
    assert_eq!(body["state"], "timed_out");
    let (status, body) = approve(app, "bob", &id(&req)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("request_timed_out")),
        "{body}"
    );
    assert_eq!(app.count("grants").await, 0);
}

async fn a_vote_after_resolution_is_refused(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    let r = id(&req);
    approve(app, "bob", &r).await;
    let (status, body) = approve(app, "carol", &r).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("request_resolved")));
    let (status, _) = app.post(&format!("/v1/requests/{r}/deny"), "carol", json!({})).await;
    assert_eq!(status, 409);
    // One deny ends a request; nothing counts after it.
    let req = app.request_access("alice", "hr-api", 600).await;
    let r = id(&req);
    let (status, body) = app
        .post(&format!("/v1/requests/{r}/deny"), "dave", json!({"comment": "no"}))
        .await;
    assert_eq!((status, body["state"].as_str()), (200, Some("denied")));
    let (status, _) = approve(app, "erin", &r).await;
    assert_eq!(status, 409);
    // Cancelled requests too; only the requester cancels.
    let req = app.request_access("alice", "payments-api", 600).await;
    let r = id(&req);
    let (status, _) = app.post(&format!("/v1/requests/{r}/cancel"), "bob", json!({})).await;
    assert_eq!(status, 403);
    let (status, body) = app.post(&format!("/v1/requests/{r}/cancel"), "alice", json!({})).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("cancelled")));
    let (status, _) = approve(app, "bob", &r).await;
    assert_eq!(status, 409);
}

async fn an_extension_revokes_the_grant_it_replaces(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    let r = id(&req);
    let (_, approved) = approve(app, "bob", &r).await;
    let old_grant = approved["grant"]["id"].as_str().unwrap().to_owned();
    let (status, ext) = app
        .post(
            &format!("/v1/requests/{r}/extend"),
            "alice",
            json!({"duration_seconds": 1200, "reason": "need longer"}),
        )
        .await;
    assert_eq!(status, 201, "{ext}");
    assert_eq!(ext["extends"], r.as_str());
    assert_eq!(ext["state"], "pending");
    let (status, body) = approve(app, "bob", &id(&ext)).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("approved")), "{body}");
    let (_, old) = app.get(&format!("/v1/requests/{r}"), "alice").await;
    assert_eq!(old["state"], "revoked");
    assert!(old["grant"]["revoked_at"].is_i64());
    // Proxies learn of it.
    let resp = app
        .http
        .get(format!("{}/v1/revocations", app.base))
        .bearer_auth("dev-ingest-key-0123456789")
        .send()
        .await
        .unwrap();
    let list: Value = resp.json().await.unwrap();
    assert!(
        list["revoked"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["jti"] == old_grant.as_str()),
        "{list}"
    );
}

async fn break_glass_is_usable_at_once_and_awaits_review(app: &TestApp) {
    let (status, body) = app
        .post(
            "/v1/requests",
            "oscar",
            json!({"resource": "payments-api", "scope": [{"methods": ["POST"], "paths": ["/v1/refunds"]}],
                   "duration_seconds": 900, "reason": "refunds stuck, SEV1", "break_glass": true}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["state"].as_str(), body["review_state"].as_str()),
        (Some("approved"), Some("pending"))
    );
    let r = id(&body);
    let (status, _) = app.get(&format!("/v1/requests/{r}/grant"), "oscar").await;
    assert_eq!(status, 200);
    let (_, list) = app.get("/v1/requests?awaiting_review=true", "bob").await;
    assert!(list.as_array().unwrap().iter().any(|x| x["id"] == r.as_str()));
    let (status, _) = app.post(&format!("/v1/requests/{r}/review"), "oscar", json!({})).await;
    assert_eq!(status, 403, "no self-review");
    let (status, body) = app
        .post(
            &format!("/v1/requests/{r}/review"),
            "bob",
            json!({"comment": "justified"}),
        )
        .await;
    assert_eq!((status, body["review_state"].as_str()), (200, Some("reviewed")));
    let (_, list) = app.get("/v1/requests?awaiting_review=true", "bob").await;
    assert!(!list.as_array().unwrap().iter().any(|x| x["id"] == r.as_str()));
    // Too long, or not in the group: refused.
    let (status, body) = app
        .post(
            "/v1/requests",
            "alice",
            json!({"resource": "payments-api", "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}],
            "duration_seconds": 900, "reason": "x", "break_glass": true}),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("break_glass_not_allowed")));
}

async fn auto_approval_records_its_rule(app: &TestApp) {
    let body = app.request_access("sam", "payments-api", 600).await;
    assert_eq!(body["state"], "approved");
    assert_eq!(body["auto_approved_by"], "sre-read-only-15m");
    let body = app.request_access("sam", "payments-api", 3600).await;
    assert_eq!(body["state"], "pending", "longer than the rule allows");
}

async fn bad_input_gets_a_problem_and_writes_only_its_audit_record(app: &TestApp) {
    let before_requests = app.count("access_requests").await;
    let cases: Vec<(Option<Value>, Option<&str>, u16, &str)> = vec![
        (Some(json!({"resource": "payments-api"})), None, 400, "invalid_body"),
        (
            Some(json!({"resource": "payments-api", "scope": "all", "duration_seconds": 600, "reason": "x"})),
            None,
            400,
            "invalid_body",
        ),
        (
            Some(
                json!({"resource": "nope", "scope": [{"methods": ["GET"], "paths": ["/x"]}], "duration_seconds": 600, "reason": "x"}),
            ),
            None,
            422,
            "unknown_resource",
        ),
        (
            Some(
                json!({"resource": "payments-api", "scope": [{"methods": ["DELETE"], "paths": ["/v1/invoices/*"]}], "duration_seconds": 600, "reason": "x"}),
            ),
            None,
            422,
            "scope_not_allowed",
        ),
        (
            Some(
                json!({"resource": "payments-api", "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}], "duration_seconds": 999999, "reason": "x"}),
            ),
            None,
            422,
            "duration_out_of_range",
        ),
        (
            Some(
                json!({"resource": "payments-api", "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}], "duration_seconds": 600, "reason": "  "}),
            ),
            None,
            422,
            "reason_invalid",
        ),
        (
            Some(
                json!({"resource": "payments-api", "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}], "duration_seconds": 600, "reason": "'; DROP TABLE access_requests; --", "extra": 1}),
            ),
            None,
            400,
            "invalid_body",
        ),
        (
            Some(
                json!({"resource": "payments-api", "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}], "duration_seconds": 600, "reason": "x".repeat(70_000)}),
            ),
            None,
            413,
            "payload_too_large",
        ),
        (None, Some("not.a.jwt"), 401, "auth_malformed"),
        (None, Some("expired"), 401, "auth_expired"),
        (None, Some("wrong-audience"), 401, "auth_wrong_audience"),
        (None, Some(""), 401, "auth_missing"),
    ];
    for (i, (body, auth, status, code)) in cases.into_iter().enumerate() {
        let audit_before = app.count("audit_log").await;
        let mut req = app.http.post(format!("{}/v1/requests", app.base));
        req = match auth {
            None => req.bearer_auth(app.token("alice")),
            Some("expired") => req.bearer_auth(
                control::auth::dev_token(&app.cfg.auth, "alice", None, &["dev"], 60, common::now_s() - 3600).unwrap(),
            ),
            Some("wrong-audience") => {
                let mut other = app.cfg.auth.clone();
                other.audience = "something-else".into();
                req.bearer_auth(
                    control::auth::dev_token(&other, "alice", None, &["dev"], 600, common::now_s()).unwrap(),
                )
            }
            Some("") => req,
            Some(t) => req.bearer_auth(t),
        };
        req = match body {
            Some(b) => req.json(&b),
            None => req.json(&json!({})),
        };
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "case {i} ({code})");
        assert_eq!(resp.headers()["content-type"], "application/problem+json", "case {i}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["code"], code, "case {i}: {problem}");
        assert_eq!(problem["status"], status);
        // A refusal of an authenticated call is audited at once; failed
        // authentication is aggregated per source and reason and written
        // when its window closes (api::auth_failures).
        let written = if status == 401 { 0 } else { 1 };
        assert_eq!(
            app.count("audit_log").await,
            audit_before + written,
            "case {i}: exactly its audit record"
        );
    }
    assert_eq!(
        app.count("access_requests").await,
        before_requests,
        "nothing else was written"
    );
    let (status, body) = app
        .call(reqwest::Method::POST, "/v1/requests", Some("alice"), None)
        .await;
    assert_eq!((status, body["code"].as_str()), (415, Some("unsupported_media_type")));
}

async fn requests_are_visible_only_to_those_concerned(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    let r = id(&req);
    assert_eq!(app.get(&format!("/v1/requests/{r}"), "alice").await.0, 200);
    assert_eq!(app.get(&format!("/v1/requests/{r}"), "bob").await.0, 200);
    assert_eq!(app.get(&format!("/v1/requests/{r}"), "dave").await.0, 404);
    assert_eq!(app.get(&format!("/v1/requests/{r}"), "eve").await.0, 404);
    assert_eq!(app.get("/v1/requests/req_00000000000000000000", "eve").await.0, 404);
    let (_, mine) = app.get("/v1/requests?mine=true", "eve").await;
    assert!(mine.as_array().unwrap().is_empty());
}

async fn revocation_is_listed_for_proxies_until_the_grant_expires(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    let (_, body) = approve(app, "bob", &id(&req)).await;
    let g = body["grant"]["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .post(&format!("/v1/grants/{g}/revoke"), "eve", json!({"reason": "x"}))
        .await;
    assert_eq!(status, 404);
    let (status, body) = app
        .post(
            &format!("/v1/grants/{g}/revoke"),
            "bob",
            json!({"reason": "done early"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = app.get(&format!("/v1/requests/{}", id(&req)), "alice").await;
    assert_eq!(body["state"], "revoked");
    let (status, _) = app.get(&format!("/v1/requests/{}/grant", id(&req)), "alice").await;
    assert_eq!(status, 409);
    let list = |since: Option<String>| {
        let url = format!(
            "{}/v1/revocations{}",
            app.base,
            since.map(|s| format!("?since={s}")).unwrap_or_default()
        );
        let http = app.http.clone();
        async move {
            http.get(url)
                .bearer_auth("dev-ingest-key-0123456789")
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let first = list(None).await;
    assert!(first["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["jti"] == g.as_str()));
    let unauth = app
        .http
        .get(format!("{}/v1/revocations", app.base))
        .bearer_auth("wrong-key-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status().as_u16(), 401);
    app.clock.advance(600 + 130);
    let later = list(Some(first["cursor"].as_str().unwrap().to_owned())).await;
    assert!(later["revoked"].as_array().unwrap().is_empty(), "{later}");
    let (_, body) = app.get(&format!("/v1/requests/{}", id(&req)), "alice").await;
    assert_eq!(body["state"], "revoked");
}

async fn proxy_decisions_are_linked_to_their_grant_and_request(app: &TestApp) {
    let req = app.request_access("alice", "payments-api", 600).await;
    let r = id(&req);
    let (_, body) = approve(app, "bob", &r).await;
    let g = body["grant"]["id"].as_str().unwrap().to_owned();
    let batch = json!({"proxy": "envoy-1", "events": [
        {"time_ms": 1, "outcome": "allowed", "resource": "payments-api", "grant_id": g, "subject": "alice",
         "method": "GET", "path": "/v1/invoices/7", "status": 200, "client": "127.0.0.1", "request_id": "abc"},
        {"time_ms": 2, "outcome": "grant_missing", "resource": "payments-api", "method": "GET", "path": "/v1/x", "status": 401}
    ]});
    let resp = app
        .http
        .post(format!("{}/v1/audit/events", app.base))
        .bearer_auth("dev-ingest-key-0123456789")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let (_, records) = app.get(&format!("/v1/audit?request_id={r}"), "ada").await;
    let actions: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["request.created", "vote.approve", "grant.issued", "proxy.decision"],
        "{records}"
    );
    let (_, v) = app.get("/v1/audit/verify", "ann").await;
    assert_eq!(v["ok"], true);
}

on_both!(
    self_approval_is_refused,
    an_approver_outside_the_resource_groups_is_refused,
    two_of_three_needs_two_different_approvers,
    fifty_concurrent_approvals_give_one_grant,
    only_the_requester_can_fetch_the_token,
    a_minted_grant_passes_the_grant_verifier_and_a_standard_jwt_library,
    editing_or_deleting_an_audit_row_makes_verify_fail_and_name_it,
    a_grant_approved_an_hour_later_runs_its_full_duration,
    a_timed_out_request_cannot_be_approved,
    a_vote_after_resolution_is_refused,
    an_extension_revokes_the_grant_it_replaces,
    break_glass_is_usable_at_once_and_awaits_review,
    auto_approval_records_its_rule,
    bad_input_gets_a_problem_and_writes_only_its_audit_record,
    requests_are_visible_only_to_those_concerned,
    revocation_is_listed_for_proxies_until_the_grant_expires,
    proxy_decisions_are_linked_to_their_grant_and_request,
);
