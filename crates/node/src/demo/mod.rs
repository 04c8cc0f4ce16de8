//! `scnf demo`: the main job on an embedded default, with no external setup.
//!
//! Starts a node and its call-control listener on loopback (with a password made for
//! the run), logs in as a controller would, and places one call per synthetic
//! participant through the protocol: the first dials `*1*54#` (a new room with a
//! random 4-digit id), the others dial that id. Each participant sends its own tone in
//! its codec to the address the node answered with. After the run it measures, in what
//! each participant received, the level of every participant's tone, and checks
//! N-minus-one: the others' tones at their sent level, the own tone at least 60 dB
//! below them. Prints the call transcript and a table, and exits non-zero when any
//! check fails.
//!
//! [`conference`] is the same measurement on the node's Rust API, without the
//! protocol; the system tests use it.

pub mod cluster;

use crate::config::Config;
use crate::NodeHandle;
use scnf_core::control::msg::{MemberInfo, NodeInfo, ServerMsg};
use scnf_core::engine::{LegId, LegSpec, MixId};
use scnf_media::codec::CodecKind;
use scnf_media::probe::{level_dbfs, Tone, TONES, TONE_DBFS};
use scnf_testkit::client::{CallAnswer, Client, Event};
use scnf_testkit::participant::{Participant, Source};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

/// The participants' codecs unless `--codecs` says otherwise.
const DEFAULT_CODECS: [&str; 5] = ["PCMA", "PCMU", "G722", "PCMA", "PCMU"];

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
    /// First port of the node's RTP range (a cluster's nodes take 100 each from it).
    #[arg(long, default_value_t = 21000)]
    pub port: u16,
    /// Run a cluster instead: a scaler and this many nodes, one room spread over all
    /// of them (`--per-node` participants each, in L16 unless `--codecs` says
    /// otherwise).
    #[arg(long)]
    pub cluster: Option<usize>,
    /// Participants per node of a `--cluster` run.
    #[arg(long, default_value_t = 3)]
    pub per_node: usize,
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
    pub leg: scnf_core::engine::LegStats,
}

impl HeardReport {
    /// Quietest of the others' tones, dBFS.
    pub fn weakest_other(&self) -> f64 {
        weakest_other(&self.levels, self.own)
    }

    /// How far below the weakest other tone the own tone is, dB.
    pub fn own_rejection_db(&self) -> f64 {
        own_rejection_db(&self.levels, self.own)
    }
}

/// Quietest of the tones in `levels` other than `own`, dBFS.
fn weakest_other(levels: &[f64], own: usize) -> f64 {
    levels
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != own)
        .map(|(_, &l)| l)
        .fold(f64::INFINITY, f64::min)
}

/// How far below the weakest other tone the own tone (`levels[own]`) is, dB.
fn own_rejection_db(levels: &[f64], own: usize) -> f64 {
    weakest_other(levels, own) - levels.get(own).copied().unwrap_or(f64::NEG_INFINITY)
}

/// The level of each of `n` participants' tones in `pcm` (8 kHz, from the start of
/// the talk), over the steady middle of the run: the first second (joins, jitter
/// buffer start) and the last half second are skipped.
fn tone_levels(pcm: &[i16], n: usize, talk: Duration) -> Vec<f64> {
    let from = 8000.min(pcm.len());
    let to = ((talk.as_millis() as usize / 1000) * 8000)
        .saturating_sub(4000)
        .clamp(from, pcm.len());
    let window = &pcm[from..to];
    (0..n)
        .map(|j| level_dbfs(window, TONES[j % TONES.len()]))
        .collect()
}

