//! `scnf` — the mixer node binary.
//!
//! - `scnf node [flags]` runs a node (media workers and the call-control WebSocket
//!   listener, and with `--scaler` its registration to a scaler) until SIGTERM/SIGINT.
//! - `scnf scaler [flags]` runs the cluster's scaler (controllers on `--listen`,
//!   nodes on `--nodes-listen`) until SIGTERM/SIGINT.
//! - `scnf demo` runs the main job on an embedded default: a node with a synthetic
//!   conference on loopback, reporting what each participant hears.

use clap::{Parser, Subcommand};
use scnf::config::{Config, Overrides};
use scnf::NodeHandle;
use std::process::ExitCode;
use std::time::Duration;

/// How long a stopping node waits for its calls to be released and its sessions
/// closed before it exits anyway.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(2);

#[derive(Parser)]
#[command(name = "scnf", version, about = "Software conference mixer node")]
struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info` or `scnf=debug`. Default
    /// `info` for a node, `warn` for the demo (its report is the output).
    #[arg(long, env = "SCNF_LOG", global = true)]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a mixer node until SIGTERM or SIGINT.
    Node(Box<Overrides>),
    /// Run the cluster's scaler until SIGTERM or SIGINT: controllers connect to it as
    /// to one big node, nodes register to it.
    Scaler(scnf::scaler::ScalerOverrides),
    /// Run a synthetic conference on loopback and report what every participant hears.
    Demo(scnf::demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = cli.log.clone().unwrap_or_else(|| match cli.command {
        Command::Demo(_) => "warn".into(),
        Command::Node(_) | Command::Scaler(_) => "info".into(),
    });
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scnf: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Node(o) => rt.block_on(run_node(*o)),
        Command::Scaler(o) => rt.block_on(run_scaler(o)),
        Command::Demo(args) => rt.block_on(scnf::demo::run(args)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("scnf: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_node(o: Overrides) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let cfg = Config::load(&o)?;
    // Handlers first (as the scaler's): a signal that comes once the node has
    // registered or listens must stop it cleanly, not kill it.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let node = NodeHandle::start(&cfg)?;
    let control = scnf::control::start(node.clone(), &cfg).await?;
    // Next to the control listener, not instead of it: a node can serve a scaler and
    // local monitoring at once.
    let link = scnf::scaler_link::LinkConfig::from_config(&cfg, &node)?
        .map(|link| scnf::scaler_link::spawn(node.clone(), link));
    tracing::info!(
        workers = ?node.worker_addresses(),
        control = %control.local,
        channels = cfg.channel_capacity(),
        "scnf node running; SIGTERM or SIGINT stops it"
    );
    let mut report = tokio::time::interval(Duration::from_secs(60));
    report.tick().await;
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = report.tick() => {
                for w in node.stats().await? {
                    tracing::info!(
                        worker = w.index, rooms = w.rooms, legs = w.legs,
                        late_ticks = w.late_ticks, lateness_p99_us = w.lateness_p99_us,
                        "worker status"
                    );
                }
            }
        }
    }
    // Calls end cleanly: controllers get a Release with a cause, peers a BYE. A
    // controller that does not read or a stuck worker cannot hold the exit up for
    // longer than the bound. The scaler link closes meanwhile (the scaler sees a
    // close, not a silence; its legs go with the workers below).
    tracing::info!("stopping: releasing calls");
    let close_link = async {
        match link {
            Some(link) => link.close(SHUTDOWN_BOUND).await,
            None => true,
        }
    };
    let (released, link_closed) = tokio::join!(control.shutdown(SHUTDOWN_BOUND), close_link);
    if !released {
        tracing::warn!(
            bound_ms = SHUTDOWN_BOUND.as_millis() as u64,
            "calls not all released in time"
        );
    }
    if !link_closed {
        tracing::warn!("scaler link not closed in time");
    }
    control.stop();
    // The workers apply what is queued (the BYEs go out) before they stop.
    node.shutdown();
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn run_scaler(
    o: scnf::scaler::ScalerOverrides,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let cfg = scnf::scaler::ScalerConfig::load(&o)?;
    // Handlers first: a signal that comes once the listeners are up (a script that
    // starts and stops at once) must stop the scaler cleanly, not kill it.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let scaler = scnf::scaler::start(&cfg).await?;
    tracing::info!(
        control = %scaler.control,
        nodes = %scaler.nodes,
        "scnf scaler running; SIGTERM or SIGINT stops it"
    );
    let mut report = tokio::time::interval(Duration::from_secs(60));
    report.tick().await;
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = report.tick() => {
                if let Some(s) = scaler.stats().await {
                    tracing::info!(
                        nodes = s.nodes, rooms = s.rooms, members = s.members, links = s.links,
                        no_channel = s.no_channel, bad_frames = s.bad_frames,
                        "cluster status"
                    );
                }
            }
        }
    }
    // As a node: calls end with a Release and a cause, their legs on the nodes are
    // removed, and neither a stuck controller nor a stuck node holds the exit up.
    tracing::info!("stopping: releasing calls");
    if !scaler.shutdown(SHUTDOWN_BOUND).await {
        tracing::warn!(
            bound_ms = SHUTDOWN_BOUND.as_millis() as u64,
            "calls not all released in time"
        );
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
