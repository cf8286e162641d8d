#!/usr/bin/env python3
"""Check gridcast's ONNX export against onnxruntime.

Exports models/default.gcm as ONNX (`gridcast-model export-onnx`, built with
`--features onnx`), computes the sample's feature table, runs both our
evaluator (`gridcast-model latency --predictions`) and onnxruntime on it, and
fails if any prediction differs by more than 1e-4 W + 1e-5 relative.

usage: python3 bench/model/check_onnx.py    (from the repo root)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort
import pandas as pd

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def main() -> int:
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "gridcast-trainer", "--features", "onnx",
                    "--bin", "gridcast-model"], check=True, cwd=ROOT)
    bin_ = os.path.join(target, "release", "gridcast-model")
    model = os.path.join(ROOT, "models", "default.gcm")
    sample = os.path.join(ROOT, "samples", "uci_household_2007-01_14d.csv")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.path.join(tmp, "m.onnx")
        feats = os.path.join(tmp, "f.csv")
        ours_path = os.path.join(tmp, "ours.txt")
        subprocess.run([bin_, "export-onnx", "--model", model, "--out", onnx_path], check=True)
        subprocess.run([bin_, "features", "--csv", sample, "--out", feats], check=True)
        subprocess.run([bin_, "latency", "--model", model, "--csv", feats, "--predictions", ours_path],
                       check=True, stdout=subprocess.DEVNULL)
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        names = sess.get_modelmeta().custom_metadata_map["feature_names"].split(",")
        X = pd.read_csv(feats)[names].to_numpy(np.float32)
        got = sess.run(None, {"input": X})[0][:, 0]
        ours = np.loadtxt(ours_path)
    diff = np.abs(got - ours)
    ok = np.all(diff <= 1e-4 + 1e-5 * np.abs(ours))
    print(f"{len(ours)} rows ({np.isnan(X).any(axis=1).sum()} with missing values): "
          f"max |onnxruntime - ours| = {diff.max():.3g} W -> {'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
