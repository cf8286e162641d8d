#!/usr/bin/env python3
"""One command, all model measurements side by side: gridcast's trees vs pip xgboost.

  python3 bench/model/bench_vs_xgboost.py [--uci ../shared/data/uci_household_power_2007H1.csv]

1. Accuracy: backtest MAE on the UCI household data (last 20%) for persistence, xgboost
   (level/squared, level/absolute, change/squared, change/absolute) and ours, all on the
   SAME feature table (written by `gridcast-model features`) and the SAME split.
2. Prediction latency: one XGBoost model (250 trees, depth 6) run by xgboost inplace_predict
   and by our evaluator after import; single row and batch; predictions compared.
3. Training wall time: ours vs xgboost hist, same threads (2), trees (250), depth (6),
   learning rate, on 500k synthetic rows x 30 features; MAE on 100k held-out rows.

Writes bench/results/model.json and bench/results/model_backtest.png.
Reads ../shared (benchmarks may; tests must not). Takes a few minutes on 2 cores.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import xgboost as xgb

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
THREADS = 2


def sh(*args, capture=True):
    r = subprocess.run(list(args), check=True, text=True, capture_output=capture, cwd=ROOT)
    return r.stdout


def build() -> str:
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    sh("cargo", "build", "--release", "-q", "-p", "gridcast-trainer", "--bin", "gridcast-model", capture=False)
    return os.path.join(target, "release", "gridcast-model")


def mae(a, b):
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def accuracy(bin_, uci_csv, tmp):
    feat_csv = os.path.join(tmp, "features.csv")
    sh(bin_, "features", "--csv", uci_csv, "--out", feat_csv)
    df = pd.read_csv(feat_csv)
    df = df[df["target"].notna()].reset_index(drop=True)
    n_train = int(len(df) * 0.8)
    names = [c for c in df.columns if c not in ("timestamp", "current_total", "next_total", "target")]
    X = df[names].to_numpy(np.float32)
    tr, te = slice(0, n_train), slice(n_train, None)
    actual = df["next_total"].to_numpy()[te]
    current = df["current_total"].to_numpy()[te]
    res = {"rows_train": n_train, "rows_test": int(len(df) - n_train), "features": len(names),
           "persistence_mae": mae(current, actual)}
    xgb_params = {"tree_method": "hist", "max_depth": 6, "eta": 0.05, "nthread": THREADS, "seed": 1}
    for target in ("level", "change"):
        y = (df["next_total"] if target == "level" else df["target"]).to_numpy(np.float32)
        for loss, obj in (("squared", "reg:squarederror"), ("absolute", "reg:absoluteerror")):
            d = xgb.DMatrix(X[tr], label=y[tr], missing=np.nan)
            t0 = time.perf_counter()
            bst = xgb.train({**xgb_params, "objective": obj}, d, num_boost_round=400)
            secs = time.perf_counter() - t0
            p = bst.inplace_predict(X[te])
            if target == "change":
                p = p + current
            res[f"xgboost_{target}_{loss}_mae"] = mae(p, actual)
            res[f"xgboost_{target}_{loss}_train_s"] = secs
            print(f"  xgboost {target}/{loss}: MAE {res[f'xgboost_{target}_{loss}_mae']:.2f} W ({secs:.1f} s)", flush=True)
    # xgboost with our default knobs (min child weight 20, 600 trees), for a like-for-like row
    d = xgb.DMatrix(X[tr], label=df["target"].to_numpy(np.float32)[tr], missing=np.nan)
    t0 = time.perf_counter()
    bst = xgb.train({**xgb_params, "objective": "reg:absoluteerror", "min_child_weight": 20}, d, num_boost_round=600)
    res["xgboost_change_absolute_mcw20_600_train_s"] = time.perf_counter() - t0
    res["xgboost_change_absolute_mcw20_600_mae"] = mae(bst.inplace_predict(X[te]) + current, actual)
    print(f"  xgboost change/absolute mcw20 600 trees: MAE {res['xgboost_change_absolute_mcw20_600_mae']:.2f} W", flush=True)
    plot = os.path.join(ROOT, "bench", "results", "model_backtest.png")
    for target, loss, extra in (("change", "absolute", ["--plot", plot]), ("level", "squared", ["--no-plot"])):
        out = sh(bin_, "backtest", "--csv", uci_csv, "--json", "--threads", str(THREADS),
                 "--target", target, "--loss", loss, *extra)
        r = json.loads(out)
        res[f"ours_{target}_{loss}_mae"] = r["mae"]
        res[f"ours_{target}_{loss}_train_s"] = r["train_seconds"]
        res[f"ours_{target}_{loss}_trees"] = r["trees"]
        if target == "change":
            res["ours_backtest"] = r
        print(f"  ours {target}/{loss}: MAE {r['mae']:.2f} W ({r['trees']} trees, {r['train_seconds']:.1f} s)", flush=True)
        assert r["test_rows"] == res["rows_test"], "ours and xgboost scored different rows"
    return res, df, names, n_train


def latency(bin_, df, names, n_train, tmp):
    X = df[names].to_numpy(np.float32)
    y = df["target"].to_numpy(np.float32)
    d = xgb.DMatrix(X[:n_train], label=y[:n_train], missing=np.nan, feature_names=names)
    bst = xgb.train({"tree_method": "hist", "max_depth": 6, "eta": 0.05, "nthread": THREADS,
                     "objective": "reg:squarederror", "seed": 1}, d, num_boost_round=250)
    model = os.path.join(tmp, "xgb250.json")
    bst.save_model(model)
    Xt = X[n_train:]
    test_csv = os.path.join(tmp, "test_features.csv")
    pd.DataFrame(Xt, columns=names).to_csv(test_csv, index=False, na_rep="")
    res = {"trees": 250, "depth": 6, "rows": int(len(Xt))}
    # xgboost single row: one inplace_predict call per row, 1 thread
    bst.set_param({"nthread": 1})
    rows = [Xt[i:i + 1] for i in range(2000)]
    for r in rows[:100]:
        bst.inplace_predict(r)
    t0 = time.perf_counter()
    reps = 3
    for _ in range(reps):
        for r in rows:
            bst.inplace_predict(r)
    res["xgboost_single_row_us"] = (time.perf_counter() - t0) / (reps * len(rows)) * 1e6
    for nt in (1, THREADS):
        bst.set_param({"nthread": nt})
        bst.inplace_predict(Xt)
        t0 = time.perf_counter()
        ref = bst.inplace_predict(Xt)
        res[f"xgboost_batch_ns_per_row_{nt}t"] = (time.perf_counter() - t0) / len(Xt) * 1e9
    ours_pred = os.path.join(tmp, "ours_pred.txt")
    r = json.loads(sh(bin_, "latency", "--model", model, "--csv", test_csv, "--predictions", ours_pred))
    res["ours_single_row_us"] = r["single_row_ns"] / 1000
    res["ours_batch_ns_per_row_1t"] = r["batch_ns_per_row"]
    ours = np.loadtxt(ours_pred)
    rel = np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-6)
    res["max_relative_diff_vs_xgboost"] = float(rel.max())
    res["max_abs_diff_vs_xgboost_w"] = float(np.abs(ours - ref).max())
    res["single_row_speedup"] = res["xgboost_single_row_us"] / res["ours_single_row_us"]
    return res


def synthetic(n, f, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)).astype(np.float32)
    y = (np.sin(X[:, 0] * 2) * 3 + np.where(X[:, 1] > 0.3, 2.0, -1.0) + X[:, 2] * X[:, 3]
         + 0.5 * X[:, 4] ** 2 + 0.3 * X[:, 5:10].sum(axis=1) + rng.normal(size=n) * 0.5)
    X[rng.random((n, f)) < 0.03] = np.nan
    return X, y.astype(np.float32)


def training(bin_, tmp, n_train=500_000, n_test=100_000, f=30, trees=250, depth=6, eta=0.1):
    X, y = synthetic(n_train + n_test, f, 3)
    paths = {}
    for name, sl in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
        paths[name] = os.path.join(tmp, f"{name}.f32")
        np.hstack([X[sl], y[sl, None]]).astype("<f4").tofile(paths[name])
    res = {"rows": n_train, "features": f, "trees": trees, "depth": depth, "threads": THREADS, "eta": eta}
    for loss, obj in (("squared", "reg:squarederror"), ("absolute", "reg:absoluteerror")):
        t0 = time.perf_counter()
        d = xgb.QuantileDMatrix(X[:n_train], label=y[:n_train], missing=np.nan, max_bin=256, nthread=THREADS)
        t1 = time.perf_counter()
        bst = xgb.train({"tree_method": "hist", "max_depth": depth, "eta": eta, "nthread": THREADS,
                         "objective": obj, "seed": 1, "max_bin": 256}, d, num_boost_round=trees)
        t2 = time.perf_counter()
        p = bst.inplace_predict(X[n_train:])
        res[f"xgboost_{loss}_seconds"] = t2 - t0
        res[f"xgboost_{loss}_seconds_excl_dmatrix"] = t2 - t1
        res[f"xgboost_{loss}_test_mae"] = mae(p, y[n_train:])
        r = json.loads(sh(bin_, "train-time", "--train", paths["train"], "--test", paths["test"],
                          "--features", str(f), "--trees", str(trees), "--depth", str(depth),
                          "--threads", str(THREADS), "--learning-rate", str(eta), "--loss", loss))
        res[f"ours_{loss}_seconds"] = r["seconds"]
        res[f"ours_{loss}_test_mae"] = r["test_mae"]
        print(f"  {loss}: xgboost {t2 - t0:.1f} s MAE {res[f'xgboost_{loss}_test_mae']:.4f} | "
              f"ours {r['seconds']:.1f} s MAE {r['test_mae']:.4f}", flush=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uci", default=os.path.join(ROOT, "..", "shared", "data", "uci_household_power_2007H1.csv"))
    ap.add_argument("--skip", nargs="*", default=[], choices=["accuracy", "latency", "training"])
    a = ap.parse_args()
    bin_ = build()
    out = {"xgboost_version": xgb.__version__, "threads": THREADS, "cpu_count": os.cpu_count(),
           "load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        uci_csv = os.path.join(tmp, "uci.csv")
        sh(sys.executable, os.path.join(ROOT, "bench", "model", "make_uci_csv.py"), a.uci, uci_csv)
        print("accuracy (UCI 2007H1, last 20%):", flush=True)
        acc, df, names, n_train = accuracy(bin_, uci_csv, tmp)
        out["accuracy"] = acc
        if "latency" not in a.skip:
            print("latency (XGBoost model, 250 trees depth 6):", flush=True)
            out["latency"] = latency(bin_, df, names, n_train, tmp)
        if "training" not in a.skip:
            print("training (500k x 30 synthetic, 250 trees depth 6, 2 threads):", flush=True)
            out["training"] = training(bin_, tmp)
    out["load_average_at_end"] = os.getloadavg()
    path = os.path.join(ROOT, "bench", "results", "model.json")
    with open(path, "w") as g:
        json.dump(out, g, indent=2)
    print_table(out)
    print(f"wrote {path}")


def print_table(o):
    a = o["accuracy"]
    print("\n== backtest MAE, W (UCI 2007H1, train first 80%, one step ahead on last 20%) ==")
    best_xgb = min(v for k, v in a.items() if k.startswith("xgboost_") and k.endswith("_mae"))
    print(f"(load average {o['load_average_at_start']} at start, {o['load_average_at_end']} at end, {o['cpu_count']} CPUs)")
    rows = [("persistence", a["persistence_mae"])]
    rows += [(f"xgboost {t}/{l}", a[f"xgboost_{t}_{l}_mae"]) for t in ("level", "change") for l in ("squared", "absolute")]
    rows += [("xgboost change/abs mcw20 600", a["xgboost_change_absolute_mcw20_600_mae"])]
    rows += [("ours change/absolute", a["ours_change_absolute_mae"]), ("ours level/squared", a["ours_level_squared_mae"])]
    if "linear_mae" in a.get("ours_backtest", {}):
        rows.append(("linear AR (linfa-linear)", a["ours_backtest"]["linear_mae"]))
    for name, v in rows:
        print(f"  {name:30s} {v:8.2f}")
    ours = a["ours_change_absolute_mae"]
    print(f"  skill vs persistence: {1 - ours / a['persistence_mae']:.3f}; "
          f"ours <= best of persistence and xgboost ({min(best_xgb, a['persistence_mae']):.2f}): "
          f"{ours <= min(best_xgb, a['persistence_mae'])}")
    if "latency" in o:
        lt = o["latency"]
        print("\n== predict latency, same XGBoost model (250 trees, depth 6) ==")
        print(f"  single row: ours {lt['ours_single_row_us']:.3f} us, xgboost inplace_predict {lt['xgboost_single_row_us']:.1f} us "
              f"-> {lt['single_row_speedup']:.0f}x")
        print(f"  batch per row: ours {lt['ours_batch_ns_per_row_1t']:.0f} ns (1 thread), xgboost "
              f"{lt['xgboost_batch_ns_per_row_1t']:.0f} ns (1 thread), {lt[f'xgboost_batch_ns_per_row_{THREADS}t']:.0f} ns ({THREADS} threads)")
        print(f"  max relative difference vs xgboost: {lt['max_relative_diff_vs_xgboost']:.2e}")
    if "training" in o:
        t = o["training"]
        print(f"\n== training wall time, {t['rows']} x {t['features']} synthetic, {t['trees']} trees, depth {t['depth']}, {t['threads']} threads ==")
        for loss in ("squared", "absolute"):
            print(f"  {loss:9s} ours {t[f'ours_{loss}_seconds']:6.1f} s (MAE {t[f'ours_{loss}_test_mae']:.4f}) | "
                  f"xgboost hist {t[f'xgboost_{loss}_seconds']:6.1f} s incl. QuantileDMatrix, "
                  f"{t[f'xgboost_{loss}_seconds_excl_dmatrix']:.1f} s excl. (MAE {t[f'xgboost_{loss}_test_mae']:.4f})")


if __name__ == "__main__":
    main()
