//! Directive tree: tokens grouped into `name args… ;` and `name args… { … }`, with
//! `include` expanded in place (globs sorted, relative to the main file's directory).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::ConfigError;
use super::lexer::{Lexer, Spanned, Token};
use super::types::{Span, Warning};

/// One argument of a directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// The text, escapes decoded, variables kept as written.
    pub value: String,
    /// True when written between quotes (quoted text is never taken as a keyword hint).
    pub quoted: bool,
    /// The line the argument is on (to spot a missing `;` before it).
    pub line: u32,
}

/// One directive with its block, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The name (`listen`).
    pub name: String,
    /// The arguments after the name.
    pub args: Vec<Arg>,
    /// `Some` for `name … { … }`.
    pub block: Option<Vec<Directive>>,
    /// Where the name is.
    pub span: Span,
}

impl Directive {
    /// Argument `i`'s text, `""` when absent (callers check counts first).
    pub fn arg(&self, i: usize) -> &str {
        self.args.get(i).map_or("", |a| a.value.as_str())
    }
}

/// How deep `include` may nest before we call it a cycle (nginx has no limit and
/// recurses until it runs out of file descriptors).
const MAX_INCLUDE_DEPTH: usize = 32;

/// The parse of a main file with its includes.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Top-level directives, includes spliced in.
    pub directives: Vec<Directive>,
    /// Every file read, main first, as `(absolute path, contents)`, for `-T`.
    pub files: Vec<(PathBuf, String)>,
    /// Findings such as a skipped missing `mime.types`.
    pub warnings: Vec<Warning>,
}

/// Reads files and expands includes.
#[derive(Debug)]
pub struct Parser {
    /// The directory file names are read relative to (the prefix).
    prefix: PathBuf,
    /// The directory of the main file as named; relative includes join onto it.
    conf_dir: PathBuf,
    seen: HashSet<PathBuf>,
    depth: usize,
    out: Parsed,
}

impl Parser {
    /// A parser for the main file `main` (as named by the user), reading relative names
    /// under `prefix`.
    pub fn new(prefix: &Path, main: &Path) -> Self {
        Parser {
            prefix: prefix.to_path_buf(),
            conf_dir: main.parent().map(Path::to_path_buf).unwrap_or_default(),
            seen: HashSet::new(),
            depth: 0,
            out: Parsed::default(),
        }
    }

    fn real_path(&self, named: &Path) -> PathBuf {
        // `join` keeps absolute names as they are.
        self.prefix.join(named)
    }

    /// Parses the main file, from `text` when given instead of reading it.
    pub fn parse_main(
        &mut self,
        main: &Path,
        text: Option<&str>,
    ) -> Result<Vec<Directive>, ConfigError> {
        let contents = match text {
            Some(t) => t.to_owned(),
            None => {
                std::fs::read_to_string(self.real_path(main)).map_err(|source| ConfigError::Io {
                    path: main.to_path_buf(),
                    source,
                })?
            }
        };
        self.parse_text(main, contents)
    }

    /// Parses `contents` as the file `named`, recording it for `-T`.
    pub fn parse_text(
        &mut self,
        named: &Path,
        contents: String,
    ) -> Result<Vec<Directive>, ConfigError> {
        let real = self.real_path(named);
        if self.seen.insert(real.clone()) {
            self.out.files.push((real, contents.clone()));
        }
        let file = Arc::new(named.to_path_buf());
        let mut lexer = Lexer::new(&contents, file);
        let mut open = Vec::new();
        self.block(&mut lexer, &mut open)
    }

    /// Parses `-g` directives; errors name the file `command line`, as nginx says
    /// "in command line". Not recorded for `-T`.
    pub fn parse_globals(&mut self, text: &str) -> Result<Vec<Directive>, ConfigError> {
        let mut lexer = Lexer::new(text, Arc::new(PathBuf::from("command line")));
        self.block(&mut lexer, &mut Vec::new())
    }

    /// Everything parsed so far, for `-T` and warnings.
    pub fn finish(self) -> Parsed {
        self.out
    }

    /// Warnings found while parsing.
    pub fn take_warnings(&mut self) -> Vec<Warning> {
        std::mem::take(&mut self.out.warnings)
    }

    /// The files read so far.
    pub fn files(&self) -> &[(PathBuf, String)] {
        &self.out.files
    }

