//! Misbehaving servers.
