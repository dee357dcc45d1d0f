//! Third-party tus clients against ferryd, used as they are: tuspy (PyPI) and tus-js-client
//! (npm, under Node), each upload then downloaded from ferryd with a matching SHA-256; and a
//! real SIGKILL of a ferryd process mid-upload, restarted on the same root, resumed by
//! tus-js-client.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use ferry_proto::tus::encode_metadata;
use ferry_tests::{client, pattern, sha256_hex, tool, Backend, TestServer};
use ferryd::tus::TusConfig;

pub(super) const TOKEN: &str = "interop-token";

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// Writes `data` as `name` in a fresh directory (clients take the file name as metadata).
fn fixture(name: &str, data: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, data).unwrap();
    (dir, path)
}

/// Runs a client to completion off the runtime (the server under test shares it) and returns
/// the upload URL it printed.
pub(crate) async fn run_client(mut cmd: Command) -> String {
    let out = tokio::task::spawn_blocking(move || cmd.current_dir(interop_dir()).output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = stdout
        .lines()
        .find_map(|l| l.strip_prefix("URL "))
        .expect("client printed its upload URL");
    url.to_string()
}

pub(crate) fn js(node: &Path, opts: serde_like::Json) -> Command {
    let mut cmd = Command::new(node);
    cmd.arg(interop_dir().join("tus_js_upload.mjs")).arg(opts.0);
    cmd
}

/// Checks the published file and `GET {upload url}` both have `data`.
async fn assert_served(
    srv_url: impl Fn(&str) -> String,
    name: &str,
    upload_url: &str,
    data: &[u8],
) {
    let published = client()
        .get(srv_url(&format!("/{name}")))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200, "{name} published");
    assert_eq!(
        sha256_hex(&published.bytes().await.unwrap()),
        sha256_hex(data)
    );
    let via_upload = client()
        .get(upload_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_hex(&via_upload), sha256_hex(data));
}

// The S3 variant: issue 11 point 3 (tus uploads into S3, with a third-party client).
ferry_tests::backends!(
    tuspy_uploads_in_chunks_with_upload_checksum,
    tus_js_client_streams_with_upload_length_deferred,
    tus_js_client_parallel_uploads_use_concatenation,
);

async fn tuspy_uploads_in_chunks_with_upload_checksum(backend: Backend) {
    let Some(python) = tool("python3") else {
        return;
    };
    let (srv, _) = TestServer::start_tus_on(
        backend,
        TusConfig {
            upload_token: Some(TOKEN.into()),
            ..TusConfig::default()
        },
    )
    .await;
    let data = pattern(9 * 1024 * 1024 + 17, 21); // more than a part of the S3 store
    let (_dir, file) = fixture("tuspy.bin", &data);
    let mut cmd = Command::new(python);
    cmd.arg(interop_dir().join("tuspy_upload.py"))
        .arg(srv.url("/files/"))
        .arg(TOKEN)
        .arg(&file)
        .arg((1024 * 1024).to_string())
        .arg("--checksum");
    let url = run_client(cmd).await;
    assert_served(|p| srv.url(p), "tuspy.bin", &url, &data).await;
}