    /// Parses directives until the `}` closing the innermost of `open`, or end of file
    /// when `open` is empty.
    fn block(
        &mut self,
        lx: &mut Lexer<'_>,
        open: &mut Vec<(String, u32)>,
    ) -> Result<Vec<Directive>, ConfigError> {
        let mut out = Vec::new();
        loop {
            let Spanned {
                token,
                line,
                column,
            } = lx.next_token()?;
            let span = lx.span(line, column);
            let name = match token {
                Token::Eof if open.is_empty() => return Ok(out),
                Token::Eof => return Err(eof(span, None, open)),
                Token::Close if open.is_empty() => {
                    return Err(ConfigError::hinted(
                        &span,
                        "unexpected \"}\"",
                        "this closes no block; remove it or look for a missing \"{\" above",
                    ))
                }
                Token::Close => return Ok(out),
                Token::Semicolon => return Err(ConfigError::at(&span, "unexpected \";\"")),
                Token::Open => return Err(ConfigError::at(&span, "unexpected \"{\"")),
                Token::Word { text, .. } => text,
            };
            let mut args = Vec::new();
            let block = loop {
                let t = lx.next_token()?;
                match t.token {
                    Token::Word { text, quoted } => args.push(Arg {
                        value: text,
                        quoted,
                        line: t.line,
                    }),
                    Token::Semicolon => break None,
                    Token::Open => {
                        open.push((name.clone(), line));
                        let inner = self.block(lx, open)?;
                        open.pop();
                        break Some(inner);
                    }
                    Token::Close => {
                        return Err(ConfigError::hinted(
                            &lx.span(t.line, t.column),
                            format!("directive \"{name}\" is not terminated by \";\""),
                            format!("add \";\" after the last argument of \"{name}\" (line {line})"),
                        ))
                    }
                    Token::Eof if open.is_empty() => {
                        return Err(ConfigError::at(
                            &lx.span(t.line, t.column),
                            format!("unexpected end of file, directive \"{name}\" is not terminated by \";\""),
                        ))
                    }
                    Token::Eof => return Err(eof(lx.span(t.line, t.column), Some(name), open)),
                }
            };
            let d = Directive {
                name,
                args,
                block,
                span,
            };
            if d.name == "include" && d.block.is_none() {
                self.include(&d, &mut out)?;
            } else {
                out.push(d);
            }
        }
    }

    /// Expands `include PATTERN;` into `out`.
    fn include(&mut self, d: &Directive, out: &mut Vec<Directive>) -> Result<(), ConfigError> {
        if d.args.len() != 1 {
            return Err(ConfigError::at(
                &d.span,
                "invalid number of arguments in \"include\" directive",
            ));
        }
        if self.depth >= MAX_INCLUDE_DEPTH {
            return Err(ConfigError::hinted(
                &d.span,
                format!("\"include\" nested more than {MAX_INCLUDE_DEPTH} levels deep"),
                "an included file probably includes itself",
            ));
        }
        let pattern = d.arg(0);
        // nginx resolves against its conf directory; ours is the main file's directory.
        let named = self.conf_dir.join(pattern);
        let names: Vec<PathBuf> = if pattern.contains(['*', '?', '[']) {
            let real = self.real_path(&named);
            let real_str = real.to_string_lossy().into_owned();
            let paths = glob::glob(&real_str).map_err(|e| {
                ConfigError::at(
                    &d.span,
                    format!("invalid pattern \"{pattern}\" in \"include\": {}", e.msg),
                )
            })?;
            let mut found = Vec::new();
            for p in paths {
                let p =
                    p.map_err(|e| ConfigError::at(&d.span, format!("include \"{pattern}\": {e}")))?;
                if p.is_file() {
                    // Show names relative to the prefix, as the user wrote them.
                    found.push(
                        p.strip_prefix(&self.prefix)
                            .map(Path::to_path_buf)
                            .unwrap_or(p),
                    );
                }
            }
            found.sort();
            found
        } else {
            vec![named]
        };
        for name in names {
            let real = self.real_path(&name);
            let contents = match std::fs::read_to_string(&real) {
                Ok(c) => c,
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        && real.file_name().is_some_and(|f| f == "mime.types") =>
                {
                    // Real-world configs include mime.types from nginx's conf directory;
                    // a balancer does not need it, so a missing one is no reason to fail.
                    self.out.warnings.push(Warning {
                        span: d.span.clone(),
                        message: format!("include \"{}\": file not found, skipped (MIME types are not used by ferrolb)", name.display()),
                    });
                    continue;
                }
                Err(e) => {
                    return Err(ConfigError::at(
                        &d.span,
                        format!("open() \"{}\" failed ({e})", real.display()),
                    ));
                }
            };
            self.depth += 1;
            let parsed = self.parse_text(&name, contents);
            self.depth -= 1;
            out.extend(parsed?);
        }
        Ok(())
    }
}

fn eof(span: Span, directive: Option<String>, open: &[(String, u32)]) -> ConfigError {
    ConfigError::UnexpectedEof {
        span,
        directive,
        open: open.iter().rev().cloned().collect(),
    }
}

