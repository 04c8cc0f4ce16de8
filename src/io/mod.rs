//! The I/O shell: sockets, the one timer per worker, the control API.

pub mod udp;
