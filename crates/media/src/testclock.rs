//! The time anchor of the tests and benchmarks of scnf-media and scnf-core.
//!
//! Code in these crates never reads the clock: `now` is an argument (their
//! `clippy.toml` forbids `Instant::now`). A test still needs *some* `Instant` to
//! build its virtual timeline on, since std has no constant one; it takes this
//! anchor and adds offsets to it, so only differences ever matter.

use std::sync::OnceLock;
use std::time::Instant;

/// The same `Instant` on every call in a process: the first call reads the clock.
// The one clock reading the tests make, in one place so that the lint bites
// everywhere else.
#[allow(clippy::disallowed_methods)]
pub fn anchor() -> Instant {
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    *ANCHOR.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_anchor_does_not_move() {
        assert_eq!(super::anchor(), super::anchor());
    }
}
