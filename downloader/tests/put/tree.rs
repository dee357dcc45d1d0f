//! `put -r` (issue 9 point 6): how a tree's structure reaches the server. ferryd (recognised
//! by its instant-upload answer) gets `dir` + `filename`; a tus server without that
//! extension gets the relative path in `filename`, as Uppy and tus-js-client users send it.

use clap::Parser;
use ferry::progress::{Mode, Ui};
use ferry::put::args::{PutArgs, PutPlan};
use ferry::put::fingerprint::Store;
use ferry::put::tree::put_tree;
use ferry::put::Uploader;

use crate::support::pattern;
use crate::tus_server::{Config, TusServer};

#[derive(Parser)]
struct Wrap {
    #[command(flatten)]
    put: PutArgs,
}

/// Uploads `photos/` (two files, one nested) with `-r -j 2`; returns each complete upload's
/// metadata as sorted `key=value` strings, with its bytes.
async fn put_photos(cfg: Config) -> Vec<(Vec<String>, Vec<u8>)> {
    let server = TusServer::start(cfg).await;
    let t = tempfile::tempdir().unwrap();
    let photos = t.path().join("photos");
    std::fs::create_dir_all(photos.join("a")).unwrap();
    std::fs::write(photos.join("a/b.txt"), pattern(1000, 1)).unwrap();
    std::fs::write(photos.join("c.txt"), pattern(10, 2)).unwrap();
    let dir = photos.to_str().unwrap();
    let argv = [
        "put",
        "-r",
        "-j",
        "2",
        "--retry-wait",
        "20ms",
        dir,
        &server.endpoint(),
    ];
    let mut plan = PutPlan::from_args(Wrap::try_parse_from(argv).unwrap().put).unwrap();
    plan.options.store = Some(Store::open(&t.path().join("data")).unwrap());
    let uploader = Uploader::connect(plan.tus, plan.options).await.unwrap();
    let ui = Ui::with_mode(Mode::Quiet, false);
    let tally = put_tree(uploader, &plan.files, plan.jobs, &ui)
        .await
        .unwrap();
    assert_eq!((tally.complete(), tally.failed()), (2, 0));
    let mut got: Vec<(Vec<String>, Vec<u8>)> = server
        .complete_uploads()
        .into_iter()
        .map(|(meta, data)| {
            let mut m: Vec<String> = meta
                .into_iter()
                .filter(|(k, _)| k != "sha256")
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(&v.unwrap_or_default())))
                .collect();
            m.sort();
            (m, data)
        })
        .collect();
    got.sort();
    got
}

#[tokio::test]
async fn ferryd_gets_dir_metadata_other_servers_the_relative_path_as_filename() {
    let ferryd_like = put_photos(Config {
        concatenation: false,
        ..Config::full()
    })
    .await;
    assert_eq!(
        ferryd_like,
        [
            (
                vec!["dir=photos".into(), "filename=c.txt".into()],
                pattern(10, 2)
            ),
            (
                vec!["dir=photos/a".into(), "filename=b.txt".into()],
                pattern(1000, 1)
            ),
        ]
    );
    let plain = put_photos(Config::default()).await;
    assert_eq!(
        plain,
        [
            (vec!["filename=photos/a/b.txt".into()], pattern(1000, 1)),
            (vec!["filename=photos/c.txt".into()], pattern(10, 2)),
        ]
    );
}
