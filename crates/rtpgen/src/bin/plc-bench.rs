//! Writes the loss-concealment bench's WAVs and prints its segmental-SNR table; see
//! `bench/plc/README.md` (PESQ comes from `bench/plc/pesq_table.py` over these files).
//!
//! Usage: `plc-bench [OUT_DIR] [SEED]` (default `target/plc`, seed 7).

use rtpgen::plc_bench::{conditions, envelope_error_db, play, seg_snr_db, Fill};
use rtpgen::wav::{read_wav, write_wav};
use scnf_media::codec::{CodecKind, FRAME_SAMPLES};
use std::path::PathBuf;

const SPEECH: &[u8] = include_bytes!("../../../../vectors/speech/speech-8k.wav");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "target/plc".into()));
    let seed: u64 = args.next().map_or(Ok(7), |s| s.parse())?;
    std::fs::create_dir_all(&dir)?;
    let speech = read_wav(SPEECH)?.mono_8k()?;
    let frames = speech.len() / FRAME_SAMPLES;
    let mut manifest =
        String::from("codec,condition,fill,lost_pct,reference,degraded,seg_snr_db,envelope_db\n");
    println!(
        "{:<6} {:<22} {:>6} {:>8} {:>8} {:>8}",
        "codec", "condition", "lost%", "ours", "zero", "repeat"
    );
    for codec in [CodecKind::Pcmu, CodecKind::G722] {
        let name = codec.name().to_ascii_lowercase();
        let clean = play(&speech, codec, &vec![false; frames], Fill::Ours);
        let clean_path = dir.join(format!("{name}-clean.wav"));
        std::fs::write(&clean_path, write_wav(&clean, 8000))?;
        for model in conditions() {
            let lost = model.pattern(frames, seed);
            let pct = 100.0 * lost.iter().filter(|&&l| l).count() as f64 / frames as f64;
            let mut row = Vec::new();
            for fill in Fill::ALL {
                let got = play(&speech, codec, &lost, fill);
                let snr = seg_snr_db(&clean, &got);
                let env = envelope_error_db(&clean, &got);
                let path = dir.join(format!("{name}-{}-{}.wav", model.name(), fill.name()));
                std::fs::write(&path, write_wav(&got, 8000))?;
                manifest.push_str(&format!(
                    "{name},{},{},{pct:.1},{},{},{snr:.2},{env:.3}\n",
                    model.name(),
                    fill.name(),
                    clean_path.display(),
                    path.display()
                ));
                row.push(env);
            }
            println!(
                "{:<6} {:<22} {:>6.1} {:>8.2} {:>8.2} {:>8.2}",
                name,
                model.name(),
                pct,
                row[0],
                row[1],
                row[2]
            );
        }
    }
    std::fs::write(dir.join("manifest.csv"), manifest)?;
    println!(
        "loudness-envelope error (dB, lower is better) against the clean decode; WAVs and manifest.csv in {}",
        dir.display()
    );
    Ok(())
}
