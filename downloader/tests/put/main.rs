//! Integration tests for `ferry put`: real HTTP on 127.0.0.1 against an in-test tus server
//! (concatenation, checksum, instant upload, faults, restart) and against @tus/server under
//! node, plus a SIGKILL loop of the real binary, and `put -r` placing a tree's files.

mod auth;
mod basic;
mod conflict;
mod cutter;
mod flaky;
mod kill;
mod node;
mod proxy;
mod support;
/// `tool` and `TinyProxy`, shared with the e2e suite (`ferry_tests::tools`).
#[path = "../../../tests/src/tools.rs"]
mod tools;
mod tree;
mod tus_server;
