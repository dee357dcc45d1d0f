//! `--access-log`: one line per request after its body ended, with the fields nginx's
//! `combined` has and ferryd's own (received bytes, duration, Range, upload id); no token.

use std::time::Duration;

use ferry_tests::{client, pattern};
use ferryd::access_log::{self, Format, Target};
use ferryd::server::ServerOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{server, upload, TOKEN};

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[tokio::test]
async fn json_log_has_a_line_per_request_with_upload_and_range_fields_and_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.json");
    let h = access_log::start(Target::File(path.clone()), Format::Json).unwrap();
    let log = h.log();
    let srv = server(ServerOptions::default(), move |app| {
        app.observe.access_log = Some(log);
    })
    .await;
    srv.put_file("big.bin", &pattern(32 << 20, 1));
    let c = client();
    let r = c
        .get(srv.url("/big.bin?access_token=leak123&x=1"))
        .header("range", "bytes=10-19")
        .header("user-agent", "ops-test/1")
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().len(), 10);
    let loc = upload(&srv, "up.bin", &pattern(5000, 2)).await;
    // A download the client abandons after the first bytes: logged as not completed.
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let _ = s.read(&mut buf).await.unwrap();
    drop(s);

    let id = loc.rsplit('/').next().unwrap().to_string();
    let got = ferry_tests::poll(|| {
        let path = path.clone();
        async move { Some(lines(&path)).filter(|l| l.len() >= 4) }
    })
    .await;
    // The writer flushes once a second; give it a few.
    let got = match got {
        Some(g) => g,
        None => {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            lines(&path)
        }
    };
    assert_eq!(got.len(), 4, "{got:#?}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(TOKEN) && !text.contains("leak123"), "{text}");
    let range = &got[0];
    assert_eq!(range["method"], "GET");
    assert_eq!(range["path"], "/big.bin?access_token=REDACTED&x=1");
    assert_eq!(range["status"], 206);
    assert_eq!(range["bytes_sent"], 10);
    assert_eq!(range["range"], "bytes=10-19");
    assert_eq!(range["user_agent"], "ops-test/1");
    assert_eq!(range["remote_addr"], "127.0.0.1");
    assert_eq!(range["completed"], true);
    let (post, patch) = (&got[1], &got[2]);
    assert_eq!(
        (&post["method"], &post["status"]),
        (&"POST".into(), &201.into())
    );
    assert_eq!(post["upload_id"], id.as_str());
    assert_eq!(
        (&patch["method"], &patch["status"]),
        (&"PATCH".into(), &204.into())
    );
    assert_eq!(patch["upload_id"], id.as_str());
    assert_eq!(patch["bytes_received"], 5000);
    let aborted = &got[3];
    assert_eq!(aborted["status"], 200);
    assert_eq!(aborted["completed"], false);
    assert!(
        aborted["bytes_sent"].as_u64().unwrap() < 32 << 20,
        "{aborted}"
    );
    h.close();
}

#[tokio::test]
async fn combined_log_parses_as_nginx_combined() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let h = access_log::start(Target::File(path.clone()), Format::Combined).unwrap();
    let log = h.log();
    let srv = server(ServerOptions::default(), move |app| {
        app.observe.access_log = Some(log);
    })
    .await;
    srv.put_file("a.txt", b"hello");
    let r = client()
        .get(srv.url("/a.txt"))
        .header("user-agent", "Mozilla \"quoted\"")
        .header("referer", "http://example.test/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "hello");
    let r = client().get(srv.url("/missing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let _ = r.bytes().await;
    srv.stop().await;
    h.close(); // flushes
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    // $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    // "$http_referer" "$http_user_agent", the regex GoAccess and others use for combined.
    let (ip, rest) = lines[0].split_once(" - - [").unwrap();
    assert_eq!(ip, "127.0.0.1");
    let (time, rest) = rest.split_once("] ").unwrap();
    assert_eq!(time.len(), "06/Nov/1994:08:49:37 +0000".len(), "{time}");
    assert!(rest.starts_with(
        "\"GET /a.txt HTTP/1.1\" 200 5 \"http://example.test/\" \"Mozilla \\x22quoted\\x22\" rt="
    ), "{rest}");
    assert!(
        lines[1].contains("\"GET /missing HTTP/1.1\" 404 "),
        "{}",
        lines[1]
    );
}
