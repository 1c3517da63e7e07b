//! Location lookup, nginx's order (`ngx_http_core_find_location`): at each level an
//! exact `=` match wins at once; otherwise the longest prefix is remembered and its
//! nested locations are searched the same way; unless that prefix is `^~`, the level's
//! regexes are then tried in file order and the first match wins; otherwise the longest
//! prefix is the answer. Pure: no I/O, no allocation.

use crate::config::{Action, Location, LocationKind};

/// The location for a request path (already decoded and normalised, without
/// arguments), or `None` when nothing matches (the server-level settings apply).
pub fn find_location<'a>(locations: &'a [Location], path: &str) -> Option<&'a Location> {
    match search(locations, path, None) {
        Found::Final(l) => Some(l),
        Found::Partial(l) => l,
    }
}

/// nginx's automatic redirect (`auto_redirect`): `/app` is answered with a 301 to
/// `/app/` when `location /app/` proxies (and no `location = /app` exists), since the
/// proxied application lives under the slash.
pub fn auto_redirect(locations: &[Location], path: &str) -> bool {
    if locations
        .iter()
        .any(|l| l.kind == LocationKind::Exact && l.pattern == path)
    {
        return false;
    }
    locations.iter().any(|l| {
        matches!(l.kind, LocationKind::Prefix | LocationKind::PrefixNoRegex)
            && ((l.pattern.len() == path.len() + 1
                && l.pattern.ends_with('/')
                && l.pattern.starts_with(path)
                && matches!(l.settings.action, Action::Proxy(_)))
                || (path.starts_with(l.pattern.as_str()) && auto_redirect(&l.locations, path)))
    })
}

/// nginx's return codes, collapsed: `Final` is NGX_OK/NGX_DONE (exact or regex match,
/// stop everywhere), `Partial` is NGX_AGAIN/NGX_DECLINED (carry the best prefix so far).
enum Found<'a> {
    Final(&'a Location),
    Partial(Option<&'a Location>),
}

fn search<'a>(locations: &'a [Location], path: &str, current: Option<&'a Location>) -> Found<'a> {
    if let Some(exact) = locations
        .iter()
        .find(|l| l.kind == LocationKind::Exact && l.pattern == path)
    {
        return Found::Final(exact);
    }
    let longest = locations
        .iter()
        .filter(|l| matches!(l.kind, LocationKind::Prefix | LocationKind::PrefixNoRegex))
        .filter(|l| path.starts_with(l.pattern.as_str()))
        .max_by_key(|l| l.pattern.len());
    let mut best = current;
    let mut noregex = false;
    if let Some(prefix) = longest {
        noregex = prefix.kind == LocationKind::PrefixNoRegex;
        match search(&prefix.locations, path, Some(prefix)) {
            Found::Final(l) => return Found::Final(l),
            Found::Partial(l) => best = l,
        }
    }
    if !noregex {
        let regex_match = locations.iter().find(|l| {
            matches!(l.kind, LocationKind::Regex | LocationKind::RegexCaseless)
                && l.regex.as_ref().is_some_and(|r| r.is_match(path))
        });
        if let Some(l) = regex_match {
            return Found::Final(l);
        }
    }
    Found::Partial(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LocSettings, ServerConf};
    use std::path::Path;

    /// Locations of the first server of a config text.
    fn server(text: &str) -> ServerConf {
        let opts = crate::config::LoadOptions {
            text: Some(format!("events {{}} http {{ server {{ {text} }} }}")),
            ..Default::default()
        };
        let cfg = crate::config::load(Path::new("t.conf"), &opts).expect("config loads");
        cfg.http.servers.into_iter().next().expect("one server")
    }

    /// Which location (by its `return` text) a path lands in; "-" for none.
    fn which(s: &ServerConf, path: &str) -> String {
        match find_location(&s.locations, path) {
            None => "-".to_owned(),
            Some(l) => label(&l.settings),
        }
    }

    fn label(s: &LocSettings) -> String {
        match s.rewrite.first() {
            Some(crate::config::RewriteOp::Return { text: Some(t), .. }) => match t.parts.first() {
                Some(crate::config::TemplatePart::Literal(l)) => l.clone(),
                _ => "?".to_owned(),
            },
            _ => "none".to_owned(),
        }
    }

    #[test]
    fn nginx_docs_example() {
        // The example from nginx's `location` documentation.
        let s = server(
            "location = / { return 200 A; }
             location / { return 200 B; }
             location /documents/ { return 200 C; }
             location ^~ /images/ { return 200 D; }
             location ~* \\.(gif|jpg|jpeg)$ { return 200 E; }",
        );
        for (path, want) in [
            ("/", "A"),
            ("/index.html", "B"),
            ("/documents/document.html", "C"),
            ("/images/1.gif", "D"),
            ("/documents/1.jpg", "E"),
            ("/documents/1.JPG", "E"),
        ] {
            assert_eq!(which(&s, path), want, "path {path}");
        }
    }

    #[test]
    fn order_rules() {
        let s = server(
            "location /a { return 200 prefix-a; }
             location /a/b { return 200 prefix-ab; }
             location = /a/b { return 200 exact-ab; }
             location ~ ^/a/b/c { return 200 regex-abc; }
             location ~ ^/a { return 200 regex-a; }
             location ~ /CASE { return 200 case; }
             location ^~ /static { return 200 static; }
             location ~ \\.css$ { return 200 css; }",
        );
        for (path, want) in [
            ("/a/b", "exact-ab"),
            ("/a/b/c/d", "regex-abc"), // regex beats longest prefix
            ("/a/b/x", "regex-a"),     // first matching regex in file order
            ("/a", "regex-a"),
            ("/static/x.css", "static"), // ^~ stops regex search
            ("/x.css", "css"),
            ("/case", "-"), // `~` is case-sensitive; no prefix matches either
            ("/CASE", "case"),
            ("/zzz", "-"),
        ] {
            assert_eq!(which(&s, path), want, "path {path}");
        }
    }

    #[test]
    fn nested_locations() {
        let s = server(
            "location /api/ {
                return 200 api;
                location /api/v1/ { return 200 v1; }
                location ~ \\.json$ { return 200 api-json; }
                location = /api/exact { return 200 api-exact; }
                location ^~ /api/raw/ { return 200 raw; }
             }
             location ~ \\.json$ { return 200 top-json; }
             location ~ ^/api/raw/ { return 200 top-raw; }",
        );
        for (path, want) in [
            ("/api/x", "api"),
            ("/api/v1/x", "v1"),
            ("/api/v1/x.json", "api-json"), // nested regex before the outer ones
            ("/api/exact", "api-exact"),
            // A nested ^~ only stops the nested level's regexes; nginx still tries the
            // enclosing level's.
            ("/api/raw/a", "top-raw"),
            ("/x.json", "top-json"),
        ] {
            assert_eq!(which(&s, path), want, "path {path}");
        }
    }

    #[test]
    fn empty_and_unmatched() {
        assert!(find_location(&[], "/").is_none());
        let s = server("location /only { return 200 x; }");
        assert_eq!(which(&s, "/"), "-");
        assert_eq!(which(&s, "/only/and/more"), "x");
    }
}
