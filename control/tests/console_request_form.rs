//! The console's request form beyond the basics, on SQLite and PostgreSQL:
//! previewing what a scope allows in the resource's OpenAPI document before
//! sending (nothing is stored), the same preview in the approver's inbox,
//! and a scheduled start given in UTC.

mod browserless;
mod common;

use browserless::Browser;
use common::{spawn_app_with, Backend, TestApp};
use control::clock::Clock;

fn with_document(config: String) -> String {
    let document = format!("{}/tests/data/openapi/payments.yaml", env!("CARGO_MANIFEST_DIR"));
    config.replacen(
        "approvals_required = 1\n",
        &format!("approvals_required = 1\nopenapi = {document:?}\n"),
        1,
    )
}

const READ_INVOICES: [(&str, &str); 5] = [
    ("resource", "payments-api"),
    ("rule0_method", "GET"),
    ("rule0_path", "/v1/invoices/**"),
    ("duration_minutes", "30"),
    ("reason", "reconcile INC-7"),
];

async fn the_form_previews_a_scope_without_storing_and_the_inbox_shows_it(app: &TestApp) {
    let mut alice = Browser::new(app);
    alice.sign_in("alice").await;
    let form = alice.get("/request?resource=payments-api").await;
    assert!(
        form.body.contains(r#"name="intent" value="preview""#),
        "a document: preview offered"
    );

    let mut fields = READ_INVOICES.to_vec();
    fields.push(("intent", "preview"));
    let page = alice.post("/request?resource=payments-api", "/request", &fields).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for shown in [
        "What this allows in Payments API 1.0",
        "3 of 7 operations",
        "/v1/invoices/{id}",
        "One invoice",
        "allows everything under",
        "4 operations not allowed",
        "reconcile INC-7",
    ] {
        assert!(page.body.contains(shown), "{shown} missing");
    }
    assert_eq!(app.count("access_requests").await, 0, "a preview stores nothing");

    // A preview of nothing ticked says so at the scope.
    let page = alice
        .post(
            "/request?resource=payments-api",
            "/request",
            &[("resource", "payments-api"), ("intent", "preview")],
        )
        .await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains(r#"id="scope-error""#));

    let sent = alice
        .post("/request?resource=payments-api", "/request", &READ_INVOICES)
        .await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    let mut bob = Browser::new(app);
    bob.sign_in("bob").await;
    let inbox = bob.get("/inbox").await;
    assert!(inbox.body.contains("What this allows in Payments API 1.0"));
    assert!(
        inbox.body.contains(r#"alice<span class="groups"> (dev)</span>"#),
        "{}",
        inbox.body
    );
}

async fn a_start_in_utc_schedules_the_request_and_a_past_one_is_refused_at_the_field(app: &TestApp) {
    let mut alice = Browser::new(app);
    alice.sign_in("alice").await;
    let start = app.clock.now_s() + 7200;
    let local = control::clock::rfc3339(start).trim_end_matches('Z').to_owned();
    let mut fields = READ_INVOICES.to_vec();
    fields.push(("starts_at", &local));
    let sent = alice.post("/request?resource=payments-api", "/request", &fields).await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    let id = sent.location().unwrap().trim_start_matches("/requests/").to_owned();
    let (_, body) = app.get(&format!("/v1/requests/{id}"), "alice").await;
    assert_eq!(body["starts_at"], start);
    let page = alice.get(&format!("/requests/{id}")).await;
    assert!(page.body.contains("(scheduled)"));

    let past = control::clock::rfc3339(app.clock.now_s() - 3600)
        .trim_end_matches('Z')
        .to_owned();
    let mut fields = READ_INVOICES.to_vec();
    fields.push(("starts_at", &past));
    let page = alice.post("/request?resource=payments-api", "/request", &fields).await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains(r#"id="starts_at-error""#), "{}", page.body);
    let mut fields = READ_INVOICES.to_vec();
    fields.push(("starts_at", "next tuesday"));
    let page = alice.post("/request?resource=payments-api", "/request", &fields).await;
    assert_eq!(page.status, 422);
    assert!(page.body.contains(r#"id="starts_at-error""#));
    assert_eq!(app.count("access_requests").await, 1);
}

macro_rules! with_document {
    ($($name:ident),*) => {$(
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let app = spawn_app_with(Backend::Sqlite, with_document).await.unwrap();
                super::$name(&app).await;
                app.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if let Some(app) = spawn_app_with(Backend::Postgres, with_document).await {
                    super::$name(&app).await;
                    app.finish().await;
                }
            }
        }
    )*};
}

with_document!(
    the_form_previews_a_scope_without_storing_and_the_inbox_shows_it,
    a_start_in_utc_schedules_the_request_and_a_past_one_is_refused_at_the_field
);
