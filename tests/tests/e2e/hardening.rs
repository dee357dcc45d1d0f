//! Limits that keep a public ferryd alive: slowloris, idle connections, header size,
//! connection count, garbage input.

use std::time::{Duration, Instant};

use ferry_tests::{raw, TestServer};
use ferryd::server::ServerOptions;
use ferryd::store::fs::FsOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn with(opts: ServerOptions) -> TestServer {
    let srv = TestServer::start_with(FsOptions::default(), opts, |a| a).await;
    srv.put_file("a.txt", b"hello");
    srv
}

#[tokio::test]
async fn slow_request_head_is_cut_off() {
    let srv = with(ServerOptions {
        header_read_timeout: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    // The server must close the connection by itself, well before our own 10 s guard.
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "connection still open after 10 s");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!String::from_utf8_lossy(&buf).contains("hello"));
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed() {
    let srv = with(ServerOptions {
        idle_timeout: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "idle connection was not closed");
    assert!(String::from_utf8_lossy(&buf).ends_with("hello"));
}

#[tokio::test]
async fn oversized_request_head_gets_431() {
    let srv = with(ServerOptions {
        max_header_size: 8192,
        ..Default::default()
    })
    .await;
    let big = "x".repeat(20_000);
    let req =
        format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
    let r = raw(srv.addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(r.status, 431, "{}", r.head);
}

#[tokio::test]
async fn connection_limit_holds_extra_clients_until_a_slot_frees() {
    let srv = with(ServerOptions {
        max_connections: 1,
        ..Default::default()
    })
    .await;
    let mut first = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    first
        .write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The second client is accepted by the kernel but not served while the first is open.
    let second = tokio::spawn(raw(
        srv.addr,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "second connection served beyond the limit"
    );
    drop(first);
    let r = second.await.unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn garbage_gets_400_and_the_server_lives_on() {
    let srv = with(ServerOptions::default()).await;
    for junk in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=\xff\xfe\r\nConnection: close\r\n\r\n",
        b"\r\n\r\n\r\n",
        b"GET /a.txt HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    ] {
        let r = raw(srv.addr, junk, Duration::from_secs(5)).await;
        assert!(
            r.status == 0 || r.status < 500,
            "{:?} -> {}",
            String::from_utf8_lossy(junk),
            r.head
        );
    }
    let r = raw(
        srv.addr,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_responses_finish() {
    let srv = with(ServerOptions::default()).await;
    let data = ferry_tests::pattern(8 << 20, 3);
    srv.put_file("big.bin", &data);
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1024];
    let n = s.read(&mut first).await.unwrap();
    assert!(n > 0);
    let addr = srv.addr;
    let stopping = tokio::spawn(srv.stop());
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let mut all = first[..n].to_vec();
    all.extend_from_slice(&rest);
    let body_at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        &all[body_at..],
        &data[..],
        "the in-flight response completed"
    );
    stopping.await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn many_downloads_share_a_small_read_budget_without_deadlock() {
    // Regression: a response held its current chunk while waiting for read-ahead permits, so
    // once the budget was spread across enough responses every one of them waited forever.
    let fs = FsOptions {
        read_budget: 2 * ferryd::store::fs::CHUNK,
        ..Default::default()
    };
    let srv = TestServer::start_with(fs, ServerOptions::default(), |a| a).await;
    let data = ferry_tests::pattern(3 * ferryd::store::fs::CHUNK + 5, 21);
    srv.put_file("big.bin", &data);
    let downloads = (0..8).map(|_| {
        let url = srv.url("/big.bin");
        tokio::spawn(async move { ferry_tests::client().get(url).send().await?.bytes().await })
    });
    let all =
        tokio::time::timeout(Duration::from_secs(20), futures_join(downloads.collect())).await;
    let bodies = all.expect("downloads deadlocked on the read budget");
    for b in bodies {
        assert_eq!(b.unwrap().unwrap(), data);
    }
}

async fn futures_join<T>(
    handles: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await);
    }
    out
}

#[tokio::test]
async fn per_core_workers_serve_and_stop_gracefully() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.txt"), b"hello").unwrap();
    let state = tempfile::tempdir().unwrap();
    let opts = FsOptions {
        state_dir: Some(state.path().to_path_buf()),
        ..FsOptions::default()
    };
    let store = ferryd::store::fs::FsStore::new(root.path(), opts).unwrap();
    let app = std::sync::Arc::new(ferryd::router::App::new(std::sync::Arc::new(store)));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ferryd::server::run_workers(
        listener,
        app,
        ServerOptions::default(),
        3,
        async {
            let _ = rx.await;
        },
    ));
    // Enough connections that more than one worker takes some.
    let mut answers = Vec::new();
    for _ in 0..12 {
        answers.push(tokio::spawn(raw(
            addr,
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        )));
    }
    for a in answers {
        let r = a.await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    }
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("workers stopped")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
