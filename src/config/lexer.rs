//! Tokens of the nginx configuration language, reproducing nginx's reader
//! (`ngx_conf_read_token`): words end at whitespace, `;` or `{` (but `}` does not end a
//! word, and `${` stays inside one); `#` starts a comment only where a token could
//! start; quoted strings must be followed by whitespace, `;`, `{` or `)`; backslash
//! escapes `\"`, `\'`, `\\`, `\n`, `\r`, `\t` are decoded and any other `\x` is kept as is.

use std::path::PathBuf;
use std::sync::Arc;

use super::error::ConfigError;
use super::types::Span;

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A word or quoted string, escapes decoded.
    Word {
        /// The decoded text.
        text: String,
        /// True when written between quotes.
        quoted: bool,
    },
    /// `;`
    Semicolon,
    /// `{`
    Open,
    /// `}`
    Close,
    /// End of input.
    Eof,
}

/// A token with the place it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned {
    /// The token.
    pub token: Token,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (bytes).
    pub column: u32,
}

/// Splits one file's text into tokens.
#[derive(Debug)]
pub struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: u32,
    column: u32,
    file: Arc<PathBuf>,
}

impl<'a> Lexer<'a> {
    /// A lexer over `src`; `file` names it in spans.
    pub fn new(src: &'a str, file: Arc<PathBuf>) -> Self {
        Lexer {
            src: src.as_bytes(),
            pos: 0,
            line: 1,
            column: 1,
            file,
        }
    }

    /// The file this lexer reads.
    pub fn file(&self) -> &Arc<PathBuf> {
        &self.file
    }

    /// A span at a line and column of this file.
    pub fn span(&self, line: u32, column: u32) -> Span {
        Span {
            file: self.file.clone(),
            line,
            column,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.src.get(self.pos).copied()?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    /// The next token; [`Token::Eof`] forever once the input is consumed.
    pub fn next_token(&mut self) -> Result<Spanned, ConfigError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => {
                    self.bump();
                }
                Some(b'#') => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                _ => break,
            }
        }
        let (line, column) = (self.line, self.column);
        let at = |token| Spanned {
            token,
            line,
            column,
        };
        let Some(c) = self.peek() else {
            return Ok(at(Token::Eof));
        };
        match c {
            b';' => {
                self.bump();
                Ok(at(Token::Semicolon))
            }
            b'{' => {
                self.bump();
                Ok(at(Token::Open))
            }
            b'}' => {
                self.bump();
                Ok(at(Token::Close))
            }
            b'"' | b'\'' => {
                self.bump();
                let raw = self.quoted(c, line, column)?;
                // nginx wants a separator after the closing quote.
                match self.peek() {
                    // `)` closes an `if` condition and is a word of its own, as in
                    // nginx: `if ($uri ~ "^/a") {` ends with the words `^/a` and `)`.
                    None | Some(b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' | b')') => {}
                    Some(other) => {
                        return Err(ConfigError::hinted(
                            &self.span(self.line, self.column),
                            format!("unexpected \"{}\"", other as char),
                            "put a space, \";\" or \"{\" after the closing quote",
                        ))
                    }
                }
                Ok(at(Token::Word {
                    text: unescape(raw),
                    quoted: true,
                }))
            }
            _ => {
                let start = self.pos;
                let mut variable = false;
                while let Some(c) = self.peek() {
                    match c {
                        b'\\' => {
                            self.bump();
                            self.bump();
                            variable = false;
                            continue;
                        }
                        b'{' if variable => {}
                        b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' => break,
                        _ => {}
                    }
                    variable = c == b'$';
                    self.bump();
                }
                let raw = &self.src[start..self.pos];
                Ok(at(Token::Word {
                    text: unescape(raw),
                    quoted: false,
                }))
            }
        }
    }

    /// Reads up to the closing `quote` (consumed) and returns the raw bytes between.
    fn quoted(&mut self, quote: u8, line: u32, column: u32) -> Result<&'a [u8], ConfigError> {
        let start = self.pos;
        loop {
            match self.peek() {
                None => {
                    return Err(ConfigError::hinted(
                        &self.span(self.line, self.column),
                        "unexpected end of file, expecting \";\" or \"}\"",
                        format!(
                        "the string opened with {} at line {line}, column {column} is never closed",
                        quote as char
                    ),
                    ))
                }
                Some(b'\\') => {
                    self.bump();
                    self.bump();
                }
                Some(c) if c == quote => {
                    let end = self.pos;
                    self.bump();
                    return Ok(&self.src[start..end]);
                }
                Some(_) => {
                    self.bump();
                }
            }
        }
    }
}

