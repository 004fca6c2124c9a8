//! An attacker with full write access to the database, on SQLite and
//! PostgreSQL: they drop the append-only triggers, rewrite the records,
//! and recompute the hash chain, the Merkle tree and the head with the
//! service's own code, so that the database is self-consistent (the chain
//! check says `ok`). Verification against the witness directory (signed
//! checkpoints the database never held, and a key it never held) still
//! finds every such change and names the first record that disagrees.

mod common;

use std::path::PathBuf;

use control::audit::checkpoint::{CheckpointSigner, CheckpointVerifier, TreeHead};
use control::audit::publish;
use control::audit::witness::{self, Report, Witness};
use control::audit::{self, Entry};
use serde_json::{json, Value};
use sqlx::Row;

use common::{Backend, TestApp};

const KEY_NAME: &str = "jitgate.test/audit";

fn signer() -> CheckpointSigner {
    CheckpointSigner::generate(KEY_NAME, [7; 32]).unwrap()
}

fn public_key() -> CheckpointVerifier {
    signer().verifier()
}

/// The service with checkpoints into `witness`, signed only when a test
/// asks (the background loop's thresholds are never reached).
async fn spawn_with_witness(backend: Backend, witness: &std::path::Path) -> Option<TestApp> {
    spawn_with_witness_and(backend, witness, "").await
}

/// The same, with more configuration text appended (notify targets).
async fn spawn_with_witness_and(backend: Backend, witness: &std::path::Path, extra: &str) -> Option<TestApp> {
    let key = signer().private_text();
    let witness = witness.display().to_string();
    let extra = extra.to_owned();
    common::spawn_app_with(backend, move |text| {
        format!(
            "{text}\n[audit]\nsigning_key = {{ value = \"{key}\" }}\nwitness_dir = \"{witness}\"\ncheckpoint_every_records = 1000000\ncheckpoint_every_seconds = 10000000000\n{extra}"
        )
    })
    .await
}

fn entry(i: usize) -> Entry {
    Entry {
        actor: format!("user{i}"),
        action: "vote.approve".into(),
        resource: Some("payments-api".into()),
        request_id: Some(format!("req_{i}")),
        grant_id: None,
        channel: Some("api".into()),
        details: json!({"comment": format!("approval {i}")}),
    }
}

/// 25 records, checkpoint 25; 10 more, checkpoint 35; 3 more unsigned.
async fn history(app: &TestApp) {
    let db = &app.app.db;
    for (range, sign) in [(0..10, false), (10..25, true), (25..35, true), (35..38, false)] {
        for i in range {
            audit::append_alone(db, 1_700_000_000_000 + i as i64, &[entry(i)])
                .await
                .unwrap();
        }
        if sign {
            assert!(publish::publish_now(&app.app).await.is_some());
        }
    }
}

async fn verify_full(app: &TestApp, witness: &std::path::Path) -> Report {
    let witness = Witness::load(witness, &public_key(), 0).unwrap();
    witness::verify(&app.app.db.pool, &witness, 0).await.unwrap()
}

/// Every record as stored: (at, entry).
async fn records(app: &TestApp) -> Vec<(i64, Entry)> {
    let rows = sqlx::query("SELECT * FROM audit_log ORDER BY seq")
        .fetch_all(&app.app.db.pool)
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let details: String = r.try_get("details").unwrap();
            (
                r.try_get("at").unwrap(),
                Entry {
                    actor: r.try_get("actor").unwrap(),
                    action: r.try_get("action").unwrap(),
                    resource: r.try_get("resource").unwrap(),
                    request_id: r.try_get("request_id").unwrap(),
                    grant_id: r.try_get("grant_id").unwrap(),
                    channel: r.try_get("channel").unwrap(),
                    details: serde_json::from_str::<Value>(&details).unwrap(),
                },
            )
        })
        .collect()
}

