#!/usr/bin/env bash
# How long `gridcast retrain` takes on a year of minute data for one sensor.
#
#   bench/retrain/run.sh [UCI_FILE]   (default ../shared/data/uci_household_power_2007H1.csv)
#
# A year of minutes from the UCI household set (Hebrail and Berard, CC BY 4.0):
# bench/model/make_uci_csv.py turns it into a meter CSV; when the file holds
# only half a year, the half is repeated 182 days later (values unchanged), so
# the history is 365 days long. Champion: the shipped models/default.gcm;
# default training settings (600 trees at most, early stopping, all cores),
# 3-day holdout. Prints the retrain's output and one JSON line with the
# wall-clock seconds, CPU seconds and peak RSS; writes it to
# bench/results/retrain-year.json.
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
src=${1:-$repo/../shared/data/uci_household_power_2007H1.csv}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 "$repo/bench/model/make_uci_csv.py" "$src" "$work/half.csv" >/dev/null
python3 - "$work/half.csv" "$work/year.csv" <<'PY'
import csv, sys
from datetime import datetime, timedelta, timezone
rows = list(csv.reader(open(sys.argv[1])))
head, body = rows[0], rows[1:]
parse = lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ")
first = parse(body[0][0])
span = parse(body[-1][0]) - first
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(head)
    w.writerows(body)
    if span < timedelta(days=300):
        shift = timedelta(days=182)
        for r in body:
            t = parse(r[0]) + shift
            if t - first < timedelta(days=365):
                w.writerow([t.strftime("%Y-%m-%dT%H:%M:%SZ")] + r[1:])
PY
rows=$(($(wc -l < "$work/year.csv") - 1))

cargo build -q --release --manifest-path "$repo/Cargo.toml"
bin="$repo/target/release/gridcast"
cat > "$work/retrain.toml" <<TOML
[history]
csv = "$work/year.csv"
[champion]
model = "$repo/models/default.gcm"
[publish]
store = "$work/store"
TOML
set +e
/usr/bin/time -f '%e %U %S %M' -o "$work/time" "$bin" retrain --config "$work/retrain.toml"
status=$?
set -e
read -r wall user sys rss_kb < "$work/time"
json=$(printf '{"rows":%d,"exit_status":%d,"wall_seconds":%s,"cpu_seconds":%.2f,"peak_rss_mib":%.1f,"cores":%d,"date":"%s"}' \
  "$rows" "$status" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$rss_kb / 1024" | bc -l)" "$(nproc)" "$(date -u +%F)")
echo "$json"
mkdir -p "$repo/bench/results"
echo "$json" > "$repo/bench/results/retrain-year.json"
