//! The console's sign-in with a real OpenID provider (npm `oidc-provider`,
//! `tests/idp/`): authorization code with PKCE, `state` and `nonce`; the
//! ID token verified for the console's client; a server-side session with
//! the person's groups from the provider; the sign-in in the audit log.
//! And what must not sign anyone in: a callback without this browser's
//! flow, another browser's answer, a code used twice, a token minted for
//! another nonce, the provider's refusal. And step-up: a step that needs a
//! stronger sign-in sends the person back to the provider for it.

mod browserless;
mod common;
#[path = "idp/harness.rs"]
mod idp;

use browserless::Browser;
use common::{Backend, TestApp};
use idp::Idp;
use sqlx::Row;

/// The console's redirect URI as the provider knows it. The provider's
/// last redirect is caught there and replayed against the test service
/// (whose port is chosen when it starts).
const REDIRECT: &str = "http://localhost:18999/signin/callback";
const FLOW: &str = "__Host-jitgate-oidc";

async fn provider() -> Option<Idp> {
    Idp::start("people", &["--console-redirect", REDIRECT]).await
}

async fn service(backend: Backend, people: &Idp) -> Option<TestApp> {
    service_with(backend, people, |text| text).await
}

/// The service trusting `people`, its configuration changed by `change`.
async fn service_with(backend: Backend, people: &Idp, change: impl Fn(String) -> String) -> Option<TestApp> {
    common::spawn_app_with(backend, |text| {
        change(idp::trusting(&text, people, None, "jitgate-cli"))
            + &format!(
                "\n[console.oidc]\nclient_id = \"jitgate-console\"\nclient_secret = {{ value = \"console-secret\" }}\nredirect_url = {REDIRECT:?}\n"
            )
    })
    .await
}

/// The path and query of the provider's redirect to the console.
fn callback_path(location: &str) -> String {
    location
        .strip_prefix("http://localhost:18999")
        .expect("to the console")
        .to_owned()
}

fn param(url: &str, name: &str) -> String {
    reqwest::Url::parse(url)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{name} missing in {url}"))
}

async fn sessions(app: &TestApp) -> Vec<(String, String, String)> {
    sqlx::query("SELECT user_id, groups_json, method FROM web_sessions ORDER BY created_at")
        .fetch_all(&app.app.db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("user_id"), r.get("groups_json"), r.get("method")))
        .collect()
}

/// Starts a sign-in in `b`: the provider's authorization URL.
async fn start(b: &mut Browser<'_>) -> String {
    let page = b.get("/signin/oidc").await;
    assert_eq!(page.status, 303, "{}", page.body);
    page.location().expect("to the provider").to_owned()
}

