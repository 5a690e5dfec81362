"""Paired bootstrap of cinefuse against a peer on the same test movies.

Both models' test predictions are resampled together (the same movies in every resample), so
the interval is of the difference itself: whether a lead of a few thousandths on 462 movies is
more than the draw of the movies. cinefuse's side comes from `RUN/eval_predictions.json`, which
`cinefuse eval --run RUN` writes for the run's own test split (ids, genre probabilities,
thresholds, ratings). Both sides are scored by the same functions, baselines_sklearn's.

baselines_sklearn.py --paired uses it against the peers; on its own it compares two cinefuse runs
evaluated on the same prepared data (an ablation: is B's change more than the draw of movies?):

  scripts/.venv/bin/python scripts/paired_bootstrap.py DATASET PREPARED RUN_A RUN_B [--resamples N] [--json OUT]
"""
import json
import os
import sys
import tempfile

import numpy as np
from sklearn.metrics import average_precision_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baselines_sklearn as peers  # noqa: E402
import bounded_io as bio  # noqa: E402

GENRE_METRICS = ("micro_f1", "macro_f1", "top1", "micro_ap")
RATING_METRICS = ("mae", "within_10pct")
# eval_predictions.json holds a few hundred bytes per movie: far below this for any split.
MAX_PREDICTIONS_BYTES = 256 << 20


def read_predictions(run):
    """RUN/eval_predictions.json, read only if it is a regular file of bounded size (opened
    without blocking, so a FIFO in its place is refused rather than waited on)."""
    path = os.path.join(run, "eval_predictions.json")
    if not os.path.lexists(path):
        sys.exit(f"{run}: no {path}; run `cinefuse eval --run {run}` first")
    return bio.read_json(path, MAX_PREDICTIONS_BYTES, hint=f"; run `cinefuse eval --run {run}` again")


def load_run(run, genres, genre_ids, rating_ids):
    """cinefuse's test probabilities, thresholds and rating predictions, in the given id orders."""
    path = os.path.join(run, "eval_predictions.json")
    ev = read_predictions(run)
    if "genre_probs" not in ev:
        sys.exit(f"{path}: no genre probabilities (written by an older cinefuse); run `cinefuse eval --run {run}` again")
    if ev["genres"] != list(genres):
        sys.exit(f"{path}: genres {ev['genres']} differ from the prepared data's {list(genres)}")
    probs = dict(zip(ev["genre_ids"], ev["genre_probs"]))
    ratings = dict(zip(ev["rating_ids"], (p for _, p in ev["ratings"])))
    missing = [i for i in genre_ids if i not in probs] + [i for i in rating_ids if i not in ratings]
    if missing:
        sys.exit(f"{path}: {len(missing)} test movies missing (e.g. {missing[0]}); was it evaluated on this data's test split?")
    return (np.array([probs[i] for i in genre_ids]), np.array(ev["thresholds"]),
            np.array([ratings[i] for i in rating_ids]))


def genre_scores(p, y, thr):
    """The peers' own genre metrics (baselines_sklearn.genre_metrics) and micro AP."""
    m = peers.genre_metrics(p, y, thr)
    return {"micro_f1": m["micro_f1"], "macro_f1": m["macro_f1"], "top1": m["top1"],
            "micro_ap": average_precision_score(y, p, average="micro")}


def rating_scores(pred, true):
    m = peers.rating_metrics(pred, true)
    return {"mae": m["mae"], "within_10pct": m["within_10pct"]}


def compare(score, ours, theirs, n, resamples, rng):
    """Each metric's (ours, theirs, difference, 95 % interval of the difference, share of
    resamples where ours is better) under the paired bootstrap. `score(side, idx)`."""
    point = (score(ours, slice(None)), score(theirs, slice(None)))
    diffs = {m: [] for m in point[0]}
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        a, b = score(ours, idx), score(theirs, idx)
        for m in diffs:
            diffs[m].append(a[m] - b[m])
    out = {}
    for m, d in diffs.items():
        d = np.array(d)
        lower_is_better = m == "mae"
        out[m] = {
            "cinefuse": point[0][m], "peer": point[1][m], "difference": point[0][m] - point[1][m],
            "ci95": [float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))],
            "share_cinefuse_better": float(np.mean(d < 0 if lower_is_better else d > 0)),
        }
    return out


