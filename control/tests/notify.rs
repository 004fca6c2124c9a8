//! Notifications and chat approvals, with a real local HTTP receiver that
//! checks signatures as a real one would, standing in for Slack and a
//! webhook consumer.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use common::{spawn_app_with, Backend, TestApp};
use control::signature::{hex_hmac, same_signature};
use serde_json::{json, Value};

const WEBHOOK_SECRET: &str = "webhook-secret-0123456789";
const SLACK_SECRET: &str = "slack-signing-secret-0123456789";
const CALLBACK_SECRET: &str = "callback-secret-0123456789";
/// How far a webhook's signed timestamp may be from the receiver's clock:
/// the five minutes the documentation tells receivers to allow.
const WEBHOOK_WINDOW_S: i64 = 300;

#[derive(Default)]
struct Seen {
    /// (path, delivery id, event, body) of every accepted delivery.
    accepted: Vec<(String, String, String, Value)>,
    /// Requests refused because their signature did not verify.
    bad_signatures: usize,
    /// How many more requests to fail with 503 (a target that is down).
    fail_next: usize,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Seen>>);

async fn receive(State(r): State<Receiver>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut seen = r.0.lock().unwrap();
    if seen.fail_next > 0 {
        seen.fail_next -= 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let path = uri.path().to_owned();
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if path == "/webhook" {
        // Verify as documented: t and v1, HMAC over "t.body", 5-minute window.
        let sig = header("x-jitgate-signature");
        let t: i64 = sig
            .split(',')
            .find_map(|p| p.strip_prefix("t="))
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let v1 = sig.split(',').find_map(|p| p.strip_prefix("v1=")).unwrap_or_default();
        let expected = hex_hmac(WEBHOOK_SECRET.as_bytes(), &[t.to_string().as_bytes(), b".", &body]);
        if !same_signature(&expected, v1) || (common::now_s() - t).abs() > WEBHOOK_WINDOW_S {
            seen.bad_signatures += 1;
            return StatusCode::UNAUTHORIZED;
        }
    }
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.accepted
        .push((path, header("x-jitgate-delivery"), header("x-jitgate-event"), value));
    StatusCode::OK
}

async fn start_receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = Router::new()
        .route("/webhook", post(receive))
        .route("/slack", post(receive))
        .route("/slack-response", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (r, base)
}

fn with_targets(base: &str) -> impl FnOnce(String) -> String + '_ {
    move |config: String| {
        // Top-level keys must come before the first table.
        let head = format!("[notify]\nexpiring_soon_seconds = 300\n\n[[notify.targets]]\nname = \"ops-webhook\"\nkind = \"webhook\"\nurl = \"{base}/webhook\"\nsecret = {{ value = \"{WEBHOOK_SECRET}\" }}\n\n[[notify.targets]]\nname = \"payments-slack\"\nkind = \"slack\"\nurl = \"{base}/slack\"\nresources = [\"payments-api\"]\nevents = [\"request.created\", \"request.approved\", \"request.denied\"]\n\n[integrations]\nslack_signing_secret = {{ value = \"{SLACK_SECRET}\" }}\ncallback_secret = {{ value = \"{CALLBACK_SECRET}\" }}\n\n[[integrations.users]]\nchat_id = \"UBOB\"\nuser = \"bob\"\ngroups = [\"payments-approvers\"]\n\n[[integrations.users]]\nchat_id = \"UALICE\"\nuser = \"alice\"\ngroups = [\"dev\", \"payments-approvers\"]\n\n[[integrations.users]]\nchat_id = \"UDAVE\"\nuser = \"dave\"\ngroups = [\"hr-approvers\"]\n\n");
        let at = config.find("[grants]").unwrap();
        format!("{}{head}{}", &config[..at], &config[at..])
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 10 s");
}

fn count(r: &Receiver, path: &str, event: &str) -> usize {
    r.0.lock()
        .unwrap()
        .accepted
        .iter()
        .filter(|(p, _, e, _)| p == path && e == event)
        .count()
}

/// The deliveries listed for a request once `n` of them are delivered (the
/// sender marks one delivered just after its receiver answered, so a read
/// right after the receiver saw it may still say pending).
async fn delivered(app: &TestApp, request_id: &str, n: usize) -> Value {
    for _ in 0..200 {
        let (_, deliveries) = app.get(&format!("/v1/requests/{request_id}/deliveries"), "alice").await;
        let done = deliveries
            .as_array()
            .map_or(0, |a| a.iter().filter(|d| d["state"] == "delivered").count());
        if done >= n {
            return deliveries;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} deliveries of {request_id}: not delivered within 10 s");
}

async fn app_with_receiver(backend: Backend) -> Option<(TestApp, Receiver, String)> {
    let (r, base) = start_receiver().await;
    let app = spawn_app_with(backend, with_targets(&base)).await?;
    Some((app, r, base))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_request_notifies_the_approvers_targets_with_its_context() {
    let (app, r, _) = app_with_receiver(Backend::Sqlite).await.unwrap();
    let req = app.request_access("alice", "payments-api", 1800).await;
    eventually("webhook and slack deliveries", || {
        count(&r, "/webhook", "request.created") == 1 && count(&r, "/slack", "request.created") == 1
    })
    .await;
    let (accepted, bad_signatures) = {
        let seen = r.0.lock().unwrap();
        (seen.accepted.clone(), seen.bad_signatures)
    };
    let (_, _, _, hook) = accepted.iter().find(|(p, ..)| p == "/webhook").unwrap().clone();
    assert_eq!(hook["request"]["id"], req["id"]);
    assert_eq!(hook["request"]["reason"], "investigating INC-42");
    assert_eq!(hook["approver_groups"], json!(["payments-approvers"]));
    let (_, _, _, slack) = accepted.iter().find(|(p, ..)| p == "/slack").unwrap().clone();
    let text = slack.to_string();
    for needle in [
        "alice",
        "payments-api",
        "GET,HEAD /v1/invoices/*",
        "30 min",
        "investigating INC-42",
        "INC-42",
        "jitgate_approve",
        "jitgate_deny",
    ] {
        assert!(text.contains(needle), "Slack message lacks {needle}: {text}");
    }
    assert_eq!(bad_signatures, 0);
    // The HR request goes to the webhook only (the Slack target covers payments).
    app.request_access("alice", "hr-api", 600).await;
    eventually("hr webhook", || count(&r, "/webhook", "request.created") == 2).await;
    assert_eq!(count(&r, "/slack", "request.created"), 1);
    let deliveries = delivered(&app, req["id"].as_str().unwrap(), 2).await;
    let mut listed: Vec<(&str, &str, &str)> = deliveries
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["target"].as_str().unwrap_or_default(),
                d["event"].as_str().unwrap_or_default(),
                d["state"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            ("ops-webhook", "request.created", "delivered"),
            ("payments-slack", "request.created", "delivered"),
        ],
        "{deliveries}"
    );
    // The ids listed are the idempotency keys the receivers were sent.
    let mut listed_ids: Vec<&str> = deliveries
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap_or_default())
        .collect();
    listed_ids.sort_unstable();
    let mut received_ids: Vec<String> = accepted
        .iter()
        // Taken before the HR request: only this request's deliveries.
        .filter(|(p, _, e, _)| p != "/slack-response" && e == "request.created")
        .map(|(_, id, ..)| id.clone())
        .collect();
    received_ids.sort_unstable();
    assert_eq!(received_ids, listed_ids);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_signed_outside_the_five_minute_window_is_refused_by_its_receiver() {
    let (app, r, _) = app_with_receiver(Backend::Sqlite).await.unwrap();
    // The service's clock runs six minutes ahead of the receiver's: its
    // signatures are valid but too far from the receiver's now.
    app.clock.advance(WEBHOOK_WINDOW_S + 60);
    app.request_access("alice", "hr-api", 600).await;
    eventually("the receiver refuses the signature", || {
        r.0.lock().unwrap().bad_signatures >= 1
    })
    .await;
    assert_eq!(count(&r, "/webhook", "request.created"), 0);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_target_is_retried_until_it_recovers_without_holding_back_the_others() {
    let (app, r, _) = app_with_receiver(Backend::Sqlite).await.unwrap();
    // Every target answers 503 three times (the webhook and slack share the
    // receiver): the first attempts fail, retries with backoff succeed.
    r.0.lock().unwrap().fail_next = 3;
    let req = app.request_access("alice", "payments-api", 600).await;
    eventually("delivered after recovery", || {
        count(&r, "/webhook", "request.created") == 1 && count(&r, "/slack", "request.created") == 1
    })
    .await;
    let deliveries = delivered(&app, req["id"].as_str().unwrap(), 2).await;
    let attempts: Vec<i64> = deliveries
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["attempts"].as_i64().unwrap())
        .collect();
    // Two deliveries, three refused attempts between them, then one
    // success each.
    assert_eq!(attempts.len(), 2, "{deliveries}");
    assert_eq!(
        attempts.iter().sum::<i64>(),
        5,
        "failed attempts were retried: {deliveries}"
    );
    let metrics = app.call(reqwest::Method::GET, "/metrics", None, None).await.1;
    let failures: u64 = metrics
        .as_str()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("jitgate_notification_failures_total "))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert_eq!(failures, 3, "failures are counted: {metrics}");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_postgres_never_send_the_same_notification_twice() {
    let Some((app, r, base)) = app_with_receiver(Backend::Postgres).await else {
        return;
    };
    // A second replica: another App on the same database, with its sender.
    let _ = base;
    let replica = control::App::new(app.cfg.clone(), Arc::new(app.clock.clone()))
        .await
        .unwrap();
    let sender = tokio::spawn(control::notify::run(Arc::clone(&replica)));
    for _ in 0..10 {
        app.request_access("alice", "payments-api", 600).await;
    }
    eventually("all deliveries", || {
        count(&r, "/webhook", "request.created") >= 10 && count(&r, "/slack", "request.created") >= 10
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let accepted = r.0.lock().unwrap().accepted.clone();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for (_, id, ..) in &accepted {
        *per_id.entry(id.as_str()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 20);
    assert!(
        per_id.values().all(|n| *n == 1),
        "a delivery was sent twice: {per_id:?}"
    );
    sender.abort();
    replica.db.pool.close().await;
    app.finish().await;
}

fn slack_body(user: &str, action: &str, request_id: &str, response_url: &str) -> String {
    let payload = json!({"type": "block_actions", "user": {"id": user}, "response_url": response_url,
        "actions": [{"action_id": action, "value": request_id}]});
    let encoded: String = payload
        .to_string()
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("payload={encoded}")
}

async fn slack(app: &TestApp, body: &str, ts: i64, secret: &str) -> (u16, Value) {
    let sig = format!(
        "v0={}",
        hex_hmac(
            secret.as_bytes(),
            &[b"v0:", ts.to_string().as_bytes(), b":", body.as_bytes()]
        )
    );
    let resp = app
        .http
        .post(format!("{}/v1/integrations/slack/actions", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", sig)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn refusals(app: &TestApp, code: &str) -> usize {
    let (_, records) = app.get("/v1/audit?action=integration.refused&limit=1000", "ada").await;
    records
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["details"]["code"] == code && r["channel"] == "slack")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slack_approvals_apply_the_same_policy_and_refusals_are_audited() {
    let (app, r, base) = app_with_receiver(Backend::Sqlite).await.unwrap();
    let now = common::now_s();
    let req = app.request_access("alice", "payments-api", 600).await;
    let id = req["id"].as_str().unwrap();
    let respond = format!("{base}/slack-response");

    let (status, _) = slack(
        &app,
        &slack_body("UBOB", "jitgate_approve", id, &respond),
        now,
        "wrong-secret-0123456789",
    )
    .await;
    assert_eq!(status, 401, "wrong signature");
    // Unsigned calls are counted and aggregated per source and reason
    // (like failed logins), never one audit record per call.
    assert_eq!(refusals(&app, "slack_signature_invalid").await, 0);

    let (status, _) = slack(
        &app,
        &slack_body("UBOB", "jitgate_approve", id, &respond),
        now - 400,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(status, 401, "older than 5 minutes");
    assert_eq!(refusals(&app, "slack_replay_window").await, 0);

    let (status, body) = slack(
        &app,
        &slack_body("UALICE", "jitgate_approve", id, &respond),
        now,
        SLACK_SECRET,
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("self_approval")));
    assert_eq!(refusals(&app, "self_approval").await, 1);

    let (status, _) = slack(
        &app,
        &slack_body("UDAVE", "jitgate_approve", id, &respond),
        now,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(status, 404, "an approver outside the group cannot even see it");
    assert_eq!(refusals(&app, "request_not_found").await, 1);

    let (status, _) = slack(
        &app,
        &slack_body("UNOBODY", "jitgate_approve", id, &respond),
        now,
        SLACK_SECRET,
    )
    .await;
    assert_eq!(status, 403);

    let good = slack_body("UBOB", "jitgate_approve", id, &respond);
    let (status, body) = slack(&app, &good, now, SLACK_SECRET).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["request"]["state"], "approved");
    assert_eq!(body["request"]["votes"][0]["channel"], "slack");
    let (status, body) = slack(&app, &good, now, SLACK_SECRET).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("slack_replayed")),
        "the exact same request again"
    );
    // The message is updated through response_url (refusals get an
    // ephemeral note there too).
    eventually("message updated", || {
        r.0.lock().unwrap().accepted.iter().any(|(p, _, _, v)| {
            p == "/slack-response" && v["text"].as_str().is_some_and(|t| t.starts_with("Approved by bob"))
        })
    })
    .await;
    let (_, records) = app
        .get(&format!("/v1/audit?request_id={id}&action=vote.approve"), "ada")
        .await;
    assert_eq!(records[0]["channel"], "slack");
    assert_eq!(records[0]["actor"], "bob");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_callbacks_decide_once_and_refuse_bad_or_replayed_signatures() {
    let (app, _r, _) = app_with_receiver(Backend::Sqlite).await.unwrap();
    let req = app.request_access("alice", "hr-api", 600).await;
    let id = req["id"].as_str().unwrap();
    let send = |body: String, ts: i64, secret: &str| {
        let sig = format!(
            "t={ts},v1={}",
            hex_hmac(secret.as_bytes(), &[ts.to_string().as_bytes(), b".", body.as_bytes()])
        );
        let req = app
            .http
            .post(format!("{}/v1/integrations/callback", app.base))
            .header("x-jitgate-signature", sig)
            .body(body);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let now = common::now_s();
    let body = json!({"request_id": id, "decision": "deny", "actor": "UDAVE", "comment": "not needed"}).to_string();
    assert_eq!(send(body.clone(), now, "wrong-secret-0123456789").await.0, 401);
    assert_eq!(send(body.clone(), now - 600, CALLBACK_SECRET).await.0, 401);
    let (status, r) = send(body.clone(), now, CALLBACK_SECRET).await;
    assert_eq!((status, r["state"].as_str()), (200, Some("denied")), "{r}");
    assert_eq!(send(body, now, CALLBACK_SECRET).await.0, 409, "replay");
    app.finish().await;
}
