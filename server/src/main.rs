//! `ferryd`: parse flags, set up logging, bind, print the bound URL, serve until SIGINT/SIGTERM.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use ferryd::access_log::AccessLogHandle;
use ferryd::app::{App, Config, StoreConfig};
use ferryd::index::IndexOptions;
use ferryd::server::{self, ServerOptions};
use ferryd::store::fs::FsOptions;
use ferryd::tus::{Tus, TusConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Serve a directory over HTTP/1.1 and HTTP/2 with complete byte-range support.
#[derive(Debug, Parser)]
#[command(name = "ferryd", version)]
struct Args {
    /// Directory to serve (default: `.`); same as `--store PATH`.
    #[arg(env = "FERRY_ROOT")]
    root: Option<PathBuf>,
    /// What to serve: a directory (a path or `file:///path`) or an S3-compatible bucket
    /// (`s3://bucket/prefix`; credentials from the `AWS_*` environment variables).
    #[arg(long, env = "FERRY_STORE", conflicts_with = "root")]
    store: Option<ferryd::store::url::StoreUrl>,
    /// S3 endpoint URL, for MinIO, Garage, R2, Ceph (`http://` allowed); default: AWS, or
    /// `AWS_ENDPOINT_URL`.
    #[arg(long, env = "FERRY_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// S3 region (default: `AWS_REGION`, else `us-east-1`).
    #[arg(long, env = "FERRY_S3_REGION")]
    s3_region: Option<String>,
    /// Virtual-hosted-style S3 requests (`bucket.host/key`) instead of path-style
    /// (`host/bucket/key`, what MinIO and Garage expect).
    #[arg(long, env = "FERRY_S3_VIRTUAL_HOSTED")]
    s3_virtual_hosted: bool,
    /// Only this ferryd writes under the S3 prefix: lock tus uploads in this process. Without
    /// it, uploads into S3 are locked by a lease in each upload's record, so several
    /// instances can share the prefix; that needs a server that honours conditional writes
    /// (probed at start; uploads are refused where it does not, e.g. Garage).
    #[arg(long, env = "FERRY_SINGLE_INSTANCE")]
    single_instance: bool,
    /// Address to listen on; port 0 picks a free port (the bound URL is printed).
    #[arg(long, env = "FERRY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// PEM certificate chain; enables TLS (HTTP/2 by ALPN).
    #[arg(long, env = "FERRY_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "FERRY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[arg(long, env = "FERRY_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `ferryd=debug`.
    #[arg(long, env = "FERRY_LOG", default_value = "info")]
    log_level: String,
    /// Serve and list files whose names start with a dot.
    #[arg(long, env = "FERRY_ALLOW_HIDDEN")]
    allow_hidden: bool,
    /// Follow symlinks that point outside ROOT.
    #[arg(long, env = "FERRY_ALLOW_SYMLINKS_OUTSIDE")]
    allow_symlinks_outside: bool,
    /// Directory for upload staging, records and the content index: outside ROOT, on its
    /// file system (default: `.NAME.ferry` beside ROOT).
    #[arg(long, env = "FERRY_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Maximum simultaneous connections; further clients wait in the listen queue.
    #[arg(long, env = "FERRY_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a client has to send a request head (checked every quarter of the shorter
    /// timeout: a late head is cut off within 1.25 times this).
    #[arg(long, env = "FERRY_HEADER_TIMEOUT", default_value_t = 30)]
    header_timeout: u64,
    /// Seconds without any byte moving before a connection is closed (within 1.25 times this).
    #[arg(long, env = "FERRY_IDLE_TIMEOUT", default_value_t = 60)]
    idle_timeout: u64,
    /// Largest request head in bytes.
    #[arg(long, env = "FERRY_MAX_HEADER_SIZE", default_value_t = 32 * 1024)]
    max_header_size: usize,
    /// Seconds in-flight responses get to finish on shutdown.
    #[arg(long, env = "FERRY_GRACE_PERIOD", default_value_t = 10)]
    grace_period: u64,
    /// URL path of the tus upload endpoint.
    #[arg(long, env = "FERRY_TUS_BASE", default_value = "/files/")]
    tus_base: String,
    /// Bearer token for creating, patching and terminating uploads; one is generated and
    /// printed when none is given (unless --public-uploads).
    #[arg(long, env = "FERRY_UPLOAD_TOKEN", hide_env_values = true)]
    upload_token: Option<String>,
    /// Accept uploads from anyone (no token).
    #[arg(long, env = "FERRY_PUBLIC_UPLOADS", conflicts_with = "upload_token")]
    public_uploads: bool,
    /// Bearer token required for every read (files and uploads); reads are public without it.
    #[arg(long, env = "FERRY_READ_TOKEN", hide_env_values = true)]
    read_token: Option<String>,
    /// Largest upload accepted, in bytes (Tus-Max-Size).
    #[arg(long, env = "FERRY_MAX_UPLOAD_SIZE")]
    max_upload_size: Option<u64>,
    /// Most unfinished tus uploads at once; a creation past it is 503 with Retry-After.
    #[arg(long, env = "FERRY_MAX_OPEN_UPLOADS", default_value_t = 10_000)]
    max_open_uploads: u64,
    /// Most declared bytes of unfinished tus uploads at once (e.g. 50G); unlimited if unset.
    #[arg(long, env = "FERRY_MAX_STAGED_BYTES", value_parser = ferryd::ratelimit::parse_size)]
    max_staged_bytes: Option<u64>,
    /// Time after its last write an unfinished upload is removed (e.g. 24h, 30m, 90s).
    #[arg(long, env = "FERRY_UPLOAD_EXPIRY", default_value = "24h", value_parser = ferryd::tus::expiration::parse_duration)]
    upload_expiry: Duration,
    /// How long a request waits for an upload another request holds (it is asked to let go
    /// first) before answering 503 with Retry-After (e.g. 20s).
    #[arg(long, env = "FERRY_UPLOAD_LOCK_TIMEOUT", default_value = "20s", value_parser = ferryd::tus::expiration::parse_duration)]
    upload_lock_timeout: Duration,
    /// Origin allowed to upload from a browser (repeatable; `*` for any).
    #[arg(long = "cors-origin", env = "FERRY_CORS_ORIGIN", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// Do not index the served tree: no Repr-Digest, no instant upload (on S3: published
    /// uploads are not read back and hashed).
    #[arg(long, env = "FERRY_NO_INDEX")]
    no_index: bool,
    /// Most bytes per second the indexer hashes (e.g. 50M; K/M/G are binary); no limit by
    /// default (it runs at nice 19 in the idle I/O class).
    #[arg(long, env = "FERRY_INDEX_RATE", value_parser = parse_rate)]
    index_rate: Option<u64>,
    /// Time between full rescans of the tree, the backstop for missed notifications.
    #[arg(long, env = "FERRY_INDEX_RESCAN", default_value = "10m", value_parser = ferryd::tus::expiration::parse_duration)]
    index_rescan: Duration,
    /// URL under which clients reach ROOT, e.g. `https://files.example/ferry`; every URL ferryd
    /// hands out (tus `Location`, `Ferry-Published`) starts with it. Default: the request's
    /// scheme and Host.
    #[arg(long, env = "FERRY_PUBLIC_URL")]
    public_url: Option<ferryd::forwarded::PublicUrl>,
    /// Trust `Forwarded` and `X-Forwarded-Proto/Host/For` from the client (set this only when
    /// every request comes through a reverse proxy that sets or strips them).
    #[arg(long, env = "FERRY_BEHIND_PROXY")]
    behind_proxy: bool,
    /// Worker threads, each running its own event loop on the shared listener (default: one
    /// per CPU).
    #[arg(long, env = "FERRY_WORKERS")]
    workers: Option<usize>,
    /// Access log: a file path (appended; reopened on SIGHUP/SIGUSR1) or `-` for stdout.
    #[arg(long, env = "FERRY_ACCESS_LOG")]
    access_log: Option<String>,
    /// Access log line format.
    #[arg(
        long,
        env = "FERRY_ACCESS_LOG_FORMAT",
        value_enum,
        default_value = "combined"
    )]
    access_log_format: AccessLogFormat,
    /// Serve Prometheus metrics on this address (keep it off the public network).
    #[arg(long, env = "FERRY_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Largest rate of each response body, in bytes per second (`512k`, `10m`), like nginx's
    /// limit_rate.
    #[arg(long, env = "FERRY_LIMIT_RATE", value_parser = ferryd::ratelimit::parse_size)]
    limit_rate: Option<u64>,
    /// Bytes of each response sent at full speed before --limit-rate applies.
    #[arg(long, env = "FERRY_LIMIT_RATE_AFTER", value_parser = ferryd::ratelimit::parse_size, default_value = "0")]
    limit_rate_after: u64,
    /// Connections one client address may hold open; beyond it requests get 429.
    #[arg(long, env = "FERRY_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<u32>,
    /// URL that receives a JSON POST per upload event (tusd-style hooks).
    #[arg(long, env = "FERRY_HOOK_URL", requires = "hooks")]
    hook_url: Option<String>,
    /// Events sent to --hook-url: pre-create, post-create, post-finish, post-terminate,
    /// post-expire.
    #[arg(long, env = "FERRY_HOOKS", value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(ferryd::hooks::EVENT_NAMES))]
    hooks: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AccessLogFormat {
    Combined,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(&args);
    big_allocations_from_the_os();
    // This runtime handles signals and background work (the tus reaper); connections are
    // served by the workers of `server::run_workers`. A bounded blocking pool keeps thread
    // stacks and allocator arenas (and so RSS) small.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .max_blocking_threads(16)
        .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferryd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferryd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Buffers of 4 MiB and more (an S3 upload's parts, 8 MiB) get pages of their own from the
/// kernel and give them back when freed. Left to itself glibc raises its mmap threshold past
/// 8 MiB at the first such free and serves the next ones from its heaps, where freed parts
/// stay resident, scattered over the worker threads' arenas: the peak RSS of
/// `bench/s3/run.sh` rss (16 uploads at once, goal 128 MiB) was 120-189 MiB in eight runs
/// once `ferry put` paced its PATCHes up to 64 MiB (each PATCH's parts then follow each
/// other while its body arrives), and 97-112 MiB with the threshold fixed.
fn big_allocations_from_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of the allocator; no other thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(start_tls(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let opts = ServerOptions {
        header_read_timeout: Duration::from_secs(args.header_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        max_connections: args.max_connections,
        max_header_size: args.max_header_size,
        grace_period: Duration::from_secs(args.grace_period),
        tls,
    };
    let shutdown = shutdown_signal().context("cannot install signal handlers")?;
    let access_log = start_access_log(&args)?;
    let mut app = App::build(config(&args, access_log.as_ref())?).await?;
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    if app.refused_uploads.is_some() {
        tracing::warn!("{}", ferryd::app::UPLOADS_REFUSED);
    }
    if let Some(tus) = &app.tus {
        start_hooks(&args, tus, app.state_dir.as_deref())?;
    }
    if let Some(t) = app
        .tus
        .as_ref()
        .and_then(|t| t.config().upload_token.as_deref())
    {
        if args.upload_token.is_none() {
            announce(&format!("ferryd upload token: {t}"));
        }
    }
    announce_browser_link(&app, scheme, addr);
    app.observe.metrics = start_metrics(&args, &app)?;
    // Last, once everything is ready: scripts wait for this line and take the URL from it.
    announce(&format!(
        "ferryd listening on {scheme}://{addr}/ serving {}",
        app.serving
    ));
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    server::run_workers(listener, Arc::new(app), opts, workers, shutdown).await?;
    if let Some(h) = access_log {
        h.close();
    }
    Ok(())
}

/// The flags as a [`Config`] for [`App::build`].
fn config(args: &Args, access_log: Option<&Arc<AccessLogHandle>>) -> anyhow::Result<Config> {
    let store = store_config(args)?;
    let upload_token = match (&args.upload_token, args.public_uploads) {
        (_, true) => None,
        (Some(t), false) => Some(t.clone()),
        (None, false) => {
            Some(ferryd::auth::generate_token().context("cannot generate an upload token")?)
        }
    };
    let tus = TusConfig {
        base: args.tus_base.clone(),
        upload_token,
        read_token: args.read_token.clone(),
        max_size: args.max_upload_size,
        expiry: args.upload_expiry,
        cors_origins: args.cors_origins.clone(),
        max_open_uploads: args.max_open_uploads,
        max_staged_bytes: args.max_staged_bytes,
        lock_timeout: args.upload_lock_timeout,
    };
    let observe = ferryd::observe::Observe {
        access_log: access_log.map(|h| h.log()),
        metrics: None, // started once the tus endpoint exists, to count its events
        limit_rate: args
            .limit_rate
            .filter(|&r| r > 0)
            .map(|rate| ferryd::ratelimit::RateLimit {
                rate,
                after: args.limit_rate_after,
            }),
        per_ip: args
            .max_connections_per_ip
            .map(ferryd::ratelimit::PerIp::new),
    };
    Ok(Config {
        store,
        tus: Some(tus),
        read_token: args.read_token.clone(),
        frontend: ferryd::forwarded::Frontend {
            public_url: args.public_url.clone(),
            behind_proxy: args.behind_proxy,
        },
        observe,
    })
}

/// `ROOT` or `--store` as the store to build.
fn store_config(args: &Args) -> anyhow::Result<StoreConfig> {
    use ferryd::store::url::StoreUrl;
    let url = match (&args.store, &args.root) {
        (Some(url), _) => url.clone(),
        (None, Some(root)) => StoreUrl::Dir(root.clone()),
        (None, None) => StoreUrl::Dir(PathBuf::from(".")),
    };
    match url {
        StoreUrl::Dir(root) => Ok(StoreConfig::Fs {
            root,
            opts: FsOptions {
                allow_hidden: args.allow_hidden,
                allow_symlinks_outside: args.allow_symlinks_outside,
                state_dir: args.state_dir.clone(),
                index: (!args.no_index).then_some(IndexOptions {
                    rate: args.index_rate,
                    rescan: args.index_rescan,
                }),
                ..FsOptions::default()
            },
        }),
        #[cfg(feature = "s3")]
        StoreUrl::S3 { bucket, prefix } => Ok(StoreConfig::S3(ferryd::store::s3::S3Options {
            bucket,
            prefix,
            endpoint: args.s3_endpoint.clone(),
            region: args.s3_region.clone(),
            virtual_hosted: args.s3_virtual_hosted,
            allow_hidden: args.allow_hidden,
            credentials: None,
            single_instance: args.single_instance,
            max_upload_size: args.max_upload_size,
            list_page: None,
            no_index: args.no_index,
        })),
        #[cfg(not(feature = "s3"))]
        StoreUrl::S3 { .. } => {
            anyhow::bail!(
                "this ferryd was built without the s3 feature; rebuild with --features s3"
            )
        }
    }
}

/// Tokens travel in the fragment, which browsers never send: the page takes them from there
/// and removes them from the address bar.
fn announce_browser_link(app: &App, scheme: &str, addr: SocketAddr) {
    let upload = app
        .tus
        .as_ref()
        .and_then(|t| t.config().upload_token.as_deref());
    let fragment: Vec<String> = [("token", upload), ("read-token", app.read_token.as_deref())]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect();
    if !fragment.is_empty() {
        announce(&format!(
            "ferryd browser link: {scheme}://{addr}/#{}",
            fragment.join("&")
        ));
    }
}

/// A byte rate: a number with an optional binary K, M or G suffix (`50M` = 50 MiB/s).
fn parse_rate(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("expected a positive byte rate such as 50M, got {s:?}"))
}

/// Writes one start-up line to stdout. Best effort: a script that read the line it needed
/// and closed the pipe must not take the server down (`println!` panics on a closed stdout).
fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Installs the SIGINT/SIGTERM handlers now and returns the future that resolves on either.
/// Installing them before the `listening` line matters: a script that reads the line and
/// sends SIGTERM at once must get a graceful shutdown, not the default action.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Binds the metrics address and serves Prometheus text there; upload events and the content
/// indexer's progress are counted.
fn start_metrics(args: &Args, app: &App) -> anyhow::Result<Option<Arc<ferryd::metrics::Metrics>>> {
    let Some(addr) = args.metrics_listen else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} for metrics"))?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let metrics = Arc::new(ferryd::metrics::Metrics::new());
    if let Some(tus) = &app.tus {
        tus.events.subscribe(metrics.clone());
    }
    metrics.watch_index(app.store.clone());
    announce(&format!(
        "ferryd metrics on http://{}/metrics",
        listener.local_addr()?
    ));
    tokio::spawn(ferryd::metrics::serve(listener, metrics.clone()));
    Ok(Some(metrics))
}

/// Sends upload events to --hook-url; post-events are queued durably in the state directory.
fn start_hooks(args: &Args, tus: &Tus, state: Option<&std::path::Path>) -> anyhow::Result<()> {
    let Some(url) = &args.hook_url else {
        return Ok(());
    };
    let dir = state
        .context("--hook-url needs a local state directory for its queue (--state-dir)")?
        .join("hooks");
    let cfg = ferryd::hooks::HookConfig {
        url: url.clone(),
        events: args.hooks.iter().cloned().collect(),
    };
    let hooks = ferryd::hooks::Hooks::new(cfg, &dir).context("cannot open the hook queue")?;
    tokio::spawn(hooks.queue().clone().run());
    tus.events.subscribe(hooks.clone());
    let _ = tus.hooks.set(hooks);
    Ok(())
}

/// Loads the certificate and reloads it on SIGHUP and when the files change (checked every
/// 5 s): new connections get the new one, a broken one is logged and the old one kept.
fn start_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use tokio::signal::unix::{signal, SignalKind};
    let certs = ferryd::tls_reload::CertStore::load(cert, key)?;
    certs.spawn_watch(Duration::from_secs(5));
    let mut hup = signal(SignalKind::hangup()).context("cannot install signal handlers")?;
    let weak = Arc::downgrade(&certs);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match weak.upgrade() {
                Some(c) => {
                    let _ = c.reload();
                }
                None => break,
            }
        }
    });
    certs.server_config()
}

/// Opens the access log and reopens it on SIGHUP and SIGUSR1 (logrotate's `postrotate`).
fn start_access_log(args: &Args) -> anyhow::Result<Option<Arc<AccessLogHandle>>> {
    use ferryd::access_log::{self, Format, Target};
    use tokio::signal::unix::{signal, SignalKind};
    let Some(target) = &args.access_log else {
        return Ok(None);
    };
    let format = match args.access_log_format {
        AccessLogFormat::Combined => Format::Combined,
        AccessLogFormat::Json => Format::Json,
    };
    let h = Arc::new(
        access_log::start(Target::parse(target), format)
            .with_context(|| format!("cannot open access log {target}"))?,
    );
    for kind in [SignalKind::hangup(), SignalKind::user_defined1()] {
        let mut sig = signal(kind).context("cannot install signal handlers")?;
        let h = Arc::downgrade(&h);
        tokio::spawn(async move {
            while sig.recv().await.is_some() {
                match h.upgrade() {
                    Some(h) => h.reopen(),
                    None => break,
                }
            }
        });
    }
    Ok(Some(h))
}

fn init_tracing(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
