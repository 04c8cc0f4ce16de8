//! The I/O shell: sockets, worker threads, the one timer per worker, and the
//! control API, and the call-control listener. Everything here is thin; decisions
//! live in [`crate::engine`] and [`crate::conf`].

pub mod control;
pub mod demo;
pub mod node;
pub mod participant;
pub mod swarm;
pub mod udp;
pub mod worker;

pub use node::{LegInfo, NodeError, NodeHandle};
pub use worker::{NodeEvent, WorkerStats};
