//! Single-row and batch prediction of the default model (criterion).
//! `cargo bench -p gridcast-trainer --bench predict`

use criterion::{Criterion, criterion_group, criterion_main};
use gridcast_core::model::Model;

fn bench(c: &mut Criterion) {
    let bytes =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/default.gcm")).expect("models/default.gcm");
    let m = Model::from_bytes(&bytes).unwrap();
    let w = m.meta.feature_names.len();
    let rows: Vec<f32> = (0..1000 * w).map(|i| ((i * 7919) % 3000) as f32).collect();
    let mut i = 0;
    c.bench_function("predict_row", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            std::hint::black_box(m.predict_raw(&rows[i * w..i * w + w]))
        })
    });
    let mut out = vec![0f32; 1000];
    c.bench_function("predict_batch_1000", |b| b.iter(|| m.forest().predict_batch(&rows, &mut out)));
}

criterion_group!(benches, bench);
criterion_main!(benches);
