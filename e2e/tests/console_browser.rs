//! The web console in a real browser: Debian's Chromium driven over
//! WebDriver (chromedriver) from Rust, against the real control service
//! and real Envoy with the filter. A requester asks through the form; an
//! approver, with the keyboard only, approves from the inbox (where a
//! hostile reason stays inert); the requester copies the grant out of the
//! page and calls through Envoy; the approver revokes and the proxy
//! refuses; the auditor sees the timeline and the chain verifies. A
//! request scheduled a little ahead is approved before its start and the
//! proxy refuses its grant until then. Every page is checked with axe-core
//! (serious and critical findings fail) and photographed into
//! docs/console/.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use jitgate_e2e::control::Control;
use jitgate_e2e::envoy::{Envoy, EnvoyOptions};
use jitgate_e2e::http::get_with_grant;
use jitgate_e2e::postgres::LocalPostgres;
use jitgate_e2e::upstream::Upstream;
use serde_json::{json, Value};

const HOSTILE: &str = "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script> INC-7";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// chromedriver, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn start_driver() -> Option<Driver> {
    let Some(bin) = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        jitgate_test_skip::skip(
            jitgate_test_skip::Lacking::Tool,
            "chromedriver not installed (Debian chromium-driver; scripts/setup installs it)",
        );
        return None;
    };
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("chromedriver: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Driver { child, port })
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"]}),
    );
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .unwrap_or_else(|e| panic!("WebDriver session: {e}"))
}

struct Console {
    c: Client,
    base: String,
    photograph: bool,
}

impl Console {
    async fn go(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.c.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
    }

    /// A form control's current value.
    async fn value(&self, css: &str) -> String {
        let element = self.c.find(Locator::Css(css)).await.unwrap();
        element.prop("value").await.unwrap().unwrap_or_default()
    }

    async fn fill(&self, css: &str, value: &str) {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }

    async fn click(&self, css: &str) {
        self.c.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
    }

    async fn path(&self) -> String {
        self.c.current_url().await.unwrap().path().to_owned()
    }