/// Runs a conference of `codecs` participants against `node` for `talk` and measures
/// what everyone heard over the steady middle of the run.
pub async fn conference(
    node: &NodeHandle,
    codecs: &[CodecKind],
    talk: Duration,
) -> Result<Vec<HeardReport>, Box<dyn std::error::Error + Send + Sync>> {
    // Direct media control on worker 0: this path measures the media alone.
    let room = MixId(1);
    node.open_room(0, room).await?;
    let ip: IpAddr = [127, 0, 0, 1].into();
    let mut tasks = Vec::new();
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let mut legs = Vec::new();
    for (i, &codec) in codecs.iter().enumerate() {
        let tone = Tone::at_dbfs(TONES[i % TONES.len()], TONE_DBFS);
        let mut p = Participant::bind(ip, codec, Source::Tone(tone)).await?;
        let mut spec = LegSpec::new(p.local_addr(), codec);
        spec.payload_type = p.payload_type();
        let leg = node.add_leg(0, room, LegId(i as u64 + 1), spec).await?;
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
        reports.push(HeardReport {
            codec: codecs[i],
            levels: tone_levels(&heard.pcm, codecs.len(), talk),
            own: i,
            packets_received: heard.packets_received,
            packets_sent: heard.packets_sent,
            leg: node.leg_stats(0, legs[i]).await?,
        });
    }
    node.close_room(0, room).await?;
    Ok(reports)
}

/// One participant's line of the demo's table: what it heard, and what the node
/// reported about its channel (from the `Status` taken at the end of the talk).
struct Row {
    codec: CodecKind,
    /// Level of each participant's tone in this participant's audio, dBFS.
    levels: Vec<f64>,
    packets_received: u64,
    channel: Option<MemberInfo>,
}

/// Name the demo's controller logs in with.
const CONTROLLER: &str = "scnf-demo";

/// The first participant's command: a new room (`*1`) with a 4-digit random id (`*54`).
const CREATE: &str = "*1*54#";

/// Places the participants' calls through `client`, lets them talk for `talk`, and
/// measures what everyone heard. Prints the transcript as it goes.
async fn conference_over_protocol(
    client: &mut Client,
    codecs: &[CodecKind],
    talk: Duration,
) -> Result<(Vec<Row>, Vec<NodeInfo>), Box<dyn std::error::Error + Send + Sync>> {
    let ip: IpAddr = [127, 0, 0, 1].into();
    let mut room: Option<String> = None;
    let mut calls = Vec::new();
    let mut ready = Vec::new();
    for (i, &codec) in codecs.iter().enumerate() {
        let tone = Tone::at_dbfs(TONES[i % TONES.len()], TONE_DBFS);
        let p = Participant::bind(ip, codec, Source::Tone(tone)).await?;
        let call = format!("P{}", i + 1);
        let called = match &room {
            None => CREATE.to_string(),
            Some(id) => format!("{id}#"),
        };
        let answer = client.setup(&call, &called, false, &p.offer(false)).await?;
        let CallAnswer::Connect {
            room: connected,
            participant,
            answer,
            ..
        } = &answer
        else {
            return Err(format!("{call} dialled {called:?} and got {answer:?}").into());
        };
        println!(
            "  > Setup {call} {called:<8} offer {:<5}  < Connect room {connected}, participant {participant}, codec {}/{}, media {}:{}",
            codec.name(),
            answer.codec.name,
            answer.codec.pt,
            answer.address,
            answer.port
        );
        room.get_or_insert_with(|| connected.clone());
        let remote = SocketAddr::new(answer.address, answer.port);
        calls.push(call);
        ready.push((p, remote));
    }
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let tasks: Vec<_> = ready
        .into_iter()
        .map(|(mut p, remote)| {
            tokio::spawn(
                async move { p.run(remote, start, talk, Duration::from_millis(300)).await },
            )
        })
        .collect();
    let mut heards = Vec::new();
    for t in tasks {
        heards.push(t.await??);
    }
    let status = client.status().await?;
    let members: Vec<&MemberInfo> = status.rooms.iter().flat_map(|r| &r.members).collect();
    println!(
        "  > Status  < channels {} used of {} ({} free); {} room(s), {} members connected",
        status.channels.used,
        status.channels.capacity,
        status.channels.free,
        status.rooms.len(),
        members.iter().filter(|m| m.state == "connected").count()
    );
    for inv in status.rooms.iter().flat_map(|r| &r.invisible) {
        let s = &inv.counters;
        println!(
            "            link {} -> {}: rx {} lost {} late {} concealed {} stretched {} compressed {} delay {} ms",
            inv.peer, inv.node, s.packets_received, s.packets_lost, s.late, s.concealed_frames,
            s.stretched, s.compressed, s.playout_delay_ms
        );
    }
    for n in &status.nodes {
        let invisible = status
            .rooms
            .iter()
            .flat_map(|r| &r.invisible)
            .filter(|i| i.node == n.name)
            .count();
        println!(
            "            node {}: {} callers + {} invisible participants = {} channels{}",
            n.name,
            n.members,
            invisible,
            n.members + n.invisible,
            if status
                .rooms
                .iter()
                .any(|r| r.primary.as_deref() == Some(n.name.as_str()))
            {
                " (the room's primary)"
            } else {
                ""
            }
        );
    }
    let mut rows = Vec::new();
    for (i, heard) in heards.into_iter().enumerate() {
        let channel = members
            .iter()
            .find(|m| m.call == calls[i])
            .map(|&m| m.clone());
        rows.push(Row {
            codec: codecs[i],
            levels: tone_levels(&heard.pcm, codecs.len(), talk),
            packets_received: heard.packets_received,
            channel,
        });
    }
    for call in &calls {
        client.release(call, None).await?;
    }
    let room = room.unwrap_or_default();
    let mut events = 0usize;
    loop {
        events += 1;
        if let Event::Room(ServerMsg::RoomClosed { room: closed }) = client.next_event().await? {
            if closed == room {
                break;
            }
        }
    }
    println!(
        "  > Release P1..P{}  < ReleaseResult each; room {room} closed ({events} events seen)\n",
        calls.len()
    );
    Ok((rows, status.nodes))
}

