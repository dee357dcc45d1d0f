//! `.netrc`, the credentials file of BSD ftp, curl and wget (issue 9 §3): which login and
//! password go to a host. Pure: [`Netrc::parse`] takes the text, [`Netrc::find`] answers.
//!
//! The format (ftp(1), curl's `lib/netrc.c`): tokens separated by spaces, tabs or newlines.
//! `machine NAME` starts an entry, `default` starts the catch-all entry (used when no
//! machine matches), then `login NAME`, `password SECRET`, `account X` (ignored). `macdef
//! NAME` is followed by a macro body that ends at a blank line (skipped). As in curl 7.84+, a
//! token may be double-quoted, with `\"`, `\\`, `\n`, `\r` and `\t` escapes, so a password
//! can hold spaces. A `#` at the start of a token starts a comment up to the end of the line
//! (curl and wget; quote a password that starts with `#`). Unknown words are skipped, as
//! curl does. Written by hand: the netrc crates on crates.io are unmaintained, and this is
//! ~100 lines with its tests.

/// One `machine` (or the `default`) entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub login: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Netrc {
    /// In file order; `None` names the `default` entry.
    entries: Vec<(Option<String>, Entry)>,
}

/// A malformed file: what was expected, on which line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct ParseError {
    pub line: usize,
    pub msg: String,
}

impl Netrc {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut tokens = Tokens::new(text);
        let mut netrc = Netrc::default();
        while let Some((word, line)) = tokens.next()? {
            let value = |tokens: &mut Tokens, what: &str| {
                tokens.next()?.map(|(v, _)| v).ok_or_else(|| ParseError {
                    line,
                    msg: format!("expected {what} after {word:?}, got the end of the file"),
                })
            };
            match word.as_str() {
                "machine" => {
                    let name = value(&mut tokens, "a host name")?;
                    netrc.entries.push((Some(name), Entry::default()));
                }
                "default" => netrc.entries.push((None, Entry::default())),
                "login" | "password" => {
                    let v = value(&mut tokens, "a value")?;
                    let Some((_, entry)) = netrc.entries.last_mut() else {
                        return Err(ParseError {
                            line,
                            msg: format!("expected \"machine\" or \"default\" before {word:?}"),
                        });
                    };
                    let slot = match word.as_str() {
                        "login" => &mut entry.login,
                        _ => &mut entry.password,
                    };
                    *slot = Some(v);
                }
                "account" => drop(value(&mut tokens, "a value")?),
                "macdef" => {
                    value(&mut tokens, "a macro name")?;
                    tokens.skip_macro();
                }
                _ => {} // unknown words are skipped, as curl does
            }
        }
        Ok(netrc)
    }

    /// The entry for `host` (ASCII case-insensitive), with `login` when one is asked for: the
    /// first matching `machine`, else the `default` entry.
    pub fn find(&self, host: &str, login: Option<&str>) -> Option<&Entry> {
        let fits = |e: &Entry| login.is_none_or(|l| e.login.as_deref() == Some(l));
        let machine = self.entries.iter().find(|(name, e)| {
            name.as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(host))
                && fits(e)
        });
        let default = || self.entries.iter().find(|(n, e)| n.is_none() && fits(e));
        machine.or_else(default).map(|(_, e)| e)
    }
}

