//! The test OpenID provider (`idp.mjs`, npm `oidc-provider`) started under
//! Node on a free port, with its admin calls (rotate and retire keys, count
//! key set fetches) and a browser-like client that plays the user at its
//! pages (device code confirmation, sign-in).

#![allow(dead_code)]

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A running provider; stopped when dropped.
pub struct Idp {
    /// Its issuer URL (`http://127.0.0.1:PORT`).
    pub issuer: String,
    child: Option<tokio::process::Child>,
    http: reqwest::Client,
}

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/idp");

impl Idp {
    /// Starts a provider (`role`: people or workload); `None` (a recorded
    /// skip) when Node or the installed package is missing.
    pub async fn start(role: &str, extra: &[&str]) -> Option<Idp> {
        if !std::path::Path::new(DIR).join("node_modules/oidc-provider").is_dir() {
            jitgate_test_skip::skip(
                jitgate_test_skip::Lacking::Tool,
                "the test OpenID provider is not installed: run scripts/setup",
            );
            return None;
        }
        let mut child = match tokio::process::Command::new("node")
            .current_dir(DIR)
            .arg("idp.mjs")
            .args(["--port", "0", "--role", role])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                jitgate_test_skip::skip(jitgate_test_skip::Lacking::Tool, &format!("node: {e}"));
                return None;
            }
        };
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.expect("idp stdout") {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    return v["issuer"].as_str().map(str::to_owned);
                }
            }
            None
        })
        .await
        .expect("the test IdP starts within 20 s")
        .expect("the test IdP prints its issuer");
        // Keep draining its output: a closed pipe would kill it (EPIPE).
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(Idp {
            issuer: ready,
            child: Some(child),
            http: browser(),
        })
    }

    /// Stops the provider (it becomes unreachable).
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    async fn admin(&self, method: reqwest::Method, path: &str) -> Value {
        let r = self
            .http
            .request(method, format!("{}{path}", self.issuer))
            .send()
            .await
            .expect("idp admin call");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.expect("idp admin json")
    }

    /// How many times its key set and discovery document were fetched.
    pub async fn stats(&self) -> (u64, u64) {
        let v = self.admin(reqwest::Method::GET, "/admin/stats").await;
        (
            v["jwks_requests"].as_u64().unwrap_or_default(),
            v["discovery_requests"].as_u64().unwrap_or_default(),
        )
    }

    /// Adds a new RS256 key that signs from now on; returns its kid.
    pub async fn rotate(&self) -> String {
        let v = self.admin(reqwest::Method::POST, "/admin/rotate").await;
        v["kid"].as_str().expect("kid").to_owned()
    }

    /// Removes every key but the newest of each algorithm.
    pub async fn retire(&self) {
        self.admin(reqwest::Method::POST, "/admin/retire").await;
    }

    /// The current RS256 public key as PEM, and its kid.
    pub async fn rsa_public_pem(&self) -> (String, Vec<u8>) {
        let r = self
            .http
            .get(format!("{}/admin/rsa-public.pem", self.issuer))
            .send()
            .await
            .expect("pem");
        let kid = r.headers()["x-kid"].to_str().expect("kid").to_owned();
        (kid, r.bytes().await.expect("pem body").to_vec())
    }

    /// A workload's access token (client credentials).
    pub async fn workload_token(&self, client: &str, secret: &str) -> String {
        let r: Value = self
            .http
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "request")])
            .send()
            .await
            .expect("token call")
            .json()
            .await
            .expect("token json");
        r["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token: {r}"))
            .to_owned()
    }

    /// An ID token for `user` by the device flow, the test playing both the
    /// device and the user (for tests of the service, not of the CLI).
    pub async fn id_token(&self, user: &str, otp: Option<&str>, acr_values: Option<&str>) -> Value {
        let mut form = vec![("client_id", "jitgate-cli"), ("scope", "openid email groups")];
        if let Some(a) = acr_values {
            form.push(("acr_values", a));
        }
        let auth: Value = self
            .http
            .post(format!("{}/device/auth", self.issuer))
            .form(&form)
            .send()
            .await
            .expect("device auth")
            .json()
            .await
            .expect("device auth json");
        let page = play_user(
            &self.http,
            auth["verification_uri_complete"].as_str().expect("uri"),
            user,
            otp,
        )
        .await;
        assert!(page.contains("Sign-in Success") || page.contains("success"), "{page}");
        let tokens: Value = self
            .http
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("client_id", "jitgate-cli"),
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", auth["device_code"].as_str().expect("device_code")),
            ])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("token json");
        tokens
    }
}

/// A client with cookies that follows redirects, like a browser.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).build().expect("client")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].replace("&amp;", "&"))
}

