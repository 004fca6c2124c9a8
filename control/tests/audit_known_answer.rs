//! The audit chain as stored, pinned to known answers: two records appended
//! through the public API at fixed times must carry exactly these hashes,
//! worked out outside the crate from hand-written pre-images
//! (`prev_hash "\n" [seq,at,actor,action,resource,request_id,grant_id,channel,details]`).
//! A change to the encoding, the genesis hash or the chaining fails here.

use control::audit::{self, Entry};
use control::store::Db;
use serde_json::json;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const FIRST: &str = "aa410fa4a427090c2a89fd8dafe7678176d4bfb00e0b2183fd6533978e9c5abb";
const SECOND: &str = "b539913a5b9179c25ebb4810384f8b939b5896d2f5e1cdda2ef998ec2101243e";

#[tokio::test]
async fn two_appended_records_carry_the_pinned_chain_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}", dir.path().join("audit.db").display()))
        .await
        .unwrap();
    // Escapes, a quote, a newline, a tab and non-ASCII text: what a change of
    // JSON serializer or its settings would encode differently.
    let created = Entry {
        actor: "alice".into(),
        action: "request.created".into(),
        resource: Some("payments-api".into()),
        request_id: Some("req_1".into()),
        grant_id: None,
        channel: Some("api".into()),
        details: json!({"duration_seconds": 1800, "reason": "INC-42: größe \"x\"\n"}),
    };
    let approved = Entry {
        actor: "bob".into(),
        action: "vote.approve".into(),
        resource: Some("payments-api".into()),
        request_id: Some("req_1".into()),
        grant_id: Some("grt_1".into()),
        channel: Some("slack".into()),
        details: json!({"comment": "ok ✓\t"}),
    };
    assert_eq!(
        audit::append_alone(&db, 1_700_000_000_000, &[created]).await.unwrap(),
        1
    );
    assert_eq!(
        audit::append_alone(&db, 1_700_000_001_000, &[approved]).await.unwrap(),
        2
    );

    let records = audit::query(&db, &audit::Query::default()).await.unwrap();
    let links: Vec<(i64, &str, &str)> = records
        .iter()
        .map(|r| (r.seq, r.prev_hash.as_str(), r.hash.as_str()))
        .collect();
    assert_eq!(links, [(1, GENESIS, FIRST), (2, FIRST, SECOND)]);
    let verification = audit::verify(&db, audit::Scope::Full, None, 0).await.unwrap();
    assert!(verification.ok, "{verification:?}");
    assert_eq!(verification.records, 2);
}
