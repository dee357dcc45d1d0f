//! The accept loop: HTTP/1.1 and HTTP/2 (h2c with prior knowledge, ALPN over TLS) on one
//! listener, with the limits that keep a public server alive (slowloris, header size,
//! connection count) and a graceful shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::forwarded::ConnInfo;
use crate::router::{self, App};

/// Connection-level limits and timeouts.
#[derive(Clone)]
pub struct ServerOptions {
    /// Time a client has to send a complete request head (and the TLS handshake). Enforced
    /// by a watchdog that looks a few times per period: it fires within 1.25 times this.
    pub header_read_timeout: Duration,
    /// A connection with no bytes read or written for this long is closed (within 1.25 times
    /// this, as the head timeout).
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Largest request head accepted (HTTP/1.1 read buffer, HTTP/2 header list); larger gets 431.
    pub max_header_size: usize,
    /// How long in-flight responses may take to finish after shutdown is requested.
    pub grace_period: Duration,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_header_size: 32 * 1024,
            grace_period: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// Serves `app` on an already-bound `listener` until `shutdown` completes, then stops
/// accepting and waits up to the grace period for in-flight connections.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve(listener, app, opts, None, shutdown).await
}

/// [`run`], as worker `turn.1` of the workers sharing `turn.0`, if any.
async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    opts: ServerOptions,
    turn: Option<(Arc<Balance>, usize)>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let limit = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    // Each connection holds a receiver until it ends: `closed()` says when all have.
    let (open_tx, _) = tokio::sync::watch::channel(());
    let stop = Arc::new(Stop::default());
    let opts = Arc::new(opts);
    let app = Arc::new(WorkerApp(app));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = limit.clone().acquire_owned() => p.map_err(io::Error::other)?,
        };
        if let Some((balance, me)) = &turn {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = balance.my_turn(*me) => {}
            }
        }
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let limits = (opts.header_read_timeout, opts.idle_timeout);
        let (app, opts, open) = (app.clone(), opts.clone(), open_tx.subscribe());
        let held = turn.as_ref().map(|(b, me)| b.opened(*me));
        let watch = Arc::new(Watch::default());
        let dog = watch.clone();
        let task = tokio::spawn(async move {
            let _held = held;
            let _dog = DogLeash(watch.clone());
            let conn = ConnInfo {
                peer,
                local: tcp.local_addr().ok(),
                tls: opts.tls.is_some(),
                refused: None,
            };
            let (conn, _open) = app.observe.accept(conn);
            if let Err(e) = serve_connection(tcp, conn, app, &opts, watch).await {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
            drop(permit);
            drop(open);
        });
        let handle = tokio::spawn(watchdog(
            dog.clone(),
            task.abort_handle(),
            limits,
            stop.clone(),
        ));
        let _ = dog.dog.set(handle.abort_handle());
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    let grace = opts.grace_period;
    stop.set();
    if tokio::time::timeout(grace, open_tx.closed()).await.is_err() {
        tracing::warn!(?grace, "grace period over: closing remaining connections");
    }
    Ok(())
}

/// Serves `app` the way nginx runs worker processes: `workers` threads, each with its own
/// single-threaded runtime accepting from the same listening socket, so a request is parsed,
/// served and written on one thread with no cross-thread wake-ups. Measured on 2 cores this
/// answers small ranged GETs faster than one work-stealing runtime (README, benchmarks).
/// New connections go to the worker holding the fewest (see [`Balance`]). `max_connections`
/// is shared out evenly between the workers. Returns once `shutdown` completed and every
/// worker finished its graceful shutdown.
pub async fn run_workers(
    listener: std::net::TcpListener,
    app: Arc<App>,
    opts: ServerOptions,
    workers: usize,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let workers = workers.max(1);
    listener.set_nonblocking(true)?;
    let per_worker = ServerOptions {
        max_connections: opts.max_connections.div_ceil(workers),
        ..opts
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let balance = Arc::new(Balance::new(workers, DEFER));
    let mut threads = Vec::with_capacity(workers);
    for i in 0..workers {
        let (listener, app, opts) = (listener.try_clone()?, app.clone(), per_worker.clone());
        let turn = (workers > 1).then(|| (balance.clone(), i));
        let mut stop = stop_rx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ferryd-worker-{i}"))
            .spawn(move || -> io::Result<()> {
                crate::worker::enter(i);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .max_blocking_threads((64 / workers).max(4))
                    .build()?;
                rt.block_on(async move {
                    let listener = TcpListener::from_std(listener)?;
                    let stopped = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    serve(listener, app, opts, turn, stopped).await
                })
            })?;
        threads.push(thread);
    }
    drop(listener);
    shutdown.await;
    let _ = stop_tx.send(true);
    tokio::task::spawn_blocking(move || {
        let mut result = Ok(());
        for t in threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(io::Error::other("a worker thread panicked")),
            }
        }
        result
    })
    .await
    .map_err(io::Error::other)?
}

