//! Credentials like curl and wget (issue 9 §3): `user:password@` in a URL, `--user
//! USER[:PASSWORD]`, and `~/.netrc` (or `--netrc-file FILE`), sent as Basic
//! `Authorization` (RFC 7617).
//!
//! Every URL the user gives goes through [`AuthBuilder::url`] at the edge: its `user:password@`
//! is taken out, so the URL that is printed, journaled and recorded with the file never holds
//! a secret, and the credentials are kept for that URL's origin (scheme, host, port). A
//! request carries them only when it goes to one of those origins ([`Auth::apply`]), and on a
//! redirect to another origin reqwest drops the header (`redirect::remove_sensitive_headers`
//! compares scheme, host and port): curl's rule. The header value is marked sensitive, so it
//! is never logged.
//!
//! Precedence, as in curl: `--user` over the URL's, over `.netrc` (which also supplies the
//! password of a login given without one).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::{RequestBuilder, Url};

use crate::error::Error;
use crate::netrc::Netrc;

/// A login and password. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, password hidden)", self.user)
    }
}

/// Scheme, host and port (the default one when the URL has none).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn of(url: &Url) -> Self {
        Self {
            scheme: url.scheme().to_string(),
            host: url.host_str().unwrap_or_default().to_string(),
            port: url.port_or_known_default(),
        }
    }
}

/// The credentials of a run, each for the origin of the URL it came with.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    by_origin: Arc<Vec<(Origin, Credentials)>>,
}

impl Auth {
    /// The credentials for `url`'s origin, if any.
    pub fn for_url(&self, url: &Url) -> Option<&Credentials> {
        let origin = Origin::of(url);
        self.by_origin
            .iter()
            .find(|(o, _)| *o == origin)
            .map(|(_, c)| c)
    }

    /// Adds Basic `Authorization` to `req` when `url` goes to an origin the user gave
    /// credentials for.
    pub fn apply(&self, req: RequestBuilder, url: &str) -> RequestBuilder {
        match Url::parse(url).ok().as_ref().and_then(|u| self.for_url(u)) {
            Some(c) => req.basic_auth(&c.user, Some(&c.password)),
            None => req,
        }
    }
}

/// `--user` and the netrc file, read once; each URL then adds its origin's credentials.
pub struct AuthBuilder {
    user: Option<Credentials>,
    netrc: Option<Netrc>,
    by_origin: Vec<(Origin, Credentials)>,
}

impl AuthBuilder {
    /// Reads `--netrc-file` (a usage error when unreadable or malformed) or, unless
    /// `--no-netrc`, `~/.netrc` when it exists (a warning when malformed); asks for the
    /// password of a `--user` given without one.
    pub fn new(
        user: Option<&str>,
        netrc_file: Option<&Path>,
        no_netrc: bool,
    ) -> Result<Self, Error> {
        let netrc = match (netrc_file, no_netrc) {
            (_, true) => None,
            (Some(path), false) => Some(read_netrc(path)?),
            (None, false) => default_netrc().and_then(|p| match read_netrc(&p) {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!("{e}; ignoring it");
                    None
                }
            }),
        };
        let user = user.map(user_flag).transpose()?;
        Ok(Self {
            user,
            netrc,
            by_origin: Vec::new(),
        })
    }

    /// Takes `user:password@` out of `raw` and records the credentials for its origin;
    /// returns the URL without them. A URL that does not parse is returned as given (the
    /// caller reports it, through [`redact`]).
    pub fn url(&mut self, raw: &str) -> String {
        let Ok(mut url) = Url::parse(raw) else {
            return raw.to_string();
        };
        let given = take_userinfo(&mut url);
        let host = url.host_str().unwrap_or_default().to_string();
        let creds = match (&self.user, given) {
            (Some(flag), _) => Some(flag.clone()),
            (None, Some((user, Some(password)))) => Some(Credentials { user, password }),
            (None, Some((user, None))) => {
                let entry = self.netrc.as_ref().and_then(|n| n.find(&host, Some(&user)));
                let password = entry.and_then(|e| e.password.clone()).unwrap_or_default();
                Some(Credentials { user, password })
            }
            (None, None) => self
                .netrc
                .as_ref()
                .and_then(|n| n.find(&host, None))
                .map(|e| Credentials {
                    user: e.login.clone().unwrap_or_default(),
                    password: e.password.clone().unwrap_or_default(),
                }),
        };
        if let Some(c) = creds {
            let origin = Origin::of(&url);
            if !self.by_origin.iter().any(|(o, _)| *o == origin) {
                self.by_origin.push((origin, c));
            }
        }
        url.to_string()
    }

    pub fn finish(self) -> Auth {
        Auth {
            by_origin: Arc::new(self.by_origin),
        }
    }
}

/// `raw` with any `user:password@` removed, for printing a URL that may hold one.
pub fn redact(raw: &str) -> String {
    if let Ok(mut url) = Url::parse(raw) {
        if take_userinfo(&mut url).is_some() {
            return url.to_string();
        }
        return raw.to_string();
    }
    // Not a URL: drop whatever sits between "://" and the last '@' of the authority.
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => raw.to_string(),
    }
}

/// Removes the userinfo of `url`; returns it percent-decoded (user, password).
fn take_userinfo(url: &mut Url) -> Option<(String, Option<String>)> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = decode(url.username());
    let password = url.password().map(decode);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some((user, password))
}

