//! The console's sign-in with a real OpenID provider (npm `oidc-provider`,
//! `tests/idp/`): authorization code with PKCE, `state` and `nonce`; the
//! ID token verified for the console's client; a server-side session with
//! the person's groups from the provider; the sign-in in the audit log.
//! And what must not sign anyone in: a callback without this browser's
//! flow, another browser's answer, a code used twice, a token minted for
//! another nonce, the provider's refusal.

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
    common::spawn_app_with(backend, |text| {
        idp::trusting(&text, people, None, "jitgate-cli")
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