/// Which worker accepts the next connection: one holding no more connections than any other.
///
/// Workers share one listening socket, and every one of them is woken when a connection
/// arrives; left to that race, whichever thread the scheduler runs first takes a burst of new
/// connections (wrk's 64 went 50/14 and worse), and one core then serves most of the clients
/// while the other idles. nginx has the same race (`accept_mutex` off, its default);
/// `reuseport` would spread connections by a hash of their addresses, evenly only on average.
/// Here a worker with more connections than another waits, and the others accept, so the
/// counts never differ by more than one or two. Should the least busy worker not get to its
/// accept for [`DEFER`], a waiting worker accepts after all: a worker stuck on a slow open
/// delays new clients by at most that much.
struct Balance {
    open: Vec<std::sync::atomic::AtomicUsize>,
    changed: tokio::sync::Notify,
    defer: Duration,
}

/// How long a worker with more connections than another leaves a new one to the others.
const DEFER: Duration = Duration::from_millis(10);

impl Balance {
    fn new(workers: usize, defer: Duration) -> Self {
        Self {
            open: (0..workers).map(|_| Default::default()).collect(),
            changed: tokio::sync::Notify::new(),
            defer,
        }
    }

    fn count(&self, worker: usize) -> usize {
        self.open
            .get(worker)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Whether `me` holds no more connections than any other worker.
    fn fewest(&self, me: usize) -> bool {
        let mine = self.count(me);
        self.open.iter().all(|c| c.load(Ordering::Relaxed) >= mine)
    }

    /// Completes once `me` should accept: it holds the fewest connections, or it waited
    /// [`DEFER`] for the count to change.
    async fn my_turn(&self, me: usize) {
        let deadline = tokio::time::Instant::now() + self.defer;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.fewest(me) {
                return;
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    /// Counts a connection of `me` until the returned guard is dropped.
    fn opened(self: &Arc<Self>, me: usize) -> Held {
        if let Some(c) = self.open.get(me) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.changed.notify_waiters();
        Held {
            balance: self.clone(),
            me,
        }
    }
}

/// A connection counted by [`Balance`].
struct Held {
    balance: Arc<Balance>,
    me: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(c) = self.balance.open.get(self.me) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
        self.balance.changed.notify_waiters();
    }
}

/// The app as one worker holds it. Every request clones it (a request's future owns what it
/// uses): the count this writes lives in the worker's own allocation, where cloning the one
/// `Arc<App>` of all workers moved its cache line between cores twice per request (#13).
struct WorkerApp(Arc<App>);

impl std::ops::Deref for WorkerApp {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

async fn serve_connection(
    tcp: TcpStream,
    conn: ConnInfo,
    app: Arc<WorkerApp>,
    opts: &ServerOptions,
    watch: Arc<Watch>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(HeadTimer::new(watch.clone()))
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_header_size.max(8192))
        // No read while a request is answered: hyper otherwise tries one after every request
        // head, to notice a client leaving mid-response, and reserving read-buffer room for it
        // while the head's bytes are still in use allocates a fresh 8 KiB buffer per request
        // (#13). A client that leaves is noticed by the next write instead, as nginx does;
        // so a request that waits before its first byte (for an upload's lock, for S3's HEAD)
        // runs to its end although its client has gone, and its answer is then dropped.
        .half_close(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(opts.max_header_size as u32)
        .max_concurrent_streams(256);
    let seen = watch.clone();
    let service = service_fn(move |req| {
        seen.started.store(true, Ordering::Relaxed);
        router::handle(app.clone(), conn, req)
    });
    match &opts.tls {
        Some(cfg) => {
            // The handshake is part of the first request head's time (the watchdog).
            let tls = TlsAcceptor::from(cfg.clone()).accept(tcp).await?;
            let io = TokioIo::new(Tracked::new(tls, watch.clone()));
            let conn = builder.serve_connection(io, service).into_owned();
            tokio::pin!(conn);
            Ok(std::future::poll_fn(|cx| stoppable(conn.as_mut(), &watch, cx)).await?)
        }
        None => {
            let io = TokioIo::new(Tracked::new(tcp, watch.clone()));
            let conn = builder.serve_connection(io, service).into_owned();
            tokio::pin!(conn);
            Ok(std::future::poll_fn(|cx| stoppable(conn.as_mut(), &watch, cx)).await?)
        }
    }
}

/// Polls a connection, first asking it to finish gracefully (answer what is in flight, then
/// close) once its watchdog passed on a shutdown. hyper-util's graceful watcher polled a
/// `watch` channel's `changed()` on every wake-up of every connection (about 240 instructions
/// per small request, #13); here it is one load and a waker registration.
fn stoppable<C>(mut conn: Pin<&mut C>, watch: &Watch, cx: &mut Context<'_>) -> Poll<C::Output>
where
    C: Future + GracefulStop,
{
    if watch.stop.load(Ordering::Relaxed) && !watch.stopping.swap(true, Ordering::Relaxed) {
        conn.as_mut().graceful_stop();
    }
    watch.conn.register(cx.waker());
    conn.poll(cx)
}

/// The graceful shutdown of hyper-util's auto connection.
trait GracefulStop {
    fn graceful_stop(self: Pin<&mut Self>);
}

impl<I, S, E, B> GracefulStop for auto::Connection<'_, I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: auto::HttpServerConnExec<S::Future, B>,
{
    fn graceful_stop(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// A server's shutdown, as its connections' watchdogs see it.
#[derive(Default)]
struct Stop {
    set: AtomicBool,
    changed: tokio::sync::Notify,
}

impl Stop {
    fn set(&self) {
        self.set.store(true, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    async fn wait(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.set.load(Ordering::Relaxed) {
                return;
            }
            changed.await;
        }
    }
}

/// What a connection's [`watchdog`] looks at: written by the connection (its I/O, its service,
/// hyper's request-head timer), read by the watchdog, which runs as a task of its own.
///
/// The limits used to be futures raced against the connection (`select!`), and hyper's head
/// timer a tokio timer armed and cancelled for every request: all of them were polled, and the
/// timer inserted into and removed from the timer wheel, on every wake-up of every connection,
/// about 1,000 instructions per small request (#13). Now a request costs a counter bump per
/// read and write and two stores for the head timer, and the limits are checked a few times
/// per timeout period.
#[derive(Default)]
struct Watch {
    /// Bumped by every read or write that moved bytes.
    io: AtomicU64,
    /// A request head arrived (HTTP/1.1 or HTTP/2).
    started: AtomicBool,
    /// The id of hyper's armed request-head timer (0: none armed).
    head: AtomicU64,
    /// The last id handed out.
    ids: AtomicU64,
    /// The id of the head timer the watchdog found expired.
    expired: AtomicU64,
    waker: futures_util::task::AtomicWaker,
    /// The watchdog task, stopped when the connection ends.
    dog: std::sync::OnceLock<tokio::task::AbortHandle>,
    /// The server is shutting down (set by the watchdog) ...
    stop: AtomicBool,
    /// ... and the connection was asked to finish.
    stopping: AtomicBool,
    /// The connection's task, woken to see `stop`.
    conn: futures_util::task::AtomicWaker,
}

/// Stops the connection's watchdog when the connection task ends (or is aborted).
struct DogLeash(Arc<Watch>);

impl Drop for DogLeash {
    fn drop(&mut self) {
        if let Some(dog) = self.0.dog.get() {
            dog.abort();
        }
    }
}

/// Ends a connection (aborts its task) that broke a limit:
/// - no first request head (any protocol, the TLS handshake included) within
///   `header_read_timeout` of accept;
/// - hyper's HTTP/1.1 head timer ([`HeadTimer`]) armed for as long: it is told to fire, and
///   hyper ends the connection as it always did;
/// - no byte read or written for `idle_timeout`.
///
/// It looks every quarter of the shorter limit, and a limit counts as broken only once it was
/// seen unbroken a whole quarter earlier than the limit; so each fires between its limit and
/// 1.25 times it. A look that finds the connection gone ends the watchdog.
async fn watchdog(
    watch: Arc<Watch>,
    conn: tokio::task::AbortHandle,
    (header, idle): (Duration, Duration),
    stop: Arc<Stop>,
) {
    let tick = (header.min(idle) / 4).max(Duration::from_millis(1));
    let ticks = |limit: Duration| (limit.as_nanos() / tick.as_nanos()).saturating_add(1);
    let (head_ticks, idle_ticks) = (ticks(header), ticks(idle));
    let (mut since_accept, mut quiet, mut armed) = (0u128, 0u128, 0u128);
    let (mut last_io, mut last_head) = (0, 0);
    let mut stopped = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.wait(), if !stopped => {
                stopped = true;
                watch.stop.store(true, Ordering::Relaxed);
                watch.conn.wake();
                continue;
            }
        }
        if conn.is_finished() {
            return;
        }
        since_accept += 1;
        let io = watch.io.load(Ordering::Relaxed);
        quiet = if io == last_io { quiet + 1 } else { 0 };
        last_io = io;
        let head = watch.head.load(Ordering::Relaxed);
        armed = match head {
            0 => 0,
            h if h == last_head => armed + 1,
            _ => 1,
        };
        last_head = head;
        let first_late = !watch.started.load(Ordering::Relaxed) && since_accept >= head_ticks;
        if first_late || quiet >= idle_ticks {
            conn.abort();
            return;
        }
        if armed >= head_ticks {
            watch.expired.store(head, Ordering::Relaxed);
            watch.waker.wake();
        }
    }
}

/// hyper's HTTP/1.1 request-head timer, kept by the connection's [`watchdog`] instead of the
/// timer wheel: arming it is two stores, and it fires when the watchdog says so. hyper arms it
/// when it starts waiting for a request head and drops it when the head is complete.
#[derive(Clone)]
struct HeadTimer {
    watch: Arc<Watch>,
    /// What [`hyper::rt::Timer::now`] answers: hyper only adds the timeout to it to make the
    /// deadline it hands back to [`hyper::rt::Timer::sleep_until`], which is not used here
    /// (the watchdog times the head), so no clock is read per request.
    epoch: Instant,
}

impl HeadTimer {
    fn new(watch: Arc<Watch>) -> Self {
        Self {
            watch,
            epoch: Instant::now(),
        }
    }

    fn arm(&self) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let id = self.watch.ids.load(Ordering::Relaxed) + 1;
        self.watch.ids.store(id, Ordering::Relaxed);
        self.watch.head.store(id, Ordering::Relaxed);
        Box::pin(HeadSleep {
            watch: self.watch.clone(),
            id,
        })
    }
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, _: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.arm()
    }

    fn sleep_until(&self, _: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.arm()
    }

    fn now(&self) -> Instant {
        self.epoch
    }
}

/// One arming of [`HeadTimer`]; disarmed when dropped.
struct HeadSleep {
    watch: Arc<Watch>,
    id: u64,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let expired = || self.watch.expired.load(Ordering::Relaxed) == self.id;
        if expired() {
            return Poll::Ready(());
        }
        self.watch.waker.register(cx.waker());
        if expired() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl hyper::rt::Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        let _ = self
            .watch
            .head
            .compare_exchange(self.id, 0, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// An I/O wrapper that counts every successful read or write for the [`watchdog`].
struct Tracked<T> {
    inner: T,
    watch: Arc<Watch>,
}

impl<T> Tracked<T> {
    fn new(inner: T, watch: Arc<Watch>) -> Self {
        Self { inner, watch }
    }

    /// Only the connection's task writes the counter: a load and a store, no atomic
    /// read-modify-write.
    fn touch(&self) {
        let n = self.watch.io.load(Ordering::Relaxed);
        self.watch.io.store(n.wrapping_add(1), Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Loads a PEM certificate chain and private key into a rustls config offering h2 and
/// http/1.1 by ALPN.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use anyhow::Context as _;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificate {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A worker holding more connections than another waits for its turn: until the counts
    // change, or for at most its deferral.
    #[tokio::test]
    async fn the_worker_with_fewest_connections_accepts_next() {
        let b = Arc::new(Balance::new(2, Duration::from_secs(3600)));
        b.my_turn(0).await; // 0 and 0: both may accept
        let held = b.opened(0);
        b.my_turn(1).await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), b.my_turn(0)).await;
        assert!(waiting.is_err(), "worker 0 holds more: it waits");
        let turn = tokio::spawn({
            let b = b.clone();
            async move { b.my_turn(0).await }
        });
        drop(held);
        tokio::time::timeout(Duration::from_secs(10), turn)
            .await
            .expect("a closed connection wakes the waiting worker")
            .unwrap();

        let b = Arc::new(Balance::new(2, Duration::from_millis(20)));
        let _held = b.opened(0);
        let started = Instant::now();
        b.my_turn(0).await;
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
