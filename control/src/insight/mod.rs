//! What grants were used for (issue 18, point 2): per grant, the
//! operations called, how often, first and last use, and denials by code,
//! kept from the proxy decisions as they are ingested.
//!
//! [`report`] reads them back as insights and suggestions. [`usage`] owns the pure part (which operation a decision was, summing a
//! batch) and the one write, made in the ingest's transaction.

pub mod report;
pub mod usage;