async fn a_person_signs_in_with_the_provider_and_gets_a_session_with_their_groups(backend: Backend) {
    let Some(people) = provider().await else { return };
    let Some(app) = service(backend, &people).await else {
        return;
    };
    let mut b = Browser::new(&app);
    let page = b.get("/signin").await;
    assert!(page.body.contains(r#"href="/signin/oidc""#), "{}", page.body);

    let page = b.get("/signin/oidc").await;
    let url = page.location().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/auth?", people.issuer)), "{url}");
    assert_eq!(param(&url, "client_id"), "jitgate-console");
    assert_eq!(param(&url, "redirect_uri"), REDIRECT);
    assert_eq!(param(&url, "code_challenge_method"), "S256");
    assert!(param(&url, "scope").split(' ').any(|s| s == "openid"));
    let set = page.header("set-cookie").unwrap().to_owned();
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=600"] {
        assert!(set.contains(attribute), "{attribute} missing in {set}");
    }
    let secret = b.cookies.iter().find(|(n, _)| n == FLOW).unwrap().1.clone();
    assert!(
        !url.contains(&secret),
        "the flow's secret (the PKCE verifier) never leaves the browser's cookie"
    );
    assert_ne!(param(&url, "state"), param(&url, "nonce"));

    let back = idp::authorize(&url, "carol", REDIRECT).await;
    let page = b.get(&callback_path(&back)).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location(), Some("/requests"));
    assert!(!b.cookies.iter().any(|(n, _)| n == FLOW), "the flow is used once");
    let page = b.get("/requests").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("carol"), "{}", page.body);
    assert_eq!(
        sessions(&app).await,
        vec![("carol".to_owned(), r#"["dev","oncall"]"#.to_owned(), "oidc".to_owned())]
    );
    let query = control::audit::Query {
        action: Some("console.signed_in".into()),
        ..control::audit::Query::default()
    };
    let records = control::audit::query(&app.app.db, &query).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].actor, "carol");
    assert_eq!(records[0].details["issuer"], people.issuer.as_str());
    assert_eq!(records[0].details["amr"], serde_json::json!(["pwd"]));
    assert_eq!(records[0].details["method"], "oidc");

    // The same answer again: the flow is gone.
    let page = b.get(&callback_path(&back)).await;
    assert_eq!(page.status, 400);
    assert!(page.body.contains("sign_in_expired"), "{}", page.body);
    assert_eq!(sessions(&app).await.len(), 1);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_signs_in_with_the_provider_on_sqlite() {
    a_person_signs_in_with_the_provider_and_gets_a_session_with_their_groups(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_signs_in_with_the_provider_on_postgres() {
    a_person_signs_in_with_the_provider_and_gets_a_session_with_their_groups(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_browsers_answer_a_reused_code_a_foreign_nonce_and_a_refusal_sign_no_one_in() {
    let Some(people) = provider().await else { return };
    let Some(app) = service(Backend::Sqlite, &people).await else {
        return;
    };
    let mut alice = Browser::new(&app);
    let mut mallory = Browser::new(&app);

    // Mallory's answer delivered to Alice's browser (login CSRF): refused
    // before the code is redeemed.
    let url = start(&mut mallory).await;
    let mallorys_answer = idp::authorize(&url, "bob", REDIRECT).await;
    let _ = start(&mut alice).await;
    let page = alice.get(&callback_path(&mallorys_answer)).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("sign_in_state_mismatch"), "{}", page.body);
    // Without any flow at all.
    let mut stranger = Browser::new(&app);
    let page = stranger.get(&callback_path(&mallorys_answer)).await;
    assert!(page.body.contains("sign_in_expired"), "{}", page.body);
    assert!(sessions(&app).await.is_empty());

    // Mallory's own browser redeems it; the same code a second time (its
    // flow cookie put back) is refused by the provider.
    let flow = mallory.cookies.iter().find(|(n, _)| n == FLOW).unwrap().clone();
    let page = mallory.get(&callback_path(&mallorys_answer)).await;
    assert_eq!(page.location(), Some("/requests"), "{}", page.body);
    let mut replay = Browser::new(&app);
    replay.cookies.push(flow);
    let page = replay.get(&callback_path(&mallorys_answer)).await;
    assert_eq!(page.status, 502, "{}", page.body);
    assert!(page.body.contains("sign_in_failed"), "{}", page.body);
    assert_eq!(sessions(&app).await.len(), 1);

    // An ID token minted for another nonce (the authorization URL's nonce
    // swapped on the way) is refused even though state and code are right.
    let url = start(&mut alice).await;
    let nonce = param(&url, "nonce");
    let swapped = url.replace(&format!("nonce={nonce}"), &format!("nonce={}", "0".repeat(64)));
    let answer = idp::authorize(&swapped, "alice", REDIRECT).await;
    let page = alice.get(&callback_path(&answer)).await;
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(page.body.contains("sign_in_nonce_mismatch"), "{}", page.body);

    // The provider's refusal is shown, cut to printable ASCII.
    let url = start(&mut alice).await;
    let state = param(&url, "state");
    let page = alice
        .get(&format!(
            "/signin/callback?error=access_denied&error_description=no%E2%80%AEway%3Cscript%3E&state={state}"
        ))
        .await;
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(page.body.contains("sign_in_refused"), "{}", page.body);
    assert!(
        page.body.contains("access_denied: noway&lt;script&gt;"),
        "{}",
        page.body
    );
    assert_eq!(sessions(&app).await.len(), 1, "only Mallory's own sign-in");
    app.finish().await;
}

/// Approving on payments-api needs an MFA sign-in (`acr` "phr") at most
/// 15 minutes old. Bob signed in with a password only: the console refuses
/// his approval, says what is missing and links to a sign-in that asks the
/// provider for it; after signing in again with his one-time code, the
/// same approval goes through, and its record carries the stronger sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approver_whose_sign_in_is_too_weak_steps_up_in_the_console_and_approves() {
    let Some(people) = provider().await else { return };
    let Some(app) = service_with(Backend::Sqlite, &people, |text| {
        text.replacen(
            "[[resources.scope]]",
            "[resources.step_up.approve]\nrequire_acr = [\"phr\"]\nmax_age_seconds = 900\n\n[[resources.scope]]",
            1,
        )
        .replace("approvers = [\"payments-approvers\"]", "approvers = [\"approvers\"]")
    })
    .await
    else {
        return;
    };
    let alice = people.id_token("alice", None, None).await;
    let created: serde_json::Value = app
        .http
        .post(format!("{}/v1/requests", app.base))
        .bearer_auth(alice["id_token"].as_str().expect("alice's ID token"))
        .json(&serde_json::json!({"resource": "payments-api",
            "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}],
            "duration_seconds": 600, "reason": "investigating INC-42"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned();
    let page_of = format!("/requests/{id}");
    let approve = format!("/requests/{id}/approve");

    let mut bob = Browser::new(&app);
    let url = start(&mut bob).await;
    let page = bob
        .get(&callback_path(&idp::authorize(&url, "bob", REDIRECT).await))
        .await;
    assert_eq!(page.location(), Some("/requests"), "{}", page.body);
    let page = bob.post(&page_of, &approve, &[("comment", "ok")]).await;
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(page.body.contains("step_up_required"), "{}", page.body);
    assert!(page.body.contains("acr phr (the sign-in has pwd)"), "{}", page.body);
    let link = "/signin/oidc?acr_values=phr&amp;max_age=900";
    assert!(page.body.contains(link), "{}", page.body);
    assert_eq!(votes(&app, &id).await, 0);

    // A link changed to ask for less gains nothing: the step is checked
    // against what the provider vouched for.
    let page = bob.get("/signin/oidc?acr_values=pwd").await;
    let page = bob
        .get(&callback_path(
            &idp::authorize(page.location().unwrap(), "bob", REDIRECT).await,
        ))
        .await;
    assert_eq!(page.location(), Some("/requests"), "{}", page.body);
    let page = bob.post(&page_of, &approve, &[("comment", "ok")]).await;
    assert_eq!(page.status, 401, "{}", page.body);
    assert_eq!(votes(&app, &id).await, 0);

    // The link asks the provider for phr, a recent sign-in, and a new one.
    let page = bob.get(&link.replace("&amp;", "&")).await;
    let url = page.location().expect("to the provider").to_owned();
    assert_eq!(param(&url, "acr_values"), "phr");
    assert_eq!(param(&url, "max_age"), "900");
    assert_eq!(param(&url, "prompt"), "login");
    let page = bob
        .get(&callback_path(
            &idp::authorize_with(&url, "bob", Some("123456"), REDIRECT).await,
        ))
        .await;
    assert_eq!(page.location(), Some("/requests"), "{}", page.body);
    let page = bob.post(&page_of, &approve, &[("comment", "ok")]).await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(votes(&app, &id).await, 1);
    let records = control::audit::query(&app.app.db, &control::audit::Query::default())
        .await
        .unwrap();
    let vote = records
        .iter()
        .find(|r| r.action.starts_with("vote."))
        .expect("the vote's record");
    let context = &vote.details["auth_context"];
    assert_eq!(context["acr"], "phr", "{context}");
    assert_eq!(context["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
    assert_eq!(
        sessions(&app).await.len(),
        1,
        "each sign-in again ended the browser's session before it"
    );

    assert!(bob.get("/signin/oidc?max_age=x").await.body.contains("max_age"));
    app.finish().await;
}

async fn votes(app: &TestApp, request: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM votes WHERE request_id = $1")
        .bind(request.to_owned())
        .fetch_one(&app.app.db.pool)
        .await
        .unwrap()
        .get::<i64, _>("n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_console_client_the_provider_sign_in_is_not_offered() {
    let app = common::spawn_app(Backend::Sqlite).await.unwrap();
    let mut b = Browser::new(&app);
    assert!(!b.get("/signin").await.body.contains("/signin/oidc"));
    let page = b.get("/signin/oidc").await;
    assert_eq!(page.status, 404);
    assert!(page.body.contains("oidc_sign_in_disabled"));
    app.finish().await;
}
