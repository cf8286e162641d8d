#!/usr/bin/env bash
# Soak: 100 meters at 12 Hz, in real time, through ingest and predict for a
# long while. Reports loss (every window of every meter, its readings and the
# predictions made), memory over time (the RSS slope of both services), and
# the latency from a window's last reading to the window stored in InfluxDB.
#
#   bench/soak/run.sh [MINUTES]     (default 30)
#
# Everything runs on this machine, on loopback, from the project's own
# release build: Mosquitto with our config, InfluxDB 1.x (Debian's
# influxd, as scripts/install-deps installs it), `gridcast ingest` and
# `gridcast predict` (the shipped model) on the same topics, and
# `gridcast simulate --sensors 100 --speedup 1 --start now` as the meters
# (one reading per message: 1,200 messages/s).
#
# Sampled while it runs (bench/soak/sample.py): both services' VmRSS every
# 5 s, and every second the windows InfluxDB holds, each with the time it
# was first seen there. Prints one JSON line and writes it to
# bench/results/soak.json.
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
minutes=${1:-30}
sensors=100
work=$(mktemp -d /tmp/gcsoak.XXXX)
pids=()
log() { printf 'bench/soak: %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do timeout 30 tail --pid="$pid" -f /dev/null 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

# GRIDCAST_BIN: another build to soak (the report names it).
if [[ -z ${GRIDCAST_BIN:-} ]]; then
  (cd "$repo" && cargo build -q --release --locked --bin gridcast)
fi
gc=${GRIDCAST_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/gridcast}

# Servers.
mqtt_port=$(free_port)
mkdir -p "$work/mosquitto"
sed -e "s|^listener .*|listener $mqtt_port 127.0.0.1|" -e "s|^persistence_location .*|persistence_location $work/mosquitto/|" \
  "$repo/deploy/mosquitto/mosquitto.conf" > "$work/mosquitto.conf"
[[ $(id -u) -eq 0 ]] && echo "user root" >> "$work/mosquitto.conf"
/usr/sbin/mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 & pids+=($!)
influx_port=$(free_port)
cat > "$work/influxdb.conf" <<CONF
reporting-enabled = false
reporting-disabled = true
bind-address = "127.0.0.1:$(free_port)"
[meta]
  dir = "$work/influxdb/meta"
[data]
  dir = "$work/influxdb/data"
  wal-dir = "$work/influxdb/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:$influx_port"
  log-enabled = false
CONF
env -u INFLUXDB_HTTP_BIND_ADDRESS influxd -config "$work/influxdb.conf" > "$work/influxdb.log" 2>&1 & pids+=($!)
influx=http://127.0.0.1:$influx_port
for _ in $(seq 300); do curl -sf "$influx/ping" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf -XPOST "$influx/query" --data-urlencode "q=CREATE DATABASE soak" >/dev/null

# The services, each with its own spool, on the same topics.
ingest_port=$(free_port)
predict_port=$(free_port)
cat > "$work/ingest.toml" <<TOML
[mqtt]
host = "127.0.0.1"
port = $mqtt_port
client_id = "soak-ingest"
topics = ["soak/raw/#"]
[pipeline]
measurement = "meter_window"
# Three keep-alives (30 s each): a quiet meter's last window is written 90 s
# after its last reading (the default is 300).
idle_close_secs = 90
[spool]
dir = "$work/ingest-spool"
[http]
listen = "127.0.0.1:$ingest_port"
[[sinks]]
kind = "influxdb_v1"
url = "$influx"
database = "soak"
TOML
cat > "$work/predict.toml" <<TOML
[mqtt]
host = "127.0.0.1"
port = $mqtt_port
client_id = "soak-predict"
topics = ["soak/raw/#"]
[predict]
model = "$repo/models/default.gcm"
measurement = "prediction"
idle_close_secs = 90
[spool]
dir = "$work/predict-spool"
[http]
listen = "127.0.0.1:$predict_port"
[[sinks]]
kind = "influxdb_v1"
url = "$influx"
database = "soak"
[upload]
url = "file://$work/triplets"
TOML
"$gc" ingest --config "$work/ingest.toml" > "$work/ingest.log" 2>&1 & ingest_pid=$!; pids+=($ingest_pid)
"$gc" predict --config "$work/predict.toml" > "$work/predict.log" 2>&1 & predict_pid=$!; pids+=($predict_pid)
for port in $ingest_port $predict_port; do
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
done

python3 "$repo/bench/soak/sample.py" sample "$work" "$influx" "$ingest_pid" "$predict_pid" & sampler=$!; pids+=($sampler)
# Start on a minute boundary: --start now stamps the first reading with the
# current minute's start, and the latency below counts from a window's end.
sleep $((60 - $(date +%s) % 60))
log "$sensors meters at 12 Hz for $minutes minutes (real time)"
started=$(date +%s)
"$gc" simulate --sensors $sensors --speedup 1 --minutes "$minutes" --start now --mqtt "127.0.0.1:$mqtt_port" \
  --topic-prefix soak/raw --client-id soak-meters > "$work/simulate.log" 2>&1
ended=$(date +%s)
# The last minute closes when the meters have been quiet for idle_close_secs.
log "meters done; waiting for the last windows (idle close, 90 s)"
sleep 100
kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
curl -sf "http://127.0.0.1:$ingest_port/metrics" > "$work/ingest.metrics"
curl -sf "http://127.0.0.1:$predict_port/metrics" > "$work/predict.metrics"

json=$(python3 "$repo/bench/soak/sample.py" report "$work" "$influx" "$sensors" "$minutes" "$started" "$ended" "$gc")
echo "$json"
mkdir -p "$repo/bench/results"
echo "$json" > "$repo/bench/results/soak.json"
