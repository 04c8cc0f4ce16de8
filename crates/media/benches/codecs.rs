//! Codec throughput: encode and decode of one 20 ms frame (160 samples at 8 kHz)
//! per codec, through the same `Encoder` / `Decoder` the legs use. Throughput is one
//! element per frame, so criterion reports frames per second.
//!
//! The input is one second of speech-like audio from a seeded generator: a voiced
//! harmonic series (glottal pitch gliding around 140 Hz, formant-shaped harmonic
//! amplitudes) with a 4 Hz syllable envelope, plus noise. The benchmark cycles
//! through its 50 frames so adaptive codecs see changing input, not one frame
//! repeated.
//!
//! G.722 is measured as the mixer runs it (low band only, 8 kHz in and out); the
//! full 16 kHz codec with QMF is measured alongside for comparison.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use scnf_media::codec::g722::{G722Decoder, G722Encoder};
use scnf_media::codec::{CodecKind, Decoder, Encoder, FRAME_SAMPLES, MAX_FRAME_PAYLOAD};
use std::f64::consts::PI;
use std::hint::black_box;

const FRAMES: usize = 50;

/// Seeded xorshift64 noise in -1..1.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// One second of speech-like audio at `rate` Hz.
fn speech_like(rate: f64) -> Vec<i16> {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let len = rate as usize;
    let mut phase = 0.0;
    (0..len)
        .map(|i| {
            let t = i as f64 / rate;
            let f0 = 140.0 + 25.0 * (2.0 * PI * 0.7 * t).sin();
            phase += 2.0 * PI * f0 / rate;
            // Harmonics weighted by two formant bumps (~500 Hz and ~1500 Hz).
            let mut voiced = 0.0;
            for k in 1..=20 {
                let f = k as f64 * f0;
                let w = (-((f - 500.0) / 300.0).powi(2)).exp()
                    + 0.5 * (-((f - 1500.0) / 400.0).powi(2)).exp()
                    + 0.05;
                voiced += w * (k as f64 * phase).sin();
            }
            let envelope = 0.55 + 0.45 * (2.0 * PI * 4.0 * t).sin();
            let x = 3000.0 * envelope * voiced + 300.0 * noise.next();
            x.clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

fn bench_codecs(c: &mut Criterion) {
    let pcm = speech_like(8000.0);
    let frames: Vec<&[i16]> = pcm.chunks_exact(FRAME_SAMPLES).collect();
    assert_eq!(frames.len(), FRAMES);

    let mut encode = c.benchmark_group("encode_20ms");
    encode.throughput(Throughput::Elements(1));
    for kind in CodecKind::ALL {
        let mut enc = Encoder::new(kind).expect("every codec has an encoder");
        let mut out = [0u8; MAX_FRAME_PAYLOAD];
        let mut i = 0;
        encode.bench_function(kind.name(), |b| {
            b.iter(|| {
                i = (i + 1) % FRAMES;
                let n = enc
                    .encode(black_box(frames[i]), &mut out)
                    .expect("a 20 ms frame fits MAX_FRAME_PAYLOAD");
                black_box(&out[..n]);
            })
        });
    }
    let wide = speech_like(16000.0);
    let wide_frames: Vec<&[i16]> = wide.chunks_exact(2 * FRAME_SAMPLES).collect();
    let mut enc = G722Encoder::new();
    let mut out = [0u8; FRAME_SAMPLES];
    let mut i = 0;
    encode.bench_function("G722-16kHz-QMF", |b| {
        b.iter(|| {
            i = (i + 1) % FRAMES;
            black_box(enc.encode(black_box(wide_frames[i]), &mut out));
        })
    });
    encode.finish();

    let mut decode = c.benchmark_group("decode_20ms");
    decode.throughput(Throughput::Elements(1));
    for kind in CodecKind::ALL {
        // Payloads from the codec's own encoder, so the decoders see real streams.
        let mut enc = Encoder::new(kind).expect("every codec has an encoder");
        let payloads: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| {
                let mut out = [0u8; MAX_FRAME_PAYLOAD];
                let n = enc.encode(f, &mut out).expect("encode");
                out[..n].to_vec()
            })
            .collect();
        let mut dec = Decoder::new(kind).expect("every codec has a decoder");
        let mut out = [0i16; FRAME_SAMPLES];
        let mut i = 0;
        decode.bench_function(kind.name(), |b| {
            b.iter(|| {
                i = (i + 1) % FRAMES;
                let n = dec
                    .decode(black_box(&payloads[i]), &mut out)
                    .expect("payload from our own encoder");
                black_box(&out[..n]);
            })
        });
    }
    let mut codes = vec![0u8; wide.len() / 2];
    G722Encoder::new().encode(&wide, &mut codes);
    let mut dec = G722Decoder::default();
    let mut out = [0i16; 2 * FRAME_SAMPLES];
    let mut i = 0;
    decode.bench_function("G722-16kHz-QMF", |b| {
        b.iter(|| {
            i = (i + 1) % FRAMES;
            let frame = &codes[i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES];
            black_box(dec.decode(black_box(frame), &mut out));
        })
    });
    decode.finish();
}

criterion_group!(benches, bench_codecs);
criterion_main!(benches);
