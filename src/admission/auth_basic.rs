//! `auth_basic` with `auth_basic_user_file`, as nginx's `ngx_http_auth_basic_module`:
//! the file is read at every check (a changed file applies to the next request), the
//! first line whose login is the user's decides, `#` lines are comments, the password
//! field ends at `:` or the end of the line.

use crate::config::{AuthBasicConf, Level};
use crate::vars::{basic_credentials, RequestVars};

use super::htpasswd;

/// What basic authentication makes of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    /// The user and password match a line of the file.
    Passed,
    /// 401 with `WWW-Authenticate: Basic realm="REALM"`.
    Unauthorized(Vec<u8>),
    /// 403: the file does not exist (nginx's answer).
    Forbidden,
    /// 500: the file could not be read, or its hash cannot be checked.
    Failed,
}

/// Checks the request's credentials against `conf`'s file; `log` writes an error-log
/// line about the request. The password hash is checked on the blocking pool (bcrypt
/// takes milliseconds), so other connections of the thread go on meanwhile.
pub async fn check(
    conf: &AuthBasicConf,
    vars: &RequestVars<'_>,
    log: &mut (dyn FnMut(Level, String) + Send),
) -> AuthVerdict {
    let mut realm = Vec::new();
    vars.eval(&conf.realm, &mut realm);
    let unauthorized = || AuthVerdict::Unauthorized(realm.clone());
    let Some((user, password)) = vars
        .head
        .header_value(vars.buf, "authorization")
        .and_then(basic_credentials)
    else {
        log(
            Level::Info,
            "no user/password was provided for basic authentication".to_owned(),
        );
        return unauthorized();
    };
    let mut path = Vec::new();
    vars.eval(&conf.user_file, &mut path);
    let path = String::from_utf8_lossy(&path).into_owned();
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) => {
            let not_found = e.kind() == std::io::ErrorKind::NotFound;
            log(
                if not_found { Level::Error } else { Level::Crit },
                format!(
                    "open() \"{path}\" failed ({})",
                    crate::log::os_error_text(&e)
                ),
            );
            return if not_found {
                AuthVerdict::Forbidden
            } else {
                AuthVerdict::Failed
            };
        }
    };
    let user_text = String::from_utf8_lossy(&user).into_owned();
    let Some(stored) = find_user(&text, &user) else {
        log(
            Level::Error,
            format!("user \"{user_text}\" was not found in \"{path}\""),
        );
        return unauthorized();
    };
    let stored = String::from_utf8_lossy(stored).into_owned();
    let checked = tokio::task::spawn_blocking(move || htpasswd::verify(&password, &stored)).await;
    match checked {
        Ok(Ok(true)) => AuthVerdict::Passed,
        Ok(Ok(false)) => {
            log(
                Level::Error,
                format!("user \"{user_text}\": password mismatch"),
            );
            unauthorized()
        }
        Ok(Err(e)) => {
            log(Level::Error, format!("user \"{user_text}\": {e}"));
            AuthVerdict::Failed
        }
        Err(_) => AuthVerdict::Failed,
    }
}

/// The password field of `user`'s first line in an htpasswd text.
fn find_user<'t>(text: &'t [u8], user: &[u8]) -> Option<&'t [u8]> {
    text.split(|&b| b == b'\n').find_map(|line| {
        if line.first() == Some(&b'#') || line.first() == Some(&b'\r') {
            return None;
        }
        let rest = line.strip_prefix(user)?.strip_prefix(b":")?;
        let end = rest
            .iter()
            .position(|&b| b == b':' || b == b'\r')
            .unwrap_or(rest.len());
        Some(&rest[..end])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_nginx_reads_them() {
        let file = b"# comment\nalice:{PLAIN}a:comment\r\nbob:{PLAIN}b\r\nalice:{PLAIN}second\nbo:{PLAIN}x\n#carol:{PLAIN}c\n";
        assert_eq!(find_user(file, b"alice"), Some(&b"{PLAIN}a"[..]));
        assert_eq!(find_user(file, b"bob"), Some(&b"{PLAIN}b"[..]));
        assert_eq!(find_user(file, b"bo"), Some(&b"{PLAIN}x"[..]));
        assert_eq!(find_user(file, b"carol"), None);
        assert_eq!(find_user(file, b"#carol"), None);
        assert_eq!(find_user(b"dave:{PLAIN}d", b"dave"), Some(&b"{PLAIN}d"[..]));
    }
}
