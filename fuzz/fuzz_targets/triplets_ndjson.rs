//! Misprediction triplets as retrain reads them from the bucket: an object's
//! bytes decompressed by its key (`.ndjson.gz`, or as they are), then NDJSON
//! lines into [`Misprediction`]s, then the marked rows as training weights.
//! (`.zst` objects are left out: `decompress` does not bound what it
//! inflates, and a small zstd frame can inflate far more than gzip's ~1000
//! to 1, past the fuzzer's memory limit. Bounding it is a decision of its
//! own, not something fuzzing can settle.)
//!
//! Beyond "no panic": every non-blank line is counted once, as a triplet or
//! as a bad line.
#![no_main]

use std::collections::BTreeSet;

use gridcast_trainer::retrain::triplets::{self, Misprediction, TripletTally};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    read(data);
    if let Ok(raw) = triplets::decompress("device=d/date=2026-01-01/0-1-2.ndjson.gz", data) {
        read(&raw);
    }
});

fn read(raw: &[u8]) {
    let mut tally = TripletTally::default();
    let found: Vec<Misprediction> = triplets::parse_lines(raw, &mut tally);
    let lines = raw.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count() as u64;
    assert_eq!(tally.triplets, found.len() as u64);
    assert_eq!(tally.triplets + tally.bad_lines, lines, "every non-blank line is a triplet or a bad line");
    let marked: BTreeSet<i64> = found.iter().map(|m| m.features_start_ms.div_euclid(1000)).collect();
    let others = [0, i64::MIN, i64::MAX];
    let weights = triplets::row_weights(marked.iter().copied().chain(others), &marked, 3.0, &mut tally);
    let marked_others = others.iter().filter(|ts| marked.contains(ts)).count();
    assert_eq!(tally.used as usize, marked.len() + marked_others, "each marked row weighted once");
    assert_eq!(weights.iter().filter(|w| **w == 3.0).count(), marked.len() + marked_others);
    let _ = tally.to_string();
}
