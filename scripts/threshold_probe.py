#!/usr/bin/env python3
"""How far should each genre's decision threshold be pulled toward one shared threshold?
(`train.shared_threshold_weight`, crates/cinefuse-train/src/thresholds.rs.) Reads the
out-of-fold predictions of bags or blends (each FOLDER's oof_predictions.csv); nothing here
reads the test split.

  scripts/.venv/bin/python scripts/threshold_probe.py FOLDER [FOLDER …]

For each weight, the mean over the folders of micro-F1 and macro-F1 when the thresholds are
  - tuned on four folds' out-of-fold predictions and scored on the fifth (a bag or blend, which
    tunes on ~2,000 movies), and
  - tuned on one fold and scored on the other four (~500 movies: the size of the validation
    split a single model tunes on).

With --by-support K[,K…], also a pull that depends on the genre: each genre's weight is
K / (K + its positives in the tuning movies), so a rare genre, whose own threshold rests on few
positives, leans on the shared one more than a common genre does.

With --half-best, also each genre's threshold set to half its best F1 on the tuning movies
(for calibrated probabilities the F1-best threshold is half the best F1: Lipton, Elkan and
Narayanaswamy 2014), pulled by each weight toward the shared threshold as the grid's is.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baselines_sklearn as peers  # noqa: E402
import bounded_io as bio  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def read(folder):
    rows = bio.read_csv_rows(os.path.join(folder, "oof_predictions.csv"))
    rows = [r for r in rows if r[next(c for c in r if c.startswith("y_"))] != ""]
    probs = np.array([[float(r[c]) for c in r if c.startswith("p_")] for r in rows])
    labels = np.array([[int(r[c]) for c in r if c.startswith("y_")] for r in rows])
    return np.array([int(r["fold"]) for r in rows]), probs, labels


def f1s(p, y, thresholds):
    tp, fp, fn = peers.genre_counts(p, y, thresholds)
    present = y.sum(0) > 0
    per_genre = 2 * tp / np.maximum(1, 2 * tp + fp + fn)
    return np.array([2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()), per_genre[present].mean()])


def support_weighted(p, y, k):
    """Per-genre thresholds, each pulled toward the shared one by K / (K + positives)."""
    own = peers.tune_thresholds(p, y, 0.0)
    shared = peers.tune_thresholds(p, y, 1.0)
    w = k / (k + y.sum(0))
    return (1 - w) * own + w * shared


def scores(fold, p, y, weight, tune_on_one, by_support=None, rule=None):
    """Mean (micro-F1, macro-F1) over the folds, thresholds from the fold (tune_on_one) or from
    the other folds; with `by_support`, pulled by K / (K + positives) instead of `weight`; with
    `rule` (a function of the tuning movies' probabilities, labels and `weight`), its thresholds."""
    out = []
    for k in sorted(set(fold)):
        tune, score = (fold == k, fold != k) if tune_on_one else (fold != k, fold == k)
        if rule is not None:
            t = rule(p[tune], y[tune], weight)
        elif by_support is None:
            t = peers.tune_thresholds(p[tune], y[tune], weight)
        else:
            t = support_weighted(p[tune], y[tune], by_support)
        out.append(f1s(p[score], y[score], t))
    return np.mean(out, 0)


def main():
    args = sys.argv[1:]
    support = []
    if "--by-support" in args:
        i = args.index("--by-support")
        support = [float(k) for k in args[i + 1].split(",")]
        del args[i : i + 2]
    half = "--half-best" in args
    args = [a for a in args if a != "--half-best"]
    if not args:
        sys.exit(__doc__)
    tables = [read(f) for f in args]
    for tune_on_one, what in ((False, "tuned on four folds, scored on the fifth"), (True, "tuned on one fold, scored on the other four")):
        print(f"{what} (mean of {len(tables)}): weight  micro-F1  macro-F1")
        for w in WEIGHTS:
            m = np.mean([scores(f, p, y, w, tune_on_one) for f, p, y in tables], 0)
            print(f"  {w:4.2f}  {m[0]:.4f}  {m[1]:.4f}")
        if half:
            for w in WEIGHTS:
                m = np.mean([scores(f, p, y, w, tune_on_one, rule=peers.half_best_thresholds) for f, p, y in tables], 0)
                print(f"  half best F1, {w:4.2f}  {m[0]:.4f}  {m[1]:.4f}")
        for k in support:
            m = np.mean([scores(f, p, y, None, tune_on_one, k) for f, p, y in tables], 0)
            print(f"  K={k:g}/(K+positives)  {m[0]:.4f}  {m[1]:.4f}")


if __name__ == "__main__":
    main()