/// The attacker's first step: the append-only triggers dropped.
async fn drop_guards(app: &TestApp) {
    let drops: &[&str] = match app.backend {
        Backend::Sqlite => &[
            "DROP TRIGGER IF EXISTS audit_log_no_update",
            "DROP TRIGGER IF EXISTS audit_log_no_delete",
            "DROP TRIGGER IF EXISTS audit_tree_no_update",
            "DROP TRIGGER IF EXISTS audit_tree_no_delete",
        ],
        Backend::Postgres => &[
            "DROP TRIGGER IF EXISTS audit_log_no_update ON audit_log",
            "DROP TRIGGER IF EXISTS audit_tree_no_update ON audit_tree",
        ],
    };
    for sql in drops {
        sqlx::query(sql).execute(&app.app.db.pool).await.unwrap();
    }
}

/// The attacker: drops the triggers, empties the log and the tree, resets
/// the head, and appends `records` again with the service's own code: the
/// chain, the tree and the head are all recomputed and consistent.
async fn rewrite(app: &TestApp, records: Vec<(i64, Entry)>) {
    let pool = &app.app.db.pool;
    drop_guards(app).await;
    for sql in [
        "DELETE FROM audit_log",
        "DELETE FROM audit_tree",
        "DELETE FROM audit_checkpoints",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    sqlx::query("UPDATE audit_head SET seq = 0, hash = $1 WHERE id = 1")
        .bind("0".repeat(64))
        .execute(pool)
        .await
        .unwrap();
    for (at, e) in records {
        audit::append_alone(&app.app.db, at, &[e]).await.unwrap();
    }
    let chain = audit::verify(&app.app.db, audit::Scope::Full, None, 0).await.unwrap();
    assert!(chain.ok, "the attacker's rewrite is self-consistent: {chain:?}");
}

/// `GET /v1/audit/verify` as the service runs it, on the history's 38
/// records: (ok, from, records read, signed checkpoints checked, first
/// broken seq).
async fn online(app: &TestApp, query: &str) -> (bool, i64, i64, i64, Option<i64>) {
    let (status, v) = app.get(&format!("/v1/audit/verify{query}"), "ann").await;
    assert_eq!(status, 200, "{v}");
    (
        v["ok"].as_bool().unwrap(),
        v["from"].as_i64().unwrap(),
        v["records"].as_i64().unwrap(),
        v["checkpoints"].as_i64().unwrap(),
        v["first_broken"]["seq"].as_i64(),
    )
}

async fn set_actor(app: &TestApp, seq: i64, actor: &str) {
    sqlx::query("UPDATE audit_log SET actor = $1 WHERE seq = $2")
        .bind(actor)
        .bind(seq)
        .execute(&app.app.db.pool)
        .await
        .unwrap();
}

async fn append(app: &TestApp, range: std::ops::Range<usize>) {
    for i in range {
        audit::append_alone(&app.app.db, 1_700_000_100_000 + i as i64, &[entry(i)])
            .await
            .unwrap();
    }
}

/// The online check reads only the records after the last intact one
/// (and finds an edit there); an edit before it is found by `full=true`;
/// a log shorter than last verified is named.
async fn online_verification_is_incremental_and_full_finds_older_edits(app: &TestApp, _: PathBuf) {
    assert_eq!(
        online(app, "").await,
        (true, 0, 38, 2, None),
        "the first check reads all"
    );
    append(app, 100..105).await;
    assert_eq!(online(app, "").await, (true, 38, 5, 0, None), "then only the new ones");
    append(app, 105..110).await;
    drop_guards(app).await;
    let original = records(app).await[44].1.actor.clone();
    set_actor(app, 45, "mallory").await;
    assert_eq!(
        online(app, "").await,
        (false, 43, 1, 0, Some(45)),
        "an edit after the last verified record is found"
    );
    set_actor(app, 45, &original).await;
    assert_eq!(online(app, "").await, (true, 43, 5, 0, None));
    set_actor(app, 3, "mallory").await;
    assert_eq!(
        online(app, "").await,
        (true, 48, 0, 0, None),
        "an edit before it is not read"
    );
    assert_eq!(
        online(app, "?full=true").await,
        (false, 0, 2, 0, Some(3)),
        "full=true finds it"
    );
    let (status, body) = app.get("/v1/audit/verify?full=yes", "ann").await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (400, Some("full")),
        "{body}"
    );
    // Truncation: the last three records deleted and the head rolled back.
    let hash_45: String = sqlx::query("SELECT hash FROM audit_log WHERE seq = 45")
        .fetch_one(&app.app.db.pool)
        .await
        .unwrap()
        .get("hash");
    sqlx::query("DELETE FROM audit_log WHERE seq > 45")
        .execute(&app.app.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_head SET seq = 45, hash = $1 WHERE id = 1")
        .bind(hash_45)
        .execute(&app.app.db.pool)
        .await
        .unwrap();
    assert_eq!(online(app, "").await, (false, 0, 0, 0, Some(46)));
}

/// With the signing key configured, the online check also recomputes the
/// root of every signed checkpoint it passes: a history rewritten with the
/// service's own code (chain, tree and head consistent) under the signed
/// notes it cannot re-sign is found at the first checkpoint after the edit.
async fn online_verification_checks_the_signed_roots(app: &TestApp, _: PathBuf) {
    let signed = sqlx::query("SELECT size, root, at, note FROM audit_checkpoints ORDER BY size")
        .fetch_all(&app.app.db.pool)
        .await
        .unwrap();
    let mut all = records(app).await;
    all[29].1.actor = "mallory".into();
    rewrite(app, all).await;
    for row in &signed {
        sqlx::query("INSERT INTO audit_checkpoints (size, root, at, note) VALUES ($1, $2, $3, $4)")
            .bind(row.get::<i64, _>("size"))
            .bind(row.get::<String, _>("root"))
            .bind(row.get::<i64, _>("at"))
            .bind(row.get::<String, _>("note"))
            .execute(&app.app.db.pool)
            .await
            .unwrap();
    }
    assert_eq!(
        online(app, "?full=true").await,
        (false, 0, 34, 1, Some(35)),
        "checkpoint 25 holds, 35 does not"
    );
}

fn first(report: &Report) -> (u64, u64) {
    let d = report.first_disagreement.as_ref().expect("a disagreement is reported");
    assert!(!report.ok);
    (d.seq, d.checkpoint)
}

async fn run(backend: Backend, scenario: impl AsyncFnOnce(&TestApp, PathBuf)) {
    let dir = tempfile::tempdir().unwrap();
    let witness = dir.path().join("witness");
    let Some(app) = spawn_with_witness(backend, &witness).await else {
        return;
    };
    history(&app).await;
    let clean = verify_full(&app, &witness).await;
    assert!(clean.ok, "{clean:?}");
    assert_eq!(
        (clean.signed_size, clean.unsigned_records, clean.checkpoints),
        (35, 3, 2)
    );
    scenario(&app, witness).await;
    app.finish().await;
}

async fn edited_record_is_named(app: &TestApp, witness: PathBuf) {
    let mut all = records(app).await;
    all[6].1.details = json!({"comment": "approved by nobody"});
    rewrite(app, all).await;
    assert_eq!(first(&verify_full(app, &witness).await), (7, 25));
    // A witness that kept only the checkpoints names the range instead.
    for entry in std::fs::read_dir(&witness).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "leaves") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let report = verify_full(app, &witness).await;
    assert_eq!(first(&report), (1, 25), "{report:?}");
}

