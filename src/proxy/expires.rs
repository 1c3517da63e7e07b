//! The `Expires` and `Cache-Control` fields nginx's `expires` makes
//! (`ngx_http_set_expires`), for proxied responses, `return` answers and files alike.

use crate::config::Expires;
use crate::http1::dates::{http_date, next_time_of_day};

/// The `Expires` and `Cache-Control` values `expires` gives a response at `now` whose
/// `Last-Modified` is `mtime` (without one, `modified` counts from now, as nginx).
pub fn fields(e: Expires, now: i64, mtime: Option<i64>) -> (String, String) {
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
