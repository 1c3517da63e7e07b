//! HTTP dates, and the `Expires` and `Cache-Control` fields nginx's `expires` makes
//! (`ngx_http_set_expires`), for files and proxied responses alike.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

use crate::config::Expires;

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

/// The `Expires` and `Cache-Control` values `expires` gives a response at `now` whose
/// `Last-Modified` is `mtime` (without one, `modified` counts from now, as nginx).
pub fn expires_fields(e: Expires, now: i64, mtime: Option<i64>) -> (String, String) {
    let (at, max_age) = match e {
        Expires::Epoch => return (http_date(1), "no-cache".to_owned()),
        // nginx writes this date, not the last second of 2037.
        Expires::Max => {
            return (
                "Thu, 31 Dec 2037 23:55:55 GMT".to_owned(),
                "max-age=315360000".to_owned(),
            )
        }
        Expires::After(0) | Expires::Modified(0) => {
            return (http_date(now), "max-age=0".to_owned())
        }
        Expires::After(s) => (now + s, s),
        Expires::Modified(s) => match mtime {
            Some(m) => (m + s, m + s - now),
            None => (now + s, s),
        },
        Expires::Daily(at) => {
            let next = next_time_of_day(now, at);
            (next, next - now)
        }
    };
    let cc = if max_age < 0 {
        "no-cache".to_owned()
    } else {
        format!("max-age={max_age}")
    };
    (http_date(at), cc)
}
