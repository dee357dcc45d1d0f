//! Integration tests for `ferry get`: real HTTP on 127.0.0.1 against small in-test servers
//! that misbehave on purpose, plus a SIGKILL loop against the real binary.

mod auth;
mod basic;
mod cli;
mod faults;
mod flaky;
mod kill;
mod mirrors;
mod proxy;
mod ratelimit;
mod rerun;
mod support;
mod tls;
/// `tool` and `TinyProxy`, shared with the e2e suite (`ferry_tests::tools`).
#[path = "../../../tests/src/tools.rs"]
mod tools;
