//! Certificate reload: new connections get the new certificate, established ones finish on
//! the old, a broken new pair is refused and the old one kept; by SIGHUP (`reload`) and by
//! watching the files. Two independent pairs from `fixtures/tls/` (`/` and `second/`): a
//! client that trusts only one CA tells which certificate the server presented.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferryd::server::ServerOptions;
use ferryd::tls_reload::CertStore;

use super::server;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/tls")
        .join(rel)
}

/// A client trusting only the CA in `ca` (a fixture path), h1, resolving localhost to `addr`.
fn client_for(ca: &str, addr: std::net::SocketAddr) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture(ca)).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .http1_only()
        .resolve("localhost", addr)
        .build()
        .unwrap()
}

async fn works(c: &reqwest::Client, addr: std::net::SocketAddr) -> bool {
    let url = format!("https://localhost:{}/x.txt", addr.port());
    match c.get(url).send().await {
        Ok(r) => r.text().await.is_ok_and(|t| t == "tls"),
        Err(_) => false,
    }
}

fn install(dir: &Path, pair: &str) {
    // Write then rename, as certbot's deploy hooks and `cp` + `mv` do.
    for f in ["cert.pem", "key.pem"] {
        let tmp = dir.join(format!("{f}.tmp"));
        std::fs::copy(fixture(&format!("{pair}{f}")), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join(f)).unwrap();
    }
}

#[tokio::test]
async fn reload_switches_new_connections_keeps_old_ones_and_refuses_a_broken_pair() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let certs = CertStore::load(&cert, &key).unwrap();
    let opts = ServerOptions {
        tls: Some(certs.server_config().unwrap()),
        ..Default::default()
    };
    let srv = server(opts, |_| {}).await;
    srv.put_file("x.txt", b"tls");
    let first = client_for("ca.pem", srv.addr);
    assert!(works(&first, srv.addr).await, "first certificate served");
    assert!(!works(&client_for("second/ca.pem", srv.addr), srv.addr).await);

    install(dir.path(), "second/");
    certs.reload().unwrap();
    // `first` still holds its pooled connection: it finishes on the old certificate.
    assert!(
        works(&first, srv.addr).await,
        "established connection broken by reload"
    );
    assert!(
        works(&client_for("second/ca.pem", srv.addr), srv.addr).await,
        "new cert not served"
    );
    assert!(
        !works(&client_for("ca.pem", srv.addr), srv.addr).await,
        "old cert still served"
    );

    // A broken pair: the key of the first with the certificate of the second.
    std::fs::copy(fixture("key.pem"), &key).unwrap();
    assert!(certs.reload().is_err(), "a mismatched key was accepted");
    std::fs::write(&cert, b"not a certificate").unwrap();
    assert!(certs.reload().is_err(), "garbage was accepted");
    assert!(
        works(&client_for("second/ca.pem", srv.addr), srv.addr).await,
        "old pair not kept"
    );
}

#[tokio::test]
async fn changed_files_are_picked_up_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    install(dir.path(), "");
    let certs = CertStore::load(&dir.path().join("cert.pem"), &dir.path().join("key.pem")).unwrap();
    let _watch = certs.spawn_watch(Duration::from_millis(50));
    let opts = ServerOptions {
        tls: Some(certs.server_config().unwrap()),
        ..Default::default()
    };
    let srv = server(opts, |_| {}).await;
    srv.put_file("x.txt", b"tls");
    assert!(works(&client_for("ca.pem", srv.addr), srv.addr).await);
    // Some filesystems keep whole-second mtimes: make sure the new files' differ.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    install(dir.path(), "second/");
    let switched = ferry_tests::poll(|| async {
        works(&client_for("second/ca.pem", srv.addr), srv.addr)
            .await
            .then_some(())
    })
    .await;
    assert!(
        switched.is_some(),
        "the watcher did not pick up the new files"
    );
}