async fn truncation_with_the_head_rolled_back_is_found(app: &TestApp, witness: PathBuf) {
    let mut all = records(app).await;
    all.truncate(30);
    rewrite(app, all).await;
    let report = verify_full(app, &witness).await;
    assert_eq!(first(&report), (31, 35), "{report:?}");
}

async fn a_record_inserted_in_the_middle_is_found(app: &TestApp, witness: PathBuf) {
    let mut all = records(app).await;
    all.insert(11, (1_700_000_000_011, entry(1000)));
    rewrite(app, all).await;
    assert_eq!(first(&verify_full(app, &witness).await), (12, 25));
}

async fn two_records_swapped_are_found(app: &TestApp, witness: PathBuf) {
    let mut all = records(app).await;
    all.swap(4, 8);
    rewrite(app, all).await;
    assert_eq!(first(&verify_full(app, &witness).await), (5, 25));
}

async fn an_older_backup_restored_is_found(app: &TestApp, witness: PathBuf) {
    // The backup was taken at 25 records, after the first checkpoint.
    let mut all = records(app).await;
    all.truncate(25);
    rewrite(app, all).await;
    assert_eq!(first(&verify_full(app, &witness).await), (26, 35));
    // Restarted on the restored copy, the service refuses to sign a tree
    // shorter than the witness's last checkpoint, and says so.
    let restarted = control::App::new(app.cfg.clone(), std::sync::Arc::new(app.clock.clone()))
        .await
        .unwrap();
    audit::append_alone(&restarted.db, 1_700_000_000_100, &[entry(100)])
        .await
        .unwrap();
    assert_eq!(publish::publish_now(&restarted).await, None);
    let readiness = restarted.checkpoints.readiness(true);
    assert!(readiness.contains("failing (audit_log_forked)"), "{readiness}");
}

