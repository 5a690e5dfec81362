#!/usr/bin/env python3
"""The decision-threshold rules side by side on the test split: the read-once step after
`threshold_probe.py` chose a rule out of fold.

  scripts/.venv/bin/python scripts/threshold_rules_test.py DATASET PREPARED RUN [RUN …]

Each RUN is a bag or blend trained with a test split and evaluated (`cinefuse eval --run RUN`
wrote its test probabilities to eval_predictions.json). For each rule (per-genre grid
thresholds pulled 0.25 toward the shared one; half the best F1, pulled the same), thresholds are
tuned on all of the run's out-of-fold predictions (oof_predictions.csv), as cinefuse tunes
them, and the run's test probabilities are scored with them; the probabilities are the same, so
the rules are paired. The run's own thresholds (the rule it was trained with) must equal this
script's for that rule, which checks cinefuse's thresholds.rs against baselines_sklearn.py.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baselines_sklearn as peers  # noqa: E402
import paired_bootstrap as pb  # noqa: E402
import threshold_probe as probe  # noqa: E402

RULES = {
    "grid pulled 0.25": lambda p, y: peers.tune_thresholds(p, y, 0.25),
    "half best F1 pulled 0.25": lambda p, y: peers.half_best_thresholds(p, y, 0.25),
}


def scores(run, movies, genres):
    """{rule: (micro-F1, macro-F1)} on the run's test movies, and which rule the run used."""
    _, oof, labels = probe.read(run)
    ev = pb.read_predictions(run)
    if ev["genres"] != list(genres):
        sys.exit(f"{run}: genres {ev['genres']} differ from the prepared data's {list(genres)}")
    probs, y = np.array(ev["genre_probs"]), peers.multi_hot(movies, ev["genre_ids"], genres)
    out, used = {}, None
    for name, rule in RULES.items():
        t = rule(oof, labels)
        m = peers.genre_metrics(probs, y, t)
        out[name] = (m["micro_f1"], m["macro_f1"])
        if used is None and np.allclose(t, ev["thresholds"], atol=2e-4):
            used = name
    return out, used


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    dataset, prepared, runs = sys.argv[1], sys.argv[2], sys.argv[3:]
    movies, _, genres = peers.load(dataset, prepared)
    table = {}
    for run in runs:
        table[run], used = scores(run, movies, genres)
        if used is None:
            sys.exit(f"{run}: its thresholds match no rule here (a pull other than 0.25?)")
        row = "  ".join(f"{k}: {v[0]:.4f} / {v[1]:.4f}" for k, v in table[run].items())
        print(f"{run} (trained with {used}): micro-F1 / macro-F1  {row}")
    for name in RULES:
        m = np.array([table[r][name] for r in runs])
        print(f"mean of {len(runs)}, {name}: micro-F1 {m[:, 0].mean():.4f} ({m[:, 0].min():.4f}–{m[:, 0].max():.4f}), "
              f"macro-F1 {m[:, 1].mean():.4f} ({m[:, 1].min():.4f}–{m[:, 1].max():.4f})")


if __name__ == "__main__":
    main()
