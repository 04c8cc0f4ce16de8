//! The engine's settings.

use scnf_media::jitter::JitterConfig;
use scnf_media::mixer::MixConfig;
use std::time::{Duration, Instant};

/// Default of [`EngineConfig::link_timeout`].
pub const LINK_TIMEOUT: Duration = Duration::from_millis(500);

/// Engine settings (typed, already validated).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub jitter: JitterConfig,
    pub mix: MixConfig,
    pub rtcp_interval: Duration,
    /// `None` disables media-timeout events.
    pub media_timeout: Option<Duration>,
    /// A link leg (an invisible participant between two nodes) that hears nothing
    /// this long raises its media timeout. A link carries the other node's mix every
    /// period whatever is said, so silence on it means the far node or the path is
    /// gone: the scaler takes it as evidence against the far node (see
    /// `cluster::planner`), and the sooner it hears, the shorter the gap when a
    /// room's primary dies. Default 500 ms: 25 periods, well above LAN jitter.
    pub link_timeout: Duration,
    /// RTCP SDES CNAME of this node.
    pub cname: String,
    /// Wall-clock anchor for RTCP NTP timestamps: an `Instant` and the time since the
    /// Unix epoch at that instant. The shell samples both once.
    pub wallclock: (Instant, Duration),
}

impl EngineConfig {
    /// The defaults of a node (see the `scnf` crate's `config`), anchored at `wallclock`:
    /// default jitter and mixer settings, RTCP every 5 s, media timeout 30 s.
    pub fn new(cname: impl Into<String>, wallclock: (Instant, Duration)) -> EngineConfig {
        EngineConfig {
            jitter: JitterConfig::default(),
            mix: MixConfig::default(),
            rtcp_interval: Duration::from_secs(5),
            media_timeout: Some(Duration::from_secs(30)),
            link_timeout: LINK_TIMEOUT,
            cname: cname.into(),
            wallclock,
        }
    }
}