async fn a_checkpoint_signed_with_another_key_is_refused(app: &TestApp, witness: PathBuf) {
    let other = CheckpointSigner::generate(KEY_NAME, [8; 32]).unwrap();
    let root = control::audit::tree::root(&app.app.db, 38).await.unwrap();
    let forged = other.sign(&TreeHead { size: 38, root });
    std::fs::write(witness.join(publish::checkpoint_file(38)), forged).unwrap();
    let err = Witness::load(&witness, &public_key(), 0).unwrap_err();
    assert_eq!(err.code(), "checkpoint_forged", "{err}");
}

async fn incremental_verification_reads_only_new_records_and_finds_their_edits(app: &TestApp, witness: PathBuf) {
    let state = witness.parent().unwrap().join("verified");
    let report = verify_full(app, &witness).await;
    witness::write_state(&state, &report).unwrap();
    assert_eq!(witness::read_state(&state), 35);
    for i in 38..50 {
        audit::append_alone(&app.app.db, 1_700_000_000_000 + i, &[entry(i as usize)])
            .await
            .unwrap();
    }
    assert_eq!(publish::publish_now(&app.app).await.map(|h| h.size), Some(50));
    // Read from checkpoint 35 on: no older leaf file is read.
    let w = Witness::load(&witness, &public_key(), 35).unwrap();
    assert_eq!((w.leaves_from, w.leaves.len()), (35, 15));
    let report = witness::verify(&app.app.db.pool, &w, 35).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!((report.verified_from, report.records_checked), (35, 15));

    let mut edited = records(app).await;
    edited[41].1.actor = "mallory".into();
    rewrite(app, edited).await;
    let report = witness::verify(&app.app.db.pool, &w, 35).await.unwrap();
    assert_eq!(first(&report), (42, 50));

    // An edit before the starting checkpoint changes the stored tree there.
    let mut edited = records(app).await;
    edited[41].1.actor = "user41".into();
    edited[2].1.actor = "mallory".into();
    rewrite(app, edited).await;
    let report = witness::verify(&app.app.db.pool, &w, 35).await.unwrap();
    assert!(!report.ok && report.records_checked == 0, "{report:?}");
    assert_eq!(first(&verify_full(app, &witness).await), (3, 25));
}

