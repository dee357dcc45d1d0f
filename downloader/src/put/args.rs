//! `ferry put` command line: flags, validation into [`Options`], and the run that prints
//! where each file can be downloaded (one line per file on stdout) and returns the exit code.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::chunking::{paced_ceiling, DEFAULT_CHUNK};
use super::client::Tus;
use super::fingerprint::{default_data_dir, Store};
use super::plan::{parse_metadata_arg, ChecksumChoice};
use super::{Options, Uploader};
use crate::cli::{SharedArgs, EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::error::Error;
use crate::progress::Ui;
use crate::size::parse_size;

#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    /// Files to upload (folders with -r).
    #[arg(required = true, num_args = 1.., value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The tus endpoint (creation URL), e.g. http://host:8080/files/
    #[arg(required = true, value_name = "URL")]
    pub url: String,
    /// Parallel parts per file (needs the server's concatenation extension; 1 to 64).
    #[arg(short = 'x', long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Bytes per PATCH request; the server checkpoints after each (e.g. 8M, 512K). Without
    /// it PATCHes start at 8M and grow to about one second of transfer while they succeed,
    /// up to 64M (less with many connections: at most 256M held at once); a size given here
    /// is the first and the largest. Cuts and 413s shrink them either way.
    #[arg(long, value_name = "SIZE", value_parser = parse_chunk)]
    pub chunk_size: Option<u64>,
    /// Extra Upload-Metadata KEY=VALUE (repeatable; `filename` defaults to the file name).
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_metadata_arg)]
    pub metadata: Vec<(String, String)>,
    /// Never hash the file for instant upload. By default ferry hashes it first only when
    /// the server (ferryd) holds a file of the same size, and sends nothing if it is the same.
    #[arg(long)]
    pub no_instant: bool,
    /// Forget earlier uploads of these files and start over.
    #[arg(long)]
    pub restart: bool,
    /// Upload-Checksum per PATCH: auto (the first the server offers of crc32, sha256, sha1,
    /// md5), none, or one algorithm.
    #[arg(long, value_name = "ALGO", default_value = "auto", value_parser = ChecksumChoice::parse)]
    pub checksum: ChecksumChoice,
    /// Upload each folder's tree, keeping its structure (ferryd: `dir` metadata; other tus
    /// servers: the relative path as `filename`); a re-run skips finished files.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Files uploaded at once with -r (1 to 64).
    #[arg(short = 'j', long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrent_uploads: u16,
    #[command(flatten)]
    pub shared: SharedArgs,
}

/// Resume entries untouched this long are removed at start (uploads expire on servers long
/// before: 24 h in tusd and ferryd).
const PRUNE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

fn parse_chunk(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("invalid chunk size 0: expected at least 1 byte".into()),
        n if n > 1 << 30 => Err(format!(
            "invalid chunk size {s:?}: expected at most 1G (one chunk is held in memory)"
        )),
        n => Ok(n),
    }
}

/// Validated `ferry put` arguments.
pub struct PutPlan {
    pub files: Vec<PathBuf>,
    /// `-r`: `files` are folders.
    pub recursive: bool,
    /// `-j`: files at once (with `-r`).
    pub jobs: usize,
    pub tus: Tus,
    pub options: Options,
}

