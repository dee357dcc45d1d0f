//! The flags `ferry get` and `ferry put` share (issue 9 §7): one definition, so both
//! subcommands accept the same spelling, default and `--help` text for each. Flattened into
//! both argument structs under one help heading; [`crate::http::client`] turns them into the
//! one HTTP client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use http::{HeaderName, HeaderValue};

use super::{parse_duration, parse_header};
use crate::auth::AuthBuilder;
use crate::error::Error;
use crate::ratelimit::RateLimit;
use crate::retry::Backoff;
use crate::size::parse_size;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection options (same for get and put)")]
pub struct SharedArgs {
    /// Extra request header "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER", value_parser = parse_header)]
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// User-Agent header (default ferry/VERSION).
    #[arg(long, value_name = "UA")]
    pub user_agent: Option<String>,
    /// Bearer token sent as "Authorization: Bearer TOKEN" (never to another host after a
    /// redirect).
    #[arg(long, env = "FERRY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Basic credentials for the URLs given (never sent to another host after a redirect);
    /// without ":PASSWORD" the password is asked for on the terminal (else read from standard
    /// input), as curl does. Overrides user:password@ in the URL and .netrc.
    #[arg(short = 'u', long, value_name = "USER[:PASSWORD]")]
    pub user: Option<String>,
    /// Read credentials from FILE instead of ~/.netrc (used for hosts given without them).
    #[arg(long, value_name = "FILE", conflicts_with = "no_netrc")]
    pub netrc_file: Option<PathBuf>,
    /// Do not read ~/.netrc.
    #[arg(long)]
    pub no_netrc: bool,
    /// Also trust the certificate authorities in FILE (PEM), besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Do not verify TLS certificates (unsafe: anyone on the path can read and change the
    /// transfer); a warning says so.
    #[arg(long)]
    pub insecure: bool,
    /// Send every request through this proxy (http:// or https://, with
    /// user:password@ if it needs them); NO_PROXY still applies. Without it, HTTPS_PROXY,
    /// HTTP_PROXY, ALL_PROXY and NO_PROXY are honoured.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Failed attempts in a row per connection before giving up; the count starts over
    /// whenever bytes move.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tries: u32,
    /// First retry delay after a failure without progress, doubled on each further one and
    /// jittered (e.g. 1s, 500ms); a failure right after bytes moved retries at once. A
    /// server's Retry-After is honoured, up to 600 s.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub retry_wait: Duration,
    /// Connect timeout, and how long a request may go without moving a byte or getting an
    /// answer before it is dropped.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Most bytes per second for the whole run: all connections and all transfers (-j, -x)
    /// together, e.g. 500K or 2M (K, M, G are 1024-based, as in curl).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit_rate: Option<u64>,
}

fn parse_rate(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err(format!(
            "invalid rate {s:?}: expected at least 1 byte per second"
        )),
        n => Ok(n),
    }
}

impl Default for SharedArgs {
    /// The defaults of the command line, for callers that build arguments in code.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            shared: SharedArgs,
        }
        <Defaults as clap::Parser>::parse_from(["ferry"]).shared
    }
}

impl SharedArgs {
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.retry_wait)
    }

    /// Reads `--netrc-file` or `~/.netrc` and asks for a `--user` password if needed; each
    /// URL the user gives then goes through [`AuthBuilder::url`].
    pub fn auth(&self) -> Result<AuthBuilder, Error> {
        AuthBuilder::new(
            self.user.as_deref(),
            self.netrc_file.as_deref(),
            self.no_netrc,
        )
    }

    /// The one bucket every connection of this run draws from, with `--limit-rate`.
    pub fn rate_limit(&self) -> Option<Arc<RateLimit>> {
        self.limit_rate.map(|r| Arc::new(RateLimit::new(r)))
    }

    /// The token, unless empty (`FERRY_TOKEN=` means none).
    pub fn bearer(&self) -> Option<String> {
        self.token.clone().filter(|t| !t.is_empty())
    }
}