/// A restart after records were committed but before their checkpoint was
/// published (the process died in between): the next checkpoint, by a new
/// process with nothing in memory, covers them, and the witness's leaves
/// have no gap.
async fn a_restarted_service_covers_records_left_unsigned(app: &TestApp, witness: PathBuf) {
    let restarted = control::App::new(app.cfg.clone(), std::sync::Arc::new(app.clock.clone()))
        .await
        .unwrap();
    assert_eq!(publish::publish_now(&restarted).await.map(|h| h.size), Some(38));
    let report = verify_full(app, &witness).await;
    assert!(
        report.ok && report.signed_size == 38 && report.unsigned_records == 0,
        "{report:?}"
    );
    let w = Witness::load(&witness, &public_key(), 0).unwrap();
    assert_eq!(w.leaves.len(), 38);
}

/// A witness's leaf file that was changed no longer hashes to the signed
/// roots: the verifier refuses it rather than blame a record.
async fn a_changed_witness_leaf_file_is_refused(app: &TestApp, witness: PathBuf) {
    let leaves = witness.join(publish::leaves_file(0, 25));
    let text = std::fs::read_to_string(&leaves).unwrap();
    let first = text.lines().next().unwrap().to_owned();
    std::fs::write(&leaves, text.replacen(&first, &"0".repeat(64), 1)).unwrap();
    let w = Witness::load(&witness, &public_key(), 0).unwrap();
    let err = witness::verify(&app.app.db.pool, &w, 0).await.unwrap_err();
    assert_eq!(err.code(), "witness_leaves_disagree", "{err}");
}

macro_rules! on_both_with_history {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::run(super::Backend::Sqlite, super::$name).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::run(super::Backend::Postgres, super::$name).await;
            }
        }
    )*};
}

on_both_with_history!(
    edited_record_is_named,
    truncation_with_the_head_rolled_back_is_found,
    a_record_inserted_in_the_middle_is_found,
    two_records_swapped_are_found,
    an_older_backup_restored_is_found,
    a_checkpoint_signed_with_another_key_is_refused,
    incremental_verification_reads_only_new_records_and_finds_their_edits,
    a_restarted_service_covers_records_left_unsigned,
    a_changed_witness_leaf_file_is_refused,
    online_verification_is_incremental_and_full_finds_older_edits,
    online_verification_checks_the_signed_roots,
);

/// Publication failing (the witness directory is unwritable) is counted
/// and shown by `/readyz`, which still answers 200; access decisions go on.
#[tokio::test]
async fn a_failing_witness_is_visible_and_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let app = spawn_with_witness(Backend::Sqlite, &not_a_dir).await.unwrap();
    app.request_access("alice", "payments-api", 600).await;
    assert_eq!(publish::publish_now(&app.app).await, None);
    assert!(app.app.metrics.audit_checkpoint_failures.get() >= 1);
    let resp = app.http.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("audit checkpoints: failing (witness_publication_failed)"),
        "{body}"
    );
    app.request_access("alice", "hr-api", 600).await;
    app.finish().await;
}

