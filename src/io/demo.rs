//! `scnf demo`: the main job on an embedded default, with no external setup.
//!
//! Starts a node on loopback, opens one room, and joins synthetic participants in
//! mixed codecs, each sending its own tone. After the run it measures, in what each
//! participant received, the level of every participant's tone, and checks
//! N-minus-one: the others' tones at their sent level, the own tone at least 60 dB
//! below them. Prints a table and exits non-zero when any check fails.

use super::NodeHandle;
use crate::codec::CodecKind;
use crate::config::Config;
use crate::engine::LegSpec;
use crate::io::participant::{Participant, Source};
use crate::probe::{level_dbfs, Tone, TONES, TONE_DBFS};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `scnf demo`.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// Codecs of the participants, one per participant (PCMA, PCMU, G722, opus, L16).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "PCMA,PCMU,G722,PCMA,PCMU"
    )]
    pub codecs: Vec<String>,
    /// How long the participants talk, seconds.
    #[arg(long, default_value_t = 4)]
    pub seconds: u64,
    /// Most talkers mixed at once (default: everyone, so every tone is heard).
    #[arg(long)]
    pub max_talkers: Option<usize>,
    /// First port of the node's RTP range.
    #[arg(long, default_value_t = 21000)]
    pub port: u16,
}

/// What one participant heard of everybody.
#[derive(Clone, Debug)]
pub struct HeardReport {
    pub codec: CodecKind,
    /// Level of each participant's tone in this participant's audio, dBFS.
    pub levels: Vec<f64>,
    pub own: usize,
    pub packets_received: u64,
    pub packets_sent: u64,
    /// What the node measured on this participant's leg.
    pub leg: crate::engine::LegStats,
}

impl HeardReport {
    /// Quietest of the others' tones, dBFS.
    pub fn weakest_other(&self) -> f64 {
        self.levels
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != self.own)
            .map(|(_, &l)| l)
            .fold(f64::INFINITY, f64::min)
    }

    /// How far below the weakest other tone the own tone is, dB.
    pub fn own_rejection_db(&self) -> f64 {
        self.weakest_other() - self.levels[self.own]
    }
}

/// Runs a conference of `codecs` participants against `node` for `talk` and measures
/// what everyone heard over the steady middle of the run.
pub async fn conference(
    node: &NodeHandle,
    codecs: &[CodecKind],
    talk: Duration,
) -> Result<Vec<HeardReport>, Box<dyn std::error::Error + Send + Sync>> {
    let room = node.open_room().await?;
    let ip: IpAddr = [127, 0, 0, 1].into();
    let mut tasks = Vec::new();
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut legs = Vec::new();
    for (i, &codec) in codecs.iter().enumerate() {
        let tone = Tone::at_dbfs(TONES[i % TONES.len()], TONE_DBFS);
        let mut p = Participant::bind(ip, codec, Source::Tone(tone)).await?;
        let mut spec = LegSpec::new(p.local_addr(), codec);
        spec.payload_type = p.payload_type;
        let leg = node.add_leg(room, spec).await?;
        legs.push(leg.id);
        tasks.push(tokio::spawn(async move {
            p.run(leg.local, start, talk, Duration::from_millis(300))
                .await
        }));
    }
    let mut reports = Vec::new();
    let mut heards = Vec::new();
    for t in tasks {
        heards.push(t.await??);
    }
    for (i, heard) in heards.into_iter().enumerate() {
        // Skip the first second (joins, jitter buffer start) and the last half.
        let from = 8000.min(heard.pcm.len());
        let to = ((talk.as_millis() as usize / 1000) * 8000 - 4000).clamp(from, heard.pcm.len());
        let window = &heard.pcm[from..to];
        reports.push(HeardReport {
            codec: codecs[i],
            levels: (0..codecs.len())
                .map(|j| level_dbfs(window, TONES[j % TONES.len()]))
                .collect(),
            own: i,
            packets_received: heard.packets_received,
            packets_sent: heard.packets_sent,
            leg: node.leg_stats(legs[i]).await?,
        });
    }
    node.close_room(room).await?;
    Ok(reports)
}

/// `scnf demo`.
pub async fn run(args: DemoArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let codecs = args
        .codecs
        .iter()
        .map(|c| CodecKind::from_name(c).ok_or_else(|| format!("unknown codec {c:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    if !(2..=TONES.len()).contains(&codecs.len()) {
        return Err(format!("between 2 and {} participants", TONES.len()).into());
    }
    if !(2..=60).contains(&args.seconds) {
        return Err("--seconds must be 2..=60".into());
    }
    let mut cfg = Config::default();
    cfg.rtp.workers = 1;
    cfg.rtp.port_min = args.port;
    cfg.rtp.port_max = args.port.saturating_add(99);
    cfg.mixer.max_talkers = args.max_talkers.unwrap_or(codecs.len());
    let node = NodeHandle::start(&cfg)?;
    let result = conference(&node, &codecs, Duration::from_secs(args.seconds)).await;
    let stats = node.stats().await?;
    node.shutdown();
    let reports = result.map_err(|e| e.to_string())?;

    println!(
        "scnf demo: {} participants, {} s, tones sent at {TONE_DBFS} dBFS\n",
        codecs.len(),
        args.seconds
    );
    print!("{:<4} {:<6} {:>8}", "who", "codec", "rx pkts");
    for tone in TONES.iter().take(codecs.len()) {
        print!(" {:>9}", format!("{tone} Hz"));
    }
    println!(
        " {:>10}  verdict  (node side: lost/late/concealed, jitter)",
        "own below"
    );
    let mut ok = true;
    for (i, r) in reports.iter().enumerate() {
        print!(
            "{:<4} {:<6} {:>8}",
            format!("P{}", i + 1),
            r.codec.name(),
            r.packets_received
        );
        for (j, l) in r.levels.iter().enumerate() {
            let cell = if j == i {
                "(own)".to_string()
            } else {
                format!("{l:.1}")
            };
            print!(" {cell:>9}");
        }
        let rejection = r.own_rejection_db();
        let others_ok = r
            .levels
            .iter()
            .enumerate()
            .all(|(j, &l)| j == i || (l - TONE_DBFS).abs() < 3.0);
        let pass = others_ok && rejection >= 60.0;
        ok &= pass;
        println!(
            " {:>9.1}  {:<7}  {}/{}/{}, {:.2} ms",
            rejection,
            if pass { "ok" } else { "WRONG" },
            r.leg.packets_lost,
            r.leg.late,
            r.leg.concealed_frames,
            r.leg.jitter_ms
        );
    }
    for w in &stats {
        println!(
            "\nworker {}: {} ticks, {} late, tick lateness p50 {} us, p99 {} us, {} encodes for {} shared sends",
            w.index, w.ticks, w.late_ticks, w.lateness_p50_us, w.lateness_p99_us, w.encodes, w.shared_sends
        );
    }
    println!(
        "\n{}",
        if ok {
            "N-minus-one holds: everyone hears the others at their level and not themselves."
        } else {
            "N-minus-one check FAILED."
        }
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
