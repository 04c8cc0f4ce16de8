//! `rtpgen video`: publishers and switching viewers against a node or a scaler
//! ([`rtpgen::video::scenario`]); prints what the viewers received and exits
//! non-zero on any fault.

use clap::Args;
use rtpgen::video::{Layer, VideoScenario, VideoTarget};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Clone)]
pub struct VideoArgs {
    /// A node's or a scaler's call-control listener, HOST:PORT (loopback only).
    #[arg(long)]
    target: String,
    /// Call-control password.
    #[arg(long, env = "SCNF_CONTROL_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    /// Layers each publisher sends: low, medium, high.
    #[arg(long, value_delimiter = ',', default_value = "low,medium,high")]
    layers: Vec<String>,
    #[arg(long, default_value_t = 3)]
    viewers_per_publisher: usize,
    /// Milliseconds between a viewer's layer switches (at least 1000).
    #[arg(long, default_value_t = 1500)]
    switch_ms: u64,
    /// Seconds of media, the viewers' stopped tail included.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Viewers on other nodes than the publishers (a scaler target).
    #[arg(long)]
    apart: bool,
    /// Most relative deviation of a layer's received bitrate from its clip's.
    #[arg(long, default_value_t = 0.35)]
    bitrate_tolerance: f64,
    /// Longest request-to-key-frame delay, ms.
    #[arg(long, default_value_t = 1500)]
    max_key_delay_ms: u64,
}

pub fn video(a: VideoArgs) -> ExitCode {
    let run = || -> Result<bool, String> {
        let control: SocketAddr = a
            .target
            .parse()
            .map_err(|_| format!("{:?} is not HOST:PORT", a.target))?;
        if !control.ip().is_loopback() {
            return Err(format!("{control}: rtpgen only targets loopback"));
        }
        let layers = a
            .layers
            .iter()
            .map(|l| {
                Layer::ALL
                    .into_iter()
                    .find(|x| x.label().eq_ignore_ascii_case(l))
                    .ok_or_else(|| format!("unknown layer {l:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sc = VideoScenario {
            publishers: a.publishers,
            layers,
            viewers_per_publisher: a.viewers_per_publisher,
            switch_every: Duration::from_millis(a.switch_ms),
            duration: Duration::from_secs(a.seconds),
            seed: a.seed,
            viewers_apart: a.apart,
        };
        sc.validate()?;
        let target = VideoTarget::new(control, a.password.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let report = rt
            .block_on(rtpgen::video::scenario::run(&sc, &target))
            .map_err(|e| e.to_string())?;
        print!("{}{}", report.summary(), report.status_lines());
        let problems = report.check(
            a.bitrate_tolerance,
            Duration::from_millis(a.max_key_delay_ms),
        );
        for p in &problems {
            println!("  FAULT {p}");
        }
        Ok(problems.is_empty())
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rtpgen video: {e}");
            ExitCode::from(2)
        }
    }
}