/// The command line, as an auditor runs it: `jitgate audit keygen` makes a
/// key pair the service and the verifier accept; `jitgate audit verify
/// --witness` says ok, remembers the checkpoint, and after an edit exits
/// non-zero naming the record.
#[tokio::test]
async fn the_command_line_verifies_against_the_witness_and_names_the_edited_record() {
    let jitgate = env!("CARGO_BIN_EXE_jitgate");
    let out = std::process::Command::new(jitgate)
        .args(["audit", "keygen", "--name", "jit.test/audit"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let private = text.lines().find(|l| l.starts_with("PRIVATE+KEY+")).unwrap();
    let public = text.lines().find(|l| l.starts_with("jit.test/audit+")).unwrap();
    assert_eq!(
        CheckpointSigner::parse(private).unwrap().verifier(),
        CheckpointVerifier::parse(public).unwrap()
    );

    let dir = tempfile::tempdir().unwrap();
    let witness = dir.path().join("witness");
    let app = spawn_with_witness(Backend::Sqlite, &witness).await.unwrap();
    history(&app).await;
    let url = app.cfg.database_url.clone();
    let key_file = dir.path().join("audit.pub");
    std::fs::write(&key_file, public_key().text()).unwrap();
    let verify = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(jitgate);
        cmd.args(["audit", "verify", "--witness"])
            .arg(&witness)
            .arg("--public-key")
            .arg(&key_file)
            .args(["--database-url", &url])
            .args(extra);
        let out = cmd.output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), all)
    };
    let (ok, text) = verify(&[]);
    assert!(
        ok && text.contains("ok: 38 records checked from checkpoint 0"),
        "{text}"
    );
    let (ok, text) = verify(&[]);
    assert!(
        ok && text.contains("ok: 3 records checked from checkpoint 35"),
        "{text}"
    );
    let mut all = records(&app).await;
    all[6].1.actor = "mallory".into();
    rewrite(&app, all).await;
    let (ok, text) = verify(&["--full"]);
    assert!(
        !ok && text.contains("record 7 disagrees with signed checkpoint 25"),
        "{text}"
    );
    // Checked with another key, every checkpoint is refused.
    let other = CheckpointSigner::generate(KEY_NAME, [8; 32]).unwrap();
    std::fs::write(&key_file, other.verifier().text()).unwrap();
    let (ok, text) = verify(&[]);
    assert!(!ok && text.contains("refused: no valid signature"), "{text}");
    app.finish().await;
}