/// The first form of a page: its action and hidden fields.
pub fn first_form(page: &str, base: &str) -> Option<(String, Vec<(String, String)>)> {
    let form = &page[page.find("<form")?..];
    let form = &form[..form.find("</form>")?];
    let action = attr(&form[..form.find('>')?], "action")?;
    let action = if action.starts_with('/') {
        format!("{base}{action}")
    } else {
        action
    };
    let hidden = form
        .split("<input")
        .skip(1)
        .filter(|t| t.contains("type=\"hidden\""))
        .filter_map(|t| Some((attr(t, "name")?, attr(t, "value").unwrap_or_default())))
        .collect();
    Some((action, hidden))
}

/// Plays the user from `url` on: submits confirmation forms, signs in as
/// `user` (password "pw", `otp` when given) and follows the redirects to
/// the end; returns the last page's text.
pub async fn play_user(http: &reqwest::Client, url: &str, user: &str, otp: Option<&str>) -> String {
    let base = {
        let u = reqwest::Url::parse(url).expect("url");
        format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default())
            + &u.port().map(|p| format!(":{p}")).unwrap_or_default()
    };
    let mut page = http.get(url).send().await.expect("open").text().await.expect("page");
    for _ in 0..6 {
        let Some((action, mut fields)) = first_form(&page, &base) else {
            return page;
        };
        if page.contains("name=\"login\"") {
            fields.push(("login".into(), user.into()));
            fields.push(("password".into(), "pw".into()));
            fields.push(("otp".into(), otp.unwrap_or_default().into()));
        }
        let r = http.post(&action).form(&fields).send().await.expect("submit");
        page = r.text().await.expect("page");
        if page.contains("id=\"error\"") {
            return page;
        }
    }
    page
}

/// The example configuration trusting `people` (discovery) for people and,
/// when given, `workload` as the workload issuer "ci".
pub fn config_text(people: &Idp, workload: Option<&Idp>, audience: &str) -> String {
    trusting(include_str!("../../examples/jitgate.toml"), people, workload, audience)
}

/// A configuration text (the example's `[auth]`) changed to trust `people`
/// and, when given, `workload`.
pub fn trusting(text: &str, people: &Idp, workload: Option<&Idp>, audience: &str) -> String {
    let mut text = text
        .replace(
            "issuer = \"https://idp.example.test\"",
            &format!("issuer = {:?}", people.issuer),
        )
        .replace("audience = \"jitgate\"", &format!("audience = {audience:?}"))
        .replace("leeway_seconds = 5", "leeway_seconds = 0")
        .replace(
            "hs256_secret = { value = \"dev-only-hs256-secret-change-me-0123456789\" }",
            "discovery = true\njwks_cache = { min_seconds = 1, max_seconds = 2, refetch_interval_seconds = 1 }",
        );
    if let Some(w) = workload {
        text = text.replace(
            "auditor_groups = [\"auditors\"]\n",
            &format!(
                "auditor_groups = [\"auditors\"]\n\n[[auth.workload]]\nname = \"ci\"\nissuer = {:?}\naudience = \"urn:jitgate:ci\"\ndiscovery = true\nallowed_groups = [\"deployers\"]\n",
                w.issuer
            ),
        );
    }
    text
}

/// Plays the user at the provider from an authorization URL: signs in as
/// `user` and follows the provider's redirects until one leaves for a URL
/// starting with `stop_at` (the client's redirect URI), which it returns
/// instead of following.
pub async fn authorize(url: &str, user: &str, stop_at: &str) -> String {
    authorize_with(url, user, None, stop_at).await
}

/// [`authorize`], giving the one-time code `otp` at the sign-in form (an
/// MFA sign-in: `acr` "phr").
pub async fn authorize_with(url: &str, user: &str, otp: Option<&str>, stop_at: &str) -> String {
    let stop = stop_at.to_owned();
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.url().as_str().starts_with(&stop) {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .expect("client");
    let base = {
        let u = reqwest::Url::parse(url).expect("url");
        format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default())
            + &u.port().map(|p| format!(":{p}")).unwrap_or_default()
    };
    let mut response = http.get(url).send().await.expect("open");
    for _ in 0..6 {
        if let Some(location) = response.headers().get("location") {
            let location = location.to_str().expect("location").to_owned();
            assert!(location.starts_with(stop_at), "{location}");
            return location;
        }
        let page = response.text().await.expect("page");
        let (action, mut fields) = first_form(&page, &base).unwrap_or_else(|| panic!("no form in {page}"));
        if page.contains("name=\"login\"") {
            fields.push(("login".into(), user.into()));
            fields.push(("password".into(), "pw".into()));
            fields.push(("otp".into(), otp.unwrap_or_default().into()));
        }
        response = http.post(&action).form(&fields).send().await.expect("submit");
    }
    panic!("the provider never sent the browser back to {stop_at}");
}
