#!/usr/bin/env python3
"""Checks scripts/paired_bootstrap.py against a run that `cinefuse eval` has evaluated (the
train tests call it): the run's eval_predictions.json is read back in any id order, a model
compared with itself differs by exactly 0, a clearly worse peer is told apart, and a test id
the run did not predict is an error that says so. Given the run's dataset and prepared folder,
also the two-run comparison (`paired_bootstrap.py DATASET PREPARED RUN_A RUN_B`): the run
against itself, its test movies found from the prepared split, differs by exactly 0, and so
does the run saved as a peer and paired through `baselines_sklearn.py --peers`. Not a
regular file where eval_predictions.json should be (a folder, a FIFO) is refused without
waiting, and so is --json inside an input folder; --json replaces a FIFO, with a plain file's
mode. The rating peer that reads genre probabilities finds a rating that depends on them,
and a movie without them is a gap, not an error.

Usage: python scripts/check_paired_bootstrap.py RUN [DATASET PREPARED]
"""
import json
import os
import sys
import subprocess
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paired_bootstrap as pb  # noqa: E402
import baselines_sklearn as peers  # noqa: E402
import peer_predictions  # noqa: E402


def refused(call, says):
    try:
        call()
    except SystemExit as e:
        assert says in str(e), e
        return
    raise AssertionError(f"not refused ({says})")


