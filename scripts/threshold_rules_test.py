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

# How far both rules pull each genre's threshold toward the shared one (cinefuse's default
# train.shared_threshold_weight).
PULL = 0.25


def moved(t, by):
    """`t` with `by` added to its logit (no shift: `t` itself, not a float round trip)."""
    if not np.any(by):
        return t
    t = np.clip(t, 1e-7, 1 - 1e-7)
    return 1.0 / (1.0 + np.exp(-(np.log(t / (1 - t)) + by)))


def grid_rule(p, y, shift):
    """Grid thresholds pulled PULL, the grid moved by the logit shift as thresholds.rs moves it:
    tuned on the probabilities with the shift put back, then taken out again."""
    return moved(peers.tune_thresholds(moved(p, shift), y, PULL), -shift)


def half_best_rule(p, y, shift):
    """Half the best F1 (a probability as the run gives it), pulled PULL toward the shared
    grid threshold on the shift's scale, as thresholds.rs pulls it."""
    unshifted = moved(p, shift)
    half = moved(peers.half_best_thresholds(unshifted, y, 0.0), shift)
    shared = peers.tune_thresholds(unshifted, y, 1.0)
    return moved((1 - PULL) * half + PULL * shared, -shift)


RULES = {f"grid pulled {PULL}": grid_rule, f"half best F1 pulled {PULL}": half_best_rule}


def scores(run, movies, genres):
    """{rule: (micro-F1, macro-F1)} on the run's test movies, and which rule the run used."""
    _, oof, labels = probe.read(run)
    ev = pb.read_predictions(run)
    if ev["genres"] != list(genres):
        sys.exit(f"{run}: genres {ev['genres']} differ from the prepared data's {list(genres)}")
    probs, y = np.array(ev["genre_probs"]), peers.multi_hot(movies, ev["genre_ids"], genres)
    shift = np.array(ev.get("genre_logit_shift") or [0.0] * len(genres))
    out, used, gaps = {}, None, []
    for name, rule in RULES.items():
        t = rule(oof, labels, shift)
        m = peers.genre_metrics(probs, y, t)
        out[name] = (m["micro_f1"], m["macro_f1"])
        gap = np.abs(t - np.array(ev["thresholds"]))
        gaps.append(f"{name}: largest gap {gap.max():.4f} ({genres[int(gap.argmax())]})")
        if used is None and gap.max() <= 2e-4:
            used = name
    return out, used, "; ".join(gaps)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    dataset, prepared, runs = sys.argv[1], sys.argv[2], sys.argv[3:]
    movies, _, genres = peers.load(dataset, prepared)
    table = {}
    for run in runs:
        table[run], used, gaps = scores(run, movies, genres)
        if used is None:
            sys.exit(f"{run}: its thresholds match no rule here (a pull other than 0.25?): {gaps}")
        row = "  ".join(f"{k}: {v[0]:.4f} / {v[1]:.4f}" for k, v in table[run].items())
        print(f"{run} (trained with {used}): micro-F1 / macro-F1  {row}")
    for name in RULES:
        m = np.array([table[r][name] for r in runs])
        print(f"mean of {len(runs)}, {name}: micro-F1 {m[:, 0].mean():.4f} ({m[:, 0].min():.4f}–{m[:, 0].max():.4f}), "
              f"macro-F1 {m[:, 1].mean():.4f} ({m[:, 1].min():.4f}–{m[:, 1].max():.4f})")


if __name__ == "__main__":
    main()
