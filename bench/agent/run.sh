#!/usr/bin/env bash
# What shipping a model to a device costs: push-to-serving time, bytes pushed,
# image size, and the predictor's memory serving 100 sensors in its container.
#
#   bench/agent/run.sh        (as root: it starts its own dockerd)
#
# Everything runs on this machine, on loopback, from the project's own
# builds: a private dockerd (data and socket under a temp dir, no bridge,
# host networking), Debian's docker-registry, Mosquitto with our config, the
# static edge-only gridcast (scripts/build-image's binary) in the image, and
# the release gridcast as ship, the agent and the simulator.
#
# 1. `ship base`, then model A on it to :stable; the agent (poll every 5 s)
#    starts it; `gridcast simulate` publishes 100 sensors at 12 Hz, real time.
# 2. Once A is committed: `ship model` B to :stable, timed from the start of
#    the push to the first /health answer with B's version (the agent's poll,
#    pull, graceful stop, start and model load).
# 3. With B serving the 100 sensors for 3 more minutes: the predictor
#    process's VmRSS and VmHWM, read from /proc through its container's pid.
#
# Prints one JSON line and writes it to bench/results/agent.json.
set -euo pipefail
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d /tmp/gcb.XXXX)
pids=()
log() { printf 'bench/agent: %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cleanup() {
  set +e
  [[ -S $work/d/docker.sock ]] && docker -H "unix://$work/d/docker.sock" rm -f $(docker -H "unix://$work/d/docker.sock" ps -aq) >/dev/null 2>&1
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do timeout 30 tail --pid="$pid" -f /dev/null 2>/dev/null; done
  grep " $work/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The image's static binary (edge only: predict, ingest, simulate), stripped,
# as scripts/build-image makes it; and the full gridcast for ship, train, the
# agent and the simulator.
(cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build -q --release --locked --no-default-features --target x86_64-unknown-linux-gnu --bin gridcast)
strip --strip-all -o "$work/gridcast-image" "${CARGO_TARGET_DIR:-$repo/target}/x86_64-unknown-linux-gnu/release/gridcast"
(cd "$repo" && cargo build -q --release --locked --bin gridcast)
gc=${CARGO_TARGET_DIR:-$repo/target}/release/gridcast

# Servers.
mqtt_port=$(free_port)
mkdir -p "$work/mosquitto"
sed -e "s|^listener .*|listener $mqtt_port 127.0.0.1|" -e "s|^persistence_location .*|persistence_location $work/mosquitto/|" \
  "$repo/deploy/mosquitto/mosquitto.conf" > "$work/mosquitto.conf"
[[ $(id -u) -eq 0 ]] && echo "user root" >> "$work/mosquitto.conf"
/usr/sbin/mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 & pids+=($!)
reg_port=$(free_port)
printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s/registry\nhttp:\n  addr: 127.0.0.1:%s\n' "$work" "$reg_port" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 & pids+=($!)
mkdir -p "$work/d"
dockerd --iptables=false --bridge=none --data-root "$work/d/data" --exec-root "$work/d/exec" \
  --pidfile "$work/d/docker.pid" -H "unix://$work/d/docker.sock" > "$work/dockerd.log" 2>&1 & pids+=($!)
for _ in $(seq 600); do
  curl -sf --unix-socket "$work/d/docker.sock" http://docker/_ping >/dev/null 2>&1 &&
    curl -sf "http://127.0.0.1:$reg_port/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done
reg=127.0.0.1:$reg_port

# Images: the base, and model A on it.
"$gc" train --csv "$repo/samples/uci_household_2007-01_14d.csv" --out "$work/b.gcm" --trees 200 >/dev/null 2>&1
"$gc" ship base --binary "$work/gridcast-image" --image "$reg/gridcast/predictor:base" > "$work/base.digest" 2> "$work/base.report"
"$gc" ship model --model "$repo/models/default.gcm" --base "$reg/gridcast/predictor:base" \
  --image "$reg/gridcast/predictor:stable" > /dev/null 2>&1

# The predictor's config (mounted over the image's) and the agent's.
health_port=$(free_port)
cat > "$work/predict.toml" <<TOML
[mqtt]
host = "127.0.0.1"
port = $mqtt_port
client_id = "bench-predict"
topics = ["bench/raw/#"]
[predict]
model = "/models/current.gcm"
[spool]
dir = "$work/spool"
[http]
listen = "127.0.0.1:$health_port"
[[sinks]]
kind = "file"
dir = "$work/lines"
[upload]
url = "file://$work/triplets"
TOML
cat > "$work/agent.toml" <<TOML
[agent]
image = "$reg/gridcast/predictor:stable"
poll_secs = 5
state_dir = "$work/agent"
docker_host = "unix://$work/d/docker.sock"
[container]
name = "bench-predict"
binds = ["$work:$work", "$work/predict.toml:/etc/gridcast/predict.toml:ro"]
health_url = "http://127.0.0.1:$health_port/health"
metrics_url = "http://127.0.0.1:$health_port/metrics"
[soak]
health_timeout_secs = 60
soak_secs = 70
min_judged = 1000000
[http]
listen = "127.0.0.1:$(free_port)"
TOML
"$gc" agent --config "$work/agent.toml" > "$work/agent.log" 2>&1 & pids+=($!)
"$gc" simulate --sensors 100 --speedup 1 --mqtt "127.0.0.1:$mqtt_port" --topic-prefix bench/raw \
  --readings-per-message 12 --client-id bench-meters > "$work/simulate.log" 2>&1 & pids+=($!)

wait_for() { # SECONDS WHAT COMMAND...
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || { log "gave up waiting for $what"; tail -20 "$work/agent.log" >&2; exit 1; }
    sleep 0.05
  done
}
serving() { curl -sf "http://127.0.0.1:$health_port/health" 2>/dev/null | grep -q "\"model_version\":\"$1"; }
committed() { python3 -c "import json,sys; s=json.load(open('$work/agent/state.json')); sys.exit(0 if s['trial'] is None and s['known_good'] else 1)" 2>/dev/null; }

version_a=$(head -1 "$repo/models/default.gcm" | python3 -c 'import json,sys; print(json.load(sys.stdin)["payload_sha256"])')
version_b=$(head -1 "$work/b.gcm" | python3 -c 'import json,sys; print(json.load(sys.stdin)["payload_sha256"])')
log "waiting for model A to serve and be committed (soak 70 s)"
wait_for 300 "model A committed" committed
serving "$version_a" || { log "A is not serving"; exit 1; }

log "shipping model B"
start=$(date +%s.%N)
"$gc" ship model --model "$work/b.gcm" --base "$reg/gridcast/predictor:base" \
  --image "$reg/gridcast/predictor:stable" > "$work/b.digest" 2> "$work/b.report"
pushed=$(date +%s.%N)
wait_for 120 "model B serving" serving "$version_b"
served=$(date +%s.%N)

log "B serves; 100 sensors for 3 more minutes before reading its memory"
sleep 180
container_pid=$(docker -H "unix://$work/d/docker.sock" inspect --format '{{.State.Pid}}' bench-predict)
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$container_pid/status")
hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$container_pid/status")
metrics=$(curl -sf "http://127.0.0.1:$health_port/metrics")
predictions=$(awk '/^gridcast_predictions_total / {print $2}' <<<"$metrics")
sensors_seen=$(ls "$work/lines" >/dev/null 2>&1 && cat "$work"/lines/*.lp 2>/dev/null | grep -o 'sensor=[0-9a-f]*' | sort -u | wc -l)

digest_b=$(cat "$work/b.digest")
manifest=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$reg/v2/gridcast/predictor/manifests/$digest_b")
compressed=$(python3 -c 'import json,sys; m=json.loads(sys.argv[1]); print(sum(l["size"] for l in m["layers"]) + m["config"]["size"])' "$manifest")
unpacked=$(docker -H "unix://$work/d/docker.sock" image inspect --format '{{.Size}}' "$reg/gridcast/predictor@$digest_b")
# "uploaded 1 layer(s) (N bytes)" and the config: what `ship model` sent.
report=$(cat "$work/b.report")
model_layer=$(python3 -c 'import json,sys; m=json.loads(sys.argv[1]); print(m["layers"][-1]["size"])' "$manifest")

json=$(python3 - "$start" "$pushed" "$served" "$compressed" "$unpacked" "$model_layer" "$rss_kb" "$hwm_kb" "$predictions" "$sensors_seen" "$report" <<'PY'
import json, sys, datetime, os
start, pushed, served = map(float, sys.argv[1:4])
compressed, unpacked, model_layer, rss, hwm = map(int, sys.argv[4:9])
print(json.dumps({
    "push_to_serving_seconds": round(served - start, 2),
    "push_seconds": round(pushed - start, 2),
    "poll_secs": 5,
    "ship_model_report": sys.argv[11].strip(),
    "model_layer_bytes_gzip": model_layer,
    "image_bytes_compressed": compressed,
    "image_bytes_unpacked": unpacked,
    "predictor_rss_mib": round(rss / 1024, 1),
    "predictor_peak_rss_mib": round(hwm / 1024, 1),
    "sensors": 100,
    "sensors_in_predictions": int(sys.argv[10]),
    "predictions_total": int(float(sys.argv[9] or 0)),
    "cores": os.cpu_count(),
    "load_average_1m": os.getloadavg()[0],
    "date": datetime.date.today().isoformat(),
}))
PY
)
echo "$json"
mkdir -p "$repo/bench/results"
echo "$json" > "$repo/bench/results/agent.json"
