//! Folders (issue 9 point 6): `ferry get -r` of trees served by ferryd (JSON listing), nginx
//! `autoindex` and python's `http.server`; `ferry put -r` of a tree into ferryd; a hostile
//! listing that tries to write outside the output directory; failures in the summary and the
//! exit code. `ferry` runs as a process (`ferry_cli`), so its summary line is checked too.

mod get;
mod hostile;
mod put;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferry_tests::{pattern, sha256_file, sha256_hex};

/// A nested tree with names that need encoding (space, `#`, `&`, Chinese), an empty file and
/// a file big enough for several segments.
pub const TREE: &[(&str, usize)] = &[
    ("top.txt", 10),
    ("empty.bin", 0),
    ("报告 #1.pdf", 70_000),
    ("a b/c.bin", 3 * 1024 * 1024 + 17),
    ("a b/deep/d & e.txt", 5),
    ("a b/deep/deeper/f.txt", 1),
];

/// Writes TREE below `root`.
pub fn make_tree(root: &Path) {
    for (i, (rel, len)) in TREE.iter().enumerate() {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, pattern(*len, i as u64)).unwrap();
    }
}

/// Every regular file below `dir`, relative, sorted.
pub fn files_below(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                found.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}

/// `dir` holds exactly TREE, byte-identical, and nothing else (no `.part`, no journal).
pub fn assert_tree(dir: &Path) {
    let mut want: Vec<String> = TREE.iter().map(|(r, _)| r.to_string()).collect();
    want.sort();
    assert_eq!(files_below(dir), want, "in {}", dir.display());
    for (i, (rel, len)) in TREE.iter().enumerate() {
        assert_eq!(
            sha256_file(&dir.join(rel)),
            sha256_hex(&pattern(*len, i as u64)),
            "{rel}"
        );
    }
}

/// Runs the `ferry` command line as a process; `data` is its resume-store directory.
pub async fn ferry(args: &[&str], data: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry_cli"));
    cmd.args(args).env("FERRY_DATA_DIR", data);
    tokio::task::spawn_blocking(move || cmd.output().expect("run ferry"))
        .await
        .unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn path_arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

pub fn out_dir(t: &tempfile::TempDir) -> PathBuf {
    t.path().join("out")
}
