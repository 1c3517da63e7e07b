//! The HTTP-01 answers waiting for the CA: `GET /.well-known/acme-challenge/TOKEN` on
//! a plain-HTTP listener gets the key authorization while an order is in progress.
//! Shared by every worker thread of the process.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

/// The path prefix the CA requests (RFC 8555 section 8.3).
pub const PATH_PREFIX: &str = "/.well-known/acme-challenge/";

fn tokens() -> &'static RwLock<HashMap<String, String>> {
    static TOKENS: OnceLock<RwLock<HashMap<String, String>>> = OnceLock::new();
    TOKENS.get_or_init(Default::default)
}

/// The key authorization for a request path, if it asks for a pending challenge.
pub fn answer(path: &[u8]) -> Option<Vec<u8>> {
    let token = std::str::from_utf8(path).ok()?.strip_prefix(PATH_PREFIX)?;
    let map = tokens().read().unwrap_or_else(|p| p.into_inner());
    map.get(token).map(|k| k.as_bytes().to_vec())
}

/// Published challenges of one order, withdrawn when it is dropped (whatever way
/// the order ends).
#[derive(Debug, Default)]
pub(super) struct Published(Vec<String>);

impl Published {
    /// Answers `token` with `key_authorization` from now on.
    pub(super) fn add(&mut self, token: &str, key_authorization: &str) {
        tokens()
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_owned(), key_authorization.to_owned());
        self.0.push(token.to_owned());
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        let mut map = tokens().write().unwrap_or_else(|p| p.into_inner());
        for t in &self.0 {
            map.remove(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_while_published() {
        let path = b"/.well-known/acme-challenge/tok-123";
        assert_eq!(answer(path), None);
        {
            let mut p = Published::default();
            p.add("tok-123", "tok-123.thumb");
            assert_eq!(answer(path).as_deref(), Some(&b"tok-123.thumb"[..]));
            assert_eq!(answer(b"/.well-known/acme-challenge/other"), None);
            assert_eq!(answer(b"/tok-123"), None);
        }
        assert_eq!(answer(path), None);
    }
}
