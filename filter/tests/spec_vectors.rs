//! Every case of the grant spec's vectors through the filter's own request
//! path: a header map in, the outcome code out, exactly as the proxy
//! decides (routing, grant lookup, the worker's cache, then
//! `grant::decide_checked`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use grant::Outcome;
use jitgate_filter::check::{evaluate, RequestHost, Verdict};
use jitgate_filter::config::{self, FilterConfig};
use jitgate_filter::headers::HeaderMap;
use jitgate_filter::sync::Live;
use vectors::{run_all, Case, VectorError, VectorFile};

/// Where the vectors' identity source lives in this filter's configuration.
const IDENTITY_HEADER: &str = "x-vector-identity";

struct Connection {
    source: Option<IpAddr>,
    cert: Option<[u8; 32]>,
}

impl RequestHost for Connection {
    fn source_address(&self) -> Option<IpAddr> {
        self.source
    }
    fn peer_uri_san(&self) -> Option<Vec<u8>> {
        None
    }
    fn peer_certificate_sha256(&self) -> Option<[u8; 32]> {
        self.cert
    }
}

/// A filter configuration equivalent to the vector file's verifier, with
/// each resource the cases route to reachable at `<id>.vectors`.
fn config(file: &VectorFile, identity: bool) -> FilterConfig {
    let resources: BTreeSet<&str> = file.cases.iter().map(|c| c.request.resource.as_str()).collect();
    let mut json = serde_json::json!({
        "issuer": file.issuer,
        "keys": file.keys,
        "leeway": file.leeway,
        "max_ttl": file.max_ttl,
        "resources": resources
            .iter()
            .map(|id| serde_json::json!({"id": id, "hosts": [format!("{id}.vectors")]}))
            .collect::<Vec<_>>(),
    });
    if identity {
        json["identity"] = serde_json::json!({"source": "header", "name": IDENTITY_HEADER});
    }
    config::parse(json.to_string().as_bytes()).unwrap()
}

/// Decides a case twice on one worker's state: the second time a good
/// grant comes from the worker's cache, and must decide the same.
fn decide_through_filter(
    case: &Case,
    plain: &FilterConfig,
    with_identity: &FilterConfig,
) -> Result<Outcome, VectorError> {
    let host = format!("{}.vectors", case.request.resource);
    let mut headers: Vec<(&[u8], &[u8])> = vec![
        (b":method", case.request.method.as_bytes()),
        (b":path", case.request.path.as_bytes()),
        (b":authority", host.as_bytes()),
    ];
    if let Some(token) = &case.token {
        headers.push((b"x-jit-grant", token.as_bytes()));
    }
    let cfg = match &case.request.identity {
        None => plain,
        Some(value) => {
            if let Some(v) = value {
                headers.push((IDENTITY_HEADER.as_bytes(), v.as_bytes()));
            }
            with_identity
        }
    };
    let mut live = Live::default();
    let revoked = case.request.revoked.iter().map(|jti| (jti.clone(), u64::MAX / 2));
    live.revoked.merge(revoked).unwrap();
    let connection = Connection {
        source: case.source(),
        cert: case.client_cert()?,
    };
    let map = HeaderMap::from_pairs(&headers);
    let decide = || match evaluate(cfg, &map, &connection, case.now * 1000, &live).verdict {
        Verdict::Grant(outcome) => outcome,
        other => panic!(
            "case {:?} was not decided by the grant checks: {}",
            case.name,
            other.code()
        ),
    };
    let first = decide();
    let again = decide();
    assert_eq!(first, again, "case {:?} decided differently from the cache", case.name);
    Ok(first)
}

#[test]
fn every_spec_vector_gives_its_outcome_through_the_filters_request_path() {
    let file = VectorFile::spec();
    let plain = config(&file, false);
    let with_identity = config(&file, true);
    let (count, mismatches) = run_all(&file, |case| decide_through_filter(case, &plain, &with_identity)).unwrap();
    assert_eq!(count, file.cases.len(), "every vector was run");
    assert_eq!(count, 109, "the 1.1 vector file has 109 cases");
    assert!(
        mismatches.is_empty(),
        "{} vectors differ: {mismatches:#?}",
        mismatches.len()
    );
}
