//! Cost of in-band DTMF detection per 20 ms frame (160 samples at 8 kHz), the price
//! every leg without telephone-events pays each tick.
//!
//! - `silent`: an all-zero frame with its energy known (what the engine passes): the
//!   energy gate skips the filters.
//! - `silent_energy_computed`: the same through `push_frame`, which sums the squares
//!   itself.
//! - `speech`: frames of speech-like audio (harmonics of a gliding pitch under a
//!   syllable envelope), cycled so the detector sees changing input.
//! - `tone`: a held key, `5`, which runs the filters and all the checks.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scnf_media::codec::FRAME_SAMPLES;
use scnf_media::dsp::{dtmf_frequencies, InbandDtmf};
use std::f64::consts::PI;
use std::hint::black_box;

const FRAMES: usize = 50;

/// One second of speech-like audio: a voiced harmonic series with formant-shaped
/// amplitudes and a 4 Hz syllable envelope.
fn speech_like() -> Vec<i16> {
    let mut phase = 0.0;
    (0..8000)
        .map(|i| {
            let t = f64::from(i) / 8000.0;
            let f0 = 140.0 + 25.0 * (2.0 * PI * 0.7 * t).sin();
            phase += 2.0 * PI * f0 / 8000.0;
            let mut voiced = 0.0;
            for k in 1..=20 {
                let f = f64::from(k) * f0;
                let w = (-((f - 500.0) / 300.0).powi(2)).exp()
                    + 0.5 * (-((f - 1500.0) / 400.0).powi(2)).exp()
                    + 0.05;
                voiced += w * (f64::from(k) * phase).sin();
            }
            let envelope = 0.55 + 0.45 * (2.0 * PI * 4.0 * t).sin();
            (3000.0 * envelope * voiced).clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

fn held_key(key: char) -> Vec<i16> {
    let (r, c) = dtmf_frequencies(key).expect("a DTMF key");
    (0..8000)
        .map(|i| {
            let t = f64::from(i) / 8000.0;
            (8000.0 * ((2.0 * PI * r * t).sin() + (2.0 * PI * c * t).sin())) as i16
        })
        .collect()
}

fn energy(frame: &[i16]) -> u64 {
    frame
        .iter()
        .map(|&x| i64::from(x) * i64::from(x))
        .sum::<i64>() as u64
}

fn bench_dtmf(c: &mut Criterion) {
    let mut g = c.benchmark_group("inband_dtmf_20ms");
    g.throughput(Throughput::Elements(1));

    let zeros = [0i16; FRAME_SAMPLES];
    let mut det = InbandDtmf::new();
    g.bench_function("silent", |b| {
        b.iter(|| black_box(det.push_frame_with_energy(black_box(&zeros), black_box(0))))
    });
    let mut det = InbandDtmf::new();
    g.bench_function("silent_energy_computed", |b| {
        b.iter(|| black_box(det.push_frame(black_box(&zeros))))
    });

    for (name, audio) in [("speech", speech_like()), ("tone", held_key('5'))] {
        let frames: Vec<(&[i16], u64)> = audio
            .chunks_exact(FRAME_SAMPLES)
            .map(|f| (f, energy(f)))
            .collect();
        assert_eq!(frames.len(), FRAMES);
        let mut det = InbandDtmf::new();
        let mut i = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % FRAMES;
                let (f, e) = frames[i];
                black_box(det.push_frame_with_energy(black_box(f), e))
            })
        });
        assert_eq!(det.stats().gated_frames, 0, "{name} frames run the filters");
    }
    g.finish();
}

criterion_group!(benches, bench_dtmf);
criterion_main!(benches);
