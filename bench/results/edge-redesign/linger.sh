#!/usr/bin/env bash
# The predictor at 100 meters x 12 Hz, 3 minutes, with batch lingers of 250 and 1000 ms (strace counting fsyncs).
set -u
cd /work/main
export GRIDCAST_BENCH_STRACE=1 GRIDCAST_BENCH_MINUTES=3 GRIDCAST_BENCH_NO_BUILD=1
for ms in 250 1000; do
  echo "== $(date +%T) linger $ms" >&2
  GRIDCAST_PREDICT__BATCH_LINGER_MS=$ms cargo bench -q -p gridcast-predictor --bench predict_serving > /tmp/sbs/predict-strace-linger-$ms.json 2> /tmp/sbs/predict-strace-linger-$ms.err
done
echo "== $(date +%T) done" >&2
