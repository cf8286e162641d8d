//! Checks shared by the fuzz targets (`fuzz_targets/`): what must hold of
//! anything a decoder accepted, so a target finds wrong answers as well as
//! panics.

use gridcast_core::Decoder;
use gridcast_core::model::Model;
use gridcast_core::reading::Reading;

/// Event times the decoders accept: [2000-01-01, 2100-01-01], in ms. The
/// end is included: a time in seconds a hair below 2100 is in range and
/// rounds to the millisecond of 2100 itself.
const TS_MS: std::ops::RangeInclusive<i64> = 946_684_800_000..=4_102_444_800_000;

/// A decoded reading: a sensor id, a time in range, finite values, at
/// least one for JSON (binary layouts always carry theirs).
/// Decode `data` and check what every decode must hold: a failure appends
/// nothing and still describes itself; a success counts what it appended,
/// and each reading passes [`check_reading`]. The readings, or `None`.
pub fn decode_checked(decoder: &Decoder, data: &[u8]) -> Option<Vec<Reading>> {
    let mut out = Vec::new();
    match decoder.decode(data, &mut out) {
        Err(e) => {
            assert!(out.is_empty(), "a failed decode appended readings");
            let _ = (e.to_string(), e.kind());
            None
        }
        Ok(n) => {
            assert_eq!(n, out.len());
            out.iter().for_each(check_reading);
            Some(out)
        }
    }
}

pub fn check_reading(r: &Reading) {
    assert!(!r.sensor.as_str().is_empty(), "empty sensor id");
    assert!(TS_MS.contains(&r.ts_ms), "timestamp {} ms out of range", r.ts_ms);
    for (field, value) in r.iter() {
        assert!(value.is_finite(), "{field} = {value}");
    }
}

/// A loaded model: it saves and loads back the same, its row layout (if
/// any) fits its inputs, and the compiled forest predicts what walking
/// each tree does, on rows made from `data` (NaN, infinities and all).
pub fn check_model(model: &Model, data: &[u8]) {
    let again = Model::from_bytes(&model.to_bytes()).expect("a loaded model saves and loads again");
    assert_eq!(again.meta, model.meta);
    assert_eq!(again.trees(), model.trees());
    assert_eq!(again.feature_map(), model.feature_map());

    let nf = model.meta.feature_names.len();
    if let Some(layout) = model.row_layout() {
        assert_eq!(layout.width(), nf, "row layout width");
    }
    // Bounded work per input: a wide model gets a few rows only.
    if nf > 4096 || model.trees().len() > 4096 {
        return;
    }
    let mut values = data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let mut rows =
        vec![(0..nf).map(|_| values.next().unwrap_or(1.0)).collect(), (0..nf).map(|i| i as f32 - 1.5).collect()];
    rows.extend([0.0, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::MIN].map(|x| vec![x; nf]));
    // Rows on each split's threshold, where `<` and the compiled layout's
    // comparisons must still agree.
    let mut at_threshold = vec![vec![0.0f32; nf]; 3];
    for tree in model.trees() {
        for (&feature, &t) in tree.feature.iter().zip(&tree.threshold) {
            let i = feature as usize;
            if i < nf {
                at_threshold[0][i] = t;
                at_threshold[1][i] = next_toward(t, f32::INFINITY);
                at_threshold[2][i] = next_toward(t, f32::NEG_INFINITY);
            }
        }
    }
    rows.extend(at_threshold);
    for row in &rows {
        let got = model.predict_raw(row);
        let want = model.trees().iter().fold(model.meta.base_score, |acc, t| acc + t.predict(row));
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "forest gives {got}, the tree walk {want}, for row {row:?}"
        );
        let _ = model.predict_level(row);
    }
}

/// The float next to `x` in the direction of `to` (x itself at the ends).
fn next_toward(x: f32, to: f32) -> f32 {
    if x.is_nan() || x == to {
        return x;
    }
    if x == 0.0 {
        return if to > 0.0 { f32::from_bits(1) } else { -f32::from_bits(1) };
    }
    let up = (to > x) == (x > 0.0);
    f32::from_bits(if up { x.to_bits() + 1 } else { x.to_bits() - 1 })
}
