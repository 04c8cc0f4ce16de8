#!/bin/sh
# The cluster's benchmarks in one run: call setup through the scaler against straight
# to a node, mouth-to-ear per cascade hop, and the media CPU of a participant on a
# 3-node cluster against one node (see crates/rtpgen/src/bin/cluster-bench/main.rs
# for what each part measures and how). Quote medians and ratios of one run: the
# development machine is small and shared.
#   bench/cluster/run.sh            # full: each part under 60 s
#   bench/cluster/run.sh --quick    # short: each part under 15 s
# Extra arguments go to cluster-bench (--part 1|2|3, --calls N, --base-port P).
set -e
cargo build --release -p rtpgen --bin cluster-bench
exec "${CARGO_TARGET_DIR:-target}/release/cluster-bench" "$@"