/// Parses `text` as file `named` without includes of a prefix (tests, `-g`).
pub fn parse_str(named: &Path, text: &str) -> Result<Vec<Directive>, ConfigError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    Parser::new(&cwd, named).parse_text(named, text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        parse_str(Path::new("nginx.conf"), src)
            .expect_err("should fail")
            .to_string()
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ferrolb-parser-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    #[test]
    fn tree_shape() {
        let t = parse_str(
            Path::new("a.conf"),
            "events {}\nhttp {\n  server { listen 80; }\n}\n",
        )
        .expect("parses");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "events");
        assert_eq!(t[0].block, Some(vec![]));
        let server = &t[1].block.as_ref().expect("http block")[0];
        assert_eq!(server.span.line, 3);
        assert_eq!(server.span.column, 3);
        let listen = &server.block.as_ref().expect("server block")[0];
        assert_eq!(listen.args[0].value, "80");
        assert!(!listen.args[0].quoted);
        assert_eq!(listen.span.file.as_path(), Path::new("a.conf"));
    }

    #[test]
    fn blog_snippet_unterminated() {
        let src = "http {\n  upstream myproject {\n    server localhost:8000;\n    server localhost:8001;\n    server localhost:8002;\n    server localhost:8003;\n\n  server {\n    listen 80;\n    server_name localhost;\n    location / {\n      proxy_pass http://myproject;\n";
        assert_eq!(
            err(src),
            "nginx.conf:13: unexpected end of file: blocks still open: location (line 11), server (line 8), upstream (line 2), http (line 1)"
        );
        // Without the final newline the end is on the last line.
        assert!(err(src.trim_end()).starts_with("nginx.conf:12: unexpected end of file"));
    }

    #[test]
    fn eof_inside_directive() {
        assert_eq!(
            err("http {\n  listen 80"),
            "nginx.conf:2: unexpected end of file, directive \"listen\" is not terminated by \";\": blocks still open: http (line 1)"
        );
        assert_eq!(err("worker_processes 1"), "nginx.conf:1: unexpected end of file, directive \"worker_processes\" is not terminated by \";\"");
    }

    #[test]
    fn stray_tokens() {
        assert!(err("http {}\n}\n").starts_with("nginx.conf:2: unexpected \"}\""));
        assert_eq!(err("http { ; }"), "nginx.conf:1: unexpected \";\"");
        assert_eq!(err("\n{"), "nginx.conf:2: unexpected \"{\"");
        assert!(err("location / {\n proxy_pass http://x }\n")
            .starts_with("nginx.conf:2: directive \"proxy_pass\" is not terminated by \";\""));
    }

    #[test]
    fn includes_with_globs_sorted() {
        let d = tmpdir("glob");
        std::fs::create_dir_all(d.join("conf.d")).expect("mkdir");
        std::fs::write(d.join("conf.d/b.conf"), "b 1;\n").expect("write");
        std::fs::write(d.join("conf.d/a.conf"), "a 1;\ninclude inner.inc;\n").expect("write");
        std::fs::write(d.join("inner.inc"), "inner 1;\n").expect("write");
        std::fs::write(d.join("conf.d/skip.txt"), "nope;\n").expect("write");
        std::fs::write(
            d.join("main.conf"),
            "first;\ninclude conf.d/*.conf;\ninclude none/*.conf;\nlast;\n",
        )
        .expect("write");
        let mut p = Parser::new(&d, Path::new("main.conf"));
        let t = p.parse_main(Path::new("main.conf"), None).expect("parses");
        let names: Vec<_> = t.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["first", "a", "inner", "b", "last"]);
        assert_eq!(t[1].span.file.as_path(), Path::new("conf.d/a.conf"));
        let files = p.finish().files;
        assert_eq!(files.len(), 4);
        assert_eq!(files[0].0, d.join("main.conf"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn include_missing_file_is_an_error_but_mime_types_is_not() {
        let d = tmpdir("missing");
        std::fs::write(
            d.join("main.conf"),
            "include mime.types;\ninclude nope.conf;\n",
        )
        .expect("write");
        let mut p = Parser::new(&d, Path::new("main.conf"));
        let e = p
            .parse_main(Path::new("main.conf"), None)
            .expect_err("missing include");
        assert!(e.to_string().starts_with("main.conf:2: open() \""), "{e}");
        assert_eq!(p.take_warnings().len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn errors_in_included_files_name_them() {
        let d = tmpdir("errfile");
        std::fs::write(d.join("inc.conf"), "a {\n").expect("write");
        std::fs::write(d.join("main.conf"), "http {\ninclude inc.conf;\n}\n").expect("write");
        let mut p = Parser::new(&d, Path::new("main.conf"));
        let e = p
            .parse_main(Path::new("main.conf"), None)
            .expect_err("unclosed in include");
        assert_eq!(
            e.to_string(),
            "inc.conf:2: unexpected end of file: blocks still open: a (line 1)"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn include_cycle_is_reported() {
        let d = tmpdir("cycle");
        std::fs::write(d.join("main.conf"), "include main.conf;\n").expect("write");
        let mut p = Parser::new(&d, Path::new("main.conf"));
        let e = p
            .parse_main(Path::new("main.conf"), None)
            .expect_err("cycle");
        assert!(e.to_string().contains("includes itself"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
