//! Third-party servers with directory listings, as they are: nginx with `autoindex on` and
//! python's `http.server`, each serving a directory on 127.0.0.1 with a port the kernel
//! picked. Dropping one stops it.
//!
//! nginx cannot report a port it picked itself, so the test binds `127.0.0.1:0`, and nginx
//! takes that socket over through its `NGINX` environment variable (the mechanism of its
//! binary upgrade): no port is guessed and none can be taken by someone else in between.
//! python prints the port it bound (`Serving HTTP on 127.0.0.1 port N`).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::tool;

/// A server child process; killed and reaped on drop.
pub struct Served {
    pub addr: SocketAddr,
    child: Child,
    _work: tempfile::TempDir,
}

impl Served {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx serving `root` with `autoindex on` (exact sizes, the default). `None` when nginx
/// is not installed outside CI ([`tool`] fails the test in CI).
pub fn nginx(root: &Path) -> Option<Served> {
    nginx_with(root, |_| String::new())
}

/// [`nginx`] with more directives in its `server` block, made from nginx's work directory
/// (where the test may write files such as an `auth_basic_user_file`).
pub fn nginx_with(root: &Path, extra: impl FnOnce(&Path) -> String) -> Option<Served> {
    let nginx = tool("nginx")?;
    let work = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let extra = extra(work.path());
    let w = work.path().display();
    // `user root` only matters when the test runs as root (workers would otherwise drop to
    // `nobody`, who cannot read a 0700 temp dir); nginx ignores it with a warning otherwise.
    let conf = format!(
        "daemon off;\nuser root;\nworker_processes 1;\npid {w}/nginx.pid;\nerror_log {w}/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {w}; proxy_temp_path {w};\n  \
         fastcgi_temp_path {w}; uwsgi_temp_path {w}; scgi_temp_path {w};\n  \
         server {{ listen {addr}; root {root}; autoindex on; {extra} }}\n}}\n",
        root = root.display()
    );
    std::fs::write(work.path().join("nginx.conf"), conf).expect("write nginx.conf");
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new(nginx);
    cmd.arg("-c")
        .arg(work.path().join("nginx.conf"))
        .arg("-p")
        .arg(work.path())
        .env("NGINX", format!("{fd};"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only fcntl, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("start nginx");
    // The socket is nginx's now; connections wait in its backlog until nginx accepts.
    drop(listener);
    Some(Served {
        addr,
        child,
        _work: work,
    })
}

/// `python3 -m http.server` serving `root` on a port it picked.
pub fn python_http_server(root: &Path) -> Option<Served> {
    let python = tool("python3")?;
    let work = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(python)
        .args([
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start python3 -m http.server");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
    let port: u16 = line
        .split(" port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("expected python's listening line, got {line:?}"));
    Some(Served {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        child,
        _work: work,
    })
}
