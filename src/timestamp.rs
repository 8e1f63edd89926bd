//! Times as the API writes them: as JavaScript's `Date.prototype.toISOString()` does, so a
//! client can hand a `DateTime` to `new Date(…)` and get the same text back.
//!
//! Times are stored with more precision (microseconds on PostgreSQL, nanoseconds in SQLite's
//! text), and sorting and cursors use all of it; the text written in answers is cut to the
//! millisecond (truncated, never rounded, so it never shows a later time than the stored one
//! and is the same whichever database stored it). Filters compare times as answers show them:
//! a bound takes in every instant shown as the bound.

use std::fmt::Write;

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};

/// `at` as `YYYY-MM-DDTHH:mm:ss.sssZ`: UTC, always three decimal places (truncated), years
/// outside 0–9999 as `+YYYYYY` / `-YYYYYY`, as `toISOString()` writes them. A leap second
/// (`23:59:60`, which JavaScript has no way to write) is written as the last millisecond before
/// it.
pub fn format(at: DateTime<Utc>) -> String {
    let mut text = String::with_capacity(27);
    let year = at.year();
    // Writing to a `String` cannot fail.
    let _ = if (0..=9999).contains(&year) {
        write!(text, "{year:04}")
    } else {
        write!(text, "{year:+07}")
    };
    let _ = write!(
        text,
        "-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        // 1000–1999 during a leap second.
        at.timestamp_subsec_millis().min(999),
    );
    text
}

/// The earliest instant that answers show as `at` or later: where a filter's lower bound
/// starts, since filters compare times as answers show them (to the millisecond).
pub fn earliest_shown_at_or_after(at: DateTime<Utc>) -> DateTime<Utc> {
    let shown = shown_instant(at);
    if shown == at {
        shown
    } else {
        shown
            .checked_add_signed(TimeDelta::milliseconds(1))
            .unwrap_or(at)
    }
}

/// The latest instant that answers show as `at` or earlier: where a filter's upper bound ends
/// (the last nanosecond of `at`'s millisecond).
pub fn latest_shown_at_or_before(at: DateTime<Utc>) -> DateTime<Utc> {
    shown_instant(at)
        .checked_add_signed(TimeDelta::nanoseconds(999_999))
        .unwrap_or(at)
}

/// `at`, or the last instant of year 9999 when later: SQLite compares times as their text, in
/// which `+10000-…` sorts before every four-digit year. Nothing is stored that late, so a
/// bound moved there keeps the same rows.
pub fn within_four_digit_years(at: DateTime<Utc>) -> DateTime<Utc> {
    let last = chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|day| day.and_hms_nano_opt(23, 59, 59, 999_999_999))
        .map(|at| at.and_utc());
    match last {
        Some(last) if at > last => last,
        _ => at,
    }
}

/// `at` cut to the millisecond, as [`format`] shows it (a leap second as its last
/// millisecond).
fn shown_instant(at: DateTime<Utc>) -> DateTime<Utc> {
    let millis = at.timestamp_subsec_millis().min(999);
    at.with_nanosecond(millis * 1_000_000).unwrap_or(at)
}

/// A time the API wrote before it wrote them as [`format`] does (RFC 3339 with every digit,
/// e.g. `2026-01-05T09:12:44.127361902+00:00`), written as `format` writes it now; `None` for
/// text that is not an RFC 3339 time.
pub fn reformat(text: &str) -> Option<String> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| format(at.with_timezone(&Utc)))
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone};

    use super::*;

    fn at(year: i32, nanos: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(year, 3, 4)
            .and_then(|day| day.and_hms_nano_opt(5, 6, 7, nanos))
            .map(|at| at.and_utc())
            .unwrap()
    }

    #[test]
    fn times_are_written_as_to_iso_string_writes_them() {
        // Each expected text is what `new Date(Date.UTC(…)).toISOString()` prints.
        assert_eq!(format(at(2026, 0)), "2026-03-04T05:06:07.000Z");
        assert_eq!(format(at(2026, 120_000_000)), "2026-03-04T05:06:07.120Z");
        assert_eq!(format(at(1, 5_000_000)), "0001-03-04T05:06:07.005Z");
        assert_eq!(format(at(0, 0)), "0000-03-04T05:06:07.000Z");
        assert_eq!(format(at(-1, 0)), "-000001-03-04T05:06:07.000Z");
        assert_eq!(format(at(10_000, 0)), "+010000-03-04T05:06:07.000Z");
        assert_eq!(format(at(262_142, 0)), "+262142-03-04T05:06:07.000Z");
    }

    #[test]
    fn digits_below_the_millisecond_are_cut_not_rounded() {
        assert_eq!(format(at(2026, 999_999_999)), "2026-03-04T05:06:07.999Z");
        assert_eq!(format(at(2026, 123_999_000)), "2026-03-04T05:06:07.123Z");
        // Before 1970 too: the time is never shown later than it is.
        assert_eq!(format(at(1969, 123_999_000)), "1969-03-04T05:06:07.123Z");
        let before_epoch = Utc.timestamp_opt(-1, 999_999_999).unwrap();
        assert_eq!(format(before_epoch), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn a_leap_second_is_the_millisecond_before_it() {
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|day| day.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .unwrap()
            .and_utc();
        assert_eq!(format(leap), "2016-12-31T23:59:59.999Z");
    }

    #[test]
    fn filter_bounds_take_in_every_instant_shown_as_the_bound() {
        let shown = at(2026, 123_000_000);
        assert_eq!(earliest_shown_at_or_after(shown), shown);
        assert_eq!(latest_shown_at_or_before(shown), at(2026, 123_999_999));
        let between = at(2026, 123_400_000);
        assert_eq!(earliest_shown_at_or_after(between), at(2026, 124_000_000));
        assert_eq!(latest_shown_at_or_before(between), at(2026, 123_999_999));
        let before_epoch = Utc.timestamp_opt(-1, 500_000).unwrap();
        assert_eq!(
            earliest_shown_at_or_after(before_epoch),
            Utc.timestamp_opt(-1, 1_000_000).unwrap()
        );
        assert_eq!(
            latest_shown_at_or_before(before_epoch),
            Utc.timestamp_opt(-1, 999_999).unwrap()
        );
        assert_eq!(
            within_four_digit_years(at(10_000, 0)),
            "9999-12-31T23:59:59.999999999Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
        );
        assert_eq!(within_four_digit_years(shown), shown);
    }

    #[test]
    fn older_answers_are_reformatted() {
        assert_eq!(
            reformat("2026-01-05T09:12:44.127361902+00:00").as_deref(),
            Some("2026-01-05T09:12:44.127Z")
        );
        assert_eq!(
            reformat("2026-01-05T10:12:44+01:00").as_deref(),
            Some("2026-01-05T09:12:44.000Z")
        );
        assert_eq!(reformat("19.99"), None);
    }
}
