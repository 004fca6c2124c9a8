//! `spawn_app()`: the real control service on an ephemeral port against a
//! fresh database (a SQLite file in a temporary directory, or a new
//! database on the machine's PostgreSQL), with a clock tests can move.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use control::clock::TestClock;
use control::config::Config;
use control::App;
use serde_json::Value;
use sqlx::{AnyPool, Row};

pub const DEV_CONFIG: &str = include_str!("../../examples/jitgate.toml");
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub clock: TestClock,
    pub cfg: Config,
    pub app: Arc<App>,
    pub http: reqwest::Client,
    pub backend: Backend,
    server: tokio::task::JoinHandle<()>,
    pg_database: Option<String>,
    _dir: tempfile::TempDir,
}

static N: AtomicU32 = AtomicU32::new(0);

/// Groups of the test users.
pub fn groups_of(user: &str) -> &'static [&'static str] {
    match user {
        "alice" | "eve" => &["dev"],
        "bob" | "carol" => &["payments-approvers"],
        "dave" | "erin" | "frank" => &["hr-approvers"],
        "oscar" => &["oncall"],
        "sam" => &["sre"],
        "ada" => &["jit-admins", "auditors"],
        "ann" => &["auditors"],
        _ => &[],
    }
}

async fn postgres_database() -> Option<String> {
    sqlx::any::install_default_drivers();
    let admin = match AnyPool::connect(PG_ADMIN_URL).await {
        Ok(p) => p,
        Err(e) => {
            jitgate_test_skip::skip(
                jitgate_test_skip::Lacking::Postgres,
                &format!("PostgreSQL not reachable at {PG_ADMIN_URL} ({e})"),
            );
            return None;
        }
    };
    // Databases left by test processes that died are dropped here.
    if let Ok(rows) = sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE 'jitgate_t_%'")
        .fetch_all(&admin)
        .await
    {
        for row in rows {
            let name: String = row.try_get("datname").unwrap_or_default();
            let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()) {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await;
            }
        }
    }
    let name = format!("jitgate_t_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    Some(name)
}

/// Starts the service; `None` when the backend is PostgreSQL and none is
/// reachable (and not required).
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |c| c).await
}

/// Starts the service with an edited configuration text.
pub async fn spawn_app_with(backend: Backend, edit: impl FnOnce(String) -> String) -> Option<TestApp> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, pg_database) = match backend {
        Backend::Sqlite => (format!("sqlite://{}", dir.path().join("jitgate.db").display()), None),
        Backend::Postgres => {
            let name = postgres_database().await?;
            (format!("postgres://postgres@127.0.0.1:5432/{name}"), Some(name))
        }
    };
    let text = edit(DEV_CONFIG.replace(
        "database_url = \"sqlite://jitgate.db\"",
        &format!("database_url = \"{url}\""),
    ));
    let cfg = Config::parse(&text).expect("test config");
    let clock = TestClock::default();
    let app = App::new(cfg.clone(), Arc::new(clock.clone()))
        .await
        .expect("app starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let served = Arc::clone(&app);
    let server = tokio::spawn(async move {
        let _ = control::serve(served, listener).await;
    });
    Some(TestApp {
        base,
        clock,
        cfg,
        app,
        http: reqwest::Client::new(),
        backend,
        server,
        pg_database,
        _dir: dir,
    })
}

impl TestApp {
    /// A bearer token for a test user.
    pub fn token(&self, user: &str) -> String {
        control::auth::dev_token(
            &self.cfg.auth,
            user,
            Some(&format!("{user}@example.com")),
            groups_of(user),
            3600,
            now_s(),
        )
        .expect("dev token")
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        user: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(u) = user {
            req = req.bearer_auth(self.token(u));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A POST with any bearer token (a forged one, the ingest key).
    pub async fn post_as(&self, bearer: &str, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, user: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(user), None).await
    }

    pub async fn post(&self, path: &str, user: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(user), Some(body)).await
    }

    /// Alice asks for read access to the payments API.
    pub async fn request_access(&self, user: &str, resource: &str, seconds: u64) -> Value {
        let paths = if resource == "hr-api" {
            vec!["/v1/employees/*"]
        } else {
            vec!["/v1/invoices/*"]
        };
        let methods = if resource == "payments-api" {
            vec!["GET", "HEAD"]
        } else {
            vec!["GET"]
        };
        let (status, body) = self
            .post(
                "/v1/requests",
                user,
                serde_json::json!({"resource": resource, "scope": [{"methods": methods, "paths": paths}],
                    "duration_seconds": seconds, "reason": "investigating INC-42", "ticket": "INC-42"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    pub async fn count(&self, table: &str) -> i64 {
        let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&self.app.db.pool)
            .await
            .unwrap();
        row.try_get::<i64, _>("n").unwrap()
    }

    /// Stops the server and drops the PostgreSQL database.
    pub async fn finish(self) {
        self.server.abort();
        self.app.db.pool.close().await;
        if let Some(name) = &self.pg_database {
            if let Ok(admin) = AnyPool::connect(PG_ADMIN_URL).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await;
                admin.close().await;
            }
        }
    }
}

pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs a scenario on SQLite and on PostgreSQL (skipped, loudly, when no
/// PostgreSQL is reachable unless JITGATE_REQUIRE_POSTGRES=1).
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let app = $crate::common::spawn_app($crate::common::Backend::Sqlite).await.unwrap();
                super::$name(&app).await;
                app.finish().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                if let Some(app) = $crate::common::spawn_app($crate::common::Backend::Postgres).await {
                    super::$name(&app).await;
                    app.finish().await;
                }
            }
        }
    )*};
}
