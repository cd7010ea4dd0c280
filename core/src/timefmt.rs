//! Timestamps as IMDS writes them: whole seconds, UTC, `YYYY-MM-DDTHH:MM:SSZ`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::macros::format_description;
use time::OffsetDateTime;

/// The last second that every format here can show (9999-12-31T23:59:59Z).
pub const LATEST: Duration = Duration::from_secs(253_402_300_799);

/// `at + after`, checked: past [`LATEST`] it stays at [`LATEST`]. Durations
/// are bounded where they are parsed, so this is a guard, not a rule.
pub fn add(at: SystemTime, after: Duration) -> SystemTime {
    at.checked_add(after)
        .filter(|sum| *sum <= UNIX_EPOCH + LATEST)
        .unwrap_or(UNIX_EPOCH + LATEST)
}

pub fn iso_seconds(at: SystemTime) -> String {
    let seconds = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let at =
        OffsetDateTime::from_unix_timestamp(seconds as i64).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    at.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .expect("a fixed format always applies")
}

/// `at` to the millisecond, UTC: `YYYY-MM-DDTHH:MM:SS.mmmZ` (the journal).
pub fn iso_millis(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = iso_seconds(at);
    let whole = seconds.trim_end_matches('Z');
    format!("{whole}.{:03}Z", since.subsec_millis())
}

/// When `text` says: an RFC 3339 time (`2026-01-02T03:04:05Z`, fractions
/// and offsets allowed).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let at = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = u64::try_from(at.unix_timestamp_nanos()).ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// `at` rounded down to a multiple of `step` since the epoch.
pub fn floor(at: SystemTime, step: Duration) -> SystemTime {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    UNIX_EPOCH + Duration::from_secs(since - since % step.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additions_never_overflow_or_leave_the_formats() {
        let now = SystemTime::now();
        assert_eq!(
            add(now, Duration::from_secs(60)),
            now + Duration::from_secs(60)
        );
        let far = add(now, Duration::from_secs(u64::MAX));
        assert_eq!(iso_seconds(far), "9999-12-31T23:59:59Z");
        assert_eq!(
            iso_seconds(add(far, Duration::from_secs(1))),
            "9999-12-31T23:59:59Z"
        );
    }

    #[test]
    fn formats_whole_seconds_in_utc() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_999);
        assert_eq!(iso_seconds(at), "2023-11-14T22:13:20Z");
        assert_eq!(
            iso_seconds(floor(at, Duration::from_secs(3600))),
            "2023-11-14T22:00:00Z"
        );
    }
}
