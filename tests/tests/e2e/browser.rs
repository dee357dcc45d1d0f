//! ferryd's page in a real browser (Debian's chromium driven by playwright-core, pinned in
//! tests/interop/package.json): each test starts ferryd on 127.0.0.1:0, writes fixtures, runs
//! one scenario of tests/interop/browser.mjs, then checks on the server that every uploaded
//! file is there, byte-identical. Scenarios run one at a time (one browser on a small machine).
//! Screenshots go to target/ui-screenshots/.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ferry_tests::{client, pattern, sha256_hex, tool, TestServer};
use ferryd::tus::TusConfig;

const TOKEN: &str = "browser-token";
/// The read token of the `--read-token` scenario (sent always; ignored without one).
const READ: &str = "read-token-1";

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop")
}

/// node, chromium and playwright-core, or `None` (a skip outside CI; a failure in CI).
fn tools() -> Option<(PathBuf, PathBuf)> {
    let node = tool("node")?;
    let chromium = tool("chromium")?;
    if !interop_dir().join("node_modules/playwright-core").is_dir() {
        if std::env::var("CI").is_ok_and(|v| v == "true")
            || std::env::var("FERRY_REQUIRE_TOOLS").is_ok()
        {
            panic!("playwright-core is required but not installed; run scripts/test");
        }
        eprintln!("SKIPPED: playwright-core not installed (scripts/test installs it)");
        return None;
    }
    Some((node, chromium))
}

/// One browser at a time: the scenarios are heavy, and several on two cores time out.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
        .lock()
        .await
}

struct Run {
    srv: TestServer,
    fixtures: tempfile::TempDir,
}

impl Run {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    async fn start_with(read_token: Option<&str>) -> Self {
        let (srv, _) = TestServer::start_tus(TusConfig {
            upload_token: Some(TOKEN.into()),
            read_token: read_token.map(Into::into),
            ..TusConfig::default()
        })
        .await;
        Self {
            srv,
            fixtures: tempfile::tempdir().unwrap(),
        }
    }

    fn fixture(&self, rel: &str, data: &[u8]) -> Vec<u8> {
        let p = self.fixtures.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
        data.to_vec()
    }

    /// Runs `scenario` with `extra` config fields and returns its `OK` line's JSON.
    async fn scenario(&self, name: &str, extra: serde_json::Value) -> serde_json::Value {
        let (node, chromium) = tools().expect("checked by the caller");
        let mut cfg = serde_json::json!({
            "url": self.srv.url("/"),
            "token": TOKEN,
            "dir": self.fixtures.path(),
            "chromium": chromium,
            "out": Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ui-screenshots"),
        });
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let mut cmd = Command::new(node);
        cmd.current_dir(interop_dir())
            .arg("browser.mjs")
            .arg(name)
            .arg(cfg.to_string());
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scenario {name} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout.lines().rev().find_map(|l| l.strip_prefix("OK "));
        serde_json::from_str(line.expect("an OK line")).unwrap()
    }

    /// The file at `path` on the server has exactly `data`.
    async fn assert_served(&self, path: &str, data: &[u8]) {
        let resp = client()
            .get(self.srv.url(path))
            .bearer_auth(READ)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let got = resp.bytes().await.unwrap();
        assert_eq!(sha256_hex(&got), sha256_hex(data), "{path}");
    }
}

#[tokio::test]
async fn a_files_and_a_nested_folder_upload_byte_identical() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    std::fs::create_dir(run.srv.root.path().join("inbox")).unwrap();
    let files = [
        ("one.txt", run.fixture("one.txt", b"first file\n")),
        ("two.bin", run.fixture("two.bin", &pattern(3 << 20, 1))),
        ("tree/a.txt", run.fixture("tree/a.txt", b"a")),
        (
            "tree/sub/b.bin",
            run.fixture("tree/sub/b.bin", &pattern(70_000, 2)),
        ),
        (
            "tree/sub/deeper/c.txt",
            run.fixture("tree/sub/deeper/c.txt", b"c"),
        ),
    ];
    run.scenario("files_and_folder", serde_json::json!({}))
        .await;
    for (rel, data) in files {
        run.assert_served(&format!("/inbox/{rel}"), &data).await;
    }
}

