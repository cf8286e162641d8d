#!/usr/bin/env python3
"""Make the small XGBoost models the Rust import test checks against.

Writes core/tests/data/:
  xgb3_small.json       booster.save_model() of pip xgboost (3.x layout)
  xgb1_small.json       the same trees rewritten into the 1.x layout
                        (base_score "5E-1" not "[5E-1]", default_left 0/1,
                        version [1,7,6]); no xgboost 1.x is installed here,
                        so this is a faithful rewrite, not an xgboost 1.x save
  xgb_small_rows.csv    input rows (NaN = missing) and xgboost's predictions

usage: python3 bench/model/make_xgb_fixture.py   (from the repo root)
"""
import json
import os

import numpy as np
import xgboost as xgb

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "core", "tests", "data")


def main() -> None:
    rng = np.random.default_rng(7)
    n, f = 2000, 6
    X = rng.normal(size=(n, f)).astype(np.float32) * 100
    y = 1000 + 3 * X[:, 0] + np.where(X[:, 1] > 0, 50, -50) + X[:, 2] * X[:, 3] / 50 + rng.normal(size=n) * 5
    X[rng.random((n, f)) < 0.1] = np.nan  # missing values exercise default_left
    d = xgb.DMatrix(X, label=y, missing=np.nan, feature_names=[f"x{i}" for i in range(f)])
    params = {"objective": "reg:squarederror", "max_depth": 4, "eta": 0.3, "tree_method": "hist",
              "base_score": 900.0, "nthread": 1, "seed": 1}
    bst = xgb.train(params, d, num_boost_round=20)
    os.makedirs(OUT, exist_ok=True)
    p3 = os.path.join(OUT, "xgb3_small.json")
    bst.save_model(p3)

    doc = json.load(open(p3))
    doc["version"] = [1, 7, 6]
    lmp = doc["learner"]["learner_model_param"]
    lmp["base_score"] = lmp["base_score"].strip("[]")
    lmp.pop("num_target", None)
    lmp.pop("boost_from_average", None)
    model = doc["learner"]["gradient_booster"]["model"]
    model.pop("iteration_indptr", None)
    for t in model["trees"]:
        t["default_left"] = [int(b) for b in t["default_left"]]
    json.dump(doc, open(os.path.join(OUT, "xgb1_small.json"), "w"))

    Xt = X[:50]
    pred = bst.inplace_predict(Xt)
    with open(os.path.join(OUT, "xgb_small_rows.csv"), "w") as g:
        g.write(",".join([f"x{i}" for i in range(f)] + ["xgb_pred"]) + "\n")
        for row, p in zip(Xt, pred):
            g.write(",".join("" if np.isnan(v) else repr(float(v)) for v in row) + f",{float(p)!r}\n")
    print("base_score", lmp["base_score"], "wrote", OUT)


if __name__ == "__main__":
    main()