struct Tokens<'a> {
    rest: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            rest: text.chars().peekable(),
            line: 1,
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.rest.next();
        self.line += usize::from(c == Some('\n'));
        c
    }

    /// The next token and its line; comments are skipped.
    fn next(&mut self) -> Result<Option<(String, usize)>, ParseError> {
        loop {
            while self.rest.peek().is_some_and(|c| c.is_whitespace()) {
                self.bump();
            }
            if self.rest.peek() != Some(&'#') {
                break;
            }
            while self.bump().is_some_and(|c| c != '\n') {}
        }
        let line = self.line;
        let Some(first) = self.bump() else {
            return Ok(None);
        };
        let mut word = String::new();
        if first != '"' {
            word.push(first);
            while let Some(c) = self.rest.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
            return Ok(Some((word, line)));
        }
        loop {
            match self.bump() {
                None => {
                    let msg = "expected a closing '\"', got the end of the file".into();
                    return Err(ParseError { line, msg });
                }
                Some('"') => return Ok(Some((word, line))),
                Some('\\') => match self.bump() {
                    Some('n') => word.push('\n'),
                    Some('r') => word.push('\r'),
                    Some('t') => word.push('\t'),
                    Some(c) => word.push(c),
                    None => {}
                },
                Some(c) => word.push(c),
            }
        }
    }

    /// A macro body: everything up to the first empty line.
    fn skip_macro(&mut self) {
        let mut previous = None;
        while let Some(c) = self.bump() {
            if c == '\n' && previous == Some('\n') {
                return;
            }
            if c != '\r' {
                previous = Some(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(login: &str, password: &str) -> Entry {
        Entry {
            login: Some(login.into()),
            password: Some(password.into()),
        }
    }

    #[test]
    fn machines_on_one_line_or_many_and_case_insensitive_hosts() {
        let n = Netrc::parse(
            "machine a.example login alice password one\n\
             machine B.example\n  login bob\n  password two\n",
        )
        .unwrap();
        assert_eq!(n.find("a.example", None), Some(&entry("alice", "one")));
        assert_eq!(n.find("b.EXAMPLE", None), Some(&entry("bob", "two")));
        assert_eq!(n.find("c.example", None), None);
    }

    #[test]
    fn default_is_used_only_when_no_machine_matches() {
        let n =
            Netrc::parse("machine a login x password 1\ndefault login anon password 2").unwrap();
        assert_eq!(n.find("a", None), Some(&entry("x", "1")));
        assert_eq!(n.find("other", None), Some(&entry("anon", "2")));
    }

    #[test]
    fn a_login_asked_for_picks_the_entry_with_that_login() {
        let n = Netrc::parse("machine h login a password 1\nmachine h login b password 2").unwrap();
        assert_eq!(n.find("h", Some("b")), Some(&entry("b", "2")));
        assert_eq!(n.find("h", None), Some(&entry("a", "1")));
        assert_eq!(n.find("h", Some("c")), None);
    }

    #[test]
    fn quoted_tokens_keep_spaces_and_escapes() {
        let n = Netrc::parse(r#"machine h login "a b" password "p \"q\" \\ r""#).unwrap();
        assert_eq!(n.find("h", None), Some(&entry("a b", r#"p "q" \ r"#)));
    }

    #[test]
    fn comments_macros_and_accounts_are_skipped() {
        let text = "# my hosts\nmacdef init\ncd /pub\nmachine fake\n\n\
                    machine h # the one\n account acct login u password p\n";
        let n = Netrc::parse(text).unwrap();
        assert_eq!(n.find("h", None), Some(&entry("u", "p")));
        assert_eq!(n.find("fake", None), None, "inside the macro body");
    }

    #[test]
    fn a_machine_without_password_has_none() {
        let n = Netrc::parse("machine h login u").unwrap();
        let e = n.find("h", None).unwrap();
        assert_eq!(
            (e.login.as_deref(), e.password.as_deref()),
            (Some("u"), None)
        );
    }

    #[test]
    fn malformed_files_say_what_and_where() {
        let e = Netrc::parse("machine h login u\npassword").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.msg.contains("after \"password\""), "{e}");
        let e = Netrc::parse("login u password p").unwrap_err();
        assert!(e.msg.contains("before \"login\""), "{e}");
        let e = Netrc::parse("machine h password \"open").unwrap_err();
        assert!(e.msg.contains("closing"), "{e}");
        assert_eq!(Netrc::parse("").unwrap(), Netrc::default());
    }
}