/// Inclusion and consistency proofs from the API, checked by an independent
/// implementation (`tests/independent/verify_proofs.py`, Python's standard
/// library only) against the roots in the signed checkpoints; a proof with
/// one hash changed is rejected by it, and the endpoints answer problem
/// documents naming the parameter.
async fn proofs_from_the_api_verify_independently(app: &TestApp, _witness: PathBuf) {
    let mut inclusion = Vec::new();
    for (seq, checkpoint) in [(1, 25), (7, 25), (25, 25), (1, 35), (26, 35), (34, 35), (35, 35)] {
        let (status, body) = app
            .get(&format!("/v1/audit/{seq}/proof?checkpoint={checkpoint}"), "ann")
            .await;
        assert_eq!(status, 200, "{body}");
        inclusion.push(body);
    }
    let (status, latest) = app.get("/v1/audit/12/proof", "ann").await;
    assert_eq!((status, latest["tree_size"].as_i64()), (200, Some(35)), "{latest}");
    let (status, body) = app.get("/v1/audit/consistency?from=25&to=35", "ann").await;
    assert_eq!(status, 200, "{body}");
    let consistency = vec![body];
    let independent = |input: &Value| {
        let mut child = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/independent/verify_proofs.py"
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let all = json!({"inclusion": inclusion, "consistency": consistency});
    let (ok, out) = independent(&all);
    assert!(ok && out.trim() == "ok 8", "{out}");
    for (kind, index) in [("inclusion", 1), ("consistency", 0)] {
        let mut bad = all.clone();
        let hash = &mut bad[kind][index]["proof"][0];
        let flipped = format!("{:0>64}", "1");
        *hash = json!(if hash.as_str() == Some(flipped.as_str()) {
            "0".repeat(64)
        } else {
            flipped
        });
        assert!(!independent(&bad).0, "a changed {kind} proof is rejected");
    }
    let mut other_record = all.clone();
    other_record["inclusion"][1]["leaf_input"] = all["inclusion"][0]["leaf_input"].clone();
    assert!(!independent(&other_record).0, "another record's bytes are rejected");

    for (path, status, code) in [
        ("/v1/audit/36/proof?checkpoint=35", 422, "record_not_in_checkpoint"),
        ("/v1/audit/1/proof?checkpoint=30", 404, "checkpoint_not_found"),
        ("/v1/audit/consistency?to=35", 400, "invalid_query"),
        ("/v1/audit/consistency?from=0", 400, "invalid_query"),
        ("/v1/audit/1/proof?checkpoint=35&x=1", 400, "invalid_query"),
        ("/v1/audit/0/proof", 422, "record_not_in_checkpoint"),
        ("/v1/audit/consistency?from=35&to=25", 422, "checkpoints_out_of_order"),
    ] {
        let (s, body) = app.get(path, "ann").await;
        assert_eq!((s, body["code"].as_str()), (status, Some(code)), "{path}: {body}");
    }
    let (s, _) = app.get("/v1/audit/1/proof", "alice").await;
    assert_eq!(s, 403, "only auditors read proofs");
}

on_both_with_history!(proofs_from_the_api_verify_independently);

/// A webhook target that lists `audit.checkpoint` receives every signed
/// checkpoint through the outbox, signed like every webhook, with a note
/// that verifies with the public key; a target without the event gets none.
#[tokio::test]
async fn a_webhook_witness_receives_each_signed_checkpoint() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let sink = Arc::clone(&received);
    let router = axum::Router::new().route(
        "/{target}",
        axum::routing::post(
            move |axum::extract::Path(target): axum::extract::Path<String>,
                  headers: axum::http::HeaderMap,
                  body: String| async move {
                assert!(headers.contains_key("x-jitgate-signature"));
                sink.lock()
                    .unwrap()
                    .push((target, serde_json::from_str(&body).unwrap()));
                axum::http::StatusCode::OK
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let targets = format!(
        "\n[[notify.targets]]\nname = \"witness\"\nkind = \"webhook\"\nurl = \"{base}/witness\"\nsecret = {{ value = \"witness-secret-0123456789\" }}\nevents = [\"audit.checkpoint\"]\n\n[[notify.targets]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{base}/ops\"\nsecret = {{ value = \"ops-secret-0123456789\" }}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with_witness_and(Backend::Sqlite, &dir.path().join("w"), &targets)
        .await
        .unwrap();
    history(&app).await;
    control::notify::send_due(&app.app, &reqwest::Client::new())
        .await
        .unwrap();
    let received = received.lock().unwrap().clone();
    let mut sizes: Vec<u64> = received
        .iter()
        .map(|(target, body)| {
            assert_eq!(
                (target.as_str(), body["event"].as_str()),
                ("witness", Some("audit.checkpoint"))
            );
            public_key()
                .open(body["checkpoint"]["note"].as_str().unwrap())
                .unwrap()
                .size
        })
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [25, 35]);
    app.finish().await;
}

/// `jitgate audit export --from 3 --to 30` through the API gives an archive
/// that `jitgate audit verify-export` accepts with the public key alone,
/// and refuses once a record in it is edited, naming the record.
#[tokio::test]
async fn an_exported_range_verifies_offline_and_an_edit_in_it_is_named() {
    let jitgate = env!("CARGO_BIN_EXE_jitgate");
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_with_witness(Backend::Sqlite, &dir.path().join("w"))
        .await
        .unwrap();
    history(&app).await;
    let token = app.token("ann");
    let base = app.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(jitgate)
            .args(["audit", "export", "--from", "3", "--to", "30"])
            .env("JITGATE_URL", base)
            .env("JITGATE_TOKEN", token)
            .env("HOME", "/nonexistent")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let archive = dir.path().join("archive.jsonl");
    std::fs::write(&archive, &out.stdout).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 29);
    let key = dir.path().join("audit.pub");
    std::fs::write(&key, public_key().text()).unwrap();
    let verify = || {
        let out = std::process::Command::new(jitgate)
            .args(["audit", "verify-export"])
            .arg(&archive)
            .arg("--public-key")
            .arg(&key)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = verify();
    assert!(
        ok && text.contains("records 3..=30 are in the signed checkpoint of 35 records"),
        "{text}"
    );
    let edited = std::fs::read_to_string(&archive)
        .unwrap()
        .replacen("approval 12", "approval 99", 1);
    std::fs::write(&archive, edited).unwrap();
    let (ok, text) = verify();
    assert!(!ok && text.contains("record 13: not in the signed tree"), "{text}");
    app.finish().await;
}
