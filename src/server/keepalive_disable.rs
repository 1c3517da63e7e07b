//! `keepalive_disable`: the User-Agent tests nginx makes to close the connection
//! after a response to old browsers with broken keep-alive.

use crate::config::KeepaliveDisable;
use crate::http1::{Method, RequestHead};

/// Whether `disable` closes the connection after this request: a POST from MSIE 4 to
/// 6 (6 without `SV1`) for `msie6`, Safari on Mac OS X for `safari`, as nginx reads
/// the User-Agent (Opera's MSIE disguise and Gecko or Chrome agents excluded).
pub(super) fn applies(disable: KeepaliveDisable, head: &RequestHead, buf: &[u8]) -> bool {
    if !disable.msie6 && !disable.safari {
        return false;
    }
    let Some(ua) = head.header_value(buf, "user-agent") else {
        return false;
    };
    let find = |hay: &[u8], needle: &[u8]| memchr::memmem::find(hay, needle);
    if disable.msie6 && head.method == Method::Post && find(ua, b"Opera").is_none() {
        if let Some(at) = find(ua, b"MSIE ") {
            let msie = &ua[at..];
            if msie.len() > 7 && msie[6] == b'.' {
                let old = match msie[5] {
                    b'4' | b'5' => true,
                    b'6' => find(&msie[8..], b"SV1").is_none(),
                    _ => false,
                };
                if old {
                    return true;
                }
            }
        }
    }
    disable.safari
        && find(ua, b"Gecko/").is_none()
        && find(ua, b"Chrome/").is_none()
        && find(ua, b"Safari/").is_some()
        && find(ua, b"Mac OS X").is_some()
}
