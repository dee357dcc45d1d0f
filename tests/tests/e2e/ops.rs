//! ferryd for operators: access log, metrics, rate limits, certificate reload, hooks. Each
//! runs a real ferryd on 127.0.0.1:0 and checks what an operator would look at.

mod access_log;
mod hooks;
mod metrics;
mod ratelimit;
mod tls_reload;
use ferry_tests::TestServer;
use ferryd::router::App;
use ferryd::server::ServerOptions;
use ferryd::store::fs::FsOptions;
use ferryd::tus::TusConfig;

pub(super) const TOKEN: &str = "ops-token";

/// A ferryd with the tus endpoint (token [`TOKEN`]) and `configure` applied to the app.
pub(super) async fn server(
    opts: ServerOptions,
    configure: impl FnOnce(&mut App) + Send + 'static,
) -> TestServer {
    let config = |c: &mut ferryd::app::Config, _| {
        c.tus = Some(TusConfig {
            upload_token: Some(TOKEN.into()),
            ..TusConfig::default()
        });
    };
    TestServer::launch(FsOptions::default(), opts, config, move |mut app, _| {
        configure(&mut app);
        app
    })
    .await
}

/// Creates an upload of `data.len()` bytes and sends it in one PATCH; returns the location.
pub(super) async fn upload(srv: &TestServer, name: &str, data: &[u8]) -> String {
    let c = ferry_tests::client();
    let meta = ferry_proto::tus::encode_metadata([("filename", Some(name.as_bytes()))]);
    let resp = c
        .post(srv.url("/files/"))
        .header("tus-resumable", "1.0.0")
        .bearer_auth(TOKEN)
        .header("upload-length", data.len().to_string())
        .header("upload-metadata", meta)
        .send()
        .await
        .expect("create");
    assert_eq!(resp.status(), 201);
    let loc = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let resp = c
        .patch(&loc) // absolute (issue 8)
        .header("tus-resumable", "1.0.0")
        .bearer_auth(TOKEN)
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", "0")
        .body(data.to_vec())
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 204);
    loc
}