def paired_genres(ours, peer, y, resamples=1000, seed=0):
    """ours, peer: (probabilities, thresholds); y: the labels. Thresholds are one per genre,
    or one row per movie (out of fold, where each fold's movies have their own)."""
    def score(side, idx):
        thr = side[1][idx] if np.ndim(side[1]) == 2 else side[1]
        return genre_scores(side[0][idx], y[idx], thr)
    return compare(score, ours, peer, len(y), resamples, np.random.default_rng(seed))


def paired_ratings(ours, peer, true, resamples=1000, seed=0):
    def score(side, idx):
        return rating_scores(side[idx], true[idx])
    return compare(score, ours, peer, len(true), resamples, np.random.default_rng(seed))


def print_table(name, result, file=sys.stderr, ours="cinefuse"):
    print(f"paired bootstrap, {ours} − {name}:", file=file)
    for m, r in result.items():
        lo, hi = r["ci95"]
        print(f"  {m:<13} {r['cinefuse']:.4f} vs {r['peer']:.4f}  difference {r['difference']:+.4f}"
              f"  95 % CI {lo:+.4f} to {hi:+.4f}  {ours} better in {100 * r['share_cinefuse_better']:.0f} %",
              file=file)


def compare_runs(dataset, prepared, run_a, run_b, resamples=1000):
    """Run A against run B (both evaluated on the same prepared data's test split): genres and
    rating, each a paired bootstrap. Returns {"genres": …, "rating": …}."""
    movies, split, genres = peers.load(dataset, prepared)
    genre_ids, y, rating_ids, true = peers.test_truth(movies, split, genres)
    a = load_run(run_a, genres, genre_ids, rating_ids)
    b = load_run(run_b, genres, genre_ids, rating_ids)
    return {"genres": paired_genres(a[:2], b[:2], y, resamples),
            "rating": paired_ratings(a[2], b[2], true, resamples)}


def main():
    import argparse

    ap = argparse.ArgumentParser(description="Paired bootstrap of two cinefuse runs on the same test movies "
                                             "(each after `cinefuse eval --run RUN`): the interval of A − B.")
    ap.add_argument("dataset")
    ap.add_argument("prepared")
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    a = ap.parse_args()
    if a.resamples < 1:
        sys.exit(f"--resamples {a.resamples}: expected at least 1")
    if a.json:
        check_output(a.json, (a.dataset, a.prepared, a.run_a, a.run_b))
    out = compare_runs(a.dataset, a.prepared, a.run_a, a.run_b, a.resamples)
    for part in ("genres", "rating"):
        print_table(f"{a.run_b}, {part}", out[part], sys.stdout, ours=a.run_a)
    if a.json:
        write_json_atomic(a.json, out)


def check_output(out, inputs, flag="--json"):
    """An output (--json OUT) must not land inside one of the folders the comparison reads."""
    target = os.path.realpath(out)
    for d in inputs:
        root = os.path.realpath(d)
        if target == root or target.startswith(root + os.sep):
            sys.exit(f"{flag} {out}: inside the input {d}; write it elsewhere")


def write_json_atomic(out, value):
    """Writes beside OUT and renames onto it: whatever stood at OUT (even a FIFO) is replaced,
    never written into, and a reader never sees half a file."""
    folder = os.path.dirname(os.path.abspath(out))
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder, prefix=".paired-", suffix=".json",
                                     delete=False) as f:
        json.dump(value, f, indent=2)
    # A temporary file is private (0600); give the result the mode a plain open would.
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(f.name, 0o666 & ~mask)
    os.replace(f.name, out)


if __name__ == "__main__":
    main()
