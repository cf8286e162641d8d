"""The soak's sampler and report (bench/soak/run.sh calls both).

  sample.py sample WORK INFLUX INGEST_PID PREDICT_PID
      Until killed: every 5 s both services' VmRSS (KiB) to WORK/rss.csv;
      every second the raw windows InfluxDB holds, each with the wall time
      it was first seen there, to WORK/seen.csv.
  sample.py report WORK INFLUX SENSORS MINUTES STARTED ENDED BINARY
      Prints the JSON report.
"""

import csv
import datetime
import json
import os
import sys
import time
import urllib.parse
import urllib.request


def query(influx, q):
    url = f"{influx}/query?" + urllib.parse.urlencode({"db": "soak", "q": q, "epoch": "ms"})
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.load(response)
    series = body["results"][0].get("series", [])
    return [row for s in series for row in s["values"]]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sample(work, influx, ingest_pid, predict_pid):
    seen = {}
    since = 0
    next_rss = 0.0
    with open(f"{work}/rss.csv", "w", newline="") as rss_file, open(f"{work}/seen.csv", "w", newline="") as seen_file:
        rss_out, seen_out = csv.writer(rss_file), csv.writer(seen_file)
        while True:
            now = time.time()
            if now >= next_rss:
                rss_out.writerow([round(now, 3), rss_kib(ingest_pid), rss_kib(predict_pid)])
                rss_file.flush()
                next_rss = now + 5
            try:
                rows = query(influx, f"SELECT sensor, readings FROM meter_window WHERE source = 'raw' AND time >= {since}ms")
            except Exception:
                rows = []
            now = time.time()
            for t, sensor, _readings in rows:
                if (sensor, t) not in seen:
                    seen[(sensor, t)] = now
                    seen_out.writerow([sensor, t, round(now, 3)])
            seen_file.flush()
            if rows:
                since = max(t for t, _, _ in rows) - 120_000
            time.sleep(1)


def slope_per_min(points):
    """Least-squares slope of (seconds, value) pairs, per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    return sxy / sxx * 60 if sxx else 0.0


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def metric(path, name):
    """The metric's value, summed over its labels; 0 if absent."""
    total = 0.0
    with open(path) as f:
        for line in f:
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def report(work, influx, sensors, minutes, started, ended, binary):
    sensors, minutes, started, ended = int(sensors), int(minutes), int(started), int(ended)
    rows = query(influx, "SELECT sensor, readings FROM meter_window WHERE source = 'raw'")
    windows = {(s, t): r for t, s, r in rows}
    per_sensor = {}
    for (s, t), r in windows.items():
        per_sensor.setdefault(s, []).append((t, r))
    full = sum(1 for r in windows.values() if r == 720)
    partial = [(s, t, r) for (s, t), r in windows.items() if r != 720]
    predictions = query(influx, "SELECT count(predicted) FROM prediction")
    predicted = int(predictions[0][1]) if predictions else 0

    rss = []
    with open(f"{work}/rss.csv") as f:
        for t, ingest, predict in csv.reader(f):
            rss.append((float(t), int(ingest), int(predict)))
    t0 = rss[0][0] if rss else 0
    # Memory settles in the first minutes (buffers, the first windows and
    # predictions): the slope is taken over the rest of the run.
    settled = [r for r in rss if r[0] - t0 >= 120]

    latencies = []
    with open(f"{work}/seen.csv") as f:
        for sensor, t, seen in csv.reader(f):
            window_end = int(t) / 1000 + 60
            latencies.append(float(seen) - window_end)
    latencies.sort()
    buckets = [2, 5, 6, 7, 8, 10, 15, 30, 60]
    histogram = {f"<= {b} s": sum(1 for x in latencies if x <= b) for b in buckets}
    histogram["> 60 s"] = sum(1 for x in latencies if x > 60)

    simulate_log = open(f"{work}/simulate.log").read().strip().splitlines()
    return {
        "binary": binary,
        "sensors": sensors,
        "minutes": minutes,
        "hz": 12,
        "wall_seconds": ended - started,
        "simulate_summary": simulate_log[-1] if simulate_log else "",
        "windows_expected": sensors * minutes,
        "windows_stored": len(windows),
        "windows_with_720_readings": full,
        "windows_other": [{"sensor": s, "time_ms": t, "readings": r} for s, t, r in sorted(partial)[:20]],
        "sensors_stored": len(per_sensor),
        "predictions_stored": predicted,
        "ingest_late_readings": metric(f"{work}/ingest.metrics", "gridcast_stage_late_readings_total"),
        "ingest_rejected": metric(f"{work}/ingest.metrics", "gridcast_decode_errors_total"),
        "ingest_readings": metric(f"{work}/ingest.metrics", "gridcast_stage_readings_total"),
        "predict_readings": metric(f"{work}/predict.metrics", "gridcast_stage_readings_total"),
        "rss_kib": {
            "ingest_first": rss[0][1] if rss else None,
            "ingest_last": rss[-1][1] if rss else None,
            "ingest_max": max((r[1] for r in rss), default=None),
            "predict_first": rss[0][2] if rss else None,
            "predict_last": rss[-1][2] if rss else None,
            "predict_max": max((r[2] for r in rss), default=None),
            "ingest_slope_kib_per_min_after_2_min": round(slope_per_min([(r[0], r[1]) for r in settled]), 2),
            "predict_slope_kib_per_min_after_2_min": round(slope_per_min([(r[0], r[2]) for r in settled]), 2),
            "samples": len(rss),
        },
        "window_latency_seconds": {
            "what": "wall time a window was first seen in InfluxDB (polled every 1 s) minus its end",
            "windows": len(latencies),
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "max": latencies[-1] if latencies else None,
            "histogram": histogram,
        },
        "cores": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "date": datetime.date.today().isoformat(),
    }


if __name__ == "__main__":
    if sys.argv[1] == "sample":
        sample(*sys.argv[2:6])
    else:
        print(json.dumps(report(*sys.argv[2:9])))
