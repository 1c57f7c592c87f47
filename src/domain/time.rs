use chrono::{DateTime, SecondsFormat, Utc};

/// A point in time with microsecond precision, stored as microseconds since the Unix epoch.
///
/// Microseconds are what both SQLite (`INTEGER`) and PostgreSQL (`BIGINT`, `timestamptz`) keep exactly,
/// and what the Python SDK parses without loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn now() -> Self {
        Self(Utc::now().timestamp_micros())
    }

    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    pub const fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    pub fn plus_seconds(self, seconds: u64) -> Self {
        let micros = i64::try_from(seconds).unwrap_or(i64::MAX / 2).saturating_mul(1_000_000);
        Self(self.0.saturating_add(micros))
    }

    /// A time Google's APIs wrote (RFC 3339, any offset and precision), to the microsecond.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text).ok().map(|t| Self(t.timestamp_micros()))
    }

    /// RFC 3339 in UTC with a `Z` and six fractional digits, as the Gemini API writes timestamps.
    pub fn to_rfc3339(self) -> String {
        DateTime::<Utc>::from_timestamp_micros(self.0).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Micros, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_with_microseconds_and_z() {
        let t = Timestamp::from_micros(1_770_727_746_152_401);
        assert_eq!(t.to_rfc3339(), "2026-02-10T12:49:06.152401Z");
        assert_eq!(t.unix_seconds(), 1_770_727_746);
        assert_eq!(Timestamp::parse_rfc3339("2026-02-10T12:49:06.152401Z"), Some(t));
        assert_eq!(Timestamp::parse_rfc3339("2026-02-10T13:49:06.152401123+01:00"), Some(t));
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn plus_seconds_adds_whole_seconds() {
        let t = Timestamp::from_micros(5);
        assert_eq!(t.plus_seconds(172_800).as_micros(), 172_800_000_005);
    }
}
