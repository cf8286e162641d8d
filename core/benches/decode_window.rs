//! Throughput of the ingest hot path without I/O: decoding raw binary
//! payloads, and decoding plus folding into per-minute windows.
//!
//! Elements are readings. The data is 12 Hz raw readings from a few sensors,
//! sent one record per message and batched 12 per message (one second), the
//! two shapes a gateway produces.
//!
//! cargo bench -p gridcast-core --bench decode_window -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gridcast_core::payload::{FEATURE_RAW, encode_raw};
use gridcast_core::{Decoder, DecoderConfig, Reading, WindowConfig, Windows};

const SENSORS: usize = 4;
const SECONDS: usize = 150;
const HZ: usize = 12;
const START: f64 = 1_670_492_760.0;

fn sensor(k: usize) -> [u8; 12] {
    let mut id = [0x60, 0xa3, 0xae, 0xc3, 0xd2, 0xdd, 0x98, 0x49, 0xd6, 0x93, 0x59, 0x70];
    id[11] += k as u8;
    id
}

/// Messages in arrival order (sensors interleaved per second), each holding
/// `per_message` records of one sensor.
fn messages(per_message: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for s in 0..SECONDS {
        for k in 0..SENSORS {
            for chunk in (0..HZ).collect::<Vec<_>>().chunks(per_message) {
                let mut msg = Vec::with_capacity(per_message * 70);
                for &j in chunk {
                    let ts = START + s as f64 + j as f64 / HZ as f64;
                    let p = (1_000_000 + s * 1_000 + j) as i64;
                    msg.extend(encode_raw(FEATURE_RAW, ts, &sensor(k), 0, [p, p / 2, p / 3], [-p / 10, 0, 1]));
                }
                out.push(msg);
            }
        }
    }
    out
}

fn readings_in(msgs: &[Vec<u8>]) -> u64 {
    msgs.iter().map(|m| (m.len() / 70) as u64).sum()
}

fn decode(c: &mut Criterion) {
    let decoder = Decoder::new(DecoderConfig::default());
    let mut group = c.benchmark_group("decode_raw");
    for (name, per_message) in [("1_per_msg", 1), ("12_per_msg", 12)] {
        let msgs = messages(per_message);
        group.throughput(Throughput::Elements(readings_in(&msgs)));
        let mut out: Vec<Reading> = Vec::with_capacity(SENSORS * SECONDS * HZ);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for m in &msgs {
                    let _ = decoder.decode(black_box(m), &mut out);
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

fn decode_window(c: &mut Criterion) {
    let decoder = Decoder::new(DecoderConfig::default());
    let mut group = c.benchmark_group("decode_window");
    for (name, per_message) in [("1_per_msg", 1), ("12_per_msg", 12)] {
        let msgs = messages(per_message);
        group.throughput(Throughput::Elements(readings_in(&msgs)));
        let mut out: Vec<Reading> = Vec::with_capacity(HZ);
        let mut closed = Vec::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                // Fresh windows each run: the same minutes are replayed.
                let mut windows = Windows::new(WindowConfig::default());
                for (seq, m) in msgs.iter().enumerate() {
                    out.clear();
                    if decoder.decode(black_box(m), &mut out).is_ok() {
                        for r in &out {
                            let _ = windows.push(r, seq as u64, 0);
                        }
                    }
                    // The ingest loop drains after every message batch.
                    windows.drain_closed(&mut closed);
                }
                windows.close_all(&mut closed);
                black_box(closed.len());
                closed.clear();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, decode_window);
criterion_main!(benches);
