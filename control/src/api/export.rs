//! `GET /v1/audit/export`: the matching records as JSON lines, streamed a
//! page at a time, so an export of the whole log never sits in memory.

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::audit;

/// Records read per page.
const PAGE: i64 = 1000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The export as a streamed body. Pages follow `after`, so they go oldest
/// first whatever order was asked. A failure after the first bytes were
/// sent can only cut the stream short (the status is already 200): it is
/// logged, and the reader sees a truncated last line.
pub fn ndjson(app: AppState, mut q: audit::Query) -> Response {
    q.order = None;
    q.limit = Some(PAGE);
    let pages = futures_util::stream::try_unfold(Some((app, q)), |next| async move {
        let Some((app, mut q)) = next else {
            return Ok(None);
        };
        let page = audit::query(&app.db, &q).await.map_err(|e| {
            tracing::error!(error = %e, "audit export failed");
            BoxError::from(e)
        })?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        q.after = Some(last.seq);
        let mut chunk = String::new();
        for r in &page {
            chunk.push_str(&serde_json::to_string(r)?);
            chunk.push('\n');
        }
        let more = (page.len() as i64 == PAGE).then_some((app, q));
        Ok::<_, BoxError>(Some((chunk, more)))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(pages),
    )
        .into_response()
}
