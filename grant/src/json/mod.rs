//! The strict JSON dialect of grant tokens (spec: "JSON").
//!
//! Header and claims are RFC 8259 JSON with extra rules that make every
//! implementation read a token the same way: UTF-8 without BOM, no lone
//! surrogates, no duplicate member names anywhere, nesting at most 16 deep,
//! finite numbers. General-purpose parsers accept some of these (serde_json
//! lets the last duplicate win), so the grant crate validates with its own
//! small, allocation-free parser and then reads the members it needs with a
//! cursor over the already-validated text.
//!
//! Everything here works on byte slices, indexes only through `get`, and
//! bounds its recursion by the depth limit, so no input can make it panic.

//!
//! Three parts: [`validate`] checks a whole text against the dialect and
//! returns a [`Validated`] text; [`read`] walks only such texts (a
//! [`Cursor`] cannot be made over anything else); [`number`] holds the
//! numeric rules both need.

mod number;
mod read;
mod validate;

pub use number::{is_finite_double, parse_time_integer, MAX_SAFE_INTEGER};
pub use read::{decoded_len, raw_eq, raw_eq_str, Chars, Cursor, Token};
pub use validate::{validate_object, Validated};

/// Maximum nesting of arrays and objects; the top-level value counts as 1.
pub const MAX_DEPTH: usize = 16;

/// The text breaks a rule of the strict dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

pub(crate) type Result<T> = core::result::Result<T, Malformed>;
