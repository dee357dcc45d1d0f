//! A TCP forwarder that cuts every connection after it has carried `budget` bytes from the
//! client to the server (issue 15: "a tus server behind a connection that cuts every 1 MiB").
//! Answers from the server pass freely. It records when connections were accepted and cut,
//! so a test can tell how long the client waited before it came back.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

pub struct Cutter {
    pub addr: SocketAddr,
    /// When each connection was accepted.
    pub accepted: Mutex<Vec<Instant>>,
    /// When each cut happened.
    pub cuts: Mutex<Vec<Instant>>,
}

impl Cutter {
    /// Forwards 127.0.0.1:0 to `upstream`, cutting each connection after `budget` bytes
    /// towards the server.
    pub async fn start(upstream: SocketAddr, budget: u64) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cutter = Arc::new(Cutter {
            addr: listener.local_addr().unwrap(),
            accepted: Mutex::new(Vec::new()),
            cuts: Mutex::new(Vec::new()),
        });
        let c = Arc::clone(&cutter);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                c.accepted.lock().unwrap().push(Instant::now());
                let c = Arc::clone(&c);
                tokio::spawn(async move { c.forward(client, upstream, budget).await });
            }
        });
        cutter
    }

    /// The tus endpoint through the cutter, for a server listening on `upstream`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/files/", self.addr)
    }

    pub fn cut_count(&self) -> usize {
        self.cuts.lock().unwrap().len()
    }

    /// The longest time from a cut to the next accepted connection.
    pub fn longest_return(&self) -> Option<std::time::Duration> {
        let accepted = self.accepted.lock().unwrap();
        let cuts = self.cuts.lock().unwrap();
        cuts.iter()
            .filter_map(|cut| accepted.iter().find(|a| *a > cut).map(|a| *a - *cut))
            .max()
    }

    async fn forward(&self, client: TcpStream, upstream: SocketAddr, budget: u64) {
        let Ok(server) = TcpStream::connect(upstream).await else {
            return;
        };
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        let down = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut sr, &mut cw).await;
        });
        let mut left = budget;
        let mut buf = vec![0u8; 64 << 10];
        let cut = loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break false,
                Ok(n) => n,
            };
            let pass = n.min(usize::try_from(left).unwrap_or(usize::MAX));
            if sw.write_all(&buf[..pass]).await.is_err() {
                break false;
            }
            left -= pass as u64;
            if left == 0 {
                break true;
            }
        };
        if cut {
            self.cuts.lock().unwrap().push(Instant::now());
        }
        // Dropping both halves of both sides closes the connections.
        down.abort();
    }
}
