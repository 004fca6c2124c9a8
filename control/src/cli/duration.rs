//! Durations and start times as people write them on the command line
//! (`30m`, `1h30m`, `900s`; `+2h` or `2026-12-03T02:00:00Z`), parsed by
//! `humantime` with checked arithmetic: a value too large for the clock is
//! refused instead of wrapping around, and a bare number is refused with a
//! hint instead of being taken as seconds.

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// A number without a unit.
    #[error("{0:?} has no unit: write it like --for 30m, 1h or 900s")]
    NoUnit(String),
    /// Too large to represent.
    #[error("{0:?} is too long")]
    TooLong(String),
    /// Not a whole number of seconds.
    #[error("{0:?} is not a whole number of seconds")]
    Fraction(String),
    /// Not a duration.
    #[error("{text:?} is not a duration like 30m, 1h or 900s ({reason})")]
    Invalid {
        /// What was given.
        text: String,
        /// humantime's reason.
        reason: String,
    },
}

/// Parses `30m`, `1h`, `1h30m`, `900s` into whole seconds.
pub fn parse_duration(text: &str) -> Result<u64, DurationError> {
    let text = text.trim();
    let parsed = humantime::parse_duration(text).map_err(|e| match e {
        humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => DurationError::NoUnit(text.to_owned()),
        humantime::DurationError::NumberOverflow => DurationError::TooLong(text.to_owned()),
        other => DurationError::Invalid {
            text: text.to_owned(),
            reason: other.to_string(),
        },
    })?;
    if parsed.subsec_nanos() != 0 {
        return Err(DurationError::Fraction(text.to_owned()));
    }
    // The API carries seconds as a JSON integer: keep them within i64.
    if i64::try_from(parsed.as_secs()).is_err() {
        return Err(DurationError::TooLong(text.to_owned()));
    }
    Ok(parsed.as_secs())
}

/// Parses a start time: `+2h` (from `now_s`) or an RFC 3339 time in UTC
/// (`2026-12-03T02:00:00Z`); seconds since the epoch.
pub fn parse_start(text: &str, now_s: i64) -> Result<i64, DurationError> {
    let text = text.trim();
    if let Some(after) = text.strip_prefix('+') {
        let secs = i64::try_from(parse_duration(after)?).map_err(|_| DurationError::TooLong(text.to_owned()))?;
        return now_s
            .checked_add(secs)
            .ok_or_else(|| DurationError::TooLong(text.to_owned()));
    }
    let at = humantime::parse_rfc3339(text).map_err(|e| DurationError::Invalid {
        text: text.to_owned(),
        reason: format!("write +30m, or a UTC time like 2026-12-03T02:00:00Z: {e}"),
    })?;
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| DurationError::TooLong(text.to_owned()))?
        .as_secs();
    i64::try_from(secs).map_err(|_| DurationError::TooLong(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert!(matches!(parse_duration("soon"), Err(DurationError::Invalid { .. })));
    }

    #[test]
    fn an_overflowing_duration_is_refused_not_wrapped() {
        assert_eq!(
            parse_duration("573898704515408273h"),
            Err(DurationError::TooLong("573898704515408273h".into()))
        );
        assert!(parse_duration("99999999999999999999s").is_err());
    }

    #[test]
    fn a_bare_number_is_refused_with_a_hint() {
        let e = parse_duration("600").unwrap_err();
        assert_eq!(e, DurationError::NoUnit("600".into()));
        assert!(e.to_string().contains("--for 30m"));
    }

    #[test]
    fn fractions_of_a_second_are_refused() {
        assert_eq!(parse_duration("1500ms"), Err(DurationError::Fraction("1500ms".into())));
    }

    #[test]
    fn starts_read_as_an_offset_from_now_or_a_utc_time() {
        assert_eq!(parse_start("+2h", 1_000), Ok(8_200));
        assert_eq!(parse_start("2026-12-03T02:00:00Z", 0), Ok(1_796_263_200));
        assert!(matches!(parse_start("tomorrow", 0), Err(DurationError::Invalid { .. })));
        assert!(matches!(parse_start("+2", 0), Err(DurationError::NoUnit(_))));
        assert!(parse_start("+99999999999999999s", i64::MAX - 5).is_err());
    }
}
