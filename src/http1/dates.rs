//! HTTP dates: formatting, parsing, now, and the next time of day.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

/// An HTTP date (`Mon, 30 Nov 2026 02:00:00 GMT`) of Unix seconds.
pub fn http_date(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .map(|d| d.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}

/// Unix seconds of an HTTP date (the three formats RFC 9110 allows).
pub fn parse_http_date(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?.trim();
    for f in [
        "%a, %d %b %Y %H:%M:%S GMT",
        "%A, %d-%b-%y %H:%M:%S GMT",
        "%a %b %e %H:%M:%S %Y",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp());
        }
    }
    None
}

/// Seconds since the epoch now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The next moment after `now` (Unix seconds) at which the local clock shows `at`
/// seconds past midnight (nginx's `ngx_next_time`).
pub fn next_time_of_day(now: i64, at: i64) -> i64 {
    use chrono::{Local, TimeZone, Timelike};
    let Some(local) = Local.timestamp_opt(now, 0).single() else {
        return now + at;
    };
    let since_midnight = i64::from(local.num_seconds_from_midnight());
    let today = now - since_midnight + at;
    if today > now {
        today
    } else {
        today + 86_400
    }
}