/// A password for one run, from the OS: nobody else on the machine can take the
/// demo's calls over.
fn run_password() -> Result<String, Box<dyn std::error::Error>> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
    Ok(scnf_core::control::hex::encode(&bytes))
}

/// `scnf demo`.
pub async fn run(args: DemoArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let codecs = args
        .codecs
        .iter()
        .map(|c| CodecKind::from_name(c).ok_or_else(|| format!("unknown codec {c:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    if !(2..=60).contains(&args.seconds) {
        return Err("--seconds must be 2..=60".into());
    }
    if let Some(n) = args.cluster {
        return run_cluster(&args, n).await;
    }
    if !(2..=TONES.len()).contains(&codecs.len()) {
        return Err(format!("between 2 and {} participants", TONES.len()).into());
    }
    let password = run_password()?;
    let mut cfg = Config::default();
    cfg.rtp.workers = 1;
    cfg.rtp.port_min = args.port;
    cfg.rtp.port_max = args.port.saturating_add(99);
    cfg.mixer.max_talkers = args.max_talkers.unwrap_or(codecs.len());
    cfg.control.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.control.password = Some(password.clone());
    let node = NodeHandle::start(&cfg)?;
    let control = match crate::control::start(node.clone(), &cfg).await {
        Ok(c) => c,
        Err(e) => {
            node.shutdown();
            return Err(e.into());
        }
    };
    println!(
        "scnf demo: {} participants, {} s, tones sent at {TONE_DBFS} dBFS\n",
        codecs.len(),
        args.seconds
    );
    println!(
        "call control on ws://{} (password made for this run)",
        control.local
    );
    let result = async {
        let mut client = Client::connect(control.local).await?;
        client.login(CONTROLLER, password.as_bytes()).await?;
        println!("  > AppChallenge, AppLogin as {CONTROLLER:?}  < ok, the node's proof verifies");
        let (rows, _) =
            conference_over_protocol(&mut client, &codecs, Duration::from_secs(args.seconds))
                .await?;
        client.close().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(rows)
    }
    .await;
    let stats = node.stats().await?;
    control.stop();
    node.shutdown();
    let rows = result.map_err(|e| e.to_string())?;
    let ok = print_table(&rows);
    for w in &stats {
        println!(
            "\nworker {}: {} ticks, {} late, tick lateness p50 {} us, p99 {} us, {} encodes for {} shared sends",
            w.index, w.ticks, w.late_ticks, w.lateness_p50_us, w.lateness_p99_us, w.encodes, w.shared_sends
        );
    }
    Ok(verdict(ok))
}

/// `scnf demo --cluster n`: a scaler and `n` nodes on loopback, one room spread
/// over all of them, the same calls and the same checks as a single node.
async fn run_cluster(args: &DemoArgs, n: usize) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if !(2..=8).contains(&n) || !(1..=8).contains(&args.per_node) {
        return Err("--cluster takes 2..=8 nodes, --per-node 1..=8".into());
    }
    let total = n * args.per_node;
    if total > TONES.len() {
        return Err(format!("at most {} participants in all", TONES.len()).into());
    }
    let explicit = !args.codecs.iter().map(String::as_str).eq(DEFAULT_CODECS);
    let codecs: Vec<CodecKind> = (0..total)
        .map(|i| match explicit {
            true => CodecKind::from_name(&args.codecs[i % args.codecs.len()]),
            // Uncompanded, so what a listener hears of itself is the cluster's doing
            // alone: with eight other tones in a G.711 mix, companding alone leaves
            // products some 55 dB down at the own frequency.
            false => Some(CodecKind::L16).filter(|_| i < total),
        })
        .collect::<Option<Vec<_>>>()
        .ok_or("unknown codec")?;
    let mut opts = cluster::ClusterOptions::new(n, args.port);
    opts.max_talkers = args.max_talkers.unwrap_or(total);
    let cl = cluster::LocalCluster::start(&opts, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "scnf demo --cluster {n}: a scaler and {n} nodes on loopback, {total} participants in one room, {} s, tones sent at {TONE_DBFS} dBFS\n",
        args.seconds
    );
    println!(
        "scaler: controllers on ws://{}, nodes on ws://{} (cluster secret made for this run)",
        cl.scaler.control, cl.scaler.nodes
    );
    for node in &cl.nodes {
        println!(
            "  node {} registered, media on {:?}",
            node.name,
            node.node.worker_addresses()
        );
    }
    let result = async {
        let mut client = Client::connect(cl.control()).await?;
        client.login(CONTROLLER, cl.secret.as_bytes()).await?;
        println!("  > AppChallenge, AppLogin as {CONTROLLER:?}  < ok, the scaler's proof verifies");
        let out = conference_over_protocol(&mut client, &codecs, Duration::from_secs(args.seconds))
            .await?;
        client.close().await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(out)
    }
    .await;
    cl.stop().await;
    let (rows, nodes) = result.map_err(|e| e.to_string())?;
    let ok = print_table(&rows);
    let placed: Vec<String> = nodes
        .iter()
        .map(|node| {
            let here = rows
                .iter()
                .filter(|r| r.channel.as_ref().and_then(|m| m.node.as_deref()) == Some(&node.name))
                .count();
            format!("{} on {}", here, node.name)
        })
        .collect();
    println!("\nplacement: {}", placed.join(", "));
    Ok(verdict(ok))
}

fn verdict(ok: bool) -> ExitCode {
    println!(
        "\n{}",
        if ok {
            "N-minus-one holds: everyone hears the others at their level and not themselves."
        } else {
            "N-minus-one check FAILED."
        }
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints what everyone heard; whether every check passed.
fn print_table(rows: &[Row]) -> bool {
    let n = rows.len();

    print!("{:<4} {:<6} {:>8}", "who", "codec", "rx pkts");
    for tone in TONES.iter().take(n) {
        print!(" {:>9}", format!("{tone} Hz"));
    }
    println!(
        " {:>10}  verdict  (node side: rx pkts, lost, jitter)",
        "own below"
    );
    let mut ok = true;
    for (i, r) in rows.iter().enumerate() {
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
        let rejection = own_rejection_db(&r.levels, i);
        let others_ok = r
            .levels
            .iter()
            .enumerate()
            .all(|(j, &l)| j == i || (l - TONE_DBFS).abs() < 3.0);
        let pass = others_ok && rejection >= 60.0;
        ok &= pass;
        let channel = match &r.channel {
            Some(m) => format!(
                "{}, {}, {:.2} ms{}",
                m.packets_received,
                m.packets_lost,
                m.jitter_ms,
                m.node
                    .as_ref()
                    .map(|n| format!(", on {n}"))
                    .unwrap_or_default()
            ),
            None => "not in the status".into(),
        };
        println!(
            " {:>9.1}  {:<7}  {channel}",
            rejection,
            if pass { "ok" } else { "WRONG" },
        );
    }
    ok
}
