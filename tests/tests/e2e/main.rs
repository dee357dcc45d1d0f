//! End-to-end tests over real HTTP on 127.0.0.1. One test binary, a module per area.

mod browser;
mod files;
mod get;
mod hardening;
mod index;
mod interop;
mod limit_rate;
mod mirror;
mod ops;
mod protocols;
mod put;
mod s3;
mod s3_instances;
mod s3_listing;
mod s3_refused;
mod store;
mod tree;
mod tus;
mod ui;