def check_saved_peers(run, data):
    """`baselines_sklearn.py --peers FILE --paired RUN`: the run saved as its own peer pairs to
    zero difference; a peers file for other genres, other test movies or of the wrong shape is
    refused by name, and so is --peers without runs to pair."""
    movies, split, genres = peers.load(*data)
    genre_ids, _, rating_ids, _ = peers.test_truth(movies, split, genres)
    probs, thr, rating = pb.load_run(run, genres, genre_ids, rating_ids)
    kept = {"per-genre thresholds": (probs, thr), "rating": rating, "votes": "the run itself"}
    saved = peer_predictions.to_json(genres, genre_ids, rating_ids, kept)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "baselines_sklearn.py")
    with tempfile.TemporaryDirectory() as tmp:
        path, out = os.path.join(tmp, "peers.json"), os.path.join(tmp, "paired.json")
        pb.write_json_atomic(path, saved)
        done = subprocess.run([sys.executable, script, *data, "--peers", path, "--paired", run, "--resamples", "20",
                               "--json", out], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        result = json.load(open(out, encoding="utf-8"))["paired"][run]
        assert set(result) == {"resamples", "strong linear peer + the run itself, train + validation, per-genre thresholds",
                               peers.RATING_PEER}, result
        for name, metrics in result.items():
            if name != "resamples":
                assert all(r["difference"] == 0 for r in metrics.values()), (name, metrics)
        assert peer_predictions.load(path, genres, genre_ids, rating_ids)["votes"] == "the run itself"
        for change, says in ((("genres", genres[::-1]), "differ from"), (("genre_ids", genre_ids[1:]), "other test movies"),
                             (("rating", [1.0]), "one per rated test movie"), (("format", 0), "not a peers file")):
            pb.write_json_atomic(path, {**saved, change[0]: change[1]})
            refused(lambda: peer_predictions.load(path, genres, genre_ids, rating_ids), says)
        pb.write_json_atomic(path, {k: v for k, v in saved.items() if k != "votes"})
        refused(lambda: peer_predictions.load(path, genres, genre_ids, rating_ids), "damaged (KeyError")
        no_runs = subprocess.run([sys.executable, script, *data, "--peers", path], capture_output=True, text=True)
        assert no_runs.returncode != 0 and "--paired RUN" in no_runs.stderr, no_runs.stderr


def check_genre_aware_rating_peer():
    """`genre_aware_rating_peers` on made-up movies whose rating follows one genre's
    probability: the trees that read it beat the same trees without it, by a wide margin."""
    rng = np.random.default_rng(3)
    n_fit, n_test = 600, 200
    meta = rng.normal(size=(n_fit + n_test, 3))
    probs = rng.uniform(size=(n_fit + n_test, 4))
    rating = 6.0 + 0.3 * meta[:, 0] + 2.0 * probs[:, 1]
    ids = [f"m{i}" for i in range(n_fit + n_test)]
    inputs = dict(zip(ids, probs))
    del inputs["m0"]  # a movie the genre peer never scored
    fit, test = (meta[:n_fit], rating[:n_fit]), meta[n_fit:]
    with tempfile.TemporaryDirectory() as prepared:  # no cached plot features: no PCA block
        peers.load_feature_cache.cache_clear()
        found = list(peers.genre_aware_rating_peers(prepared, (fit, test), (ids[:n_fit], ids[n_fit:]),
                                                    inputs, [], None))
    assert [name for name, _, _ in found] == ["gbm_metadata_extra_genre_probs_train_val_rating"], found
    _, with_genres, oof_mae = found[0]
    without, _, _, plain_oof = peers.rating_with_plot(fit, test, [], {}, None)
    mae = lambda r: float(np.abs(r - rating[n_fit:]).mean())  # noqa: E731
    assert mae(with_genres) < 0.5 * mae(without) and oof_mae < 0.5 * plain_oof, (mae(with_genres), mae(without))


def main(run, data=None):
    ev = pb.read_predictions(run)
    genre_ids, rating_ids = ev["genre_ids"][::-1], ev["rating_ids"][::-1]
    probs, thr, rating = pb.load_run(run, ev["genres"], genre_ids, rating_ids)
    assert np.allclose(probs, np.array(ev["genre_probs"])[::-1])
    assert np.allclose(rating, [p for _, p in ev["ratings"]][::-1])
    # Labels the run's own decisions match exactly, plus each movie's top genre.
    y = (probs >= thr).astype(int)
    y[np.arange(len(y)), probs.argmax(1)] = 1
    same = pb.paired_genres((probs, thr), (probs, thr), y, 50)
    assert all(r["difference"] == 0 and r["ci95"] == [0, 0] for r in same.values()), same
    noisy = np.clip(probs + np.random.default_rng(0).normal(0, 0.3, probs.shape), 0, 1)
    better = pb.paired_genres((probs, thr), (noisy, thr), y, 200)
    assert better["micro_f1"]["ci95"][0] > 0 and better["micro_f1"]["share_cinefuse_better"] == 1.0, better
    truth = rating + 0.5
    ratings = pb.paired_ratings(rating, rating - 1.0, truth, 100)
    # Off by 0.5 against the peer's 1.5 on every movie.
    assert abs(ratings["mae"]["difference"] + 1.0) < 1e-9 and ratings["mae"]["share_cinefuse_better"] == 1.0, ratings
    try:
        pb.load_run(run, ev["genres"], genre_ids + ["no-such-movie"], rating_ids)
        raise AssertionError("a missing test movie was not reported")
    except SystemExit as e:
        assert "1 test movies missing (e.g. no-such-movie)" in str(e), e
    refused(lambda: pb.check_output(os.path.join(run, "x.json"), [run]), "inside the input")
    with tempfile.TemporaryDirectory() as tmp:
        # Not a regular file where eval_predictions.json should be: refused, not read or waited on.
        os.mkdir(os.path.join(tmp, "eval_predictions.json"))
        refused(lambda: pb.read_predictions(tmp), "not a regular file")
        os.rmdir(os.path.join(tmp, "eval_predictions.json"))
        os.mkfifo(os.path.join(tmp, "eval_predictions.json"))
        refused(lambda: pb.read_predictions(tmp), "not a regular file")
        # --json's output replaces what stood there (a FIFO is not written into, so nothing
        # blocks) and gets the mode a plain open would give, not the temporary file's 0600.
        out = os.path.join(tmp, "out.json")
        os.mkfifo(out)
        pb.write_json_atomic(out, {"a": 1})
        mask = os.umask(0)
        os.umask(mask)
        assert os.stat(out).st_mode & 0o777 == 0o666 & ~mask, oct(os.stat(out).st_mode)
        assert json.load(open(out, encoding="utf-8")) == {"a": 1}
    if data:
        both = pb.compare_runs(*data, run, run, 20)
        for part in ("genres", "rating"):
            assert all(r["difference"] == 0 and r["ci95"] == [0, 0] for r in both[part].values()), both
        assert set(both["genres"]) == set(pb.GENRE_METRICS) and set(both["rating"]) == set(pb.RATING_METRICS)
        check_saved_peers(run, data)
    check_genre_aware_rating_peer()
    print(f"paired bootstrap checked on {len(genre_ids)} movies")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:4] or None)
