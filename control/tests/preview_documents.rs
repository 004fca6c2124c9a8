//! Scope previews against real OpenAPI documents nobody here wrote (the
//! Petstore example in 3.0 YAML and 3.1 JSON) and a large generated one.

use std::path::Path;
use std::time::Instant;

use control::preview::{preview, ApiDocument, Coverage, FindingKind};
use grant::ScopeRule;

fn petstore(name: &str) -> ApiDocument {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/openapi")
        .join(name);
    ApiDocument::load(&path).unwrap()
}

fn covered(doc: &ApiDocument, scope: &[ScopeRule]) -> Vec<String> {
    preview(doc, scope)
        .covered
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {:?}",
                c.operation.method,
                c.operation.template,
                c.operation.operation_id.as_deref().unwrap_or("-"),
                c.coverage
            )
        })
        .collect()
}

#[test]
fn both_petstore_versions_yield_the_same_twenty_operations() {
    let v30 = petstore("petstore-3.0.yaml");
    let v31 = petstore("petstore-3.1.json");
    assert_eq!(v30.operations.len(), 20);
    // The two files differ only in wording (one summary's capital letter).
    let key = |d: &ApiDocument| -> Vec<(String, String, String, Option<String>)> {
        d.operations
            .iter()
            .map(|o| {
                (
                    o.method.clone(),
                    o.template.clone(),
                    o.pattern.clone(),
                    o.operation_id.clone(),
                )
            })
            .collect()
    };
    assert_eq!(key(&v30), key(&v31));
    let get_pet = v30
        .operations
        .iter()
        .find(|o| o.operation_id.as_deref() == Some("getPetById"))
        .unwrap();
    assert_eq!(
        (
            get_pet.method.as_str(),
            get_pet.template.as_str(),
            get_pet.pattern.as_str()
        ),
        ("GET", "/pet/{petId}", "/pet/*")
    );
    assert_eq!(get_pet.summary.as_deref(), Some("Find pet by ID"));
}

#[test]
fn one_segment_wildcard_also_reaches_literal_siblings_as_the_proxy_does() {
    // `/pet/*` is one segment: the proxy allows `/pet/findByStatus` with it,
    // and the preview says so.
    for doc in [petstore("petstore-3.0.yaml"), petstore("petstore-3.1.json")] {
        assert_eq!(
            covered(&doc, &[ScopeRule::new(&["GET"], &["/pet/*"])]),
            vec![
                "GET /pet/{petId} getPetById All",
                "GET /pet/findByStatus findPetsByStatus All",
                "GET /pet/findByTags findPetsByTags All",
            ]
        );
    }
}

#[test]
fn petstore_findings_name_typos_and_whole_prefixes() {
    let doc = petstore("petstore-3.1.json");
    let scope = [
        ScopeRule::new(&["GET"], &["/pets/*"]),
        ScopeRule::new(&["*"], &["/store/**"]),
        ScopeRule::new(&["GET"], &["/user/alice"]),
    ];
    let p = preview(&doc, &scope);
    let found: Vec<(usize, FindingKind, usize)> = p.findings.iter().map(|f| (f.rule, f.kind, f.operations)).collect();
    assert_eq!(
        found,
        vec![
            (0, FindingKind::MatchesNothing, 0),
            (1, FindingKind::WholePrefix, 4),
            (1, FindingKind::AnyMethod, 4),
        ]
    );
    let user = p.covered.iter().find(|c| c.rules == vec![2]).unwrap();
    assert_eq!(
        (user.operation.operation_id.as_deref(), user.coverage),
        (Some("getUserByName"), Coverage::Some)
    );
    assert_eq!(p.covered.len() + p.not_covered.len(), 20);
    assert_eq!(p.covered.len(), 5);
}

#[test]
fn a_large_generated_document_previews_quickly_and_exactly() {
    // 2,000 resources of 4 operations each, as a big public API has.
    let mut paths = serde_json::Map::new();
    for i in 0..2000 {
        let ok = serde_json::json!({"200": {"description": "ok"}});
        paths.insert(
            format!("/v1/r{i}"),
            serde_json::json!({"get": {"operationId": format!("list{i}"), "responses": ok},
                               "post": {"operationId": format!("create{i}"), "responses": ok}}),
        );
        paths.insert(
            format!("/v1/r{i}/{{id}}"),
            serde_json::json!({"get": {"operationId": format!("get{i}"), "responses": ok},
                               "delete": {"operationId": format!("delete{i}"), "responses": ok}}),
        );
    }
    let text =
        serde_json::json!({"openapi": "3.1.0", "info": {"title": "Big", "version": "9"}, "paths": paths}).to_string();
    let start = Instant::now();
    let doc = ApiDocument::parse(&text).unwrap();
    assert_eq!(doc.operations.len(), 8000);
    let scope: Vec<ScopeRule> = (0..32)
        .map(|i| ScopeRule::new(&["GET"], &[&format!("/v1/r{i}/*")]))
        .collect();
    let p = preview(&doc, &scope);
    let elapsed = start.elapsed();
    assert_eq!(p.covered.len(), 32);
    assert_eq!(p.not_covered.len(), 8000 - 32);
    assert!(p.findings.is_empty());
    assert!(elapsed.as_secs() < 10, "took {elapsed:?}");
}
