//! ferryd with the tus endpoint as a process of its own, for the test that SIGKILLs the server
//! mid-upload and restarts it on the same root (the `ferryd` binary of the server crate is not
//! built for another crate's tests). Same library, store and tus code as `ferryd`.
//!
//! Usage: ferryd_tus ROOT TOKEN. Prints `listening on http://ADDR/` once bound. A ROOT of
//! `s3://BUCKET/PREFIX` serves that prefix of the S3 server of `FERRY_TEST_S3_ENDPOINT`
//! (moto) instead, without `--single-instance` (the test of several instances on one bucket).

use std::io::Write as _;
use std::sync::Arc;

use ferryd::app::{App, Config};
use ferryd::server::{self, ServerOptions};
use ferryd::store::fs::FsOptions;
use ferryd::tus::TusConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let (root, token) = match args.as_slice() {
        [_, root, token] => (root, token),
        _ => anyhow::bail!("usage: ferryd_tus ROOT TOKEN"),
    };
    let mut cfg = Config::fs(root, FsOptions::default());
    if let Some(rest) = root.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        cfg.store = ferryd::app::StoreConfig::S3(ferryd::store::s3::S3Options {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint: std::env::var("FERRY_TEST_S3_ENDPOINT").ok(),
            region: Some("us-east-1".into()),
            credentials: Some(("testing".into(), "testing".into())),
            ..Default::default()
        });
    }
    cfg.tus = Some(TusConfig {
        upload_token: Some(token.clone()),
        ..TusConfig::default()
    });
    let app = App::build(cfg).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on http://{}/", listener.local_addr()?);
    std::io::stdout().flush()?;
    server::run(
        listener,
        Arc::new(app),
        ServerOptions::default(),
        std::future::pending(),
    )
    .await?;
    Ok(())
}