impl PutPlan {
    pub fn from_args(args: PutArgs) -> Result<Self, Error> {
        let shown = crate::auth::redact(&args.url);
        let url = reqwest::Url::parse(&args.url).map_err(|e| {
            Error::Usage(format!(
                "invalid URL {shown:?} ({e}): expected http:// or https:// after the files"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Usage(format!(
                "unsupported URL {shown:?}: expected http:// or https:// (the URL comes last)"
            )));
        }
        let mut auth = args.shared.auth()?;
        let endpoint = auth.url(&args.url);
        let files = args.files;
        for f in &files {
            let fine = if args.recursive {
                f.is_dir()
            } else {
                f.is_file()
            };
            if !fine {
                let (want, hint) = match (args.recursive, f.is_dir()) {
                    (true, _) => ("a folder", " (-r uploads folders)"),
                    (false, true) => ("a regular file", " (use -r for a folder)"),
                    (false, false) => ("a regular file", ""),
                };
                let msg = format!("{}: expected {want}{hint}", f.display());
                return Err(Error::Usage(msg));
            }
        }
        let http = crate::http::client(&args.shared, false)?;
        // Without a usable data directory uploads still work, they just cannot resume.
        let store = match default_data_dir().map(|d| Store::open(&d)).transpose() {
            Ok(store) => store,
            Err(e) => {
                tracing::warn!("resume store unavailable: {e}");
                None
            }
        };
        if let Some(store) = &store {
            store.prune(PRUNE_AFTER);
        }
        // Two chunks in memory per connection (one on the wire, one read ahead).
        let connections = match args.recursive {
            true => usize::from(args.parallel) * usize::from(args.max_concurrent_uploads),
            false => usize::from(args.parallel),
        };
        let (chunk, chunk_max) = match args.chunk_size {
            Some(c) => (c, c),
            None => (DEFAULT_CHUNK, paced_ceiling(connections)),
        };
        let options = Options {
            endpoint,
            chunk,
            chunk_max,
            parallel: usize::from(args.parallel),
            metadata: args.metadata,
            instant: !args.no_instant,
            restart: args.restart,
            checksum: args.checksum,
            backoff: args.shared.backoff(),
            max_tries: args.shared.max_tries,
            store,
        };
        Ok(Self {
            files,
            recursive: args.recursive,
            jobs: usize::from(args.max_concurrent_uploads),
            tus: Tus {
                http,
                timeout: args.shared.timeout,
                auth: auth.finish(),
                limit: args.shared.rate_limit(),
            },
            options,
        })
    }
}

/// Runs `ferry put`; returns the exit code (0 all uploaded, 1 a failure, 2 usage).
pub async fn run(args: PutArgs, ui: &Ui) -> u8 {
    let plan = match PutPlan::from_args(args) {
        Ok(p) => p,
        Err(e) => {
            ui.error(&format!("ferry put: {e}"));
            return if e.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_FAILED
            };
        }
    };
    if plan.options.store.is_none() {
        ui.error(
            "ferry put: no usable data directory (set FERRY_DATA_DIR or HOME); uploads cannot resume",
        );
    }
    let uploader = match Uploader::connect(plan.tus, plan.options).await {
        Ok(u) => u,
        Err(e) => {
            ui.error(&format!("ferry put: {e}"));
            return EXIT_FAILED;
        }
    };
    if plan.recursive {
        return match super::tree::put_tree(uploader, &plan.files, plan.jobs, ui).await {
            Ok(tally) => crate::cli::summary("ferry put", &tally, ui),
            Err(e) => {
                ui.error(&format!("ferry put: {e}"));
                EXIT_FAILED
            }
        };
    }
    let mut failed = 0;
    for file in &plan.files {
        match uploader.put(file, ui).await {
            Ok(location) => println!("{location}"),
            Err(e) => {
                ui.error(&format!("ferry put: {}: {e}", file.display()));
                failed += 1;
            }
        }
    }
    if failed == 0 {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        put: PutArgs,
    }

    fn parse(a: &[&str]) -> Result<PutArgs, clap::Error> {
        Wrap::try_parse_from(std::iter::once("put").chain(a.iter().copied())).map(|w| w.put)
    }

    #[test]
    fn flags_parse_with_units_and_repeats() {
        let a = parse(&[
            "-x",
            "4",
            "--chunk-size",
            "512K",
            "--metadata",
            "a=1",
            "--metadata",
            "b=2",
            "f",
            "http://h/files/",
        ])
        .unwrap();
        assert_eq!((a.parallel, a.chunk_size), (4, Some(512 << 10)));
        assert_eq!(
            a.metadata,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(
            (a.files, a.url),
            (vec![PathBuf::from("f")], "http://h/files/".to_string())
        );
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for bad in [
            &["http://h/files/"][..],
            &["-x", "0", "f", "http://h/"],
            &["-x", "65", "f", "http://h/"],
            &["--chunk-size", "0", "f", "http://h/"],
            &["--chunk-size", "2G", "f", "http://h/"],
            &["--metadata", "nokey", "f", "http://h/"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn url_must_come_last_and_files_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let f = f.to_str().unwrap();
        let err = |a: &[&str]| {
            PutPlan::from_args(parse(a).unwrap())
                .err()
                .map(|e| (e.is_usage(), e.to_string()))
        };
        assert!(err(&["http://h/files/", f]).is_some_and(|(u, m)| u && m.contains("expected http")));
        assert!(err(&[f, "ftp://h/"]).is_some_and(|(u, m)| u && m.contains("expected http")));
        let missing = dir.path().join("missing");
        assert!(err(&[missing.to_str().unwrap(), "http://h/"])
            .is_some_and(|(u, m)| u && m.contains("regular file")));
        assert!(err(&[dir.path().to_str().unwrap(), "http://h/"]).is_some_and(|(u, _)| u));
        assert!(err(&[f, "http://h/files/"]).is_none());
    }
}
