//! The console's pages over HTTP on SQLite and PostgreSQL: every action is
//! a form post that goes through the workflow the API uses, so the same
//! rules hold (self-approval, CSRF, validation), and hostile text is shown
//! inert.

mod browserless;
mod common;

use browserless::{Browser, Page};
use common::TestApp;

const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)> \"quoted\" 'single'";

/// Alice asks for read access to invoices through the form.
async fn request_through_the_form(b: &mut Browser<'_>, reason: &str, minutes: &str) -> Page {
    b.post(
        "/request?resource=payments-api",
        "/request",
        &[
            ("resource", "payments-api"),
            ("rule0_method", "GET"),
            ("rule0_path", "/v1/invoices/**"),
            ("duration_minutes", minutes),
            ("reason", reason),
            ("ticket", "INC-7"),
        ],
    )
    .await
}

fn request_id(page: &Page) -> String {
    let location = page.location().expect("redirect to the request");
    location.strip_prefix("/requests/").expect("a request page").to_owned()
}

async fn requested_approved_fetched_revoked_and_audited(app: &TestApp) {
    let mut alice = Browser::new(app);
    alice.sign_in("alice").await;
    let created = request_through_the_form(&mut alice, HOSTILE, "10").await;
    assert_eq!(created.status, 303, "{}", created.body);
    let id = request_id(&created);
    let mine = alice.get("/requests").await;
    assert!(
        mine.body.contains(&id) && mine.body.contains("pending"),
        "{}",
        mine.body
    );

    // The approver sees it with its context, the hostile reason escaped.
    let mut bob = Browser::new(app);
    bob.sign_in("bob").await;
    let inbox = bob.get("/inbox").await;
    assert_eq!(inbox.status, 200);
    assert!(
        inbox.body.contains(&format!("/requests/{id}/approve")),
        "{}",
        inbox.body
    );
    assert!(inbox
        .body
        .contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"));
    assert!(!inbox.body.contains("<script>alert") && !inbox.body.contains("<img src=x"));
    assert!(
        inbox.body.contains("GET</strong> on /v1/invoices/**"),
        "scope as a readable list"
    );
    assert!(inbox.body.contains("INC-7") && inbox.body.contains("10 min"));

    // Approve with a comment: a form post, through the workflow.
    let voted = bob
        .post(
            "/inbox",
            &format!("/requests/{id}/approve"),
            &[("comment", "ok for INC-7")],
        )
        .await;
    assert_eq!(
        (voted.status, voted.location()),
        (303, Some(format!("/requests/{id}").as_str()))
    );
    let (_, api_view) = app.get(&format!("/v1/requests/{id}"), "alice").await;
    assert_eq!(api_view["state"], "approved");
    assert_eq!(api_view["votes"][0]["channel"], "console");

    // The requester shows the grant: the page body carries it, no URL does.
    let shown = alice
        .post(&format!("/requests/{id}"), &format!("/requests/{id}/grant"), &[])
        .await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    let (_, token) = app.get(&format!("/v1/requests/{id}/grant"), "alice").await;
    let token = token["token"].as_str().unwrap();
    assert!(shown.body.contains(token));
    assert!(shown.body.contains(&format!("curl -X GET -H 'x-jit-grant: {token}'")));
    assert!(!shown.body.contains(&format!("href=\"{token}")) && !shown.body.contains(&format!("?{token}")));
    assert_eq!(shown.header("cache-control"), Some("no-store"));

    // The approver revokes with a reason from the active grants page.
    let grants = bob.get("/grants").await;
    let grant_id = api_view["grant"]["id"].as_str().unwrap();
    assert!(
        grants.body.contains(&format!("/grants/{grant_id}/revoke")),
        "{}",
        grants.body
    );
    assert!(grants.body.contains("not yet"), "unused so far");
    // A proxy reports a call under the grant: now it shows as used.
    let event = serde_json::json!({"time_ms": 1, "outcome": "allowed", "resource": "payments-api",
        "grant_id": grant_id, "subject": "alice", "method": "GET", "path": "/v1/invoices/7", "status": 200});
    let reported = app
        .http
        .post(format!("{}/v1/audit/events", app.base))
        .bearer_auth("dev-ingest-key-0123456789")
        .json(&serde_json::json!({"proxy": "envoy-1", "events": [event]}))
        .send()
        .await
        .unwrap();
    assert_eq!(reported.status().as_u16(), 202);
    let grants = bob.get("/grants").await;
    assert!(!grants.body.contains("not yet"), "{}", grants.body);
    assert!(grants.body.contains("<td>yes</td>"), "{}", grants.body);
    let revoked = bob
        .post("/grants", &format!("/grants/{grant_id}/revoke"), &[("reason", "done")])
        .await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    let (_, after) = app.get(&format!("/v1/requests/{id}"), "alice").await;
    assert_eq!(after["state"], "revoked");

    // The auditor's timeline shows all of it; the chain verifies.
    let mut ada = Browser::new(app);
    ada.sign_in("ada").await;
    let timeline = ada.get(&format!("/audit?request_id={id}")).await;
    for action in [
        "request.created",
        "vote.approve",
        "grant.issued",
        "grant.token_fetched",
        "proxy.decision",
        "grant.revoked",
    ] {
        assert!(timeline.body.contains(action), "{action} missing");
    }
    assert!(!timeline.body.contains("<script>alert"));
    let verify = ada.get("/audit/verify").await;
    assert!(verify.body.contains("Verified: "), "{}", verify.body);
    let csv = ada.get(&format!("/audit/export.csv?request_id={id}")).await;
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    // Header, created, approve, issued, two token fetches (console, API),
    // the proxy's decision, revoked.
    assert_eq!(csv.body.lines().count(), 8, "{}", csv.body);
    let jsonl = ada.get(&format!("/audit/export.jsonl?request_id={id}")).await;
    assert_eq!(jsonl.body.lines().count(), 7);
    // Requesters do not read the audit log.
    assert_eq!(alice.get("/audit").await.status, 403);
}

async fn self_approval_is_not_offered_and_refused(app: &TestApp) {
    // Pat both requests and approves payments.
    let mut pat = Browser::new(app);
    pat.sign_in_as("pat", &["dev", "payments-approvers"]).await;
    let id = request_id(&request_through_the_form(&mut pat, "mine", "10").await);
    let inbox = pat.get("/inbox").await;
    assert!(inbox.body.contains(&id), "listed, for context");
    assert!(
        !inbox.body.contains(&format!("/requests/{id}/approve")),
        "but not offered"
    );
    let detail = pat.get(&format!("/requests/{id}")).await;
    assert!(!detail.body.contains(&format!("/requests/{id}/approve")));
    let forced = pat.post("/inbox", &format!("/requests/{id}/approve"), &[]).await;
    assert_eq!(forced.status, 403);
    assert!(forced.body.contains("self_approval"), "{}", forced.body);
}

async fn an_approval_without_the_csrf_token_is_refused(app: &TestApp) {
    let mut alice = Browser::new(app);
    alice.sign_in("alice").await;
    let id = request_id(&request_through_the_form(&mut alice, "why", "10").await);
    let mut bob = Browser::new(app);
    bob.sign_in("bob").await;
    let page = bob
        .post_raw(&format!("/requests/{id}/approve"), &[("comment", "ok")])
        .await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("csrf_rejected"));
    let (_, view) = app.get(&format!("/v1/requests/{id}"), "alice").await;
    assert_eq!(view["state"], "pending");
    assert_eq!(view["votes"].as_array().unwrap().len(), 0);
}

