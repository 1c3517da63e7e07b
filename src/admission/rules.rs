//! `allow` and `deny` (nginx's `ngx_http_access_module`): the first rule that matches
//! the client decides; no match lets the request through without an opinion (which
//! matters with `satisfy any`).

use crate::config::AccessRule;
use crate::net::ClientAddr;

/// What the rules say about a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleVerdict {
    /// An `allow` matched.
    Allowed,
    /// A `deny` matched.
    Denied,
    /// No rule matched (or there are none).
    NoMatch,
}

/// The first matching rule's verdict for `client`.
pub fn check(rules: &[AccessRule], client: ClientAddr) -> RuleVerdict {
    match rules.iter().find(|r| r.who.matches(client.ip())) {
        Some(r) if r.deny => RuleVerdict::Denied,
        Some(_) => RuleVerdict::Allowed,
        None => RuleVerdict::NoMatch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AddrMatch;

    fn rule(deny: bool, who: &str) -> AccessRule {
        AccessRule {
            deny,
            who: match who {
                "all" => AddrMatch::All,
                "unix:" => AddrMatch::Unix,
                s => AddrMatch::Net(s.parse().expect("net")),
            },
        }
    }

    #[test]
    fn first_match_wins() {
        let rules = [
            rule(true, "192.168.1.1/32"),
            rule(false, "192.168.1.0/24"),
            rule(false, "2001:db8::/32"),
            rule(false, "unix:"),
            rule(true, "all"),
        ];
        let at = |s: &str| check(&rules, ClientAddr::Inet(s.parse().expect("addr")));
        assert_eq!(at("192.168.1.1:1"), RuleVerdict::Denied);
        assert_eq!(at("192.168.1.2:1"), RuleVerdict::Allowed);
        assert_eq!(at("[::ffff:192.168.1.2]:1"), RuleVerdict::Allowed);
        assert_eq!(at("[2001:db8::5]:1"), RuleVerdict::Allowed);
        assert_eq!(at("10.0.0.1:1"), RuleVerdict::Denied);
        assert_eq!(check(&rules, ClientAddr::Unix), RuleVerdict::Allowed);
        assert_eq!(check(&rules[..1], ClientAddr::Unix), RuleVerdict::NoMatch);
        assert_eq!(check(&[], ClientAddr::Unix), RuleVerdict::NoMatch);
    }
}
