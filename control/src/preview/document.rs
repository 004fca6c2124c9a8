//! The protected API's OpenAPI document, reduced to what a preview needs:
//! each operation's method, path template, grant-syntax pattern,
//! `operationId` and summary.
//!
//! Documents are parsed by maintained crates, never by hand: `openapiv3`
//! for OpenAPI 3.0.x and `oas3` for 3.1.x, chosen by the document's own
//! `openapi` field. YAML is read through `serde_yaml_ng` into the same JSON
//! value model first, so both formats take one path.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;
use utoipa::ToSchema;

/// Why a document cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentError {
    /// The file cannot be read.
    #[error("cannot read {path}: {message}")]
    Unreadable {
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// Neither JSON nor YAML.
    #[error("not JSON or YAML: {0}")]
    Syntax(String),
    /// The `openapi` field is missing or names a version this service does
    /// not read.
    #[error("field `openapi` must name version 3.0.x or 3.1.x, found {0:?}")]
    Version(String),
    /// The document does not follow the version's schema.
    #[error("not a valid OpenAPI {version} document: {message}")]
    Invalid {
        /// `3.0` or `3.1`.
        version: &'static str,
        /// The parser's message (it names the JSON path).
        message: String,
    },
    /// The document describes no operation at all.
    #[error("describes no operation (no `paths` with methods)")]
    NoOperations,
}

/// One operation of the protected API.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize, ToSchema)]
pub struct Operation {
    /// Upper-case HTTP method.
    pub method: String,
    /// The path template as the document writes it (`/v1/invoices/{id}`).
    pub template: String,
    /// The template in grant syntax: each path-parameter segment is `*`
    /// (`/v1/invoices/*`).
    pub pattern: String,
    /// The document's `operationId`.
    pub operation_id: Option<String>,
    /// The document's `summary`.
    pub summary: Option<String>,
}

/// The operations of one API document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiDocument {
    /// `info.title`.
    pub title: String,
    /// `info.version`.
    pub version: String,
    /// Every operation, ordered by pattern then method.
    pub operations: Vec<Operation>,
}

/// A path template in grant syntax: a segment holding a `{parameter}`
/// (whole or partial, as in `{id}.json`) matches exactly one segment,
/// which is `*`. Returns `None` for templates no request path the proxy
/// accepts can reach (empty segments, a trailing `/`).
pub fn template_pattern(template: &str) -> Option<String> {
    if template == "/" {
        return Some("/".to_owned());
    }
    let rest = template.strip_prefix('/')?;
    let mut out = String::with_capacity(template.len());
    for seg in rest.split('/') {
        if seg.is_empty() {
            return None;
        }
        out.push('/');
        if seg.contains('{') {
            out.push('*');
        } else {
            out.push_str(seg);
        }
    }
    grant::scope::is_valid_pattern(out.as_bytes()).then_some(out)
}

