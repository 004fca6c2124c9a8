//! The configuration as a whole: parsed, validated and refused.

use super::*;

const KEY: &str = "AaJjqsgdCNs5ZNQycUgeL_QbOX0xYMHMY7_8lj5ZJIs";

fn with(extra: &str) -> String {
    format!(
        r#"{{"issuer":"jit-control","keys":{{"k1":"{KEY}"}},"resources":[{{"id":"payments-api","hosts":["Payments.Example.com."],"path_prefix":"/v1/"}}]{extra}}}"#
    )
}

fn err(json: &str) -> ConfigError {
    parse(json.as_bytes()).unwrap_err()
}

#[test]
fn minimal_config_gets_safe_defaults() {
    let c = parse(with("").as_bytes()).unwrap();
    assert_eq!(c.grant_header, "x-jit-grant");
    assert!(!c.accept_bearer);
    assert_eq!(c.unmatched, Unmatched::Deny);
    assert_eq!(c.mode, Mode::Enforce);
    assert_eq!(c.verifier.leeway(), 30);
    assert_eq!(c.verifier.max_ttl(), 43_200);
    assert_eq!(
        c.resources[0].hosts,
        vec![HostPattern::Exact("payments.example.com".into())]
    );
    assert_eq!(c.resources[0].path_prefix, "/v1");
}

#[test]
fn control_link_denies_before_the_first_sync_and_lists_fallbacks_after_the_primary() {
    let c = parse(
        with(r#","control":{"cluster":"primary","ingest_key":"0123456789abcdef","fallback_clusters":["mirror"]}"#)
            .as_bytes(),
    )
    .unwrap();
    let link = c.control.unwrap();
    assert_eq!(link.unsynced, Unsynced::Deny);
    assert_eq!(
        (link.report_allowed, link.count_interval_ms),
        (ReportAllowed::Aggregate, 60_000)
    );
    let clusters: Vec<(&str, &str)> = link
        .endpoints
        .iter()
        .map(|e| (e.cluster.as_str(), e.authority.as_str()))
        .collect();
    assert_eq!(clusters, [("primary", "primary"), ("mirror", "mirror")]);
}

#[test]
fn errors_name_the_field() {
    assert_eq!(err(&with(r#","mode":"audit""#)).field, "mode");
    assert_eq!(err(&with(r#","leeway":"30""#)).field, "leeway");
    assert_eq!(err(&with(r#","accept_bearer":"yes""#)).field, "accept_bearer");
    assert_eq!(
        err(&with(r#","identity":{"source":"header","name":"x-user","extra":1}"#)).field,
        "identity.extra"
    );
    assert_eq!(err(&with(r#","leeway":30,"leeway":0"#)).field, "(root)");
    assert_eq!(err(&with(r#","leeway":3600"#)).field, "leeway");
    assert_eq!(err(&with(r#","surprise":1"#)).field, "surprise");
    assert_eq!(err(&with(r#","grant_header":"Authorization""#)).field, "grant_header");
    assert_eq!(
        err(&with(r#","identity":{"source":"header","name":"x-jit-subject"}"#)).field,
        "identity.name"
    );
    assert_eq!(
        err(&with(r#","request_access_url":"javascript:alert(1)""#)).field,
        "request_access_url"
    );
    assert_eq!(
        err(r#"{"issuer":"i","keys":{"k1":"c2hvcnQ"},"resources":[{"id":"a"}]}"#).field,
        "keys.k1"
    );
    assert_eq!(
        err(r#"{"issuer":"i","keys":{"../x":"c2hvcnQ"},"resources":[{"id":"a"}]}"#).field,
        "keys.../x"
    );
    assert_eq!(
        err(&format!(r#"{{"issuer":"i","keys":{{"k1":"{KEY}"}},"resources":[]}}"#)).field,
        "resources"
    );
    assert_eq!(
        err(&format!(
            r#"{{"issuer":"i","keys":{{"k1":"{KEY}"}},"resources":[{{"id":"a b"}}]}}"#
        ))
        .field,
        "resources[0].id"
    );
    assert_eq!(
        err(&format!(
            r#"{{"issuer":"i","keys":{{"k1":"{KEY}"}},"resources":[{{"id":"a","path_prefix":"/a/../b"}}]}}"#
        ))
        .field,
        "resources[0].path_prefix"
    );
    assert_eq!(err(r#"{"keys":{},"resources":[]}"#).field, "issuer");
    assert_eq!(err("not json").field, "(root)");
    assert_eq!(
        err(&with(r#","control":{"cluster":"c","ingest_key":"short"}"#)).field,
        "control.ingest_key"
    );
    assert_eq!(
        err(&with(
            r#","control":{"cluster":"c","ingest_key":"0123456789abcdef","poll_interval_ms":5}"#
        ))
        .field,
        "control.poll_interval_ms"
    );
    assert_eq!(err(&with(r#","identity_aware":true"#)).field, "identity_aware");
    let link = |extra: &str| {
        with(&format!(
            r#","control":{{"cluster":"c","ingest_key":"0123456789abcdef"{extra}}}"#
        ))
    };
    assert_eq!(err(&link(r#","unsynced":"maybe""#)).field, "control.unsynced");
    assert_eq!(
        err(&link(r#","report_allowed":"some""#)).field,
        "control.report_allowed"
    );
    assert_eq!(
        err(&link(r#","count_interval_ms":50"#)).field,
        "control.count_interval_ms"
    );
    assert_eq!(
        err(&link(r#","fallback_clusters":["m",1]"#)).field,
        "control.fallback_clusters[1]"
    );
    assert_eq!(
        err(&link(r#","fallback_clusters":["c"]"#)).field,
        "control.fallback_clusters[0]"
    );
    // Found by fuzzing (fuzz/artifacts/filter_config): an empty member
    // name gave an error naming no field.
    assert_eq!(err(&with(r#","":1"#)).field, r#""""#);
    // Found by fuzzing: a kid with an escaped newline broke the one-line
    // error into two log lines.
    let e = err(r#"{"issuer":"i","keys":{"k\n1":"x"},"resources":[{"id":"a"}]}"#);
    assert!(!e.to_string().contains('\n'), "{e}");
    assert_eq!(err("").field, "(root)");
}

#[test]
fn identity_headers_default_to_all_three_and_take_an_exact_list() {
    assert_eq!(
        parse(with("").as_bytes()).unwrap().identity_headers,
        IdentityHeaders::default()
    );
    let only_subject = parse(with(r#","identity_headers":["subject"]"#).as_bytes()).unwrap();
    assert_eq!(
        only_subject.identity_headers,
        IdentityHeaders {
            subject: true,
            grant_id: false,
            request_id: false
        }
    );
    let none = parse(with(r#","identity_headers":[]"#).as_bytes()).unwrap();
    assert!(!none.identity_headers.subject && !none.identity_headers.grant_id && !none.identity_headers.request_id);
    assert_eq!(
        err(&with(r#","identity_headers":["subject","subject"]"#)).field,
        "identity_headers[1]"
    );
    assert_eq!(
        err(&with(r#","identity_headers":["email"]"#)).field,
        "identity_headers[0]"
    );
    assert_eq!(err(&with(r#","identity_headers":"subject""#)).field, "identity_headers");
}

#[test]
fn display_is_one_line_naming_the_field() {
    let e = err(&with(r#","leeway":3600"#));
    let line = e.to_string();
    assert!(
        line.starts_with("invalid plugin configuration: field `leeway`"),
        "{line}"
    );
    assert!(!line.contains('\n'));
}
