//! `jitgate login` end to end: the CLI binary signs in at the real test
//! provider (device flow, and authorization code + PKCE on a loopback
//! redirect) while the test plays the user at the provider's pages; the
//! stored login (mode 0600) is then used, refreshed, shown and forgotten.

mod common;
#[path = "idp/harness.rs"]
mod idp;

use std::process::Stdio;
use std::time::Duration;

use idp::{browser, config_text, play_user, Idp};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const JITGATE: &str = env!("CARGO_BIN_EXE_jitgate");

/// A signed-in-able setup: provider, service trusting it, empty HOME.
struct Setup {
    people: Idp,
    app: common::TestApp,
    home: tempfile::TempDir,
}

async fn setup(idp_args: &[&str]) -> Option<Setup> {
    let people = Idp::start("people", idp_args).await?;
    let text = config_text(&people, None, "jitgate-cli");
    let app = common::spawn_app_with(common::Backend::Sqlite, |db| {
        text.replace(
            "database_url = \"sqlite://jitgate.db\"",
            db.lines().find(|l| l.starts_with("database_url")).unwrap_or_default(),
        )
    })
    .await?;
    Some(Setup {
        people,
        app,
        home: tempfile::tempdir().unwrap(),
    })
}

impl Setup {
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        self.command_in(self.home.path(), args)
    }

    fn command_in(&self, home: &std::path::Path, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(JITGATE);
        c.args(args)
            .env_clear()
            .env("HOME", home)
            .env("JITGATE_URL", &self.app.base)
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        c
    }

    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.command(args).output().await.unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `jitgate login` with `extra` arguments; plays `user` at the URL
    /// the CLI prints (the line starting with `marker`); returns its output.
    async fn login(&self, extra: &[&str], user: &str, otp: Option<&str>) -> String {
        let mut args = vec!["login", "--issuer", self.people.issuer.as_str()];
        args.extend_from_slice(extra);
        self.interactive(self.home.path(), &args, user, otp).await
    }

    /// Runs a command that signs in (in `home`), playing `user` at the URL
    /// it prints; returns its standard output.
    async fn interactive(&self, home: &std::path::Path, args: &[&str], user: &str, otp: Option<&str>) -> String {
        let mut child = self
            .command_in(home, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let line = line.trim_start_matches("(or open ").trim_end_matches(')');
                if line.starts_with("http") && (line.contains("user_code=") || line.contains("/auth?")) {
                    return line.to_owned();
                }
            }
            panic!("jitgate login printed no URL")
        })
        .await
        .expect("jitgate login prints the URL to open");
        let page = play_user(&browser(), &url, user, otp).await;
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .expect("the command finishes once the user signed in")
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?} failed: {}; last page: {page}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `jitgate request` for invoice reads (as the signed-in user); its JSON.
    async fn ask_for_invoices(&self) -> String {
        let args = "request payments-api --method GET --path /v1/invoices/* --for 10m --reason INC-1 --json";
        let (ok, out, err) = self.run(&args.split(' ').collect::<Vec<_>>()).await;
        assert!(ok, "{err}");
        out
    }

    fn stored(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.home.path().join(".config/jitgate/login.json")).unwrap())
            .unwrap()
    }
}

