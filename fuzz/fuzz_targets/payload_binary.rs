//! Binary meter payloads as ingest and predict decode them (default
//! [`DecoderConfig`]): feature 16 (ten-second means), 17 (one-minute
//! means), raw 18 (one or more 70-byte records), and whatever else arrives
//! on the topics, JSON included.
//!
//! Beyond "no panic": a failed decode appends nothing; an accepted reading
//! is in range and finite; one encoded again with `encode_*` decodes to the
//! same reading (for values the milli-unit integers hold exactly); the
//! readings go through the windows as ingest pushes them.
#![no_main]

use gridcast_core::payload::{self, FEATURE_ONE_MINUTE, FEATURE_RAW, FEATURE_TEN_SECOND};
use gridcast_core::{Decoder, DecoderConfig, Field, Reading, Source, WindowConfig, Windows};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoder = Decoder::new(DecoderConfig::default());
    let Some(out) = gridcast_fuzz::decode_checked(&decoder, data) else { return };
    // JSON readings can hold what the binary layouts cannot.
    let binary = matches!(data[0], FEATURE_TEN_SECOND | FEATURE_ONE_MINUTE | FEATURE_RAW);
    for r in &out {
        if let Some(again) = encode_again(r).filter(|_| binary) {
            let mut back = Vec::new();
            decoder.decode(&again, &mut back).expect("a re-encoded reading decodes");
            assert_eq!(back.as_slice(), std::slice::from_ref(r), "decode(encode(reading)) differs");
        }
    }
    let mut windows = Windows::new(WindowConfig::default());
    for (seq, r) in out.iter().enumerate() {
        let _ = windows.push(r, seq as u64, r.ts_ms);
    }
    let mut closed = Vec::new();
    windows.close_all(&mut closed);
});

/// The reading as its binary message again, when its values are exact in
/// milli-units (|v| < 1e12, as every real meter's are) and its id is an
/// ObjectId. The phase byte is not kept, so 0 is as good as any.
fn encode_again(r: &Reading) -> Option<Vec<u8>> {
    let milli = |f: Field| -> Option<i64> {
        let v = r.get(f)?;
        (v.abs() < 1e12).then(|| (v * 1000.0).round() as i64)
    };
    let id: [u8; 12] = hex::decode(r.sensor.as_str()).ok()?.try_into().ok()?;
    let ts = r.ts_ms as f64 / 1000.0;
    let p_q = || -> Option<([i64; 3], [i64; 3])> {
        Some((
            [milli(Field::PL1)?, milli(Field::PL2)?, milli(Field::PL3)?],
            [milli(Field::QL1)?, milli(Field::QL2)?, milli(Field::QL3)?],
        ))
    };
    match r.source {
        Source::Raw => {
            let (p, q) = p_q()?;
            Some(payload::encode_raw(FEATURE_RAW, ts, &id, 0, p, q).to_vec())
        }
        Source::TenSecond => {
            let (p, q) = p_q()?;
            Some(payload::encode_ten_second(ts, &id, 0, p, q).to_vec())
        }
        Source::OneMinute => {
            #[rustfmt::skip]
            let phases = [
                [Field::VL1, Field::IL1, Field::SL1, Field::PL1, Field::QL1, Field::PfL1, Field::PhiL1],
                [Field::VL2, Field::IL2, Field::SL2, Field::PL2, Field::QL2, Field::PfL2, Field::PhiL2],
                [Field::VL3, Field::IL3, Field::SL3, Field::PL3, Field::QL3, Field::PfL3, Field::PhiL3],
            ];
            let mut per_phase = [[0i32; 7]; 3];
            for (out, fields) in per_phase.iter_mut().zip(phases) {
                for (o, f) in out.iter_mut().zip(fields) {
                    *o = i32::try_from(milli(f)?).ok()?;
                }
            }
            let energy = [Field::AvgEnergyL1, Field::AvgEnergyL2, Field::AvgEnergyL3];
            let avg = [milli(energy[0])?, milli(energy[1])?, milli(energy[2])?];
            Some(payload::encode_one_minute(ts, &id, 0, per_phase, avg).to_vec())
        }
    }
}
