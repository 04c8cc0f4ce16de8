//! scnf — the conference mixer node: the tokio shell around `scnf-core`.
//!
//! Everything here is thin; decisions live in the sans-IO core
//! ([`scnf_core::session`], [`scnf_core::engine`], [`scnf_core::conf`]).
//! - [`node`]: the media workers and [`NodeHandle`], a stateless router of media
//!   operations to them.
//! - [`worker`]: one media worker: one thread, one engine, its sockets and its one
//!   timer.
//! - [`control`]: the call-control WebSocket listener and the task that drives the
//!   session root.
//! - [`config`]: the node's configuration from defaults, a TOML file, the environment
//!   and flags, validated once and turned into the core's typed configs.
//! - [`scaler_link`]: the node's outbound registration to a scaler, which then
//!   drives part of its media.
//! - [`tls`]: certificate files for wss.
//! - [`demo`]: the embedded default of `scnf demo`.
//! - [`scaler`]: `scnf scaler`, the cluster's call-control point: the same listener
//!   and session driver, with the planner executing media on registered nodes.

pub mod config;
pub mod control;
pub mod demo;
pub mod node;
pub mod scaler;
pub mod scaler_link;
pub mod tls;
pub mod worker;

pub use node::{NodeError, NodeHandle};
pub use scnf_core::engine::WorkerStats;
pub use worker::NodeEvent;
