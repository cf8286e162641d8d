#!/usr/bin/env python3
"""Turn the UCI "Individual household electric power consumption" file into
gridcast's meter CSV (timestamp,p_l1,p_l2,p_l3 in watts).

Source: Hebrail and Berard, UCI Machine Learning Repository, CC BY 4.0.
Transformation (the same one samples/README.md documents):
  timestamp = Date + Time, written as RFC 3339 with a Z suffix (the source is
              the household's local clock; we keep the wall-clock values)
  p_l1 = Sub_metering_1 (Wh per minute) * 60          -> W, kitchen
  p_l2 = Sub_metering_2 * 60                           -> W, laundry
  p_l3 = Global_active_power * 1000 - (sm1+sm2+sm3)*60 -> W, rest of household
Rows with a missing value (`?` or empty) are left out: they become gaps.

usage: make_uci_csv.py IN.csv OUT.csv [--start 2007-01-01] [--days N]
"""
import argparse
import csv
from datetime import datetime, timedelta


def parse_date(d: str) -> datetime:
    day, month, year = d.split("/")
    year = int(year)
    if year < 100:
        year += 2000
    return datetime(year, int(month), int(day))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--start", default=None, help="first day kept, YYYY-MM-DD")
    ap.add_argument("--days", type=int, default=None, help="number of days kept")
    a = ap.parse_args()
    start = datetime.fromisoformat(a.start) if a.start else None
    end = start + timedelta(days=a.days) if (start and a.days) else None
    kept = skipped = 0
    with open(a.inp, newline="") as f, open(a.out, "w", newline="") as g:
        r = csv.DictReader(f)
        g.write("timestamp,p_l1,p_l2,p_l3\n")
        for row in r:
            vals = [row["Global_active_power"], row["Sub_metering_1"],
                    row["Sub_metering_2"], row["Sub_metering_3"]]
            h, m, s = (int(x) for x in row["Time"].split(":"))
            ts = parse_date(row["Date"]) + timedelta(hours=h, minutes=m, seconds=s)
            if start and ts < start:
                continue
            if end and ts >= end:
                break
            if any(v.strip() in ("", "?") for v in vals):
                skipped += 1
                continue
            gap, s1, s2, s3 = (float(v) for v in vals)
            p1 = s1 * 60.0
            p2 = s2 * 60.0
            p3 = gap * 1000.0 - (s1 + s2 + s3) * 60.0
            g.write(f"{ts.strftime('%Y-%m-%dT%H:%M:%SZ')},{p1:g},{p2:g},{round(p3, 1):g}\n")
            kept += 1
    print(f"wrote {kept} rows to {a.out}, left out {skipped} rows with missing values")


if __name__ == "__main__":
    main()
