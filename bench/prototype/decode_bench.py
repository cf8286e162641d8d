#!/usr/bin/env python3
"""The prototype's decoder, as a baseline for gridcast's benchmark.

The prototype (see ../shared/clemap) decoded each MQTT message with Python's
`struct` module, driven by a format dict loaded from `mqtt_msg_format.json`:
the first byte picks the layout, `struct.unpack` splits the message, every
`float` field is divided by its `divide_by`, and each reading becomes a dict.
This script does exactly that for raw 12 Hz readings (feature 18, the
type-16 layout `=Bd12sBqqqqqq`, 70 bytes), then folds the dicts into
per-minute means per sensor in plain dicts (no pandas), and reports the
throughput of decode + window on one core.

Input: `--payloads FILE` (concatenated 70-byte records, e.g. written by the
Rust benchmark, each record one message), or N records generated here with
the same layout (`--readings N`). Generation is not timed.

Output, one JSON line on stdout:
  {"impl": "python-struct", "readings": N, "seconds": s,
   "readings_per_sec": r, "cpu_seconds": c}
(cpu from time.process_time). A summary for humans goes to stderr.
"""

import argparse
import json
import struct
import sys
import time

RAW_FEATURE = 18
RECORD_LEN = 70


def _field(label, kind, divide_by=None):
    field = {"label": label, "type": kind}
    if divide_by is not None:
        field["divide_by"] = divide_by
    return field


# The prototype's format dict for type 16 (mqtt_msg_format.json), which raw
# readings (type 18) share.
_TEN_SECOND_LAYOUT = {
    "encoding": "=Bd12sBqqqqqq",
    "class": "TenSecData",
    "fields": [
        _field("feature_type", "int"),
        _field("timestamp", "int"),
        _field("sensor_id", "ObjectId"),
        _field("phase", "int"),
    ]
    + [_field(name, "float", "1000") for name in ("p_l1", "p_l2", "p_l3", "q_l1", "q_l2", "q_l3")],
}
MSG_FORMAT = {
    "data/realtime/feature/+": {
        "16": _TEN_SECOND_LAYOUT,
        "18": dict(_TEN_SECOND_LAYOUT, **{"class": "RawData"}),
    }
}


def load_format(path):
    """The prototype's JSON file, if given; type 18 borrows type 16's layout."""
    with open(path, encoding="utf-8") as f:
        fmt = json.load(f)
    for layouts in fmt.values():
        if "16" in layouts and "18" not in layouts:
            layouts["18"] = dict(layouts["16"], **{"class": "RawData"})
    return fmt


def decode(payload, layouts):
    """One message to a dict, the prototype's way."""
    layout = layouts.get(str(payload[0]))
    if layout is None:
        raise ValueError("unknown feature type %d" % payload[0])
    values = struct.unpack(layout["encoding"], payload)
    reading = {}
    for field, value in zip(layout["fields"], values):
        kind = field["type"]
        if kind == "float":
            value = value / float(field["divide_by"])
        elif kind == "ObjectId":
            value = value.hex()
        reading[field["label"]] = value
    return reading


def minute_means(readings_iter):
    """Per (sensor, minute): mean of every numeric field, in plain dicts."""
    sums = {}
    counts = {}
    for r in readings_iter:
        key = (r["sensor_id"], int(r["timestamp"] // 60) * 60)
        acc = sums.get(key)
        if acc is None:
            acc = sums[key] = {}
            counts[key] = 0
        counts[key] += 1
        for label, value in r.items():
            if label in ("feature_type", "timestamp", "sensor_id", "phase"):
                continue
            acc[label] = acc.get(label, 0.0) + value
    return {key: {label: total / counts[key] for label, total in acc.items()} for key, acc in sums.items()}


def generate(n, sensors=3, start=1_700_000_040):
    """n raw records, 12 Hz per sensor, sensors interleaved, plausible values."""
    pack = struct.Struct("=Bd12sBqqqqqq").pack
    ids = [b"gridcast" + i.to_bytes(4, "big") for i in range(sensors)]
    out = []
    for i in range(n):
        sensor = i % sensors
        tick = i // sensors
        ts = (start * 12 + tick) / 12.0
        base = 500_000 + 1000 * (tick % 720) + 100_000 * sensor
        p = (base, base // 2, base * 3)
        q = tuple(v * 3 // 10 for v in p)
        out.append(pack(RAW_FEATURE, ts, ids[sensor], 0, *p, *q))
    return out


def read_payloads(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) % RECORD_LEN:
        raise SystemExit("%s: %d bytes is not a whole number of %d-byte records" % (path, len(data), RECORD_LEN))
    return [data[i : i + RECORD_LEN] for i in range(0, len(data), RECORD_LEN)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payloads", help="file of concatenated 70-byte raw records (one message each)")
    parser.add_argument("--readings", type=int, default=500_000, help="records to generate without --payloads")
    parser.add_argument("--format", help="the prototype's mqtt_msg_format.json (default: built in)")
    args = parser.parse_args()

    payloads = read_payloads(args.payloads) if args.payloads else generate(args.readings)
    fmt = load_format(args.format) if args.format else MSG_FORMAT
    layouts = fmt["data/realtime/feature/+"]

    wall0, cpu0 = time.perf_counter(), time.process_time()
    means = minute_means(decode(p, layouts) for p in payloads)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0

    n = len(payloads)
    result = {
        "impl": "python-struct",
        "readings": n,
        "seconds": wall,
        "readings_per_sec": n / wall if wall > 0 else 0.0,
        "cpu_seconds": cpu,
    }
    print(json.dumps(result))
    print(
        "python-struct: %d readings -> %d minute windows in %.3f s (%.0f readings/s, %.3f s CPU), Python %s"
        % (n, len(means), wall, result["readings_per_sec"], cpu, sys.version.split()[0]),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
