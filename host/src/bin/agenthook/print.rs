//! How the admin API's JSON is shown to a person, shared by the client commands: a
//! field as it appears in a table or line, a Unix-milliseconds time as RFC 3339 UTC, and
//! `--json` output (the API's answer passed through unchanged, raw times included).

use serde_json::Value;

/// A field as shown: a string without quotes, a missing value as `-`, anything else as
/// its JSON text.
pub fn field(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A Unix-milliseconds field (`received_at_ms`, `started_at_ms`) as an RFC 3339 UTC time;
/// anything that is not a number of milliseconds as [`field`] shows it.
pub fn time(v: &Value) -> String {
    v.as_u64().map_or_else(|| field(v), utc)
}

/// Unix milliseconds as an RFC 3339 UTC time with milliseconds: `2026-12-04T14:45:56.123Z`.
fn utc(ms: u64) -> String {
    let (days, ms_of_day) = (ms / 86_400_000, ms % 86_400_000);
    let (year, month, day) = civil_from_days(days);
    let secs = ms_of_day / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        ms_of_day % 1000
    )
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01:
/// Howard Hinnant's `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>),
/// unsigned because the admin API's times are never before the epoch.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01 instead, so that a leap day ends each 4-, 100- and 400-year
    // cycle and a 400-year era is always 146097 days.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

/// The admin API's answer, as `--json` prints it.
pub fn json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_of_known_dates() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (946_684_799_999, "1999-12-31T23:59:59.999Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_796_395_556_123, "2026-12-04T14:45:56.123Z"),
            (4_107_542_399_999, "2100-02-28T23:59:59.999Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
            (253_402_300_799_999, "9999-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(utc(ms), text, "{ms}");
        }
    }

    #[test]
    fn every_day_from_1970_to_2400_follows_the_one_before() {
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..157_000 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let month_len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            (y, m, d) = match (d < month_len, m < 12) {
                (true, _) => (y, m, d + 1),
                (false, true) => (y, m + 1, 1),
                (false, false) => (y + 1, 1, 1),
            };
        }
    }

    #[test]
    fn time_shows_a_missing_value_as_a_dash() {
        assert_eq!(time(&serde_json::json!(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(time(&Value::Null), "-");
    }
}