#[tokio::test]
async fn device_flow_login_is_stored_private_and_used_by_every_command_until_logout() {
    let Some(s) = setup(&[]).await else { return };
    let out = s.login(&[], "alice", None).await;
    assert!(out.contains("signed in as alice <alice@example.com>"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(s.home.path().join(".config/jitgate/login.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(s.stored()["refresh_token"].is_string());

    let (ok, out, err) = s.run(&["whoami", "--json"]).await;
    assert!(ok, "{err}");
    let who: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(who["user"], "alice");
    assert_eq!(who["groups"], serde_json::json!(["dev"]));
    assert_eq!(who["issuer"], s.people.issuer.as_str());

    let out = s.ask_for_invoices().await;
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["requester"], "alice", "{created}");
    assert_eq!(created["state"], "pending", "{created}");

    let (ok, out, _) = s.run(&["logout"]).await;
    assert!(ok && out.contains("signed out"), "{out}");
    let (ok, _, err) = s.run(&["requests"]).await;
    assert!(!ok);
    assert!(err.contains("jitgate login"), "{err}");
}

#[tokio::test]
async fn an_expiring_login_is_refreshed_with_the_refresh_token() {
    // ID tokens live 32 s; the CLI refreshes 30 s before expiry.
    let Some(s) = setup(&["--id-token-ttl", "32"]).await else {
        return;
    };
    s.login(&[], "bob", None).await;
    let first = s.stored();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (ok, out, err) = s.run(&["requests", "--json"]).await;
    assert!(ok, "{out}{err}");
    let second = s.stored();
    assert_ne!(first["id_token"], second["id_token"], "the ID token was refreshed");
    let exp = |v: &Value| {
        control::cli::login::claims_of(v["id_token"].as_str().unwrap()).unwrap()["exp"]
            .as_i64()
            .unwrap()
    };
    assert!(exp(&second) > exp(&first));
    let (ok, out, _) = s.run(&["whoami"]).await;
    assert!(ok && out.contains("signed in as bob"), "{out}");
}

#[tokio::test]
async fn browser_login_uses_pkce_on_a_loopback_redirect() {
    let Some(s) = setup(&[]).await else { return };
    let out = s.login(&["--browser"], "carol", None).await;
    assert!(out.contains("signed in as carol"), "{out}");
    assert!(out.contains("groups: dev, oncall"), "{out}");
    let (ok, out, err) = s.run(&["requests", "--json"]).await;
    assert!(ok, "{out}{err}");
}

#[tokio::test]
async fn approving_needs_a_recent_mfa_sign_in_and_the_cli_signs_in_again_for_it() {
    let Some(people) = Idp::start("people", &[]).await else {
        return;
    };
    let text = config_text(&people, None, "jitgate-cli").replacen(
        "[[resources.scope]]",
        "[resources.step_up.approve]\nrequire_acr = [\"phr\"]\nmax_age_seconds = 900\n\n[[resources.scope]]",
        1,
    );
    let Some(app) = common::spawn_app_with(common::Backend::Sqlite, |db| {
        text.replace(
            "database_url = \"sqlite://jitgate.db\"",
            db.lines().find(|l| l.starts_with("database_url")).unwrap_or_default(),
        )
        .replace("approvers = [\"payments-approvers\"]", "approvers = [\"approvers\"]")
    })
    .await
    else {
        return;
    };
    let s = Setup {
        people,
        app,
        home: tempfile::tempdir().unwrap(),
    };
    let bob_home = tempfile::tempdir().unwrap();
    s.login(&[], "alice", None).await;
    let out = s.ask_for_invoices().await;
    let id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bob signs in with a password only.
    let issuer = s.people.issuer.clone();
    s.interactive(bob_home.path(), &["login", "--issuer", &issuer], "bob", None)
        .await;
    let bob_login: Value =
        serde_json::from_str(&std::fs::read_to_string(bob_home.path().join(".config/jitgate/login.json")).unwrap())
            .unwrap();
    // The service refuses his approval, saying what is missing.
    let r = s
        .app
        .http
        .post(format!("{}/v1/requests/{id}/approve", s.app.base))
        .bearer_auth(bob_login["id_token"].as_str().unwrap())
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer error=\"insufficient_user_authentication\", acr_values=\"phr\", max_age=900"
    );
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "step_up_required");
    assert_eq!(problem["acr_values"], "phr");
    assert_eq!(problem["max_age"], 900);
    assert!(
        problem["missing"][0]
            .as_str()
            .unwrap()
            .contains("acr phr (the sign-in has pwd)"),
        "{problem}"
    );

    // The CLI signs him in again asking for phr; he gives his one-time code.
    let out = s
        .interactive(bob_home.path(), &["approve", &id, "--json"], "bob", Some("123456"))
        .await;
    let approved: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(approved["state"], "approved", "{approved}");
    let details: Vec<String> = sqlx::query_scalar("SELECT details FROM audit_log WHERE action = 'vote.approve'")
        .fetch_all(&s.app.app.db.pool)
        .await
        .unwrap();
    assert_eq!(details.len(), 1);
    let d: Value = serde_json::from_str(&details[0]).unwrap();
    assert_eq!(d["auth_context"]["acr"], "phr", "{d}");
    assert_eq!(
        d["auth_context"]["amr"],
        serde_json::json!(["pwd", "otp", "mfa"]),
        "{d}"
    );
    assert_eq!(d["auth_context"]["issuer"], issuer.as_str());
}
