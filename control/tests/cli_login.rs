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
        let mut c = tokio::process::Command::new(JITGATE);
        c.args(args)
            .env_clear()
            .env("HOME", self.home.path())
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
        let mut child = self
            .command(&args)
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
            .expect("jitgate login finishes once the user signed in")
            .unwrap();
        assert!(out.status.success(), "login failed; last page: {page}");
        String::from_utf8_lossy(&out.stdout).into_owned()
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

    let (ok, out, err) = s
        .run(
            &"request payments-api --method GET --path /v1/invoices/* --for 10m --reason INC-1 --json"
                .split(' ')
                .collect::<Vec<_>>(),
        )
        .await;
    assert!(ok, "{err}");
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