async fn invalid_input_is_shown_next_to_its_field(app: &TestApp) {
    let mut alice = Browser::new(app);
    alice.sign_in("alice").await;
    // Longer than the resource allows: the workflow refuses; the form says so at the duration.
    let page = request_through_the_form(&mut alice, "why", "100000").await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains("<title>Error: request access to payments-api"));
    assert!(page.body.contains(r#"class="field has-error""#));
    assert!(page.body.contains(r#"id="duration-error""#), "{}", page.body);
    assert!(
        page.body.contains(r##"href="#duration""##),
        "error summary links to the field"
    );
    // A right-to-left override in the reason is refused at the reason.
    let page = request_through_the_form(&mut alice, "fine\u{202e}txt.exe", "10").await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains(r#"id="reason-error""#));
    assert!(page.body.contains("U+202E"));
    // Entered values are kept.
    assert!(page.body.contains("INC-7"));
    assert_eq!(app.count("access_requests").await, 0);
}

async fn people_see_only_what_they_may(app: &TestApp) {
    let mut alice = Browser::new(app);
    alice.sign_in("alice").await;
    let id = request_id(&request_through_the_form(&mut alice, "why", "10").await);
    // An approver of another resource does not learn the request exists.
    let mut dave = Browser::new(app);
    dave.sign_in("dave").await;
    let page = dave.get(&format!("/requests/{id}")).await;
    assert_eq!(page.status, 404);
    assert!(!dave.get("/inbox").await.body.contains(&id));
    // Signed out, every page sends to sign-in.
    let mut nobody = Browser::new(app);
    for path in ["/requests", "/inbox", "/grants", "/reviews", "/audit", "/request"] {
        assert_eq!(nobody.get(path).await.location(), Some("/signin"), "{path}");
    }
}

async fn break_glass_is_offered_where_allowed_and_reviewed_afterwards(app: &TestApp) {
    let mut alice = Browser::new(app);
    alice.sign_in("alice").await;
    let form = alice.get("/request?resource=payments-api").await;
    assert!(!form.body.contains("name=\"break_glass\""), "not offered to alice");
    let mut oscar = Browser::new(app);
    oscar.sign_in("oscar").await;
    let form = oscar.get("/request?resource=payments-api").await;
    assert!(form.body.contains("name=\"break_glass\""), "offered to on-call");
    let page = oscar
        .post(
            "/request?resource=payments-api",
            "/request",
            &[
                ("resource", "payments-api"),
                ("rule0_method", "GET"),
                ("rule0_path", "/v1/invoices/**"),
                ("duration_minutes", "15"),
                ("reason", "outage"),
                ("break_glass", "yes"),
            ],
        )
        .await;
    let id = request_id(&page);
    let (_, view) = app.get(&format!("/v1/requests/{id}"), "ada").await;
    assert_eq!(
        (view["state"].as_str(), view["review_state"].as_str()),
        (Some("approved"), Some("pending"))
    );
    // The resource's approvers review it.
    let mut bob = Browser::new(app);
    bob.sign_in("bob").await;
    let reviews = bob.get("/reviews").await;
    assert!(
        reviews.body.contains(&format!("/requests/{id}/review")),
        "{}",
        reviews.body
    );
    let done = bob
        .post(
            "/reviews",
            &format!("/requests/{id}/review"),
            &[("comment", "justified")],
        )
        .await;
    assert_eq!((done.status, done.location()), (303, Some("/reviews")));
    assert!(!bob.get("/reviews").await.body.contains(&id));
    let (_, view) = app.get(&format!("/v1/requests/{id}"), "ada").await;
    assert_eq!(view["review_state"], "reviewed");
}

/// The overview draws the period's requests, approval times, most
/// requested resources and unused grants, for auditors only.
async fn the_overview_draws_the_period_for_auditors_only(app: &TestApp) {
    let created = app.request_access("alice", "payments-api", 600).await;
    let id = created["id"].as_str().unwrap();
    app.clock.advance(90);
    let (status, _) = app
        .post(&format!("/v1/requests/{id}/approve"), "bob", serde_json::json!({}))
        .await;
    assert_eq!(status, 200);
    app.request_access("eve", "payments-api", 600).await;
    let (_, approved) = app.get(&format!("/v1/requests/{id}"), "alice").await;
    let grant = approved["grant"]["id"].as_str().unwrap();
    let decision = |outcome: &str, method: &str, status: u16| {
        serde_json::json!({"time_ms": 1, "outcome": outcome, "resource": "payments-api", "grant_id": grant,
            "subject": "alice", "method": method, "path": "/v1/invoices/7", "status": status})
    };
    let (status, _) = app
        .post_as(
            "dev-ingest-key-0123456789",
            "/v1/audit/events",
            serde_json::json!({"proxy": "envoy-1", "events": [decision("allowed", "GET", 200), decision("request_out_of_scope", "DELETE", 403)]}),
        )
        .await;
    assert_eq!(status, 202);

    let mut ada = Browser::new(app);
    ada.sign_in("ada").await;
    let page = ada.get("/overview").await;
    assert_eq!(page.status, 200, "{}", page.body);
    for title in [
        "Requests per day by outcome",
        "Time to approval",
        "Denials at the proxies under grants, by code",
        "Most requested resources",
        "Grants never used",
    ] {
        assert!(page.body.contains(title), "{title}");
    }
    assert_eq!(page.body.matches(r#"role="img""#).count(), 5, "five charts with data");
    assert!(page.body.contains("<td>payments-api</td><td>2</td>"), "two requests");
    assert!(page
        .body
        .contains("<td>payments-api p50</td><td>1 min 30 s (1 approved)</td>"));
    assert!(page.body.contains("<td>payments-api</td><td>0 of 1 grants</td>"));
    // Least privilege: what the grant was used for, the narrower scope, the denial.
    assert!(page.body.contains("Least privilege: granted and used"));
    assert!(page
        .body
        .contains("<td>GET</td><td><code>/v1/invoices/7</code></td><td>1</td><td>1</td>"));
    assert!(page.body.contains("Suggested narrower scope"));
    assert!(
        page.body.contains("<strong>GET</strong> on /v1/invoices/7"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Read-only: a candidate"));
    assert!(page.body.contains("<td>request_out_of_scope</td><td>1</td>"));
    assert!(!page.body.contains("style="), "no inline style: the CSP holds");

    let mut alice = Browser::new(app);
    alice.sign_in("alice").await;
    let page = alice.get("/overview").await;
    assert_eq!(page.status, 403, "{}", page.body);
}

async fn a_requests_timeline_lists_what_the_proxies_counted(app: &TestApp) {
    let created = app.request_access("alice", "payments-api", 600).await;
    let id = created["id"].as_str().unwrap();
    let (_, approved) = app
        .post(&format!("/v1/requests/{id}/approve"), "bob", serde_json::json!({}))
        .await;
    let grant = approved["grant"]["id"].as_str().unwrap();
    let count = serde_json::json!({"time_ms": 1, "outcome": "allowed", "resource": "payments-api", "grant_id": grant,
        "method": "GET", "path": "/v1/invoices/7", "status": 200, "calls": 4242, "first_ms": 1, "last_ms": 2, "rule": 0});
    let (status, answer) = app
        .post_as(
            "dev-ingest-key-0123456789",
            "/v1/audit/events",
            serde_json::json!({"proxy": "envoy-1", "batch": {"instance": "w1", "seq": 1}, "events": [], "counts": [count]}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let record = answer["last_seq"].as_i64().unwrap();

    let mut ada = Browser::new(app);
    ada.sign_in("ada").await;
    let page = ada.get(&format!("/audit?request_id={id}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Allowed requests counted at the proxies"));
    assert!(
        page.body.contains(&format!(
            "<td>{record}</td><td><code>{grant}</code></td><td>GET</td><td>1</td><td>200</td><td>4242</td>"
        )),
        "{}",
        page.body
    );
}

on_both!(
    a_requests_timeline_lists_what_the_proxies_counted,
    the_overview_draws_the_period_for_auditors_only,
    break_glass_is_offered_where_allowed_and_reviewed_afterwards,
    requested_approved_fetched_revoked_and_audited,
    self_approval_is_not_offered_and_refused,
    an_approval_without_the_csrf_token_is_refused,
    invalid_input_is_shown_next_to_its_field,
    people_see_only_what_they_may,
);

/// A webhook that only receives reminders (nothing listens there: the
/// outbox row is what is checked).
fn with_reminder_target(config: String) -> String {
    let head = "[notify]\n[[notify.targets]]\nname = \"approvers\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\nsecret = { value = \"reminder-secret-0123456789abcdef\" }\nevents = [\"request.reminder\"]\n\n";
    let at = config.find("[grants]").unwrap();
    format!("{}{head}{}", &config[..at], &config[at..])
}

async fn reminders(app: &TestApp) {
    let mut alice = Browser::new(app);
    alice.sign_in("alice").await;
    let id = request_id(&request_through_the_form(&mut alice, "why", "10").await);
    let mut bob = Browser::new(app);
    bob.sign_in("bob").await;
    assert!(!bob.get("/inbox").await.body.contains("card old"));
    control::web::reminders::sweep(&app.app).await.unwrap();
    assert_eq!(reminder_rows(app).await, 0, "not due yet");
    app.clock.advance(app.cfg.console.remind_after_seconds as i64 + 1);
    // Re-sign in: the idle limit equals the reminder age by default.
    bob.sign_in("bob").await;
    control::web::reminders::sweep(&app.app).await.unwrap();
    control::web::reminders::sweep(&app.app).await.unwrap();
    assert_eq!(reminder_rows(app).await, 1, "one reminder, however many sweeps");
    let inbox = bob.get("/inbox").await;
    assert!(inbox.body.contains("card old"), "{}", inbox.body);
    assert!(inbox.body.contains("Waiting for 1 h"), "said in words, not only colour");
    assert!(inbox.body.contains(&id));
}

async fn reminder_rows(app: &TestApp) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE event = 'request.reminder'")
        .fetch_one(&app.app.db.pool)
        .await
        .unwrap()
        .get::<i64, _>("n")
}

mod old_pending_requests_are_highlighted_and_their_approvers_reminded_once {
    use crate::common::{spawn_app_with, Backend};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() {
        let app = spawn_app_with(Backend::Sqlite, super::with_reminder_target)
            .await
            .unwrap();
        super::reminders(&app).await;
        app.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() {
        if let Some(app) = spawn_app_with(Backend::Postgres, super::with_reminder_target).await {
            super::reminders(&app).await;
            app.finish().await;
        }
    }
}
