//! SIGKILL loop.
