//! ferry: multi-connection resumable downloads (`ferry get`) and tus uploads (`ferry put`).
//!
//! Module map:
//! - [`cli`]: clap definitions for both subcommands, turned into library options;
//!   [`cli::shared`] holds the flags both share (one definition, one help text).
//! - [`http`]: the one HTTP client builder of `get` and `put` (TLS roots, proxy).
//! - [`tls`]: TLS failures in words, not retried.
//! - [`auth`]: credentials (URL, `--user`, netrc) per origin, taken out of printed URLs;
//!   [`netrc`] parses the netrc file.
//! - [`get`]: the downloader. [`get::probe`] (HEAD / ranged GET), [`get::plan`] (segment
//!   split and work stealing, pure), [`get::journal`] (versioned, CRC'd progress file),
//!   [`get::worker`] (one HTTP/1.1 connection, the never-a-wrong-byte checks),
//!   [`get::speed`] (straggler detection), [`get::ranges`] (range sets), [`get::checksum`],
//!   [`get::output`] (part file, publish); rounds and resume are private submodules;
//!   [`get::tree`] (`-r`: listings, scope and safe paths, the walk).
//! - [`put`]: tus uploads: [`put::plan`] (parts, chunks, capabilities, pure),
//!   [`put::fingerprint`] (resume store), [`put::client`] (tus requests), [`put::upload`].
//! - [`progress`]: bar on a TTY, lines otherwise, quiet mode (shared with `put`).
//! - [`ratelimit`]: `--limit-rate`, one token bucket shared by every connection of a run.
//! - [`retry`]: backoff with jitter, `Retry-After`, connection shedding (shared with `put`).
//! - [`size`]: human sizes (`4M`) in and out.
//! - [`summary`]: the tally and summary line of a tree transfer (`-r`).
//! - [`error`]: the crate's error type; [`cli::run`] maps a command to an exit code.

pub mod auth;
pub mod cli;
pub mod error;
pub mod get;
pub mod http;
pub mod netrc;
pub mod progress;
pub mod put;
pub mod ratelimit;
pub mod retry;
pub mod size;
pub mod summary;
pub mod tls;

pub use error::{Error, Result};
