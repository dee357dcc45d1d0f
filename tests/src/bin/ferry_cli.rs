//! The `ferry` command line as a process of this crate (the `ferry` binary of the downloader
//! crate is not built for another crate's tests), for the test that SIGKILLs `ferry put`
//! while it uploads into ferryd. Same library entry point as `ferry`.

use std::process::ExitCode;

use clap::Parser as _;
use ferry::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => ExitCode::from(rt.block_on(cli::run(cli))),
        Err(e) => {
            eprintln!("ferry: cannot start the async runtime: {e}");
            ExitCode::from(cli::EXIT_FAILED)
        }
    }
}
