//! The control service's request body parsing and validation: arbitrary
//! bytes as a `POST /v1/requests` body never panic, and whatever parses is
//! either accepted by policy or refused with a stable code.
#![no_main]

use std::sync::OnceLock;

use control::config::Config;
use control::requests::NewRequest;
use libfuzzer_sys::fuzz_target;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| Config::parse(include_str!("../../control/examples/jitgate.toml")).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<NewRequest>(data) else { return };
    let cfg = config();
    let Ok(resource) = control::policy::resource(cfg, &input.resource) else { return };
    let scope: Vec<grant::ScopeRule> = input.scope.iter().cloned().map(Into::into).collect();
    for result in [
        control::policy::text("reason", "reason_invalid", &input.reason, control::policy::MAX_REASON),
        control::policy::requested_scope(resource, &scope),
        control::policy::duration(cfg, resource.max_duration_seconds, input.duration_seconds),
        input.source_cidrs.as_deref().map_or(Ok(()), control::policy::sources),
    ] {
        if let Err(e) = result {
            assert!(!e.code().is_empty());
        }
    }
});