impl ApiDocument {
    /// Reads a document from a file (JSON or YAML, by content).
    pub fn load(path: &Path) -> Result<ApiDocument, DocumentError> {
        let text = std::fs::read_to_string(path).map_err(|e| DocumentError::Unreadable {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        ApiDocument::parse(&text)
    }

    /// Parses a document's text (JSON or YAML).
    pub fn parse(text: &str) -> Result<ApiDocument, DocumentError> {
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => serde_yaml_ng::from_str(text).map_err(|e| DocumentError::Syntax(e.to_string()))?,
        };
        let version = value
            .get("openapi")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let (title, doc_version, ops) = if version.starts_with("3.0.") {
            from_v30(value)?
        } else if version.starts_with("3.1.") {
            from_v31(value)?
        } else {
            return Err(DocumentError::Version(version));
        };
        if ops.is_empty() {
            return Err(DocumentError::NoOperations);
        }
        // A set: ordered, and oas3 lists TRACE twice.
        let operations: BTreeSet<Operation> = ops.into_iter().collect();
        let mut operations: Vec<Operation> = operations.into_iter().collect();
        operations.sort_by(|a, b| (&a.pattern, &a.template, &a.method).cmp(&(&b.pattern, &b.template, &b.method)));
        Ok(ApiDocument {
            title,
            version: doc_version,
            operations,
        })
    }
}

type Parsed = (String, String, Vec<Operation>);

fn operation(method: &str, template: &str, id: Option<&String>, summary: Option<&String>) -> Option<Operation> {
    Some(Operation {
        method: method.to_ascii_uppercase(),
        template: template.to_owned(),
        pattern: template_pattern(template)?,
        operation_id: id.cloned(),
        summary: summary.cloned(),
    })
}

fn from_v30(value: serde_json::Value) -> Result<Parsed, DocumentError> {
    let doc: openapiv3::OpenAPI = serde_path_to_error::deserialize(value).map_err(|e| DocumentError::Invalid {
        version: "3.0",
        message: e.to_string(),
    })?;
    let mut ops = Vec::new();
    for (template, item) in &doc.paths.paths {
        // A `$ref` path item points elsewhere in the document or outside it;
        // only inline items are previewed.
        let Some(item) = item.as_item() else { continue };
        for (method, op) in item.iter() {
            ops.extend(operation(
                method,
                template,
                op.operation_id.as_ref(),
                op.summary.as_ref(),
            ));
        }
    }
    Ok((doc.info.title, doc.info.version, ops))
}

fn from_v31(value: serde_json::Value) -> Result<Parsed, DocumentError> {
    let doc: oas3::Spec = serde_path_to_error::deserialize(value).map_err(|e| DocumentError::Invalid {
        version: "3.1",
        message: e.to_string(),
    })?;
    let mut ops = Vec::new();
    for (template, item) in doc.paths.iter().flatten() {
        for (method, op) in item.methods() {
            ops.extend(operation(
                method.as_str(),
                template,
                op.operation_id.as_ref(),
                op.summary.as_ref(),
            ));
        }
    }
    Ok((doc.info.title, doc.info.version, ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_segments_become_one_segment_wildcards() {
        assert_eq!(template_pattern("/v1/invoices/{id}").as_deref(), Some("/v1/invoices/*"));
        assert_eq!(template_pattern("/files/{name}.json").as_deref(), Some("/files/*"));
        assert_eq!(template_pattern("/").as_deref(), Some("/"));
        assert_eq!(template_pattern("/a/{b}/c").as_deref(), Some("/a/*/c"));
        assert_eq!(template_pattern("/a/"), None);
        assert_eq!(template_pattern("/a//b"), None);
        assert_eq!(template_pattern("a"), None);
    }

    #[test]
    fn yaml_and_json_30_read_alike() {
        let yaml = "openapi: 3.0.3\ninfo: {title: T, version: '1'}\npaths:\n  /v1/x/{id}:\n    get: {operationId: getX, summary: One x, responses: {'200': {description: ok}}}\n";
        let doc = ApiDocument::parse(yaml).unwrap();
        let json = serde_json::to_string(&serde_yaml_ng::from_str::<serde_json::Value>(yaml).unwrap()).unwrap();
        assert_eq!(ApiDocument::parse(&json).unwrap(), doc);
        assert_eq!(
            doc.operations,
            vec![Operation {
                method: "GET".into(),
                template: "/v1/x/{id}".into(),
                pattern: "/v1/x/*".into(),
                operation_id: Some("getX".into()),
                summary: Some("One x".into()),
            }]
        );
    }

    #[test]
    fn unknown_versions_and_bad_documents_are_refused_with_a_reason() {
        assert_eq!(
            ApiDocument::parse("{\"swagger\": \"2.0\"}"),
            Err(DocumentError::Version(String::new()))
        );
        assert_eq!(
            ApiDocument::parse("{\"openapi\": \"4.0.0\"}"),
            Err(DocumentError::Version("4.0.0".into()))
        );
        assert!(matches!(
            ApiDocument::parse("{\"openapi\": \"3.0.0\", \"paths\": {}}"),
            Err(DocumentError::Invalid { version: "3.0", .. })
        ));
        assert!(matches!(ApiDocument::parse("{: ["), Err(DocumentError::Syntax(_))));
        assert_eq!(
            ApiDocument::parse("openapi: 3.1.0\ninfo: {title: T, version: '1'}\npaths: {}\n"),
            Err(DocumentError::NoOperations)
        );
    }
}
