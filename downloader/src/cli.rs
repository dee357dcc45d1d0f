//! Command line: clap definitions for `ferry get` and `ferry put`, conversion into library
//! options, and [`run`], which executes a command and returns the exit code.
//!
//! Exit codes: 0 every transfer finished, 1 something failed (the journal is kept so the same
//! command resumes), 2 usage error (bad flag, size, header or checksum).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use http::{HeaderName, HeaderValue};
use tokio::sync::watch;

use crate::error::Error;
use crate::get::{self, checksum};
pub use crate::http::install_crypto_provider;
use crate::progress::Ui;
use crate::size::parse_size;
pub use shared::SharedArgs;

pub mod shared;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Move big files over HTTP without losing work"
)]
#[command(
    after_help = "Exit codes: 0 done, 1 failed (run the same command again to resume), 2 usage error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More detail: per-connection progress and retries (-vv: debug logs).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download URLs over several connections, resuming after any interruption.
    Get(GetArgs),
    /// Upload files to a tus endpoint: parallel parts, resume, instant upload.
    Put(crate::put::args::PutArgs),
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// URLs to download.
    pub urls: Vec<String>,
    /// Save as FILE (only with a single URL).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Save into DIR.
    #[arg(short, long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Connections per download (1 to 64).
    #[arg(short = 'x', long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub connections: u16,
    /// Do not split ranges smaller than SIZE at the start (e.g. 512K, 4M).
    #[arg(short = 'k', long, value_name = "SIZE", default_value = "1M", value_parser = parse_size)]
    pub min_split_size: u64,
    /// Verify the finished file: ALGO=HEX with ALGO one of sha256, sha512, sha1, md5.
    #[arg(long, value_name = "ALGO=HEX", value_parser = checksum::parse_checksum_arg)]
    pub checksum: Option<checksum::Expected>,
    /// Discard an existing journal and partial file and start from zero.
    #[arg(long)]
    pub restart: bool,
    /// Replace the final file if it exists, whatever it is.
    #[arg(long)]
    pub overwrite: bool,
    /// When the final file exists but the remote file changed since it was downloaded,
    /// download the new version (into NAME.part) and replace the file once it is complete.
    #[arg(long, conflicts_with = "overwrite")]
    pub update: bool,
    /// Read URLs from FILE, one file per line ('#' starts a comment); several URLs of the same
    /// file on one line, separated by tabs, are mirrors (as in aria2).
    #[arg(short, long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
    /// Another server of the same file (repeatable; with one URL). Bytes are mixed only when
    /// proven the same file: --checksum, the same Repr-Digest, or the same strong ETag;
    /// otherwise a mirror is used only if the others fail.
    #[arg(long, value_name = "URL")]
    pub mirror: Vec<String>,
    /// Downloads at once: of several URLs, or of the files of a tree (-r).
    #[arg(short = 'j', long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrent_downloads: u16,
    /// Download the folder tree below URL, read from its listings (ferryd's JSON, or the
    /// HTML of nginx, Apache, Caddy, python's http.server...); links are followed only below
    /// URL. Saved as URL's last folder inside -d DIR, or as -o DIR.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Allow HTTP/2 (all ranges then share one connection); HTTP/1.1 otherwise.
    #[arg(long)]
    pub http2: bool,
    #[command(flatten)]
    pub shared: SharedArgs,
}

/// Parses `Name: value`.
pub fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("invalid header {s:?}: expected \"Name: value\""))?;
    let name = HeaderName::try_from(name.trim())
        .map_err(|_| format!("invalid header name {:?}", name.trim()))?;
    let value = HeaderValue::try_from(value.trim())
        .map_err(|_| format!("invalid value for header {name}"))?;
    Ok((name, value))
}

/// Parses `30`, `30s`, `500ms`, `1.5s`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 30s, 500ms or 2m"))?;
    if !(0.0..=86_400.0 * 365.0).contains(&(v * scale)) {
        return Err(format!(
            "invalid duration {s:?}: expected between 0 and one year"
        ));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    let ui = Ui::new(cli.quiet, cli.verbose > 0);
    match cli.command {
        Command::Get(args) => run_get(args, &ui).await,
        Command::Put(args) => crate::put::args::run(args, &ui).await,
    }
}

