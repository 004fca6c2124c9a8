//! The filter's plugin configuration: parsed once, validated into a typed
//! [`FilterConfig`], or refused with an error that names the field.
//!
//! A configuration that cannot be fully understood is refused (unknown
//! fields included): the plugin then does not start and the host keeps it
//! out of the request path, which with `fail_open: false` means requests
//! are refused. Nothing here ever falls back to "allow".
//!
//! - [`types`]: the validated configuration and [`ConfigError`];
//! - `reader`: JSON into values and objects read member by member;
//! - `validate`: each section checked into its typed form.
//!
//! Hand-written rather than serde with `deny_unknown_fields`: serde and
//! serde_json put the Wasm module over its 300 KB budget (measured: about
//! 403 KB against 290 KB).

use grant::json::{self, Cursor};

mod reader;
pub mod types;
mod validate;

pub use types::*;
pub use validate::is_header_name;

use reader::{read_value, Fields};

/// Parses and validates the plugin configuration.
pub fn parse(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
    if bytes.len() > MAX_CONFIG_LEN {
        return Err(ConfigError::new("(root)", "configuration is larger than 256 KiB"));
    }
    // The grant dialect's rules suit configuration too: one UTF-8 JSON
    // object, no duplicate names (which one would win?), bounded depth.
    let bytes = json::validate_object(bytes).map_err(|_| {
        ConfigError::new(
            "(root)",
            "must be one JSON object in UTF-8, with no repeated member names and at most 16 levels of nesting",
        )
    })?;
    let value = read_value(&mut Cursor::new(bytes)).ok_or_else(|| ConfigError::new("(root)", "is not readable"))?;
    let root = Fields::new("", value)?;
    validate::filter_config(root)
}

#[cfg(test)]
mod tests;
