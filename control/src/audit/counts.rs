//! A batch of counted requests as one audit record (issue 18): a proxy
//! reporter's counts of one interval are a single `proxy.decisions_counted`
//! record whose details list them under named columns, and the same counts
//! are rows of `decision_counts` that the service reads by grant. The
//! record is what the chain and the Merkle tree make tamper-evident;
//! [`mismatch`] is how verification holds the rows to it. Pure.

use serde_json::{json, Value};

use crate::store::counts::{CountRow, StoredCount};

/// The action of a batch-of-counts record.
pub const ACTION: &str = "proxy.decisions_counted";

/// The columns of each count in a record, in order.
pub const COLUMNS: [&str; 8] = [
    "grant_id", "resource", "method", "rule", "status", "calls", "first_ms", "last_ms",
];

/// The details of the record holding `counts`: the reporter's batch id,
/// the total of calls, the column names and one array per count. Arrays
/// under named columns rather than objects: the record is written for
/// every reporter's every interval, and the names once per record keep it
/// small.
pub fn details(instance: &str, seq: i64, counts: &[CountRow]) -> Value {
    let rows: Vec<Value> = counts.iter().map(tuple).collect();
    json!({
        "batch": {"instance": instance, "seq": seq},
        "calls": counts.iter().map(|c| c.calls).sum::<i64>(),
        "columns": COLUMNS,
        "counts": rows,
    })
}

fn tuple(c: &CountRow) -> Value {
    json!([c.grant_id, c.resource, c.method, c.rule, c.status, c.calls, c.first_ms, c.last_ms])
}

/// The counts a record's stored details hold, in order; `None` if they are
/// not a list of counts in [`COLUMNS`].
pub fn of_details(details: &str) -> Option<Vec<CountRow>> {
    let v: Value = serde_json::from_str(details).ok()?;
    if v.get("columns")? != &json!(COLUMNS) {
        return None;
    }
    v.get("counts")?
        .as_array()?
        .iter()
        .map(|t| {
            let t = t.as_array().filter(|t| t.len() == COLUMNS.len())?;
            Some(CountRow {
                grant_id: t[0].as_str()?.to_owned(),
                resource: match &t[1] {
                    Value::Null => None,
                    v => Some(v.as_str()?.to_owned()),
                },
                method: t[2].as_str()?.to_owned(),
                rule: t[3].as_i64()?,
                status: t[4].as_i64()?,
                calls: t[5].as_i64()?,
                first_ms: t[6].as_i64()?,
                last_ms: t[7].as_i64()?,
            })
        })
        .collect()
}

/// Why the stored rows of record `seq` are not the counts it holds, if
/// they are not. `action` and `details` are the record's; `rows` are the
/// rows stored under its seq, by position. A record of another action
/// holds no counts.
pub fn mismatch(action: &str, details: &str, rows: &[StoredCount]) -> Option<&'static str> {
    if action != ACTION {
        return (!rows.is_empty()).then_some("counts are stored for a record that holds none (added?)");
    }
    let Some(held) = of_details(details) else {
        return Some("the record's counts cannot be read");
    };
    let in_order = rows.iter().enumerate().all(|(i, r)| r.position == i as i64);
    if !in_order || rows.len() != held.len() {
        return Some("the stored counts are not the record's (added or removed?)");
    }
    if rows.iter().zip(&held).any(|(r, h)| &r.count != h) {
        return Some("a stored count differs from its record (edited?)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(calls: i64) -> CountRow {
        CountRow {
            grant_id: "grt_1".into(),
            resource: Some("payments-api".into()),
            method: "GET".into(),
            rule: 0,
            status: 200,
            calls,
            first_ms: 5,
            last_ms: 900,
        }
    }

    fn stored(seq: i64, counts: &[CountRow]) -> Vec<StoredCount> {
        counts
            .iter()
            .enumerate()
            .map(|(i, c)| StoredCount {
                batch_seq: seq,
                position: i as i64,
                count: c.clone(),
            })
            .collect()
    }

    #[test]
    fn a_record_holds_its_counts_under_named_columns_and_reads_back() {
        let counts = [count(41), count(2)];
        let details = details("c1", 7, &counts);
        assert_eq!(details["calls"], 43);
        assert_eq!(
            details["counts"][0],
            json!(["grt_1", "payments-api", "GET", 0, 200, 41, 5, 900])
        );
        assert_eq!(of_details(&details.to_string()), Some(counts.to_vec()));
    }

    #[test]
    fn stored_rows_that_are_the_records_counts_match() {
        let counts = [count(41), count(2)];
        let details = details("c1", 7, &counts).to_string();
        let rows = stored(9, &counts);
        assert_eq!(mismatch(ACTION, &details, &rows), None);
    }

    #[test]
    fn an_edited_added_or_removed_row_is_a_mismatch() {
        let counts = [count(41), count(2)];
        let details = details("c1", 7, &counts).to_string();
        let mut rows = stored(9, &counts);
        rows[0].count.calls = 40;
        assert_eq!(
            mismatch(ACTION, &details, &rows),
            Some("a stored count differs from its record (edited?)")
        );
        let rows = stored(9, &counts[..1]);
        assert!(mismatch(ACTION, &details, &rows).is_some());
        let rows = stored(9, &[count(41), count(2), count(1)]);
        assert!(mismatch(ACTION, &details, &rows).is_some());
        let rows = stored(9, &counts);
        assert!(mismatch("proxy.decision", "{}", &rows).is_some());
        assert_eq!(mismatch("proxy.decision", "{}", &[]), None);
    }
}
