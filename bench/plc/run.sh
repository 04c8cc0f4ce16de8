#!/bin/sh
# The concealment table: plc-bench over seeds 1-5, PESQ averaged over them.
# Needs Python with `pip install pesq numpy scipy`; PYTHON picks the interpreter.
set -e
out=${1:-target/plc}
cargo build --release --bin plc-bench
bin=${CARGO_TARGET_DIR:-target}/release/plc-bench
dirs=""
for seed in 1 2 3 4 5; do
    "$bin" "$out/seed$seed" "$seed" > /dev/null
    dirs="$dirs $out/seed$seed"
done
"${PYTHON:-python3}" "$(dirname "$0")/pesq_table.py" $dirs