/// Decodes nginx's escapes: `\"`, `\'`, `\\` give the character, `\n`, `\r`, `\t` the
/// control character; any other backslash stays (so regexes like `\.` survive).
fn unescape(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 1 < raw.len() {
            let decoded = match raw[i + 1] {
                b'"' => Some(b'"'),
                b'\'' => Some(b'\''),
                b'\\' => Some(b'\\'),
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b't' => Some(b'\t'),
                _ => None,
            };
            if let Some(d) = decoded {
                out.push(d);
                i += 2;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(src: &str) -> Vec<Token> {
        let mut lx = Lexer::new(src, Arc::new(PathBuf::from("t.conf")));
        let mut out = Vec::new();
        loop {
            let t = lx.next_token().expect("lexes");
            if t.token == Token::Eof {
                return out;
            }
            out.push(t.token);
        }
    }

    fn w(s: &str, quoted: bool) -> Token {
        Token::Word {
            text: s.to_owned(),
            quoted,
        }
    }

    #[test]
    fn punctuation_and_words() {
        assert_eq!(
            words("http{listen 80;}"),
            vec![
                w("http", false),
                Token::Open,
                w("listen", false),
                w("80", false),
                Token::Semicolon,
                Token::Close
            ]
        );
    }

    #[test]
    fn close_brace_does_not_end_a_word_as_in_nginx() {
        assert_eq!(words("a b}"), vec![w("a", false), w("b}", false)]);
    }

    #[test]
    fn comments_only_at_token_start() {
        assert_eq!(
            words("# whole line\na b#c; # tail\n"),
            vec![w("a", false), w("b#c", false), Token::Semicolon]
        );
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(
            words(r#"a "x \"y\" \\ \n\t\r" 'it\'s' "" "\d";"#),
            vec![
                w("a", false),
                w("x \"y\" \\ \n\t\r", true),
                w("it's", true),
                w("", true),
                w("\\d", true),
                Token::Semicolon
            ]
        );
        // An escaped space joins the word, and nginx keeps the backslash.
        assert_eq!(words(r"a\ b;"), vec![w(r"a\ b", false), Token::Semicolon]);
        assert_eq!(words("\"a;b{\";"), vec![w("a;b{", true), Token::Semicolon]);
    }

    #[test]
    fn variables_stay_in_text() {
        assert_eq!(
            words("proxy_set_header X ${host}x$remote_addr;"),
            vec![
                w("proxy_set_header", false),
                w("X", false),
                w("${host}x$remote_addr", false),
                Token::Semicolon
            ]
        );
        // `{` not after `$` still ends a word.
        assert_eq!(words("a{"), vec![w("a", false), Token::Open]);
    }

    #[test]
    fn positions() {
        let mut lx = Lexer::new("a\n  bb;", Arc::new(PathBuf::from("t")));
        let a = lx.next_token().expect("a");
        let b = lx.next_token().expect("b");
        let s = lx.next_token().expect(";");
        let e = lx.next_token().expect("eof");
        assert_eq!((a.line, a.column), (1, 1));
        assert_eq!((b.line, b.column), (2, 3));
        assert_eq!((s.line, s.column), (2, 5));
        assert_eq!(e.token, Token::Eof);
    }

    #[test]
    fn quote_errors() {
        let mut lx = Lexer::new("a \"x\"y;", Arc::new(PathBuf::from("t.conf")));
        lx.next_token().expect("a");
        let err = lx.next_token().expect_err("no space after quote");
        assert!(
            err.to_string().starts_with("t.conf:1: unexpected \"y\""),
            "{err}"
        );
        let mut lx = Lexer::new("a\n\"open", Arc::new(PathBuf::from("t.conf")));
        lx.next_token().expect("a");
        let err = lx.next_token().expect_err("unterminated");
        assert!(err.to_string().contains("never closed"), "{err}");
    }
}