    /// Waits until the page that a form post led to has loaded.
    async fn wait_path(&self, done: impl Fn(&str) -> bool, what: &str) -> String {
        let start = Instant::now();
        loop {
            let path = self.path().await;
            let ready = self.c.execute("return document.readyState;", vec![]).await.ok();
            if done(&path) && ready == Some(json!("complete")) {
                return path;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{what}: still at {path}: {}",
                self.c.source().await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn sign_in(&self, user: &str, groups: &[&str]) {
        self.c.delete_all_cookies().await.unwrap();
        self.go("/signin").await;
        self.fill("#user", user).await;
        for g in groups {
            self.click(&format!("input[value='{g}']")).await;
        }
        self.click("form[action='/signin/dev'] button").await;
        self.wait_path(|p| p == "/requests", &format!("signed in as {user}"))
            .await;
    }

    /// axe-core's serious and critical findings on the current page.
    async fn axe(&self) -> Vec<Value> {
        let axe = std::fs::read_to_string(root().join("e2e/browser/node_modules/axe-core/axe.min.js"))
            .unwrap_or_else(|e| panic!("axe-core not installed (scripts/setup runs npm ci in e2e/browser): {e}"));
        self.c.execute(&axe, vec![]).await.unwrap();
        let result = self
            .c
            .execute_async(
                "const done = arguments[arguments.length - 1]; axe.run(document).then(r => done(r.violations)).catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e)}]));",
                vec![],
            )
            .await
            .unwrap();
        result
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .collect()
    }

    /// Checks the page with axe and photographs it.
    async fn check_and_photograph(&self, name: &str) {
        let found = self.axe().await;
        assert!(found.is_empty(), "{name}: accessibility findings: {found:#?}");
        if !self.photograph {
            return;
        }
        let png = self.c.screenshot().await.unwrap();
        let dir = root().join("docs/console");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Presses a key as a keyboard would (WebDriver actions, not a script).
    async fn press(&self, key: Key) {
        let value: char = key.into();
        let actions = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down { value })
            .then(KeyAction::Up { value });
        self.c.perform_actions(actions).await.unwrap();
    }

    async fn pwned(&self) -> Value {
        self.c
            .execute("return window.pwned === undefined ? null : window.pwned;", vec![])
            .await
            .unwrap()
    }
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within 20 s");
}

/// Browser tests start Chromium, the control service and Envoy: one at a
/// time, so they do not starve each other of the machine's cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_made_approved_used_revoked_and_audited_in_the_browser() {
    let _serial = SERIAL.lock().await;
    let Some(driver) = start_driver() else { return };
    walk_through(&driver, Control::start(|c| c), "").await;
}

/// The same walk-through with the control service on PostgreSQL (a
/// private cluster of the test's own); no screenshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walk_through_holds_on_postgres() {
    let _serial = SERIAL.lock().await;
    let Some(driver) = start_driver() else { return };
    let Some(pg) = LocalPostgres::start() else { return };
    let url = pg.url();
    walk_through(
        &driver,
        Control::start(|c| c.replace("sqlite://jitgate.db", &url)),
        "postgres",
    )
    .await;
}

/// A request with a start a little ahead: the approver sees when it
/// starts and who asks (with their groups) and approves before the start;
/// the grant, copied out of the page ahead of time, is refused by the proxy
/// until the start (no leeway configured) and works from then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_request_is_approved_ahead_and_works_from_its_start() {
    let _serial = SERIAL.lock().await;
    let Some(driver) = start_driver() else { return };
    let control = Control::start(|c| c);
    let upstream = Upstream::start();
    let mut options = EnvoyOptions::new(control.filter_config(r#","leeway":0"#, ""), upstream.port);
    options.control_port = control.port;
    let envoy = Envoy::start(options);
    let ui = Console {
        c: browser(&driver).await,
        base: format!("http://localhost:{}", control.port),
        photograph: false,
    };

    ui.sign_in("alice", &["dev"]).await;
    ui.go("/request?resource=payments-api").await;
    ui.click("#rule0-m-GET").await;
    ui.click("#rule0-p-0").await;
    ui.fill("#reason", "month-end close").await;
    // The form takes the start in UTC, to the second (`datetime-local`
    // with step 1); typed here through its value, as a date picker would.
    let start = now_s() + 30;
    let local = control::clock::rfc3339(start).trim_end_matches('Z').to_owned();
    ui.c.execute(
        "document.getElementById('starts_at').value = arguments[0];",
        vec![json!(local)],
    )
    .await
    .unwrap();
    ui.click("form[action='/request'] button[type=submit]").await;
    let path = ui
        .wait_path(|p| p.starts_with("/requests/"), "the scheduled request was created")
        .await;
    let request_id = path.trim_start_matches("/requests/").to_owned();
    assert!(ui.text("dd.starts").await.contains("(scheduled)"));

    ui.sign_in("bob", &["payments-approvers"]).await;
    ui.go("/inbox").await;
    let card = ui.text(&format!("section[aria-labelledby='req-{request_id}']")).await;
    let starts = local.replace('T', " ") + " UTC (scheduled)";
    for context in ["alice (dev)", starts.as_str()] {
        assert!(card.contains(context), "{context} missing in {card}");
    }
    ui.click(&format!("form[action='/requests/{request_id}/approve'] button"))
        .await;
    ui.wait_path(|p| p == format!("/requests/{request_id}"), "approved")
        .await;

    ui.sign_in("alice", &["dev"]).await;
    ui.go(&format!("/requests/{request_id}")).await;
    assert!(ui.text("#request-state").await.contains("starts in"));
    ui.click(&format!("form[action='/requests/{request_id}/grant'] button"))
        .await;
    ui.wait_path(|p| p.ends_with("/grant"), "the grant page").await;
    assert!(ui.text("main").await.contains("proxies refuse it before then"));
    let token = ui.value("#grant-token").await;

    let early = get_with_grant(envoy.port, "/v1/invoices/INV-9", &token);
    assert!(
        now_s() < start,
        "the flow took longer than the 30 s to the start: nothing shown"
    );
    assert_eq!(early.error_code(), "grant_not_yet_valid", "before the start");
    while now_s() < start {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let on_time = get_with_grant(envoy.port, "/v1/invoices/INV-9", &token);
    assert_eq!(on_time.status, 200, "from the start");
    ui.c.close().await.unwrap();
    drop(envoy);
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Runs the walk-through; `variant` is empty for the run whose pages are
/// photographed for the README.
async fn walk_through(driver: &Driver, control: Control, variant: &str) {
    let upstream = Upstream::start();
    let mut options = EnvoyOptions::new(control.filter_config("", r#","report_interval_ms":200"#), upstream.port);
    options.control_port = control.port;
    let envoy = Envoy::start(options);
    // `localhost`: browsers accept Secure cookies from it over plain HTTP.
    let ui = Console {
        c: browser(driver).await,
        base: format!("http://localhost:{}", control.port),
        photograph: variant.is_empty(),
    };

    ui.go("/signin").await;
    ui.check_and_photograph("signin").await;

    // The requester asks through the form.
    ui.sign_in("alice", &["dev"]).await;
    ui.go("/request").await;
    ui.check_and_photograph("request-pick").await;
    ui.go("/request?resource=payments-api").await;
    ui.click("#rule0-m-GET").await;
    ui.click("#rule0-p-0").await;
    let duration = ui.c.find(Locator::Css("#duration")).await.unwrap();
    duration.clear().await.unwrap();
    duration.send_keys("100000").await.unwrap();
    ui.fill("#reason", HOSTILE).await;
    ui.fill("#ticket", "INC-7").await;
    ui.click("form[action='/request'] button[type=submit]").await;
    // The form comes back at the same path: wait for its error itself.
    ui.c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#duration-error"))
        .await
        .expect("the form came back with the duration's error");
    // Too long: the error is next to the field, the entered values kept.
    assert!(ui.text("#duration-error").await.contains("duration"));
    ui.check_and_photograph("request-form-error").await;
    let duration = ui.c.find(Locator::Css("#duration")).await.unwrap();
    duration.clear().await.unwrap();
    duration.send_keys("10").await.unwrap();
    ui.click("form[action='/request'] button[type=submit]").await;
    let path = ui
        .wait_path(|p| p.starts_with("/requests/"), "the request was created")
        .await;
    let request_id = path
        .strip_prefix("/requests/")
        .expect("on the request's page")
        .to_owned();
    assert_eq!(ui.pwned().await, Value::Null, "the hostile reason ran");
    ui.go("/requests").await;
    assert!(ui.text("#my-requests").await.to_lowercase().contains("pending"));
    ui.check_and_photograph("my-requests").await;

    // The approver sees it with its context, and approves with the keyboard only.
    ui.sign_in("bob", &["payments-approvers"]).await;
    ui.go("/inbox").await;
    let card = ui.text(&format!("section[aria-labelledby='req-{request_id}']")).await;
    for context in [
        "alice",
        "payments-api",
        "GET on /v1/invoices/**",
        "10 min",
        "INC-7",
        "0 of 1",
    ] {
        assert!(card.contains(context), "{context} missing in {card}");
    }
    assert!(
        card.contains("<script>window.pwned=2</script>"),
        "shown as text: {card}"
    );
    assert_eq!(ui.pwned().await, Value::Null, "the hostile reason ran");
    let images =
        ui.c.find_all(Locator::Css(".reason img, .reason script"))
            .await
            .unwrap();
    assert!(images.is_empty(), "the reason became markup");
    ui.check_and_photograph("inbox").await;
    let approve = format!("form[action='/requests/{request_id}/approve'] button");
    let target = ui.c.find(Locator::Css(&approve)).await.unwrap();
    let mut reached = false;
    for _ in 0..80 {
        ui.press(Key::Tab).await;
        let active = ui.c.active_element().await.unwrap();
        if active.element_id() == target.element_id() {
            reached = true;
            break;
        }
    }
    assert!(reached, "the approve button is reachable with Tab");
    ui.press(Key::Enter).await;
    eventually("approved", || {
        control
            .as_user("alice", "GET", &format!("/v1/requests/{request_id}"), None)
            .json()["state"]
            == "approved"
    });

    // The requester copies the grant out of the page and calls through Envoy.
    ui.sign_in("alice", &["dev"]).await;
    ui.go(&format!("/requests/{request_id}")).await;
    ui.check_and_photograph("request-approved").await;
    ui.click(&format!("form[action='/requests/{request_id}/grant'] button"))
        .await;
    ui.wait_path(|p| p.ends_with("/grant"), "the grant page").await;
    let token = ui.value("#grant-token").await;
    let curl = ui.value("#grant-curl").await;
    assert!(curl.contains(&token));
    assert!(
        !ui.c.current_url().await.unwrap().as_str().contains(&token),
        "the token is never in a URL"
    );
    ui.check_and_photograph("grant").await;
    let ok = get_with_grant(envoy.port, "/v1/invoices/INV-9", &token);
    assert_eq!(ok.status, 200);

    // The approver revokes with a reason; the proxy refuses.
    ui.sign_in("bob", &["payments-approvers"]).await;
    ui.go("/grants").await;
    ui.check_and_photograph("grants").await;
    ui.fill("form[action^='/grants/'] input[name=reason]", "incident closed")
        .await;
    ui.click("form[action^='/grants/'] button").await;
    eventually("the revocation is enforced", || {
        get_with_grant(envoy.port, "/v1/invoices/INV-9", &token).error_code() == "grant_revoked"
    });

    // The auditor's timeline shows it all, and the chain verifies.
    ui.sign_in("ada", &["jit-admins", "auditors"]).await;
    let mut timeline = String::new();
    eventually_async(&ui, &request_id, &mut timeline).await;
    ui.check_and_photograph("audit").await;
    ui.go("/audit/verify").await;
    assert!(ui.text("#chain-state").await.starts_with("Verified:"));
    ui.check_and_photograph("audit-verify").await;
    ui.go("/overview").await;
    assert!(ui.text("main").await.contains("Requests per day by outcome"));
    ui.check_and_photograph("overview").await;

    // A form whose CSRF token was removed is refused.
    ui.go("/requests").await;
    ui.c.execute(
        "document.querySelectorAll('input[name=csrf]').forEach(e => e.remove());",
        vec![],
    )
    .await
    .unwrap();
    ui.click("form[action='/signout'] button").await;
    // The click only starts the post: wait for its answer before reading it.
    ui.wait_path(|p| p == "/signout", "the refused sign-out").await;
    assert!(ui.c.source().await.unwrap().contains("csrf_rejected"));
    ui.c.close().await.unwrap();
    drop(envoy);
}

/// Waits until the request's timeline has every step (proxy decisions
/// arrive in the proxy's reports).
async fn eventually_async(ui: &Console, request_id: &str, timeline: &mut String) {
    let want = [
        "request.created",
        "vote.approve",
        "grant.issued",
        "grant.token_fetched",
        "proxy.decision",
        "grant.revoked",
    ];
    let start = Instant::now();
    loop {
        ui.go(&format!("/audit?request_id={request_id}")).await;
        *timeline = ui.text("main").await;
        if want.iter().all(|a| timeline.contains(a)) && timeline.contains("grant_revoked") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timeline incomplete: {timeline}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
