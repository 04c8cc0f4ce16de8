//! Placeholder library: the system tests are the `mixer-tests` test target (`main.rs`).