#[tokio::test]
async fn h_hostile_names_render_as_text() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    let names = [
        "<img src=x onerror=\"window.pwned=1\">.txt",
        "<script>window.pwned=2<script>.txt",
        "q\"uote's & amp.txt",
        "rtl\u{202e}txt.exe",
        "new\nline.txt",
    ];
    for n in names {
        run.srv.put_file(n, b"x");
    }
    let upload = "<svg onload=\"window.pwned=3\">.txt";
    run.scenario(
        "xss_names",
        serde_json::json!({ "names": names, "upload": upload }),
    )
    .await;
    run.assert_served(
        &format!("/{}", ferryd::listing::encode_segment(upload)),
        b"x",
    )
    .await;
}

#[tokio::test]
async fn e_instant_upload_sends_no_patch() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    let data = pattern(2 << 20, 3);
    run.fixture("orig.bin", &data);
    run.fixture("copy.bin", &data);
    run.scenario("instant", serde_json::json!({ "size": data.len() }))
        .await;
    run.assert_served("/copy.bin", &data).await;
}

#[tokio::test]
async fn c_reload_mid_upload_resumes_without_a_new_creation() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    let data = run.fixture("big.bin", &pattern(64 << 20, 4));
    run.scenario("reload_resume", serde_json::json!({ "size": data.len() }))
        .await;
    run.assert_served("/big.bin", &data).await;
}

#[tokio::test]
async fn f_pause_resume_and_cancel() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    let p = run.fixture("p.bin", &pattern(24 << 20, 5));
    run.fixture("c.bin", &pattern(24 << 20, 6));
    run.scenario("pause_cancel", serde_json::json!({})).await;
    run.assert_served("/p.bin", &p).await;
    let cancelled = client().get(run.srv.url("/c.bin")).send().await.unwrap();
    assert_eq!(
        cancelled.status(),
        404,
        "a cancelled upload is not published"
    );
}

#[tokio::test]
async fn g_token_from_fragment_prompt_and_wrong_token() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    let data = run.fixture("one.txt", b"token flow\n");
    run.scenario("token", serde_json::json!({})).await;
    run.assert_served("/one.txt", &data).await;
}

#[tokio::test]
async fn g_read_token_via_fragment_cookie_and_wrong_token() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start_with(Some(READ)).await;
    run.srv.put_file("a.txt", b"readable");
    let data = run.fixture("one.txt", b"read token flow\n");
    run.scenario("read_token", serde_json::json!({ "read": READ }))
        .await;
    run.assert_served("/one.txt", &data).await;
}

#[tokio::test]
async fn d_offline_mid_upload_finishes_by_itself() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    let data = run.fixture("p.bin", &pattern(24 << 20, 7));
    run.scenario("offline", serde_json::json!({})).await;
    run.assert_served("/p.bin", &data).await;
}

#[tokio::test]
async fn b_dropped_files_upload() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    run.scenario("drop", serde_json::json!({})).await;
    run.assert_served("/drop1.txt", b"dropped one").await;
    run.assert_served("/drop2.txt", b"dropped two").await;
}

#[tokio::test]
async fn i_keyboard_only_upload() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    let data = run.fixture("one.txt", b"keyboard\n");
    run.scenario("keyboard", serde_json::json!({})).await;
    run.assert_served("/one.txt", &data).await;
}

#[tokio::test]
async fn j_screenshots_light_dark_phone() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    run.fixture("one.txt", b"screenshot\n");
    run.srv
        .put_file("docs/报告 2026.pdf", &pattern(1_234_567, 8));
    run.srv.put_file("docs/photos/a.jpg", b"jpg");
    run.srv.put_file("docs/notes.md", b"# notes\n");
    run.srv.put_file("docs/video.mp4", &pattern(3 << 20, 9));
    let shots = run.scenario("screenshots", serde_json::json!({})).await;
    for s in shots.as_array().unwrap() {
        let p = PathBuf::from(s.as_str().unwrap());
        assert!(std::fs::metadata(&p).unwrap().len() > 10_000, "{p:?}");
    }
}

#[tokio::test]
async fn listing_sorts_filters_and_speaks_chinese() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    run.srv.put_file("a.txt", &[b'a'; 5000]);
    run.srv.put_file("b.txt", &[b'b'; 1000]);
    run.srv.put_file("c.txt", &[b'c'; 3000]);
    run.srv.put_file("zdir/x", b"x");
    run.scenario("listing", serde_json::json!({})).await;
}

mod front;
mod upload;