async fn run_get(args: GetArgs, ui: &Ui) -> u8 {
    let plan = match GetPlan::from_args(args) {
        Ok(p) => p,
        Err(e) => {
            ui.error(&format!("ferry get: {e}"));
            return if e.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            };
        }
    };
    let (tx, interrupt) = watch::channel(false);
    tokio::spawn(async move {
        interrupted().await;
        let _ = tx.send(true);
    });
    if plan.recursive {
        return plan.run_tree(ui, interrupt).await;
    }
    let failures = plan.run(ui, interrupt).await;
    if failures == 0 {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, so that progress is recorded before exiting.
pub async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Validated `ferry get` arguments: the files (each its URL and mirrors), the client and the
/// options.
pub struct GetPlan {
    pub jobs: Vec<Vec<String>>,
    pub client: reqwest::Client,
    pub options: get::Options,
    pub parallel: usize,
    /// `-r`: `jobs` holds one folder URL.
    pub recursive: bool,
}

/// Prints the summary of a tree transfer (always when something failed, else unless
/// `--quiet`); returns the exit code: 1 when anything failed.
pub fn summary(cmd: &str, tally: &crate::summary::Tally, ui: &Ui) -> u8 {
    let line = format!("{cmd}: {}", tally.line());
    if tally.failed() > 0 {
        ui.error(&line);
        EXIT_FAILED
    } else {
        if ui.mode != crate::progress::Mode::Quiet {
            ui.error(&line);
        }
        EXIT_OK
    }
}

impl GetPlan {
    pub fn from_args(args: GetArgs) -> Result<Self, Error> {
        let mut jobs: Vec<Vec<String>> = args.urls.iter().map(|u| vec![u.clone()]).collect();
        if !args.mirror.is_empty() {
            match jobs.as_mut_slice() {
                [one] => one.extend(args.mirror.iter().cloned()),
                _ => {
                    return Err(Error::Usage(format!(
                        "--mirror needs exactly one URL, got {}; for several files use -i FILE with tab-separated mirrors",
                        jobs.len()
                    )))
                }
            }
        }
        if let Some(path) = &args.input_file {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            jobs.extend(input_jobs(&text));
        }
        if jobs.is_empty() {
            return Err(Error::Usage(
                "no URL given: expected ferry get URL... or -i FILE".into(),
            ));
        }
        if args.recursive && (jobs.len() > 1 || !args.mirror.is_empty() || args.checksum.is_some())
        {
            return Err(Error::Usage(
                "-r takes one folder URL, no --mirror and no --checksum".into(),
            ));
        }
        if args.output.is_some() && jobs.len() > 1 {
            return Err(Error::Usage(format!(
                "-o names one file but {} URLs were given; use -d DIR",
                jobs.len()
            )));
        }
        let mut auth = args.shared.auth()?;
        for u in jobs.iter_mut().flatten() {
            let shown = crate::auth::redact(u);
            let parsed = reqwest::Url::parse(u)
                .map_err(|e| Error::Usage(format!("invalid URL {shown:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(Error::Usage(format!(
                    "unsupported URL {shown:?}: expected http:// or https://"
                )));
            }
            *u = auth.url(u);
        }
        let client = crate::http::client(&args.shared, args.http2)?;
        let options = get::Options {
            output: args.output,
            dir: args.dir,
            connections: usize::from(args.connections),
            min_split: args.min_split_size,
            checksum: args.checksum,
            overwrite: args.overwrite,
            update: args.update,
            restart: args.restart,
            worker: get::WorkerOptions {
                timeout: args.shared.timeout,
                backoff: args.shared.backoff(),
                max_tries: args.shared.max_tries,
                auth: auth.finish(),
                limit: args.shared.rate_limit(),
            },
            journal_interval: Duration::from_secs(1),
        };
        Ok(Self {
            jobs,
            client,
            options,
            parallel: usize::from(args.max_concurrent_downloads),
            recursive: args.recursive,
        })
    }

    /// `-r`: the tree below the one URL; prints the summary; returns the exit code.
    pub async fn run_tree(self, ui: &Ui, interrupt: watch::Receiver<bool>) -> u8 {
        let Some(url) = self.jobs.first().and_then(|j| j.first()) else {
            return EXIT_USAGE;
        };
        let tree = get::tree::get_tree(
            &self.client,
            url,
            &self.options,
            self.parallel,
            ui,
            interrupt,
        );
        match tree.await {
            Ok(tally) => summary("ferry get", &tally, ui),
            Err(e) => {
                ui.error(&format!("ferry get: {e}"));
                if e.is_usage() {
                    EXIT_USAGE
                } else {
                    EXIT_FAILED
                }
            }
        }
    }

    /// Downloads every URL, `parallel` at a time; returns how many failed.
    pub async fn run(self, ui: &Ui, interrupt: watch::Receiver<bool>) -> usize {
        let gate = Arc::new(tokio::sync::Semaphore::new(self.parallel.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for urls in self.jobs {
            let (client, opts, ui, gate, interrupt) = (
                self.client.clone(),
                self.options.clone(),
                ui.clone(),
                Arc::clone(&gate),
                interrupt.clone(),
            );
            set.spawn(async move {
                let _permit = gate.acquire_owned().await;
                let res = get::download_mirrored(&client, &urls, &opts, &ui, interrupt).await;
                if let Err(e) = &res {
                    ui.error(&format!("ferry get: {e}"));
                }
                res.is_ok()
            });
        }
        let mut failed = 0;
        while let Some(ok) = set.join_next().await {
            failed += usize::from(!ok.unwrap_or(false));
        }
        failed
    }
}

/// The files of an `-i` list: one per line, its mirrors after tabs (aria2's format); blank
/// lines and lines starting with '#' are skipped.
pub fn input_jobs(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.split('\t')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_common_forms() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").unwrap_err().contains("expected"));
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn input_lines_are_files_and_tabs_separate_mirrors() {
        let text = "# list\nhttp://a/f\thttp://b/f\t http://c/f\n\n  http://d/g  \n";
        assert_eq!(
            input_jobs(text),
            vec![
                vec!["http://a/f", "http://b/f", "http://c/f"],
                vec!["http://d/g"]
            ]
        );
    }

    #[test]
    fn mirror_flags_join_the_one_url() {
        let parse = |a: &[&str]| {
            let Command::Get(g) = Cli::try_parse_from(a.iter().copied()).unwrap().command else {
                panic!("expected get")
            };
            GetPlan::from_args(g)
        };
        let plan = parse(&[
            "ferry",
            "get",
            "--mirror",
            "http://b/f",
            "--mirror",
            "http://c/f",
            "http://a/f",
        ])
        .ok()
        .unwrap();
        assert_eq!(
            plan.jobs,
            vec![vec!["http://a/f", "http://b/f", "http://c/f"]]
        );
        let two = parse(&[
            "ferry",
            "get",
            "--mirror",
            "http://b/f",
            "http://a/f",
            "http://c/g",
        ]);
        assert!(two.err().is_some_and(|e| e.is_usage()));
        let bad = parse(&["ferry", "get", "--mirror", "ftp://b/f", "http://a/f"]);
        assert!(bad.err().is_some_and(|e| e.is_usage()));
        let rate = parse(&["ferry", "get", "--limit-rate", "2M", "http://a/f"])
            .ok()
            .unwrap();
        let limit = rate.options.worker.limit.unwrap();
        assert_eq!(limit.rate(), 2 << 20);
        assert!(Cli::try_parse_from(["ferry", "get", "--limit-rate", "0", "http://a/f"]).is_err());
        assert!(
            Cli::try_parse_from(["ferry", "put", "--limit-rate", "1k", "f", "http://a/"]).is_ok()
        );
    }

    #[test]
    fn headers_need_a_colon() {
        let (n, v) = parse_header("X-Token: abc").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-token", "abc"));
        assert!(parse_header("nocolon").unwrap_err().contains("Name: value"));
        assert!(parse_header("bad name: x").is_err());
    }

    #[test]
    fn cli_rejects_bad_flags_with_usage_errors() {
        let parse = |a: &[&str]| Cli::try_parse_from(a.iter().copied());
        assert!(parse(&["ferry", "get", "-x", "65", "http://h/"]).is_err());
        assert!(parse(&["ferry", "get", "-k", "4Q", "http://h/"]).is_err());
        let ok = parse(&["ferry", "get", "-x", "16", "-k", "4M", "http://h/f"]).unwrap();
        let Command::Get(g) = ok.command else {
            panic!("expected get")
        };
        assert_eq!((g.connections, g.min_split_size), (16, 4 << 20));
        let two = GetArgs {
            output: Some("o".into()),
            ..g
        };
        let err = GetPlan::from_args(GetArgs {
            urls: vec!["http://a/".into(), "http://b/".into()],
            ..two
        });
        assert!(err.err().is_some_and(|e| e.is_usage()));
    }
}