#[tokio::test]
async fn tuspy_resumes_an_upload_another_client_started() {
    let Some(python) = tool("python3") else {
        return;
    };
    let (srv, _) = TestServer::start_tus(TusConfig {
        upload_token: Some(TOKEN.into()),
        ..TusConfig::default()
    })
    .await;
    let data = pattern(1_500_000, 25);
    let (_dir, file) = fixture("resumed.bin", &data);
    let http = client();
    let created = http
        .post(srv.url("/files/"))
        .header("tus-resumable", "1.0.0")
        .bearer_auth(TOKEN)
        .header("upload-length", data.len().to_string())
        .header(
            "upload-metadata",
            encode_metadata([("filename", Some(&b"resumed.bin"[..]))]),
        )
        .send()
        .await
        .unwrap();
    let url = created.headers()["location"].to_str().unwrap().to_string();
    let first = http
        .patch(&url)
        .header("tus-resumable", "1.0.0")
        .bearer_auth(TOKEN)
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", "0")
        .body(data[..600_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 204);
    let mut cmd = Command::new(python);
    cmd.arg(interop_dir().join("tuspy_upload.py"))
        .arg(srv.url("/files/"))
        .arg(TOKEN)
        .arg(&file)
        .arg("262144")
        .arg("--resume")
        .arg(&url);
    assert_eq!(
        run_client(cmd).await,
        url,
        "tuspy continued the same upload"
    );
    assert_served(|p| srv.url(p), "resumed.bin", &url, &data).await;
}

async fn tus_js_client_parallel_uploads_use_concatenation(backend: Backend) {
    let Some(node) = tool("node") else { return };
    let (srv, _) = TestServer::start_tus_on(
        backend,
        TusConfig {
            upload_token: Some(TOKEN.into()),
            ..TusConfig::default()
        },
    )
    .await;
    let data = pattern(5 * 1024 * 1024 + 3, 22);
    let (_dir, file) = fixture("parallel.bin", &data);
    let opts = serde_like::obj(&[
        ("endpoint", serde_like::s(&srv.url("/files/"))),
        ("token", serde_like::s(TOKEN)),
        ("file", serde_like::s(file.to_str().unwrap())),
        ("parallel", "3".into()),
    ]);
    let url = run_client(js(&node, opts)).await;
    assert_served(|p| srv.url(p), "parallel.bin", &url, &data).await;
    // The upload really was a final upload of three partial ones.
    let head = client()
        .head(&url)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    let concat = head.headers()["upload-concat"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        concat.starts_with("final;") && concat.split(' ').count() == 3,
        "{concat}"
    );
}

async fn tus_js_client_streams_with_upload_length_deferred(backend: Backend) {
    let Some(node) = tool("node") else { return };
    let (srv, _) = TestServer::start_tus_on(
        backend,
        TusConfig {
            upload_token: Some(TOKEN.into()),
            ..TusConfig::default()
        },
    )
    .await;
    let data = pattern(2 * 1024 * 1024 + 100, 23);
    let (_dir, file) = fixture("deferred.bin", &data);
    let opts = serde_like::obj(&[
        ("endpoint", serde_like::s(&srv.url("/files/"))),
        ("token", serde_like::s(TOKEN)),
        ("file", serde_like::s(file.to_str().unwrap())),
        ("deferred", "true".into()),
        ("chunkSize", (512 * 1024).to_string()),
    ]);
    let url = run_client(js(&node, opts)).await;
    assert_served(|p| srv.url(p), "deferred.bin", &url, &data).await;
}

/// A `ferryd_tus` process; killed (SIGKILL) when dropped.
pub(super) struct Proc(Child, String);

impl Proc {
    pub(super) fn start(root: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferryd_tus"))
            .arg(root)
            .arg(TOKEN)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn ferryd_tus");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .expect("bound URL")
            .trim_end_matches('/')
            .to_string();
        Proc(child, base)
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.1)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill(); // SIGKILL on Unix
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sigkill_mid_patch_loses_nothing_acknowledged_and_tus_js_client_resumes() {
    let Some(node) = tool("node") else { return };
    let _ = rustls::crypto::ring::default_provider().install_default(); // no in-process server here
                                                                        // ROOT is `www/` in a temporary directory; the state goes beside it (the default).
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("www");
    std::fs::create_dir(&root).unwrap();
    let state = tmp.path().join(".www.ferry");
    let data = pattern(72 << 20, 24);
    let (_dir, file) = fixture("killed.bin", &data);
    let first = Proc::start(&root);
    let http = client();
    let tus = |m: reqwest::Method, url: String| {
        http.request(m, url)
            .header("tus-resumable", "1.0.0")
            .bearer_auth(TOKEN)
    };
    let created = tus(reqwest::Method::POST, first.url("/files/"))
        .header("upload-length", data.len().to_string())
        .header(
            "upload-metadata",
            encode_metadata([("filename", Some(&b"killed.bin"[..]))]),
        )
        .send()
        .await
        .unwrap();
    let abs = created.headers()["location"].to_str().unwrap();
    let loc = abs
        .strip_prefix(&first.1)
        .expect("absolute Location")
        .to_string();
    let acked = tus(reqwest::Method::PATCH, first.url(&loc))
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", "0")
        .body(data[..2 << 20].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status(), 204);
    // A second PATCH streams 68 of its 70 MiB; once the server has checkpointed mid-body (it
    // does every 64 MiB, in the background), it dies.
    let addr = first.1.trim_start_matches("http://").to_string();
    let mut sock = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        sock,
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: {}\r\nContent-Length: {}\r\n\r\n",
        2 << 20,
        70 << 20
    )
    .unwrap();
    sock.write_all(&data[2 << 20..70 << 20]).unwrap();
    let id = loc.trim_start_matches("/files/").to_string();
    let info = state.join(format!("uploads/{id}.info"));
    let durable = || -> u64 {
        let raw = std::fs::read_to_string(&info).unwrap_or_default();
        let at = raw
            .find("\"offset\":")
            .map(|i| &raw[i + 9..])
            .unwrap_or("0");
        at.trim()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap_or("0")
            .parse()
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while durable() < 66 << 20 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await; // polling durable state
    }
    let checkpointed = durable();
    assert!(
        checkpointed >= 66 << 20,
        "mid-body checkpoint on disk: {checkpointed}"
    );
    drop(first); // SIGKILL
                 // A torn write past the checkpoint must never be exposed: add junk to the staging data.
    let staged = state.join(format!("uploads/{id}.bin"));
    std::fs::OpenOptions::new()
        .append(true)
        .open(&staged)
        .unwrap()
        .write_all(&[0xEE; 4096])
        .unwrap();

    let second = Proc::start(&root);
    let head = tus(reqwest::Method::HEAD, second.url(&loc))
        .send()
        .await
        .unwrap();
    let offset: u64 = head.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        offset >= checkpointed,
        "checkpointed bytes survive: offset {offset}"
    );
    let opts = serde_like::obj(&[
        ("endpoint", serde_like::s(&second.url("/files/"))),
        ("token", serde_like::s(TOKEN)),
        ("file", serde_like::s(file.to_str().unwrap())),
        ("uploadUrl", serde_like::s(&second.url(&loc))),
    ]);
    let url = run_client(js(&node, opts)).await;
    assert_eq!(url, second.url(&loc), "resumed, not re-created");
    assert_served(|p| second.url(p), "killed.bin", &url, &data).await;
}

/// Just enough JSON for the driver's options (no serde_json in this crate).
pub(crate) mod serde_like {
    pub struct Json(pub String);

    pub fn s(v: &str) -> String {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }

    pub fn obj(pairs: &[(&str, String)]) -> Json {
        let body: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        Json(format!("{{{}}}", body.join(",")))
    }
}
