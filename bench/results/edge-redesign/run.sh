#!/usr/bin/env bash
# Side by side: before (e60a92e + bench patch) and after (main), one after the other.
set -u
B=/tmp/gridcast-before; A=/work/main; OUT=/tmp/sbs
pb() { (cd $B && CARGO_TARGET_DIR=/tmp/before-target "$@"); }
pa() { (cd $A && "$@"); }
step() { echo "== $(date +%T) $*" >&2; }
step predict before;  pb cargo bench -q -p gridcast-predictor --bench predict_serving > $OUT/predict-before.json 2> $OUT/predict-before.err
step predict after;   pa cargo bench -q -p gridcast-predictor --bench predict_serving > $OUT/predict-after.json 2> $OUT/predict-after.err
for i in 1 2; do
  step ingest before $i; pb cargo bench -q -p gridcast-ingest --bench ingest_throughput > $OUT/ingest-before-$i.json 2> $OUT/ingest-before-$i.err
  step ingest after $i;  pa cargo bench -q -p gridcast-ingest --bench ingest_throughput > $OUT/ingest-after-$i.json 2> $OUT/ingest-after-$i.err
done
export GRIDCAST_BENCH_STRACE=1 GRIDCAST_BENCH_MINUTES=3
step predict strace before; pb cargo bench -q -p gridcast-predictor --bench predict_serving > $OUT/predict-strace-before.json 2> $OUT/predict-strace-before.err
step predict strace after;  pa cargo bench -q -p gridcast-predictor --bench predict_serving > $OUT/predict-strace-after.json 2> $OUT/predict-strace-after.err
step ingest strace before;  pb cargo bench -q -p gridcast-ingest --bench ingest_throughput > $OUT/ingest-strace-before.json 2> $OUT/ingest-strace-before.err
step ingest strace after;   pa cargo bench -q -p gridcast-ingest --bench ingest_throughput > $OUT/ingest-strace-after.json 2> $OUT/ingest-strace-after.err
step done
