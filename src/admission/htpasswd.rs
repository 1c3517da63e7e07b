//! Password hashes of an htpasswd file, every format nginx's `ngx_crypt` reads:
//! `$apr1$` (Apache's MD5), `{PLAIN}`, `{SHA}`, `{SSHA}`, and what the C library's
//! `crypt(3)` does on Debian: DES (13 characters), `$1$` MD5, `$5$`/`$6$` SHA-crypt and
//! bcrypt (`$2a$`, `$2b$`, `$2y$`). Other `$id$` schemes (yescrypt `$y$`, …) are not
//! supported: they are reported, never silently taken as a wrong password.

use base64::Engine as _;
use md5::{Digest as _, Md5};
use sha1::Sha1;

/// A stored hash ferrolb cannot check.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("password hash scheme \"{0}\" is not supported")]
pub struct Unsupported(pub String);

/// True when `password` is the one `stored` was made from.
pub fn verify(password: &[u8], stored: &str) -> Result<bool, Unsupported> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(rest) = stored.strip_prefix("{PLAIN}") {
        return Ok(rest.as_bytes() == password);
    }
    if let Some(rest) = stored.strip_prefix("{SHA}") {
        return Ok(b64.encode(Sha1::digest(password)) == rest);
    }
    if let Some(rest) = stored.strip_prefix("{SSHA}") {
        let Ok(raw) = b64.decode(rest) else {
            return Ok(false);
        };
        if raw.len() < 20 {
            return Ok(false);
        }
        let (digest, salt) = raw.split_at(20);
        let mut h = Sha1::new();
        h.update(password);
        h.update(salt);
        return Ok(h.finalize().as_slice() == digest);
    }
    if let Some(rest) = stored.strip_prefix("$apr1$") {
        return Ok(md5_crypt(password, rest, "$apr1$") == stored);
    }
    if let Some(rest) = stored.strip_prefix("$1$") {
        return Ok(md5_crypt(password, rest, "$1$") == stored);
    }
    if let Some(rest) = stored.strip_prefix('$') {
        let id = rest.split('$').next().unwrap_or("");
        if !matches!(id, "2a" | "2b" | "2y" | "5" | "6") {
            return Err(Unsupported(format!("${id}$")));
        }
    }
    // DES, SHA-crypt and bcrypt, by the hash's own prefix.
    Ok(pwhash::unix::verify(password, stored))
}

/// The alphabet of crypt's base64.
const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Poul-Henning Kamp's MD5-crypt with `magic` (`$1$`, or Apache's `$apr1$`); `setting`
/// is what follows the magic (the salt, up to 8 characters, ends at `$`).
fn md5_crypt(password: &[u8], setting: &str, magic: &str) -> String {
    let salt = setting.split('$').next().unwrap_or("");
    let salt = &salt.as_bytes()[..salt.len().min(8)];
    let alt = {
        let mut h = Md5::new();
        h.update(password);
        h.update(salt);
        h.update(password);
        h.finalize()
    };
    let mut h = Md5::new();
    h.update(password);
    h.update(magic.as_bytes());
    h.update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        h.update(&alt[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            h.update([0u8]);
        } else {
            h.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut fin = h.finalize();
    for round in 0..1000 {
        let mut h = Md5::new();
        if round & 1 == 1 {
            h.update(password);
        } else {
            h.update(fin);
        }
        if round % 3 != 0 {
            h.update(salt);
        }
        if round % 7 != 0 {
            h.update(password);
        }
        if round & 1 == 1 {
            h.update(fin);
        } else {
            h.update(password);
        }
        fin = h.finalize();
    }
    let mut out = String::with_capacity(magic.len() + salt.len() + 23);
    out.push_str(magic);
    out.push_str(&String::from_utf8_lossy(salt));
    out.push('$');
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(char::from(ITOA64[(v & 0x3f) as usize]));
            v >>= 6;
        }
    };
    let f = |i: usize| u32::from(fin[i]);
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put((f(a) << 16) | (f(b) << 8) | f(c), 4);
    }
    put(f(11), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `openssl passwd -apr1`, `-1` and `openssl sha1 | base64`, password "secret".
    const HASHES: &[&str] = &[
        "$apr1$Pq4Bf4vR$N7cy8TI622PMTT7QxeC3G0",
        "$1$abcdefgh$cHJi5PXp/ki/ktXzqlk6I1",
        "{PLAIN}secret",
        "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
    ];

    #[test]
    fn known_vectors() {
        for h in HASHES {
            assert_eq!(verify(b"secret", h), Ok(true), "{h}");
            assert_eq!(verify(b"Secret", h), Ok(false), "{h}");
        }
    }

    #[test]
    fn md5_crypt_agrees_with_pwhash() {
        let ours = md5_crypt(b"password", "saltstri", "$1$");
        assert!(pwhash::md5_crypt::verify("password", &ours), "{ours}");
        assert_eq!(verify(b"password", &ours), Ok(true));
    }

    #[test]
    // Old schemes on purpose: files made years ago still hold them.
    #[allow(deprecated)]
    fn ssha_and_crypt_schemes() {
        // {SSHA}: sha1(password + salt) + salt.
        let mut h = Sha1::new();
        h.update(b"secret");
        h.update(b"NaCl");
        let mut raw = h.finalize().to_vec();
        raw.extend_from_slice(b"NaCl");
        let stored = format!(
            "{{SSHA}}{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        assert_eq!(verify(b"secret", &stored), Ok(true));
        assert_eq!(verify(b"other", &stored), Ok(false));
        for hashed in [
            pwhash::unix_crypt::hash("secret").expect("des"),
            pwhash::sha256_crypt::hash("secret").expect("sha256"),
            pwhash::sha512_crypt::hash("secret").expect("sha512"),
            pwhash::bcrypt::hash("secret").expect("bcrypt"),
        ] {
            assert_eq!(verify(b"secret", &hashed), Ok(true), "{hashed}");
            assert_eq!(verify(b"wrong", &hashed), Ok(false), "{hashed}");
        }
        assert_eq!(
            verify(b"secret", "$y$j9T$abc$def"),
            Err(Unsupported("$y$".to_owned()))
        );
    }
}
