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
async fn slow_second_request_head_on_a_keep_alive_connection_is_cut_off() {
    // The head timeout holds for every request of a connection, not only the first: ferryd
    // keeps hyper's head timer itself (server.rs, `HeadTimer`), so this pins that it fires.
    let srv = with(ServerOptions {
        header_read_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = Vec::new();
    while !first.ends_with(b"hello") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("the first response came")
            .unwrap();
        assert!(n > 0, "closed before the first response");
        first.extend_from_slice(&chunk[..n]);
    }
    // The second head trickles in a byte at a time, more slowly than it may take in all.
    let started = Instant::now();
    let mut closed = false;
    for b in b"GET /a.txt HTTP/1.1\r\nHost: x\r\n"
        .iter()
        .cycle()
        .take(100)
    {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    assert!(closed, "still open after a 20 s request head");
    assert!(started.elapsed() < Duration::from_secs(15));
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
    let cfg = ferryd::app::Config::fs(root.path(), opts);
    let app = std::sync::Arc::new(ferryd::app::App::build(cfg).await.unwrap());
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

/// Opens a connection with a tiny receive buffer, asks for `path` and never reads the body.
async fn never_reading(addr: std::net::SocketAddr, path: &str) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut first = [0u8; 1];
    s.read_exact(&mut first).await.unwrap(); // the response is streaming
    s
}

#[tokio::test]
async fn clients_that_never_read_do_not_stall_other_downloads() {
    // Regression (issue 8, point 1): every chunk held permits of the shared 16 MiB read budget
    // until the socket took it, so ~16 clients asking for a large file and never reading held
    // all of it, and every other download, even of a 5-byte file, waited for the idle timeout.
    let srv = with(ServerOptions {
        idle_timeout: Duration::from_secs(30),
        ..Default::default()
    })
    .await;
    let data = ferry_tests::pattern(8 << 20, 5);
    srv.put_file("big.bin", &data);
    let mut stalled = Vec::new();
    for _ in 0..96 {
        stalled.push(never_reading(srv.addr, "/big.bin").await);
    }
    // Let the server fill those sockets and hold what they did not take.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = raw(
        srv.addr,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a 5-byte GET took {:?} next to 96 clients that never read",
        started.elapsed()
    );
    let get = ferry_tests::client().get(srv.url("/big.bin")).send();
    let body = tokio::time::timeout(Duration::from_secs(20), async {
        get.await.unwrap().bytes().await.unwrap()
    })
    .await
    .expect("a reading client's 8 MiB download waited on clients that never read");
    assert!(body == data, "the reading client got the right bytes");
    drop(stalled);
}

#[tokio::test]
async fn silent_sockets_are_closed_at_the_header_timeout_not_the_idle_timeout() {
    // Regression (issue 8, point 7): the request-head timeout only started once hyper was
    // reading an HTTP/1.1 head, after the first bytes told HTTP/1.1 from HTTP/2; a socket that
    // never sent a byte held its connection slot for the idle timeout, so 1,100 silent sockets
    // locked everyone out for a minute.
    let srv = with(ServerOptions {
        header_read_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(60),
        max_connections: 8,
        ..Default::default()
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..24 {
        silent.push(tokio::net::TcpStream::connect(srv.addr).await.unwrap());
    }
    let started = Instant::now();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), silent[0].read_to_end(&mut buf));
    assert!(
        closed.await.is_ok(),
        "a silent socket was still open after 10 s"
    );
    let r = raw(
        srv.addr,
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "served after {:?}, behind 24 silent sockets and 8 connection slots",
        started.elapsed()
    );
}

#[tokio::test]
async fn http11_request_without_exactly_one_valid_host_gets_400() {
    // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host, with more
    // than one Host, or with an invalid one. HTTP/1.0 may omit it.
    let srv = with(ServerOptions::default()).await;
    for (req, want) in [
        (
            &b"GET /a.txt HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
            400,
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: x\r\nHost: y\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: u@x\r\nConnection: close\r\n\r\n",
            400,
        ),
        (b"GET /a.txt HTTP/1.0\r\n\r\n", 200),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n",
            200,
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n",
            200,
        ),
        // §3.2: a target without an authority is sent with an empty Host.
        (
            b"GET /a.txt HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
            200,
        ),
    ] {
        let r = raw(srv.addr, req, Duration::from_secs(5)).await;
        assert_eq!(
            r.status,
            want,
            "{:?} -> {}",
            String::from_utf8_lossy(req),
            r.head
        );
        if want == 400 {
            assert!(
                String::from_utf8_lossy(&r.body).contains("Host"),
                "{:?}",
                r.body
            );
        }
    }
}
