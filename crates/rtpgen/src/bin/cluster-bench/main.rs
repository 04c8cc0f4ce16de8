//! cluster-bench: what the cluster costs against one node, measured in one run on
//! loopback (a scaler and three nodes in this process, `scnf::demo::cluster`):
//!
//! 1. **Call setup** ([`setup`]): N calls placed one after another on one controller
//!    session (Setup, wait for Connect; then all released), and the same N spread
//!    over M concurrent sessions, in rounds; through the scaler and straight to a node. Setups
//!    per second, setup latency p50/p99, and the ratio scaler/node (the issue asks
//!    for at least 50 %).
//! 2. **Mouth-to-ear per cascade hop** ([`latency`]): one phone per room sends tone
//!    bursts, the others listen; each listener is classed by the hops between its
//!    node and the sender's (0: same node, 1: one of them is the primary, 2: two
//!    secondaries) and its latency taken per burst from the sender's send times and
//!    its own arrival times. p50/p99 per class and the ms a hop adds (the issue asks
//!    for at most 25 ms p99 per hop).
//! 3. **CPU of a cascaded participant** ([`load`]): the same rtpgen load against one
//!    node and against the cluster (rooms spread 3/3/3 with four invisible legs
//!    each), CPU of every media thread per participant, and the ratio (the vendor
//!    quotes 1.5x); whether rtpgen's N-1 judgement passes on the cluster.
//!
//! The machine this runs on is small and shared: compare the figures of one run with
//! each other (medians, ratios), not with another run's. Each part is bounded
//! (under 60 s, under 15 s with `--quick`). The targets of a part run one at a time,
//! so that a CPU probe by thread name (`scnf-media-*`) sees only the one measured.
//!
//! `cargo run --release -p rtpgen --bin cluster-bench -- [--quick] [--part 1|2|3]
//! [--base-port 50000]`

mod latency;
mod load;
mod setup;

use clap::Parser;
use scnf::demo::cluster::{ClusterOptions, LocalCluster};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "scnf cluster benchmarks: setup rate, latency per hop, CPU per participant")]
struct Args {
    /// A short run (each part under 15 s).
    #[arg(long)]
    quick: bool,
    /// Only this part (1 setup, 2 latency, 3 CPU); all by default.
    #[arg(long)]
    part: Option<u8>,
    /// Calls per round of part 1 (default 400, 100 with --quick).
    #[arg(long)]
    calls: Option<usize>,
    /// First UDP port of the nodes' media (each target takes its own range of 400
    /// ports above it: the node 100, the cluster 300).
    #[arg(long, default_value_t = 50_000)]
    base_port: u16,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A 3-node cluster on loopback with its media ports from `base` (300 ports).
pub(crate) async fn cluster(base: u16, max_talkers: usize) -> Result<LocalCluster, Error> {
    let mut opts = ClusterOptions::new(3, base);
    opts.max_talkers = max_talkers;
    opts.channels = 10_000;
    LocalCluster::start(&opts, Duration::from_secs(10)).await
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    if args.base_port > 65_535 - 1_200 {
        return Err("--base-port leaves no room for 1,200 ports above it".into());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCNF_LOG")
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let want = |p: u8| args.part.map_or(true, |w| w == p);
        println!(
            "cluster-bench{}: a scaler and 3 nodes (one media worker each) on loopback, against one node",
            if args.quick { " --quick" } else { "" }
        );
        if want(1) {
            setup::run(args.quick, args.calls, args.base_port).await?;
        }
        if want(2) {
            latency::run(args.quick, args.base_port + 400).await?;
        }
        if want(3) {
            load::run(args.quick, args.base_port + 800).await?;
        }
        Ok(())
    })
}