/// `USER:PASSWORD` (split at the first colon, as curl does), or `USER` alone: the password
/// is then asked for.
fn user_flag(s: &str) -> Result<Credentials, Error> {
    if let Some((user, password)) = s.split_once(':') {
        return Ok(Credentials {
            user: user.into(),
            password: password.into(),
        });
    }
    let password = ask_password(s)
        .map_err(|e| Error::Usage(format!("--user {s}: cannot read the password: {e}")))?;
    let password = password.unwrap_or_else(|| {
        tracing::warn!(
            "--user {s}: no password given (no terminal, nothing on standard input): sending an empty one; --user {s}: says so without asking"
        );
        String::new()
    });
    Ok(Credentials {
        user: s.into(),
        password,
    })
}

/// Asks for `user`'s password as curl does: on the terminal with echo off, else reads a line
/// of standard input. `None` when nothing came (end of input).
fn ask_password(user: &str) -> std::io::Result<Option<String>> {
    eprint!("Enter host password for user '{user}':");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    {
        Ok(tty) => {
            let read = read_hidden(&tty, &mut line);
            eprintln!();
            read?
        }
        Err(_) => std::io::stdin().lock().read_line(&mut line)?,
    };
    if read == 0 {
        eprintln!();
        return Ok(None);
    }
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    Ok(Some(
        trimmed.strip_suffix('\r').unwrap_or(trimmed).to_string(),
    ))
}

/// One line from the terminal `tty` with echo turned off (and back on after).
fn read_hidden(tty: &std::fs::File, line: &mut String) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let fd = tty.as_raw_fd();
    let mut saved = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: `fd` is an open descriptor; tcgetattr fills `saved` when it returns 0.
    let saved = (unsafe { libc::tcgetattr(fd, saved.as_mut_ptr()) } == 0)
        // SAFETY: initialised by the successful tcgetattr above.
        .then(|| unsafe { saved.assume_init() });
    if let Some(saved) = saved {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: `fd` is open and `quiet` a valid termios copied from the terminal's own.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let read = std::io::BufReader::new(tty).read_line(line);
    if let Some(saved) = saved {
        // SAFETY: as above; restores the settings read before.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    read
}

fn read_netrc(path: &Path) -> Result<Netrc, Error> {
    let bad = |why: String| Error::Usage(format!("netrc file {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    Netrc::parse(&text).map_err(|e| bad(e.to_string()))
}

/// `~/.netrc` when it exists.
fn default_netrc() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    let path = PathBuf::from(home).join(".netrc");
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(user: Option<&str>, netrc: &str) -> AuthBuilder {
        AuthBuilder {
            user: user.map(|u| user_flag(u).unwrap()),
            netrc: Some(Netrc::parse(netrc).unwrap()),
            by_origin: Vec::new(),
        }
    }

    fn creds(user: &str, password: &str) -> Option<Credentials> {
        Some(Credentials {
            user: user.into(),
            password: password.into(),
        })
    }

    fn lookup(auth: &Auth, url: &str) -> Option<Credentials> {
        auth.for_url(&Url::parse(url).unwrap()).cloned()
    }

    #[test]
    fn userinfo_leaves_the_url_and_is_kept_for_its_origin_only() {
        let mut b = builder(None, "");
        let clean = b.url("https://al%40ce:p%3Ass@h.example:8443/f?q");
        assert_eq!(clean, "https://h.example:8443/f?q");
        let auth = b.finish();
        assert_eq!(
            lookup(&auth, "https://h.example:8443/other"),
            creds("al@ce", "p:ss")
        );
        // curl's rule: same scheme, host and port only.
        assert_eq!(lookup(&auth, "http://h.example:8443/f"), None);
        assert_eq!(lookup(&auth, "https://h.example/f"), None);
        assert_eq!(lookup(&auth, "https://g.example:8443/f"), None);
    }

    #[test]
    fn user_flag_wins_over_the_url_and_netrc() {
        let mut b = builder(Some("flag:pw:with:colons"), "default login n password np");
        b.url("http://u:p@a/");
        let auth = b.finish();
        assert_eq!(lookup(&auth, "http://a/"), creds("flag", "pw:with:colons"));
    }

    #[test]
    fn netrc_fills_in_hosts_and_missing_passwords() {
        let netrc = "machine a login na password pa\nmachine b login x password px\n\
                     machine b login y password py";
        let mut b = builder(None, netrc);
        assert_eq!(b.url("http://a/f"), "http://a/f");
        b.url("http://y@b/f");
        b.url("http://z@c/f");
        b.url("http://d/f");
        let auth = b.finish();
        assert_eq!(lookup(&auth, "http://a/"), creds("na", "pa"));
        assert_eq!(lookup(&auth, "http://b/"), creds("y", "py"));
        assert_eq!(lookup(&auth, "http://c/"), creds("z", ""));
        assert_eq!(lookup(&auth, "http://d/"), None);
    }

    #[test]
    fn redact_removes_userinfo_from_urls_and_url_like_text() {
        assert_eq!(redact("http://u:secret@h/p"), "http://h/p");
        assert_eq!(redact("http://h/p@q"), "http://h/p@q");
        assert_eq!(redact("http://u:se@cret@[bad/x"), "http://[bad/x");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn debug_hides_the_password() {
        let c = creds("u", "secret").unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }
}
