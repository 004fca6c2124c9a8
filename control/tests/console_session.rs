//! The console's session pieces on SQLite and PostgreSQL: development
//! sign-in, server-side sessions, cookie attributes, CSRF on every form,
//! sign-out and expiry, and the security headers.

mod browserless;
mod common;

use browserless::Browser;
use common::TestApp;
use sqlx::Row;

const SESSION: &str = "__Host-jitgate-session";

async fn session_rows(app: &TestApp) -> Vec<(String, String, String)> {
    sqlx::query("SELECT id_hash, user_id, groups_json FROM web_sessions ORDER BY created_at")
        .fetch_all(&app.app.db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("id_hash"), r.get("user_id"), r.get("groups_json")))
        .collect()
}

async fn dev_sign_in_starts_a_server_side_session_with_a_safe_cookie(app: &TestApp) {
    let mut b = Browser::new(app);
    let page = b.sign_in("bob").await;
    assert_eq!(page.location(), Some("/requests"));
    let set = page.header("set-cookie").unwrap().to_owned();
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attribute), "{attribute} missing in {set}");
    }
    assert!(set.starts_with(&format!("{SESSION}=")));
    let id = b.cookies.iter().find(|(n, _)| n == SESSION).unwrap().1.clone();
    let rows = session_rows(app).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, "bob");
    assert_eq!(rows[0].2, r#"["payments-approvers"]"#);
    assert_ne!(rows[0].0, id, "only the hash of the id is stored");
    // The sign-in is in the audit log, written with the session.
    let query = control::audit::Query {
        action: Some("console.signed_in".into()),
        ..control::audit::Query::default()
    };
    let records = control::audit::query(&app.app.db, &query).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].actor, "bob");
    assert_eq!(records[0].details["method"], "development");
    // Signed in: the home page goes to the console, not to sign-in.
    assert_eq!(b.get("/").await.location(), Some("/requests"));
    assert_eq!(b.get("/signin").await.location(), Some("/requests"));
}

async fn sign_in_without_the_pre_sign_in_token_is_refused(app: &TestApp) {
    let mut b = Browser::new(app);
    let _ = b.get("/signin").await;
    let page = b.post_raw("/signin/dev", &[("user", "mallory")]).await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("csrf_rejected"));
    let page = b
        .post_raw("/signin/dev", &[("csrf", &"0".repeat(64)), ("user", "mallory")])
        .await;
    assert_eq!(page.status, 403);
    assert!(session_rows(app).await.is_empty());
}

async fn a_form_post_without_or_with_a_wrong_csrf_token_is_refused(app: &TestApp) {
    let mut b = Browser::new(app);
    b.sign_in("alice").await;
    let page = b.post_raw("/signout", &[]).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("csrf_rejected"));
    let page = b.post_raw("/signout", &[("csrf", &"f".repeat(64))]).await;
    assert_eq!(page.status, 403);
    assert_eq!(session_rows(app).await.len(), 1, "the session was not ended");
    // A post another site forged, even with the right token, is refused.
    let token = b.get("/requests").await.csrf();
    let page = b
        .post_from("/signout", &[("csrf", &token)], Some("https://evil.example"))
        .await;
    assert_eq!(page.status, 403);
    assert_eq!(session_rows(app).await.len(), 1, "the session was not ended");
}

async fn sign_out_ends_the_session_everywhere(app: &TestApp) {
    let mut b = Browser::new(app);
    b.sign_in("alice").await;
    let old = b.cookies.clone();
    let page = b.get("/requests").await;
    let token = page.csrf();
    let page = b.post_raw("/signout", &[("csrf", &token)]).await;
    assert_eq!((page.status, page.location()), (303, Some("/signin")));
    assert!(page.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert!(session_rows(app).await.is_empty());
    // The old cookie, replayed, no longer signs anyone in.
    b.cookies = old;
    assert_eq!(b.get("/").await.location(), Some("/signin"));
    assert_eq!(b.get("/requests").await.location(), Some("/signin"));
}

async fn an_idle_session_ends(app: &TestApp) {
    let mut b = Browser::new(app);
    b.sign_in("alice").await;
    assert_eq!(b.get("/").await.location(), Some("/requests"));
    app.clock.advance(app.cfg.console.session_idle_seconds as i64 + 1);
    assert_eq!(b.get("/").await.location(), Some("/signin"));
    assert!(session_rows(app).await.is_empty(), "the expired row is deleted");
}

async fn pages_carry_a_strict_csp_and_refuse_framing(app: &TestApp) {
    let mut b = Browser::new(app);
    for path in ["/signin", "/assets/console.css"] {
        let page = b.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        let csp = page.header("content-security-policy").unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
        assert_eq!(page.header("referrer-policy"), Some("same-origin"));
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    }
    assert_eq!(b.get("/signin").await.header("cache-control"), Some("no-store"));
    // No inline script in a page: only the console's own file.
    let page = b.get("/signin").await;
    assert!(page
        .body
        .contains(r#"<script src="/assets/console.js" defer></script>"#));
    assert_eq!(page.body.matches("<script").count(), 1);
}

on_both!(
    dev_sign_in_starts_a_server_side_session_with_a_safe_cookie,
    sign_in_without_the_pre_sign_in_token_is_refused,
    a_form_post_without_or_with_a_wrong_csrf_token_is_refused,
    sign_out_ends_the_session_everywhere,
    an_idle_session_ends,
    pages_carry_a_strict_csp_and_refuse_framing,
);
