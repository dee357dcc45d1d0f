//! Third-party servers with directory listings, as they are: nginx with `autoindex on` and
//! python's `http.server`, each serving a directory on 127.0.0.1 with a port the kernel
//! picked. Dropping one stops it.
//!
//! nginx cannot report a port it picked itself, so the test binds `127.0.0.1:0`, and nginx
//! takes that socket over through its `NGINX` environment variable (the mechanism of its
//! binary upgrade): no port is guessed and none can be taken by someone else in between.
//! python prints the port it bound (`Serving HTTP on 127.0.0.1 port N`).
//!
//! No process outlives its test. nginx runs as a master with one worker (nginx 1.22 crashes on
//! its first connection when it runs as one process, `master_process off`, on an inherited
//! socket). Killing that master would leave its worker running, orphaned, so a drop, which a
//! panicking test does too, asks the master to stop (SIGTERM: it stops and reaps its worker,
//! then exits) and waits for it; python is one process and is killed. Should the thread that
//! started a server end first (a test binary killed by a timeout), the kernel sends it the
//! same signal (`PR_SET_PDEATHSIG`).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tool;

/// A server child process, stopped and reaped on drop. Start it on the test's own thread: it
/// is stopped when the thread that started it ends (see the module comment).
pub struct Served {
    pub addr: SocketAddr,
    child: Child,
    /// The signal that stops the whole server, children included.
    stop: libc::c_int,
    _work: tempfile::TempDir,
}

impl Served {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: a signal to our own child, not yet reaped (so the pid is still its).
        unsafe { libc::kill(pid, self.stop) };
        // nginx's master takes about a second at most (it kills a worker that has not stopped
        // after one); the bound is for a loaded machine.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Ok(Some(_)) | Err(_) => return,
            }
        }
        // Stuck: kill its process group (its own, see `own_group`), children too.
        // SAFETY: as above; a negative pid names the process group.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
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
    // A master and one worker (see the module comment). `user root` only matters when the
    // test runs as root (the worker would otherwise drop to `nobody`, who cannot read a 0700
    // temp dir); nginx ignores it with a warning otherwise.
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
    let stop = own_group(&mut cmd, libc::SIGTERM);
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
        stop,
        _work: work,
    })
}

/// Starts `cmd` in a process group of its own (so that a stuck server can be killed with its
/// children), and has the kernel send it `signal` when the thread that started it ends.
/// Returns `signal`, which is also what stops it on drop.
fn own_group(cmd: &mut Command, signal: libc::c_int) -> libc::c_int {
    cmd.process_group(0);
    // SAFETY: only prctl, which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    signal
}

/// `python3 -m http.server` serving `root` on a port it picked.
pub fn python_http_server(root: &Path) -> Option<Served> {
    let python = tool("python3")?;
    let work = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(python);
    let stop = own_group(&mut cmd, libc::SIGKILL);
    let mut child = cmd
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
        stop,
        _work: work,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    /// The processes whose parent is `pid`, each with its start time (so a reused pid is not
    /// taken for the same process).
    fn children(pid: u32) -> Vec<(u32, String)> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "PID (COMM) STATE PPID ... STARTTIME ...": fields after the command's ')'.
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let child = head.split_whitespace().next().and_then(|p| p.parse().ok());
            if let (Some(child), Some(ppid), Some(start)) = (child, fields.get(1), fields.get(19)) {
                if ppid.parse() == Ok(pid) {
                    out.push((child, start.to_string()));
                }
            }
        }
        out
    }

    fn alive(child: &(u32, String)) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", child.0)).is_ok_and(|s| {
            s.rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(19).map(|t| t == child.1))
                .unwrap_or(false)
        })
    }

    // Regression: the drop killed nginx's master with SIGKILL and its worker lived on,
    // orphaned (three were left after every CI run).
    #[test]
    fn dropping_nginx_stops_its_worker_too() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("f.txt"), b"hello").unwrap();
        let Some(srv) = nginx(root.path()) else {
            return;
        };
        // A response means the worker runs (it is the one that answers).
        let mut conn = std::net::TcpStream::connect(srv.addr).unwrap();
        conn.write_all(b"GET /f.txt HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        assert!(answer.ends_with("hello"), "{answer}");
        let workers = children(srv.child.id());
        assert_eq!(workers.len(), 1, "one worker: {workers:?}");
        drop(srv);
        assert!(!alive(&workers[0]), "worker {workers:?} outlived the drop");
    }
}
