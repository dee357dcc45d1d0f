//! The `ferryd` binary as a person runs it: flags and FERRY_* variables, the printed URL,
//! clean exit on SIGTERM, clear errors on bad arguments.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

fn ferryd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferryd"))
}

fn get(url_hostport: &str, path: &str) -> String {
    try_get(url_hostport, path).expect("GET over a fresh connection")
}

fn try_get(url_hostport: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(url_hostport)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn prints_bound_url_serves_and_stops_on_sigterm() {
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("hi.txt"), "hello from ferryd").unwrap();
    let mut child = ferryd()
        .arg(root.path())
        .env("FERRY_LISTEN", "127.0.0.1:0") // the flag's env form
        .env("FERRY_STATE_DIR", state.path())
        .env("FERRY_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Scripts read until the `listening` line (an upload-token line may come first), then
    // close the pipe.
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("ferryd listening on "))
        .expect("a listening line");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect(&line);
    let hostport = url.trim_start_matches("http://").trim_end_matches('/');
    assert!(
        !hostport.ends_with(":0"),
        "the real port is printed: {line}"
    );
    let resp = get(hostport, "/hi.txt");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("hello from ferryd"));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

#[test]
fn missing_root_is_a_clear_error_with_nonzero_exit() {
    let out = ferryd()
        .args(["/nonexistent/ferry-root", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot serve /nonexistent/ferry-root"),
        "{err}"
    );
}

#[test]
fn bad_flag_values_are_usage_errors() {
    let out = ferryd()
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap exits 2 on usage errors");
    let out = ferryd().args(["--tls-cert", "x.pem"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "--tls-cert requires --tls-key");
}

#[test]
fn closed_stdout_does_not_stop_the_server() {
    // Regression: `println!` of the start-up lines panicked once the reader had closed stdout,
    // taking the server down mid-request.
    let root = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("hi.txt"), "still here").unwrap();
    let log = state.path().join("ferryd.log");
    // Without stdout there is no URL line, so the port is picked by bind-and-drop; another
    // process may take it first (ferryd then exits with "cannot listen"): try another.
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = ferryd()
            .arg(root.path())
            .arg("--state-dir")
            .arg(state.path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before ferryd writes a line
        let hostport = format!("127.0.0.1:{port}");
        // Poll until ferryd answers; a refused or reset connection only means "not yet".
        let mut resp = Err("no answer".to_string());
        for _ in 0..200 {
            resp = try_get(&hostport, "/hi.txt").map_err(|e| e.to_string());
            if resp.as_ref().is_ok_and(|r| r.ends_with("still here"))
                || child.try_wait().unwrap().is_some()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let alive = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        if !alive && log.contains("cannot listen") {
            continue; // the port was taken meanwhile
        }
        assert!(
            resp.as_ref().is_ok_and(|r| r.ends_with("still here")),
            "{resp:?}; ferryd log:\n{log}"
        );
        assert!(
            alive,
            "ferryd exited after its stdout was closed; log:\n{log}"
        );
        return;
    }
    panic!("no free port in 5 tries");
}

#[test]
fn a_state_dir_inside_root_is_refused_with_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let out = ferryd()
        .arg(root.path())
        .arg("--state-dir")
        .arg(root.path().join("state"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("must lie outside ROOT"), "{err}");
}
