//! Step-up authentication: what a resource requires of the caller's sign-in
//! for requesting, approving and break-glass (`[resources.step_up]`): an
//! `acr` among `require_acr`, every method of `require_amr` in `amr`, a
//! sign-in (`auth_time`) no older than `max_age_seconds`. A call that falls
//! short is refused with 401 `step_up_required`, naming what is missing and
//! carrying the RFC 9470 challenge (`acr_values`, `max_age`) that the CLI
//! asks the provider for when it signs in again. Pure.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::AuthContext;
use crate::error::ConfigError;

/// One step's requirements (empty: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    /// The token's `acr` must be one of these (empty: any).
    pub acr: BTreeSet<String>,
    /// The token's `amr` must contain each of these.
    pub amr: BTreeSet<String>,
    /// The sign-in must be at most this old, seconds.
    pub max_age_seconds: Option<u64>,
}

/// A resource's step-up requirements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepUp {
    /// For asking for access.
    pub request: Requirement,
    /// For approving.
    pub approve: Requirement,
    /// For break-glass.
    pub break_glass: Requirement,
}

/// The steps that can require more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Asking for access.
    Request,
    /// Approving.
    Approve,
    /// Break-glass.
    BreakGlass,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Request => "requesting",
            Step::Approve => "approving",
            Step::BreakGlass => "break-glass",
        }
    }
}

pub use crate::error::Missing;

/// Checks a caller's sign-in against a step's requirement.
pub fn check(req: &Requirement, ctx: &AuthContext, now_s: i64) -> Result<(), Vec<String>> {
    let mut missing = Vec::new();
    if !req.acr.is_empty() && !ctx.acr.as_ref().is_some_and(|a| req.acr.contains(a)) {
        missing.push(format!(
            "acr {} (the sign-in has {})",
            req.acr.iter().cloned().collect::<Vec<_>>().join(" or "),
            ctx.acr.as_deref().unwrap_or("none")
        ));
    }
    let lacking: Vec<&str> = req
        .amr
        .iter()
        .filter(|m| !ctx.amr.contains(m))
        .map(String::as_str)
        .collect();
    if !lacking.is_empty() {
        missing.push(format!("authentication methods {} (amr)", lacking.join(", ")));
    }
    if let Some(max) = req.max_age_seconds {
        match ctx.auth_time {
            Some(t) if now_s.saturating_sub(t) <= max as i64 => {}
            Some(t) => missing.push(format!(
                "a sign-in at most {max} s old (this one is {} s old)",
                now_s.saturating_sub(t)
            )),
            None => missing.push(format!("a sign-in at most {max} s old (the token has no auth_time)")),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// Checks `step` of `resource` for the caller; the refusal says what is
/// missing and what to ask the provider for.
pub fn require(step_up: &StepUp, step: Step, resource: &str, ctx: &AuthContext, now_s: i64) -> Result<(), Missing> {
    let req = match step {
        Step::Request => &step_up.request,
        Step::Approve => &step_up.approve,
        Step::BreakGlass => &step_up.break_glass,
    };
    check(req, ctx, now_s).map_err(|missing| Missing {
        step: step.name(),
        resource: resource.to_owned(),
        missing,
        // Methods (amr) cannot be asked for in OpenID Connect; providers
        // map them to an acr, so the acr values are what the CLI sends.
        acr_values: (!req.acr.is_empty()).then(|| req.acr.iter().cloned().collect::<Vec<_>>().join(" ")),
        max_age: req.max_age_seconds,
    })
}

/// `[resources.step_up.<step>]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequirement {
    #[serde(default)]
    require_acr: Vec<String>,
    #[serde(default)]
    require_amr: Vec<String>,
    max_age_seconds: Option<u64>,
}

/// `[resources.step_up]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStepUp {
    #[serde(default)]
    request: RawRequirement,
    #[serde(default)]
    approve: RawRequirement,
    #[serde(default)]
    break_glass: RawRequirement,
}

impl RawRequirement {
    fn validate(self, field: &str) -> Result<Requirement, ConfigError> {
        let bad = |name: &str, list: &[String]| {
            list.iter()
                .any(|v| v.trim().is_empty() || v.contains(' '))
                .then(|| name.to_owned())
        };
        if let Some(name) = bad("require_acr", &self.require_acr).or_else(|| bad("require_amr", &self.require_amr)) {
            return Err(ConfigError {
                field: format!("{field}.{name}"),
                message: "values are single words (no spaces, not empty)".into(),
            });
        }
        if self.max_age_seconds == Some(0) {
            return Err(ConfigError {
                field: format!("{field}.max_age_seconds"),
                message: "at least 1".into(),
            });
        }
        Ok(Requirement {
            acr: self.require_acr.into_iter().collect(),
            amr: self.require_amr.into_iter().collect(),
            max_age_seconds: self.max_age_seconds,
        })
    }
}

impl RawStepUp {
    /// Validates; `field` is `resources[i].step_up`.
    pub fn validate(self, field: &str) -> Result<StepUp, ConfigError> {
        Ok(StepUp {
            request: self.request.validate(&format!("{field}.request"))?,
            approve: self.approve.validate(&format!("{field}.approve"))?,
            break_glass: self.break_glass.validate(&format!("{field}.break_glass"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(acr: Option<&str>, amr: &[&str], auth_time: Option<i64>) -> AuthContext {
        AuthContext {
            issuer: "i".into(),
            acr: acr.map(str::to_owned),
            amr: amr.iter().map(|s| (*s).to_owned()).collect(),
            auth_time,
        }
    }

    fn req(acr: &[&str], amr: &[&str], max: Option<u64>) -> Requirement {
        Requirement {
            acr: acr.iter().map(|s| (*s).to_owned()).collect(),
            amr: amr.iter().map(|s| (*s).to_owned()).collect(),
            max_age_seconds: max,
        }
    }

    #[test]
    fn no_requirement_accepts_any_sign_in() {
        assert_eq!(check(&Requirement::default(), &ctx(None, &[], None), 0), Ok(()));
    }

    #[test]
    fn each_missing_part_is_named() {
        let r = req(&["phr"], &["mfa"], Some(900));
        let e = check(&r, &ctx(Some("pwd"), &["pwd"], Some(0)), 1000).unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("acr phr") && e[0].contains("has pwd"));
        assert!(e[1].contains("mfa"));
        assert!(e[2].contains("1000 s old"));
        assert_eq!(
            check(&r, &ctx(Some("phr"), &["pwd", "otp", "mfa"], Some(500)), 1000),
            Ok(())
        );
    }

    #[test]
    fn a_refusal_carries_the_challenge_to_sign_in_again_with() {
        let s = StepUp {
            approve: req(&["phr"], &[], Some(600)),
            ..StepUp::default()
        };
        assert_eq!(require(&s, Step::Request, "r", &ctx(None, &[], None), 0), Ok(()));
        let m = require(&s, Step::Approve, "r", &ctx(Some("pwd"), &[], Some(0)), 10).unwrap_err();
        assert_eq!(m.acr_values.as_deref(), Some("phr"));
        assert_eq!(m.max_age, Some(600));
        assert_eq!(m.step, "approving");
    }
}
