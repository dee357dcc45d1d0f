//! `ferry` binary: parse flags, set up tracing, run, map the result to an exit code
//! (0 done, 1 failed, 2 usage). Everything else lives in the library.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;
use ferry::cli::{self, Cli};

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse(); // exits with code 2 on usage errors

    // The TLS verifier logs its own ERROR line for a certificate ferry reports better (with
    // the reason and the way out, `tls.rs`); FERRY_LOG can bring it back.
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error,rustls=off,rustls_platform_verifier=off",
        (false, 0 | 1) => "warn,rustls=off,rustls_platform_verifier=off",
        (false, _) => "ferry=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a pipe or a log file gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // Positional writes and fsyncs run on blocking threads: a few are enough, and each
        // extra thread costs a malloc arena (peak RSS target: 32 MiB at 16 connections).
        .max_blocking_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry: cannot start the async runtime: {e}");
            return ExitCode::from(cli::EXIT_FAILED);
        }
    };
    ExitCode::from(runtime.block_on(cli::run(cli)))
}

/// glibc raises its mmap threshold after big buffers are freed, after which hyper's read
/// buffers (up to ~400 KiB per connection) are carved from per-thread arenas and stay
/// resident. A fixed threshold and two arenas keep peak RSS near live memory (target:
/// 32 MiB at 16 connections). No effect on other C libraries.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_MMAP_THRESHOLD: i32 = -3;
        const M_ARENA_MAX: i32 = -8;
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only sets allocator parameters; it is called before any other
        // thread exists.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 128 * 1024);
            mallopt(M_ARENA_MAX, 2);
        }
    }
}
