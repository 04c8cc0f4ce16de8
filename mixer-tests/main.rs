//! Integration and system tests: real UDP on 127.0.0.1 against a running node.
//!
//! Every test starts its own node (own port range), joins synthetic participants
//! (`scnf_testkit::participant::Participant`) and measures what they heard. Runs are a few seconds
//! each and bounded.

mod alloc;
mod client;
mod cluster;
mod cluster_load;
mod control;
mod control_limits;
mod control_robust;
mod fairness;
mod flood;
mod loadgen;
mod resume;
mod support;
mod system;
mod video;
