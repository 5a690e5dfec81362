#!/usr/bin/env python3
"""Classical baselines on a cinefuse dataset, on exactly the split cinefuse prepared.

  TF-IDF + logistic regression on plots  -> genres (thresholds tuned per genre on val)
  gradient boosting on metadata           -> rating (and with the extra columns, when present)
  majority genres / mean rating           -> the trivial baselines

With pretrained features cached by cinefuse in PREPARED_DIR/features/ (a run of a config with
frozen pretrained encoders made them), also the strongest linear peers on the same inputs:
  logistic regression on [MiniLM plot embedding, EfficientNet poster features, metadata]
  stacking: per-modality logistic regressions (plot embedding, poster features, metadata,
            TF-IDF) whose out-of-fold probabilities feed a second logistic regression per genre
  TF-IDF + metadata stacking (no pretrained features)
  the peer for movies without a plot: the strong linear peer on poster features and metadata,
            stacked with the metadata- and credits-neighbour votes
  the strong linear peer stacked with cinefuse's plot-neighbour vote (a k-nearest-neighbour
            genre vote on the MiniLM plot embeddings), as a blend with the vote stacks them,
            and with the metadata-neighbour vote too (the standardised metadata encoding),
            and with the credits-neighbour vote as well (directors, cast and writers), and
            with --genre-prompts the genre-prompt vote too; then the same with a TF-IDF logistic
            regression of the plot stacked beside them (the strongest peer on micro- and macro-F1)
  rating: the gradient boosting with the extra columns mixed with a ridge on the plot features,
            and the same reading the linear peer's out-of-fold genre probabilities (and the
            plot embedding's principal components), as cinefuse's rating trees read its first
            bag's; for movies given without some metadata, the peer on plot and poster alone
The features read are the newest cache of each kind (the file is printed; the environment
variable CINEFUSE_FEATURES_PLOT or CINEFUSE_FEATURES_POSTER names another file of that folder).
A plot cache with `model.text.concat_layers` carries MiniLM's middle layers after its sentence
embedding: the linear peers read all of it, the plot vote only the sentence embedding, as
cinefuse's vote does.
Metadata here is cinefuse's own encoding from samples.jsonl (scalers and vocabularies fitted on
the training split). Regularization strength is chosen on the validation split.

With --paired RUN (after `cinefuse eval --run RUN`), also a paired bootstrap of the run against
the strongest train + validation peers on the same test movies (scripts/paired_bootstrap.py).

Usage: scripts/.venv/bin/python scripts/baselines_sklearn.py DATASET_DIR PREPARED_DIR [--json OUT] [--paired RUN[,RUN…]]
"""
import argparse
import functools
import json
import math
import sys

import glob
import os
import struct

import numpy as np
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bounded_io as bio  # noqa: E402
import peer_predictions  # noqa: E402


def load(dataset, prepared):
    movies = {m["id"]: m for m in bio.read_jsonl(f"{dataset}/movies.jsonl")}
    split = {s["id"]: s["split"] for s in bio.read_jsonl(f"{prepared}/samples.jsonl")}
    state = bio.read_json(f"{prepared}/preprocess.json")
    return movies, split, state["genres"]["genres"]


def test_truth(movies, split, genres):
    """The test split's movies with genres and their labels, and those with a rating and it."""
    test = [i for i in split if split[i] == "test"]
    genre_ids = [i for i in test if movies[i].get("genres")]
    rating_ids = [i for i in test if movies[i].get("rating") is not None]
    true = np.array([movies[i]["rating"] for i in rating_ids], dtype=float)
    return genre_ids, multi_hot(movies, genre_ids, genres), rating_ids, true


def plot_vectorizer():
    """The TF-IDF encoding of every plot peer: sublinear counts of words and word pairs."""
    return TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2), max_features=50000)


def multi_hot(movies, ids, genres):
    y = np.zeros((len(ids), len(genres)), dtype=np.int64)
    for i, mid in enumerate(ids):
        for g in movies[mid].get("genres") or []:
            if g in genres:
                y[i, genres.index(g)] = 1
    return y


def best_on_grid(score):
    """The grid threshold (0.05 … 0.95) with the highest score; ties go to the one nearest 0.5."""
    best = (-1.0, 0.5)
    for t in np.arange(0.05, 0.96, 0.05):
        f = score(t)
        if f > best[0] + 1e-12 or (abs(f - best[0]) <= 1e-12 and abs(t - 0.5) < abs(best[1] - 0.5)):
            best = (f, t)
    return best[1]


def tune_thresholds(p, y, shared_weight=0.0):
    """Per-genre F1-best thresholds, each pulled by `shared_weight` toward the one threshold with
    the best micro-F1 over all genres (cinefuse's train.shared_threshold_weight; 0: per genre)."""
    own = np.array([best_on_grid(lambda t: f1_score(y[:, k], p[:, k] >= t, zero_division=0)) for k in range(y.shape[1])])
    if shared_weight == 0.0:
        return own
    shared = best_on_grid(lambda t: f1_score(y, p >= t, average="micro", zero_division=0))
    return (1 - shared_weight) * own + shared_weight * shared


def genre_counts(p, y, thresholds):
    """Each genre's true positives, false positives and false negatives at `thresholds`."""
    pred = p >= thresholds
    return (pred & (y == 1)).sum(0), (pred & (y == 0)).sum(0), (~pred & (y == 1)).sum(0)


def half_best_thresholds(p, y, shared_weight=0.0):
    """Each genre's threshold at half its best grid F1 (the F1-best cut for calibrated
    probabilities; cinefuse's train.threshold_rule = "half_best_f1", clamped to the grid's
    range as there), pulled by `shared_weight` toward the shared micro-F1-best one."""
    tp, fp, fn = genre_counts(p, y, tune_thresholds(p, y, 0.0))
    half = np.clip(tp / np.maximum(1, 2 * tp + fp + fn), 0.05, 0.95)
    if shared_weight == 0.0:
        return half
    return (1 - shared_weight) * half + shared_weight * tune_thresholds(p, y, 1.0)


def genre_metrics(p, y, thr):
    pred = (p >= thr).astype(int)
    top = p.argmax(1)
    present = y.sum(0) > 0
    return {
        "micro_f1": f1_score(y, pred, average="micro", zero_division=0),
        "macro_f1": f1_score(y[:, present], pred[:, present], average="macro", zero_division=0),
        "samples_f1": f1_score(y, pred, average="samples", zero_division=0),
        "top1": float(np.mean(y[np.arange(len(y)), top] == 1)),
    }


def rating_metrics(pred, true):
    pred, true = np.asarray(pred), np.asarray(true)
    err = pred - true
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(math.sqrt(np.mean(err ** 2))),
        "within_10pct": float(np.mean(np.abs(err) <= 0.1 * np.abs(true) + 1e-9)),
    }


def load_samples(prepared):
    out = {}
    for row, s in enumerate(bio.read_jsonl(f"{prepared}/samples.jsonl")):
        s["row"] = row
        out[s["id"]] = s
    return out


@functools.lru_cache(maxsize=None)
def load_feature_cache(prepared, modality):
    """The newest PREPARED/features/MODALITY-*.bin table written by cinefuse, or None; the
    environment variable CINEFUSE_FEATURES_MODALITY (e.g. CINEFUSE_FEATURES_PLOT) names another
    file of that folder."""
    chosen = os.environ.get(f"CINEFUSE_FEATURES_{modality.upper()}")
    if chosen:
        files = [os.path.join(prepared, "features", os.path.basename(chosen))]
        if not os.path.isfile(files[0]):
            sys.exit(f"CINEFUSE_FEATURES_{modality.upper()}={chosen}: no such cache file in {prepared}/features")
    else:
        files = sorted(glob.glob(f"{prepared}/features/{modality}-*.bin"), key=os.path.getmtime)
    if not files:
        return None
    raw = bio.read_bytes(files[-1], bio.FEATURE_TABLE_CAP)
    assert raw[:8] == b"CFFEAT01", files[-1]
    print(f"{modality} features: {files[-1]}", file=sys.stderr)
    rows, dim = struct.unpack("<II", raw[8:16])
    return np.frombuffer(raw, dtype="<f4", offset=8 + 8 + 64).reshape(rows, dim)


@functools.lru_cache(maxsize=None)
def sentence_dim(prepared):
    """Width of the sentence embedding that leads each cached plot row (after it come the
    blocks of `model.text.concat_layers`): the plot votes read only it, as cinefuse's do. The
    checkpoint's hidden size, found through the prepared data's tokenizer folder; None (the
    whole row) when that is not at hand."""
    folder = bio.read_json(f"{prepared}/preprocess.json")["config"].get("tokenizer_path")
    config = os.path.join(folder, "config.json") if isinstance(folder, str) else None
    if config is None or not os.path.isfile(config):
        return None
    try:
        return int(bio.read_json(config)["hidden_size"])
    except (TypeError, ValueError, KeyError):
        return None


def table_rows(prepared, samples, labelled, modality, split):
    """Rows of the cached feature table of `modality` for the labelled movies of `split`."""
    table = load_feature_cache(prepared, modality)
    return table[[samples[i]["row"] for i in labelled[split]]]


def cinefuse_meta(samples, ids, n_cat_values):
    """Scaled numeric features, missing indicators and one-hot categories, as cinefuse encodes them."""
    rows = []
    for i in ids:
        s = samples[i]
        onehot = []
        for c, n in zip(s["categorical"], n_cat_values):
            v = np.zeros(n)
            v[c] = 1.0
            onehot.append(v)
        rows.append(np.concatenate([s["numeric"], s["numeric_missing"], *onehot]))
    return np.array(rows)


def per_genre_logreg(xtr, ytr, xs, c, balanced=True):
    """One logistic regression per genre; probabilities for each matrix in xs."""
    out = [np.zeros((x.shape[0], ytr.shape[1])) for x in xs]
    for k in range(ytr.shape[1]):
        if ytr[:, k].sum() == 0 or ytr[:, k].sum() == len(ytr):
            continue
        clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced" if balanced else None)
        clf.fit(xtr, ytr[:, k])
        for o, x in zip(out, xs):
            o[:, k] = clf.predict_proba(x)[:, 1]
    return out


def pick_c(xtr, ytr, xval, yval, grid):
    """The C with the best validation micro-F1 (thresholds tuned on validation too)."""
    best = None
    for c in grid:
        (pv,) = per_genre_logreg(xtr, ytr, [xval], c)
        f = genre_metrics(pv, yval, tune_thresholds(pv, yval))["micro_f1"]
        if best is None or f > best[0]:
            best = (f, c)
    return best[1]


def out_of_fold(xtr, ytr, xs, c, folds=5):
    """Out-of-fold train probabilities (for stacking) and full-fit probabilities for xs."""
    oof = np.zeros(ytr.shape)
    strat = ytr.argmax(1)
    for a, b in StratifiedKFold(folds, shuffle=True, random_state=0).split(xtr, strat):
        (p,) = per_genre_logreg(xtr[a], ytr[a], [xtr[b]], c)
        oof[b] = p
    return oof, per_genre_logreg(xtr, ytr, xs, c)


def logit(p):
    p = np.clip(p, 1e-5, 1 - 1e-5)
    return np.log(p / (1 - p))


def stacked(blocks, y):
    """blocks: name -> (xtr, xval, xtest, C). Stacks per-modality out-of-fold probabilities."""
    tr, va, te = [], [], []
    for name, (xtr, xval, xte, c) in blocks.items():
        oof, (pv, pt) = out_of_fold(xtr, y["train"], [xval, xte], c)
        tr.append(logit(oof)); va.append(logit(pv)); te.append(logit(pt))
    tr, va, te = np.hstack(tr), np.hstack(va), np.hstack(te)
    c = pick_c(tr, y["train"], va, y["val"], [0.01, 0.1, 1.0])
    pv, pt = per_genre_logreg(tr, y["train"], [va, te], c)
    return genre_metrics(pt, y["test"], tune_thresholds(pv, y["val"]))


def pretrained_peers(a, movies, labelled, y, text, out, kept):
    """Linear peers on cinefuse's cached pretrained features (when present) and metadata.
    `kept` receives the strongest train + validation peer's test probabilities. Returns the
    train + validation linear peer's genre probabilities by movie id (out of fold on the
    train + validation movies, from the fit on all of them for the test movies), which the
    rating peer reads as cinefuse's rating trees read the first bag's, and the same peer's on
    the plot and poster alone (for the movies given without some metadata); ({}, {}) without
    features."""
    genre_inputs, genre_inputs_content = {}, {}
    samples = load_samples(a.prepared)
    state = bio.read_json(f"{a.prepared}/preprocess.json")
    n_cat = [len(v["values"]) + 2 for v in state["categorical"]]
    meta = {s: cinefuse_meta(samples, labelled[s], n_cat) for s in labelled}
    scaler = StandardScaler().fit(meta["train"])
    meta = {s: scaler.transform(meta[s]) for s in meta}
    vec = plot_vectorizer()
    tfidf = {"train": vec.fit_transform(text["train"])}
    for s in ("val", "test"):
        tfidf[s] = vec.transform(text[s])
    grid = [0.01, 0.03, 0.1, 0.3, 1.0]
    c_meta = pick_c(meta["train"], y["train"], meta["val"], y["val"], grid)
    blocks = {"tfidf": (tfidf["train"], tfidf["val"], tfidf["test"], 4.0),
              "meta": (meta["train"], meta["val"], meta["test"], c_meta)}
    out["tfidf_meta_stacked_genres"] = stacked(blocks, y)

    feats = {}
    for modality in ("plot", "poster"):
        table = load_feature_cache(a.prepared, modality)
        if table is None:
            continue
        f = {s: table[[samples[i]["row"] for i in labelled[s]]] for s in labelled}
        sc = StandardScaler().fit(f["train"])
        feats[modality] = {s: sc.transform(f[s]) for s in f}
    if not feats:
        print("no cached pretrained features in", a.prepared, "- skipping the embedding peers", file=sys.stderr)
        return genre_inputs, genre_inputs_content
    names = sorted(feats)
    # The strongest peer, on the rows cinefuse's single model trains on (train) and on the rows
    # a bag or a refit trains on (train + validation); the test split is read once by each.
    for label, rows in (("train", ["train"]), ("train_val", ["train", "val"])):
        raw = {m: {s: table_rows(a.prepared, samples, labelled, m, s) for s in labelled} for m in names}
        fit = lambda d: np.vstack([d[r] for r in rows])
        peer_blocks = [(fit(raw[m]), raw[m]["test"]) for m in names]
        meta_raw = {s: cinefuse_meta(samples, labelled[s], n_cat) for s in labelled}
        ytr = np.vstack([y[r] for r in rows])
        out[f"strong_peer_{label}_genres"] = strong_peer(peer_blocks, ytr, y["test"])
        out[f"strong_peer_{label}_genres"]["features"] = names
        peer_blocks.append((fit(meta_raw), meta_raw["test"]))
        linear = strong_peer_probs(peer_blocks, ytr)
        out[f"strong_peer_meta_{label}_genres"] = peer_scores(linear, ytr, y["test"])
        if label == "train_val":
            fit_ids = [i for r in rows for i in labelled[r]]
            genre_inputs = {**dict(zip(fit_ids, linear[0])), **dict(zip(labelled["test"], linear[1]))}
            # The same peer on the plot and poster alone, for the ratings of movies given
            # without some metadata: its probabilities read none of it.
            content = strong_peer_probs(peer_blocks[:len(names)], ytr)
            genre_inputs_content = {**dict(zip(fit_ids, content[0])), **dict(zip(labelled["test"], content[1]))}
        # TF-IDF logits of the plot, out of fold on the fitting rows (fitted once, read twice).
        words = tfidf_block([t for r in rows for t in text[r]], ytr, text["test"])
        out[f"strong_peer_meta_{label}_genres"]["features"] = names + ["meta"]
        # The peer of a blend with the plot-neighbour vote: the same + that vote, stacked; and
        # of a blend with the metadata vote too: the same + both votes.
        if "plot" in raw:
            sd = sentence_dim(a.prepared)
            plot_vote = vote_probs(fit(raw["plot"])[:, :sd], ytr, raw["plot"]["test"][:, :sd], 0.05, False)
            out[f"strong_peer_meta_neighbours_{label}_genres"] = neighbour_peer(
                linear, [plot_vote], ytr, y["test"])
            meta_vote = vote_probs(fit(meta_raw), ytr, meta_raw["test"], 0.2, True)
            out[f"strong_peer_meta_two_votes_{label}_genres"] = neighbour_peer(
                linear, [plot_vote, meta_vote], ytr, y["test"])
            credits = {s: [samples[i].get("credits", []) for i in labelled[s]] for s in labelled}
            if any(c for c in credits["train"]):
                credit_vote = credit_vote_probs([c for r in rows for c in credits[r]], ytr, credits["test"])
                if label == "train_val" and "poster" in raw:
                    out["strong_peer_without_plots_train_val_genres"] = plotless_peer(
                        (fit(raw["poster"]), raw["poster"]["test"]), (fit(meta_raw), meta_raw["test"]),
                        (meta_vote, credit_vote), ytr, y["test"])
                prompts = a.prompt_vote
                if label == "train_val":
                    out.update(metadataless_peers(
                        {m: (fit(raw[m]), raw[m]["test"]) for m in names}, sd, prompts,
                        plot_vote, ytr, y["test"]))
                out[f"strong_peer_meta_three_votes_{label}_genres"] = neighbour_peer(
                    linear, [plot_vote, meta_vote, credit_vote], ytr, y["test"],
                    kept if label == "train_val" and not prompts else None)
                # The peer of a blend with the genre-prompt vote: the same + that vote, read
                # from the blend's own prompts file (it fits nothing on the movies).
                if prompts:
                    prompt_vote = tuple(prompt_vote_probs(prompts, e[:, :sd])
                                        for e in (fit(raw["plot"]), raw["plot"]["test"]))
                    out[f"strong_peer_meta_four_votes_{label}_genres"] = neighbour_peer(
                        linear, [plot_vote, meta_vote, credit_vote, prompt_vote], ytr, y["test"],
                        kept if label == "train_val" else None)
                    if label == "train_val":  # the peer --paired compares with, by name
                        kept["votes"] = "three votes and the genre-prompt vote"
                    # The same with a TF-IDF logistic regression of the plot stacked beside
                    # them: better micro- and macro-F1, worse top-1 (docs/RESULTS.md), so both
                    # are kept and each metric is compared with the better one.
                    word_probs = tuple(1.0 / (1.0 + np.exp(-w)) for w in words)
                    out[f"strong_peer_meta_four_votes_tfidf_{label}_genres"] = neighbour_peer(
                        linear, [plot_vote, meta_vote, credit_vote, prompt_vote, word_probs], ytr,
                        y["test"], kept if label == "train_val" else None, WORDS_RULE)
        # The peer of a blend with a word model: the same + TF-IDF probabilities of the plot
        # (out of fold on the fitting rows, so the peer's own cross-validation sees honest ones).
        peer_blocks.append(words)
        out[f"strong_peer_meta_tfidf_{label}_genres"] = strong_peer(peer_blocks, ytr, y["test"])
        out[f"strong_peer_meta_tfidf_{label}_genres"]["features"] = names + ["meta", "tfidf"]
        print(label, {k: v for k, v in out.items() if k.startswith("strong_peer")}, file=sys.stderr)
    if "plot" in feats:
        out.update(plot_only_rating_peers(a.prepared, samples))
    joined = {s: np.hstack([feats[m][s] for m in names] + [meta[s]]) for s in labelled}
    c = pick_c(joined["train"], y["train"], joined["val"], y["val"], [0.001, 0.003, 0.01, 0.03])
    pv, pt = per_genre_logreg(joined["train"], y["train"], [joined["val"], joined["test"]], c)
    out["embeddings_meta_logreg_genres"] = genre_metrics(pt, y["test"], tune_thresholds(pv, y["val"]))
    out["embeddings_meta_logreg_genres"]["features"] = names + ["meta"]
    for m in names:
        cm = pick_c(feats[m]["train"], y["train"], feats[m]["val"], y["val"], [0.001, 0.003, 0.01, 0.03])
        pv, pt = per_genre_logreg(feats[m]["train"], y["train"], [feats[m]["val"], feats[m]["test"]], cm)
        out[f"{m}_embedding_logreg_genres"] = genre_metrics(pt, y["test"], tune_thresholds(pv, y["val"]))
        blocks[m] = (feats[m]["train"], feats[m]["val"], feats[m]["test"], cm)
    out["embeddings_tfidf_meta_stacked_genres"] = stacked(blocks, y)
    return genre_inputs, genre_inputs_content


def plotless_peer(poster, meta, votes, ytr, yte):
    """The peer for movies without a plot (cinefuse's blend stacks them apart since
    2026-12-05): the strong linear peer on the poster features and metadata alone, stacked with
    the metadata and credits votes, fitted on the same rows as the others; it knows its test
    movies have no plot, which cinefuse's bags, trained with plots, do not. Each argument but
    the labels is a (fitting rows, test rows) pair."""
    linear = strong_peer_probs([poster, meta], ytr)
    out = neighbour_peer(linear, list(votes), ytr, yte)
    out["features"] = ["poster", "meta", "metadata vote", "credits vote"]
    return out


def metadataless_peers(raw, sd, prompts, plot_vote, ytr, yte):
    """The peers for movies given without metadata (cinefuse's blend stacks them apart since
    2026-12-06): the strong linear peer on the plot features alone, and on plot and poster
    features, each stacked with the plot-neighbour vote (and the genre-prompt vote when given),
    fitted on the same rows as the others. Like the plotless peer, each knows its test movies
    have no metadata. `raw` maps each modality to its (fitting rows, test rows)."""
    out = {}
    voted = [plot_vote]
    if prompts:
        voted.append(tuple(prompt_vote_probs(prompts, e[:, :sd]) for e in raw["plot"]))
    kinds = [("plot", ["plot"]), ("plot_poster", ["plot", "poster"])]
    for name, blocks in kinds:
        if not all(b in raw for b in blocks):
            continue
        linear = strong_peer_probs([raw[b] for b in blocks], ytr)
        peer = neighbour_peer(linear, voted, ytr, yte)
        peer["features"] = blocks + ["plot vote"] + (["genre-prompt vote"] if prompts else [])
        out[f"strong_peer_without_metadata_{name}_train_val_genres"] = peer
    return out


def plot_only_rating_peers(prepared, samples):
    """The rating peers of a movie given with a plot and no metadata (cinefuse's blend rates
    one by `content_rating.rs` since 2026-12-05): a ridge regression on the cached plot
    features (each column standardised, scaled by 1/sqrt(dim), the penalty by 5-fold MAE on
    cinefuse's grid), and an RBF support-vector regression on the same (C and gamma by 5-fold
    MAE); fitted on the train + validation movies with a plot and a rating, scored on the test
    movies with both."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVR
    table = load_feature_cache(prepared, "plot")
    rated = [s for s in samples.values() if s.get("rating") is not None and s["plot_present"]]
    fit = [s for s in rated if s["split"] != "test"]
    test = [s for s in rated if s["split"] == "test"]
    if len(fit) < 20 or not test:
        return {}
    x_fit, x_test = (table[[s["row"] for s in rows]].astype(np.float64) for rows in (fit, test))
    mean, sd = x_fit.mean(0), x_fit.std(0)
    sd[sd < 1e-6] = np.inf
    scale = lambda x: (x - mean) / sd / math.sqrt(x.shape[1])
    x_fit, x_test = scale(x_fit), scale(x_test)
    y_fit = np.array([s["rating"] for s in fit])
    y_test = np.array([s["rating"] for s in test])
    out = {}
    models = {
        "plot_only_ridge_train_val_rating": (Ridge(), {"alpha": [0.3, 1, 3, 10, 30, 100, 300]}),
        "plot_only_svr_train_val_rating": (SVR(kernel="rbf", epsilon=0.1),
                                           {"C": [0.1, 0.3, 1], "gamma": [0.25, 0.5, 1]}),
    }
    for name, (model, grid) in models.items():
        search = GridSearchCV(model, grid, cv=5, scoring="neg_mean_absolute_error").fit(x_fit, y_fit)
        out[name] = rating_metrics(search.predict(x_test), y_test)
        out[name]["chosen"] = {k: float(v) for k, v in search.best_params_.items()}
        out[name]["features"] = ["plot"]
    return out


def voteless_rating_peers(fit, test, cats, dropped, plot, genres=None):
    """The rating peers of a movie given without its vote count, or without its extras
    (cinefuse's blend rates one by `voteless_rating.rs` since 2026-12-06): gradient boosting
    with the extra columns, fitted on the train + validation rows without the columns `dropped`
    maps to names (the vote count; then the Metacritic score too; or every extra column), and
    the same mixed with a ridge regression on the cached
    plot features (`rating_with_plot`). `fit` and `test` are (rows, ratings); `plot` the plot
    feature rows of both (None without cached plot features); `cats` the categorical columns;
    `genres` (fit rows, test rows) of genre probabilities that read none of the metadata, which
    the same trees then also read (as cinefuse's trees without the vote count read the first
    bag's probabilities of a movie given without it)."""
    trees, mixed, w, _ = rating_with_plot(fit, test[0], cats, dropped, plot)
    name = "gbm_without_" + "_".join(dict.fromkeys(dropped.values()))
    out = {f"{name}_train_val_rating": rating_metrics(trees, test[1])}
    if mixed is not None:
        out[f"{name}_plot_mix_train_val_rating"] = rating_metrics(mixed, test[1])
        out[f"{name}_plot_mix_train_val_rating"]["plot_weight"] = w
    if genres is not None:
        with_genres = (np.hstack([fit[0], genres[0]]), fit[1])
        trees, mixed, w, _ = rating_with_plot(with_genres, np.hstack([test[0], genres[1]]), cats, dropped, plot)
        key = f"{name}_genre_probs_{'plot_mix_' if mixed is not None else ''}train_val_rating"
        out[key] = rating_metrics(trees if mixed is None else mixed, test[1])
    return out


def rating_with_plot(fit, x_test, cats, dropped, plot):
    """Gradient boosting with the extra columns fitted on `fit` (rows, ratings) without the
    columns in `dropped`, and the same mixed with a ridge regression on the cached plot
    features by a weight chosen on 5-fold out-of-fold MAE, as cinefuse mixes in its content
    rating: (the trees' test ratings, the mixed ones or None without `plot`, the weight, the
    out-of-fold MAE of what it returns last)."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_predict
    x_fit, y_fit = fit
    keep = [c for c in range(x_fit.shape[1]) if c not in dropped and not np.isnan(x_fit[:, c]).all()]
    gbm = HistGradientBoostingRegressor(max_iter=400, learning_rate=0.05, max_leaf_nodes=15, l2_regularization=1.0,
                                        random_state=0, categorical_features=[keep.index(c) for c in cats if c in keep])
    folds = KFold(5, shuffle=True, random_state=0)
    trees_oof = cross_val_predict(gbm, x_fit[:, keep], y_fit, cv=folds)
    trees = gbm.fit(x_fit[:, keep], y_fit).predict(x_test[:, keep])
    if plot is None:
        return trees, None, 0.0, float(np.abs(trees_oof - y_fit).mean())
    ridge = Ridge(alpha=3.0)
    ridge_oof = cross_val_predict(ridge, plot[0], y_fit, cv=folds)
    ridge_test = ridge.fit(plot[0], y_fit).predict(plot[1])
    mae = lambda w: float(np.abs((1 - w) * trees_oof + w * ridge_oof - y_fit).mean())  # noqa: E731
    w = min([0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5], key=mae)
    return trees, (1 - w) * trees + w * ridge_test, w, mae(w)


def genre_rows(genre_inputs, ids):
    """The genre probabilities of the movies of each id list in `ids`, by `genre_inputs` (NaN
    for a movie without them)."""
    width = len(next(iter(genre_inputs.values())))
    return [np.array([genre_inputs.get(i, np.full(width, np.nan)) for i in part]) for part in ids]


def genre_aware_rating_peers(prepared, rows, ids, genre_inputs, cats, plot, components=16):
    """Gradient boosting with the extra columns and the linear peer's genre probabilities
    (`genre_inputs`, by id; NaN for a movie without them), and the same with the first
    `components` principal components of the cached plot sentence embedding (fitted on the
    fitting rows), each mixed with a plot ridge as `rating_with_plot` does. `rows` are
    ((fit rows, ratings), test rows), `ids` the (fit, test) movie ids in their order. Yields
    (name, test ratings, out-of-fold MAE)."""
    from sklearn.decomposition import PCA

    (x_fit, y_fit), x_test = rows
    probs = genre_rows(genre_inputs, ids)
    blocks = {"genre_probs": probs}
    table = load_feature_cache(prepared, "plot")
    if table is not None:
        samples = load_samples(prepared)
        sd = sentence_dim(prepared) or table.shape[1]
        emb = [table[[samples[i]["row"] for i in part]][:, :sd].astype(np.float64) for part in ids]
        pca = PCA(components, random_state=0).fit(emb[0])
        blocks["genre_probs_plot_pca"] = [np.hstack([p, pca.transform(e)]) for p, e in zip(probs, emb)]
    for name, (extra_fit, extra_test) in blocks.items():
        fit = (np.hstack([x_fit, extra_fit]), y_fit)
        trees, mixed, w, mae = rating_with_plot(fit, np.hstack([x_test, extra_test]), cats, {}, plot)
        yield (f"gbm_metadata_extra_{name}_{'plot_mix_' if mixed is not None else ''}train_val_rating",
               trees if mixed is None else mixed, mae)


def scaled_plot_rows(prepared, samples, fit_ids, test_ids):
    """The cached plot features of the movies `fit_ids` and `test_ids`, each column standardised
    on the fitting rows and scaled by 1/sqrt(dim), as cinefuse's content rating reads them;
    None without a cache."""
    table = load_feature_cache(prepared, "plot")
    if table is None:
        return None
    x_fit, x_test = (table[[samples[i]["row"] for i in ids]].astype(np.float64) for ids in (fit_ids, test_ids))
    mean, sd = x_fit.mean(0), x_fit.std(0)
    sd[sd < 1e-6] = np.inf
    return tuple((x - mean) / sd / math.sqrt(x.shape[1]) for x in (x_fit, x_test))


def tfidf_block(text_fit, y_fit, text_test, c=4.0, folds=5):
    """Logits of a TF-IDF logistic regression per genre: out of fold on the fitting rows, from
    a fit on all of them for the test rows. Returns (fit, test) arrays."""
    vec = plot_vectorizer()
    x = vec.fit_transform(text_fit)
    oof = np.zeros(y_fit.shape)
    for held in kfold_indices(x.shape[0], folds, seed=1):
        rest = np.setdiff1d(np.arange(x.shape[0]), held)
        (oof[held],) = per_genre_logreg(x[rest], y_fit[rest], [x[held]], c)
    (test,) = per_genre_logreg(x, y_fit, [vec.transform(text_test)], c)
    return logit(oof), logit(test)


def scaled_blocks(blocks_fit, blocks_apply):
    """Each block standardised on the fitting rows and scaled by 1/sqrt(dim), so that every block
    has the same total variance whatever its width; then concatenated."""
    out_fit, out_apply = [], []
    for fit, apply in zip(blocks_fit, blocks_apply):
        sc = StandardScaler().fit(fit)
        w = 1.0 / math.sqrt(fit.shape[1])
        out_fit.append(sc.transform(fit) * w)
        out_apply.append(sc.transform(apply) * w)
    return np.hstack(out_fit), np.hstack(out_apply)


def ovr_logreg(xtr, ytr, xs, c):
    """One-vs-rest logistic regression (no class weights); probabilities for each matrix in xs."""
    return per_genre_logreg(xtr, ytr, xs, c, balanced=False)


def kfold_indices(n, folds=5, seed=0):
    order = np.random.RandomState(seed).permutation(n)
    return [np.sort(order[k::folds]) for k in range(folds)]


def strong_peer(blocks, ytr, yte, grid=(0.1, 0.3, 1.0, 3.0, 10.0, 30.0), folds=5):
    """The strongest linear peer on given feature blocks (issue 26): equal-variance blocks,
    one-vs-rest logistic regression with C chosen by 5-fold cross-validation on micro average
    precision, per-genre thresholds tuned on the 5-fold out-of-fold probabilities, then a fit on
    all the training rows scored once on the test rows. blocks: list of (train, test) arrays."""
    return peer_scores(strong_peer_probs(blocks, ytr, grid, folds), ytr, yte)


def peer_scores(probs, ytr, yte, keep=None, keep_prefix=""):
    """Test scores of (out-of-fold, test, info) probabilities: thresholds from the former.
    With `keep` (a dict), also the test probabilities with each rule's thresholds, for the
    paired comparison, named by the rule after `keep_prefix`."""
    oof, pte, info = probs
    own = tune_thresholds(oof, ytr)
    out = genre_metrics(pte, yte, own)
    out["micro_ap"] = float(average_precision_score(yte, pte, average="micro"))
    # The same probabilities with cinefuse's default decision rule (thresholds pulled a quarter
    # of the way toward a shared one), so the peer is scored the way cinefuse is.
    pulled = tune_thresholds(oof, ytr, 0.25)
    out["shared_threshold_weight_0.25"] = genre_metrics(pte, yte, pulled)
    # And with the half-best-F1 rule, pulled as cinefuse pulls it: it suits calibrated
    # probabilities, which the peer's (fitted without class weights) roughly are.
    half = half_best_thresholds(oof, ytr, 0.25)
    out["half_best_f1_0.25"] = genre_metrics(pte, yte, half)
    if keep is not None:
        keep[f"{keep_prefix}per-genre thresholds"] = (pte, own)
        keep[f"{keep_prefix}thresholds pulled 0.25 toward a shared one"] = (pte, pulled)
        keep[f"{keep_prefix}half the best F1, pulled 0.25"] = (pte, half)
    out.update(info)
    return out


def strong_peer_probs(blocks, ytr, grid=(0.1, 0.3, 1.0, 3.0, 10.0, 30.0), folds=5):
    """The strong peer's 5-fold out-of-fold probabilities on the training rows, its test
    probabilities (from a fit on all of them) and how it was chosen."""
    xtr, xte = scaled_blocks([b[0] for b in blocks], [b[1] for b in blocks])
    parts = kfold_indices(len(xtr), folds)
    best = None
    for c in grid:
        oof = np.zeros(ytr.shape)
        for k in range(folds):
            held = parts[k]
            fit = np.setdiff1d(np.arange(len(xtr)), held)
            (oof[held],) = ovr_logreg(xtr[fit], ytr[fit], [xtr[held]], c)
        ap = average_precision_score(ytr, oof, average="micro")
        if best is None or ap > best[0]:
            best = (ap, c, oof)
    _, c, oof = best
    (pte,) = ovr_logreg(xtr, ytr, [xte], c)
    return oof, pte, {"C": c, "train_rows": int(len(xtr)), "cv_micro_ap": float(best[0])}


# How --paired names the rating peer it compares with.
RATING_PEER = ("gradient boosting with the extra columns (with the linear peer's genre probabilities and the "
               "plot embedding's PCA, and mixed with a plot ridge, when the data has cached plot features and "
               "out of fold prefers them), train + validation")

# How the peer with the TF-IDF plot words names its rules in `kept` (and in --paired's tables).
WORDS_RULE = "with TF-IDF plot words stacked too, "


def neighbour_vote(query, rows, labels, k=50, temperature=0.05, prior=2.0):
    """cinefuse's neighbour vote (neighbour_vote.rs): the k most cosine-similar rows
    (unit vectors) weighted by softmax(similarity / temperature), shrunk to the genre
    frequencies by `prior` pseudo-neighbours."""
    sim = query @ rows.T
    n = min(k, len(rows))
    near = np.argsort(-sim, 1)[:, :n]
    w = np.exp((np.take_along_axis(sim, near, 1) - 1) / temperature)
    w /= w.sum(1, keepdims=True)
    vote = np.einsum("bn,bng->bg", w, labels[near])
    return (vote * n + labels.mean(0) * prior) / (n + prior)


def vote_probs(rows_fit, ytr, rows_test, temperature, standardise, folds=5):
    """A neighbour vote's 5-fold out-of-fold probabilities on the fitting rows and its test
    probabilities: rows centred on the fitting rows' mean (and, when `standardise`, divided by
    their spread, as the metadata vote does), then brought to unit length."""
    sc = StandardScaler(with_std=standardise).fit(rows_fit)

    def unit(e):
        e = sc.transform(e)
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-6)

    xf, xt = unit(rows_fit), unit(rows_test)
    vote_oof = np.zeros(ytr.shape)
    for held in kfold_indices(len(xf), folds):
        rest = np.setdiff1d(np.arange(len(xf)), held)
        vote_oof[held] = neighbour_vote(xf[held], xf[rest], ytr[rest], temperature=temperature)
    return vote_oof, neighbour_vote(xt, xf, ytr, temperature=temperature)


def shared_name_vote(query, rows, labels, k=50, temperature=0.3, prior=2.0):
    """cinefuse's credits vote (credit_neighbours.rs) from weighted, unit-length sparse name
    rows: as neighbour_vote, ties by row order, but a voter sharing no name is no neighbour
    (a movie sharing none gets the genre frequencies)."""
    sim = (query @ rows.T).toarray()
    near = np.argsort(-sim, 1, kind="stable")[:, :k]
    s = np.take_along_axis(sim, near, 1)
    w = np.exp((s - 1) / temperature) * (s > 0)
    w /= np.maximum(w.sum(1, keepdims=True), 1e-300)
    n = (s > 0).sum(1, keepdims=True)
    return (np.einsum("bn,bng->bg", w, labels[near]) * n + labels.mean(0) * prior) / (n + prior)


def read_prompt_vote(path, n_genres, dim):
    """A blend's or an export's genre_prompts.safetensors, read and checked before any fitting:
    a regular file of bounded size holding a genre-prompt vote on these genres, in the plot
    embeddings' dimension. Anything else stops the script with the file named."""
    try:
        t, metadata = bio.read_safetensors(path, PROMPTS_MAX_BYTES, name=f"--genre-prompts {path}")
        settings = json.loads(metadata["settings"])
        vote = {k: t[k].astype(np.float64) for k in ("rows", "labels", "centre")}
        vote["scale"] = t["scale"].astype(np.float64) if "scale" in t else 1.0
        vote.update({k: settings[k] for k in ("k", "temperature", "prior")})
        space = settings.get("space")
    except Exception as e:  # the library's own errors name neither the flag nor the file
        sys.exit(f"--genre-prompts {path}: not a readable genre-prompt vote ({type(e).__name__}: {e})")
    if space != "prompts" or vote["labels"].shape[1:] != (n_genres,):
        sys.exit(f"--genre-prompts {path}: not a genre-prompt vote on these {n_genres} genres")
    if dim is not None and (vote["rows"].shape[1:] != (dim,) or vote["centre"].shape[-1] != dim):
        sys.exit(f"--genre-prompts {path}: prompt rows are not {dim}-wide like this folder's plot embeddings")
    return vote


# A prompts file is a few hundred KB (21 genres x 3 prompts x 384 floats); far more is not one.
PROMPTS_MAX_BYTES = 64 << 20


def prompt_vote_probs(vote, plot_rows):
    """cinefuse's genre-prompt vote (genre_prompts.rs) from read_prompt_vote's file: the plot
    embeddings centred on the prompts' mean (and scaled as stored), unit length, against the
    stored prompt rows, as neighbour_vote above with the file's settings. Every member sees
    every prompt, so one vote serves the fitting rows and the test rows alike."""
    x = (plot_rows - vote["centre"]) * vote["scale"]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    return neighbour_vote(x, vote["rows"], vote["labels"], vote["k"], vote["temperature"], vote["prior"])


def credit_vote_probs(credits_fit, ytr, credits_test, temperature=0.3, folds=5):
    """cinefuse's credits vote (credit_neighbours.rs): each movie's "role:name" credits as a
    binary vector weighted by the names' inverse frequency over the fitting rows, unit length;
    a movie none of whose names a voter has gets the genre frequencies. Out-of-fold
    probabilities on the fitting rows (5 folds) and the test probabilities. A voter that
    shares no name with the movie is no neighbour (a movie sharing none gets the frequencies)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer=lambda names: names, binary=True).fit(credits_fit)
    xf, xt = vec.transform(credits_fit), vec.transform(credits_test)
    vote_oof = np.zeros(ytr.shape)
    for held in kfold_indices(xf.shape[0], folds):
        rest = np.setdiff1d(np.arange(xf.shape[0]), held)
        vote_oof[held] = shared_name_vote(xf[held], xf[rest], ytr[rest], temperature=temperature)
    return vote_oof, shared_name_vote(xt, xf, ytr, temperature=temperature)


def neighbour_peer(linear, voted, ytr, yte, keep=None, keep_prefix=""):
    """The strong peer with cinefuse's neighbour votes beside it, stacked as cinefuse stacks
    them (a logistic regression per genre on the logits, C = 0.1, fitted on the out-of-fold
    probabilities; thresholds on the stacked out-of-fold ones). `linear` is strong_peer_probs'
    (oof, test, info) on the same rows; `voted` lists each vote's (out-of-fold, test)
    probabilities (vote_probs, credit_vote_probs)."""
    oof, pte, info = linear
    stack_oof, stack_test = np.zeros(ytr.shape), np.zeros((len(pte), ytr.shape[1]))
    for g in range(ytr.shape[1]):
        x_fit = np.stack([logit(oof[:, g])] + [logit(v[0][:, g]) for v in voted], 1)
        x_test = np.stack([logit(pte[:, g])] + [logit(v[1][:, g]) for v in voted], 1)
        if ytr[:, g].min() == ytr[:, g].max():
            stack_oof[:, g] = stack_test[:, g] = ytr[0, g]
            continue
        model = LogisticRegression(C=0.1, max_iter=1000).fit(x_fit, ytr[:, g])
        stack_oof[:, g] = model.predict_proba(x_fit)[:, 1]
        stack_test[:, g] = model.predict_proba(x_test)[:, 1]
    return peer_scores((stack_oof, stack_test, info), ytr, yte, keep, keep_prefix)


def meta_features(m, vocabs):
    def log(x):
        return math.log1p(x) if x is not None and x >= 0 else np.nan

    def first(key):
        v = m.get(key)
        return v[0].lower() if isinstance(v, list) and v else None

    cats = [(m.get("certificate") or "").lower() or None, first("directors"), first("languages"), first("countries"), first("cast")]
    row = [
        m.get("year", np.nan) if m.get("year") is not None else np.nan,
        m.get("runtime_min") if m.get("runtime_min") is not None else np.nan,
        log(m.get("votes")),
        log(m.get("budget")),
        log(m.get("gross")),
    ]
    for i, c in enumerate(cats):
        row.append(vocabs[i].get(c, -1) if c is not None else np.nan)
    return row


MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def month_of(date):
    for w in str(date or "").lower().replace(",", " ").split():
        for k, m in enumerate(MONTHS):
            if w.startswith(m):
                return k
    return np.nan


def frequent(lists, min_freq, top):
    counts = {}
    for items in lists:
        for it in set(items):
            counts[it] = counts.get(it, 0) + 1
    kept = sorted((c for c in counts.items() if c[1] >= min_freq), key=lambda c: (-c[1], c[0]))
    return [k for k, _ in kept[:top]]


def writers_of(m):
    return [w.split("(")[0].strip().lower() for w in str(m.get("extra", {}).get("writer") or "").replace("|", ",").split(",") if w.strip()]


def award_words_of(m):
    return [w for w in "".join(c.lower() if c.isalnum() else " " for c in str(m.get("extra", {}).get("awards") or "")).split() if len(w) > 1]


def extra_vocab(train):
    """The writers (seen 3+ times, top 50) and award words (5+, top 30) of the fitting movies."""
    return frequent((writers_of(m) for m in train), 3, 50), frequent((award_words_of(m) for m in train), 5, 30)


def extra_features(movies_by_split):
    """metascore, release month (categorical), writers (multi-hot of 50) and award words
    (multi-hot of 30), encoded as cinefuse encodes its declared features; None without them."""
    if not any(m.get("extra", {}).get("metascore") is not None for m in movies_by_split["train"]):
        return None
    top_writers, top_words = extra_vocab(movies_by_split["train"])

    def row(m):
        e = m.get("extra", {})
        score = e.get("metascore")
        w, a = set(writers_of(m)), set(award_words_of(m))
        return [float(score) if score is not None else np.nan, month_of(e.get("released"))] + \
            [1.0 if x in w else 0.0 for x in top_writers] + [1.0 if x in a else 0.0 for x in top_words]

    return {s: np.array([row(m) for m in ms], dtype=float) for s, ms in movies_by_split.items()}


def paired(run, resamples, genres, genre_ids, y_test, rating_ids, rating_test, kept):
    """cinefuse's run against the strongest train + validation peers, on the same test movies."""
    import paired_bootstrap as pb

    probs, thr, rating = pb.load_run(run, genres, genre_ids, rating_ids)
    out = {"resamples": resamples}
    print(f"{run}:", file=sys.stderr)
    peers = peer_predictions.genre_peers(kept)
    if not peers:
        print("no strong peer with the three votes (no cached features or credits): nothing to pair", file=sys.stderr)
    for rule, peer in peers.items():
        name = f"strong linear peer + {kept.get('votes', 'three votes')}, train + validation, {rule}"
        out[name] = pb.paired_genres((probs, thr), peer, y_test, resamples)
        pb.print_table(name, out[name])
    if "rating" in kept:
        name = RATING_PEER
        out[name] = pb.paired_ratings(rating, kept["rating"], rating_test, resamples)
        pb.print_table(name, out[name])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("prepared")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT (not inside an input folder)")
    ap.add_argument("--paired", metavar="RUN[,RUN…]",
                    help="also compare each cinefuse run (after `cinefuse eval --run RUN`) with the strongest "
                         "train + validation peers on the same test movies, by a paired bootstrap")
    ap.add_argument("--resamples", type=int, default=1000, help="paired bootstrap resamples (default 1000)")
    ap.add_argument("--genre-prompts", metavar="FILE",
                    help="a blend's genre_prompts.safetensors: also the peer with the three votes and that "
                         "vote (then the one --paired compares with)")
    ap.add_argument("--save-peers", metavar="FILE",
                    help="also write the strongest train + validation peers' test predictions to FILE, for --peers")
    ap.add_argument("--peers", metavar="FILE",
                    help="fit nothing: pair the --paired runs with the peers a --save-peers run wrote")
    a = ap.parse_args()
    check_flags(a)
    movies, split, genres = load(a.dataset, a.prepared)
    if "test" not in split.values():
        sys.exit(f"{a.prepared}: no test split to score the peers on (prepared with "
                 "data.preprocess.test_ratio = 0, as a final model is); train the run to compare "
                 "with --set data.preprocess.test_ratio=0.15, which prepares it again with one")
    if a.peers:
        return pair_with_saved_peers(a, movies, split, genres)
    # Read and checked now, not after the hour of fitting that comes before its use.
    a.prompt_vote = a.genre_prompts and read_prompt_vote(a.genre_prompts, len(genres), sentence_dim(a.prepared))
    ids = {s: [i for i in split if split[i] == s] for s in ("train", "val", "test")}
    out = {}

    # Genres from plots.
    labelled = {s: [i for i in ids[s] if movies[i].get("genres")] for s in ids}
    text = {s: [movies[i].get("plot") or "" for i in labelled[s]] for s in ids}
    y = {s: multi_hot(movies, labelled[s], genres) for s in ids}
    vec = plot_vectorizer()
    xtr = vec.fit_transform(text["train"])
    probs = {}
    for s in ("val", "test"):
        probs[s] = np.zeros((len(labelled[s]), len(genres)))
    for k in range(len(genres)):
        if y["train"][:, k].sum() == 0:
            continue
        clf = LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced")
        clf.fit(xtr, y["train"][:, k])
        for s in ("val", "test"):
            probs[s][:, k] = clf.predict_proba(vec.transform(text[s]))[:, 1]
    thr = tune_thresholds(probs["val"], y["val"])
    out["tfidf_logreg_genres"] = genre_metrics(probs["test"], y["test"], thr)
    prevalence = y["train"].mean(0)
    maj = np.tile(prevalence, (len(labelled["test"]), 1))
    kept = {}
    genre_inputs, genre_inputs_content = pretrained_peers(a, movies, labelled, y, text, out, kept)
    if a.prompt_vote and not any("four_votes" in k for k in out):
        print(f"--genre-prompts {a.genre_prompts}: unused; the peer with it needs the cached plot features "
              "and the credits of a prepared folder with pretrained text", file=sys.stderr)
    out["majority_genres"] = genre_metrics(maj, y["test"], np.where(prevalence >= 0.5, 0.0, 1.1) if (prevalence >= 0.5).any() else np.where(np.arange(len(genres)) == prevalence.argmax(), 0.0, 1.1))

    # Rating from metadata.
    rated = {s: [i for i in ids[s] if movies[i].get("rating") is not None] for s in ids}
    vocabs = []
    for key in ("certificate", "directors", "languages", "countries", "cast"):
        vals = {}
        for i in rated["train"]:
            v = movies[i].get(key)
            v = (v[0] if isinstance(v, list) and v else v) if v else None
            if v:
                vals.setdefault(v.lower(), len(vals))
        vocabs.append(vals)
    X = {s: np.array([meta_features(movies[i], vocabs) for i in rated[s]], dtype=float) for s in ids}
    t = {s: np.array([movies[i]["rating"] for i in rated[s]], dtype=float) for s in ids}
    gbm = HistGradientBoostingRegressor(max_iter=400, learning_rate=0.05, max_leaf_nodes=15, l2_regularization=1.0,
                                        categorical_features=[5, 6, 7, 8, 9], random_state=0)
    X_cat = {s: np.where(np.isnan(X[s]), np.nan, X[s]) for s in X}
    for s in X_cat:
        X_cat[s][:, 5:] = np.where(X_cat[s][:, 5:] < 0, np.nan, X_cat[s][:, 5:])
        X_cat[s][:, 5:] = np.where(X_cat[s][:, 5:] > 250, np.nan, X_cat[s][:, 5:])  # rare categories as missing
    keep = [c for c in range(X_cat["train"].shape[1]) if not np.isnan(X_cat["train"][:, c]).all()]
    X_cat = {s: X_cat[s][:, keep] for s in X_cat}
    gbm.set_params(categorical_features=[i for i, c in enumerate(keep) if c >= 5])
    gbm.fit(X_cat["train"], t["train"])
    out["gbm_metadata_rating"] = rating_metrics(gbm.predict(X_cat["test"]), t["test"])
    # The same, with the extra columns cinefuse's real-data config declares (when the dataset
    # was imported with them): metascore, release month, writers and award words.
    extra = extra_features({s: [movies[i] for i in rated[s]] for s in ids})
    if extra is not None:
        Xe = {s: np.hstack([X_cat[s], extra[s]]) for s in X_cat}
        gbm_e = HistGradientBoostingRegressor(max_iter=400, learning_rate=0.05, max_leaf_nodes=15,
                                              l2_regularization=1.0, random_state=0,
                                              categorical_features=[i for i, c in enumerate(keep) if c >= 5] + [X_cat["train"].shape[1] + 1])
        gbm_e.fit(Xe["train"], t["train"])
        out["gbm_metadata_extra_rating"] = rating_metrics(gbm_e.predict(Xe["test"]), t["test"])
        # On the rows a bag trains on (train + validation).
        gbm_e.fit(np.vstack([Xe["train"], Xe["val"]]), np.concatenate([t["train"], t["val"]]))
        kept["rating"] = gbm_e.predict(Xe["test"])
        out["gbm_metadata_extra_train_val_rating"] = rating_metrics(kept["rating"], t["test"])
        fit = (np.vstack([Xe["train"], Xe["val"]]), np.concatenate([t["train"], t["val"]]))
        cats = [c for c in range(X_cat["train"].shape[1]) if keep[c] >= 5] + [X_cat["train"].shape[1] + 1]
        votes_col, metascore_col = keep.index(2), X_cat["train"].shape[1]
        plot = scaled_plot_rows(a.prepared, load_samples(a.prepared), rated["train"] + rated["val"], rated["test"])
        # A stronger rating peer (2026-12-06): the same mixed with a plot ridge, which the
        # trees cannot read; --paired compares with it unless one below does better out of fold.
        _, mixed, w, oof_mae = rating_with_plot(fit, Xe["test"], cats, {}, plot)
        if mixed is not None:
            kept["rating"] = mixed
            out["gbm_metadata_extra_plot_mix_train_val_rating"] = rating_metrics(mixed, t["test"])
            out["gbm_metadata_extra_plot_mix_train_val_rating"]["plot_weight"] = w
            out["gbm_metadata_extra_plot_mix_train_val_rating"]["out_of_fold_mae"] = oof_mae
        if genre_inputs:
            # The strongest since 2026-12-06 (the issue's own peer reads them): the trees also
            # read the linear peer's genre probabilities, and the PCA of the plot embedding.
            # --paired compares with whichever the out-of-fold MAE prefers.
            best = oof_mae
            for name, rating, mae in genre_aware_rating_peers(
                    a.prepared, (fit, Xe["test"]), (rated["train"] + rated["val"], rated["test"]),
                    genre_inputs, cats, plot):
                out[name] = {**rating_metrics(rating, t["test"]), "out_of_fold_mae": mae}
                if mae < best:
                    best, kept["rating"] = mae, rating
        # Movies given without a vote count, and without the Metacritic score too.
        # The award words are the last columns of the extras (`extra_features`).
        awards = dict.fromkeys(range(Xe["train"].shape[1] - len(extra_vocab([movies[i] for i in rated["train"]])[1]),
                                     Xe["train"].shape[1]), "awards")
        content = None
        if genre_inputs_content:
            content = genre_rows(genre_inputs_content, (rated["train"] + rated["val"], rated["test"]))
        # And movies given with their vote count but without any extra (a table without those
        # columns; voteless_rating.rs rates them since 2026-12-06).
        extras = dict.fromkeys(range(X_cat["train"].shape[1], Xe["train"].shape[1]), "extras")
        for dropped in ({votes_col: "votes"}, {votes_col: "votes", metascore_col: "metascore"},
                        {votes_col: "votes", metascore_col: "metascore", **awards}, extras):
            out.update(voteless_rating_peers(fit, (Xe["test"], t["test"]), cats, dropped, plot, content))
    out["mean_rating"] = rating_metrics(np.full(len(t["test"]), t["train"].mean()), t["test"])
    out["test_movies"] = {"genres": len(labelled["test"]), "rating": len(rated["test"])}
    if a.paired:
        out["paired"] = {run: paired(run, a.resamples, genres, labelled["test"], y["test"], rated["test"],
                                     t["test"], kept) for run in a.paired.split(",")}
    if a.save_peers:
        import paired_bootstrap as pb
        pb.write_json_atomic(a.save_peers, peer_predictions.to_json(genres, labelled["test"], rated["test"], kept))
    finish(a, out)


def finish(a, out):
    json.dump(out, sys.stdout, indent=2)
    print()
    if a.json:
        import paired_bootstrap as pb
        pb.write_json_atomic(a.json, out)


def check_flags(a):
    """Refused before the fitting, not after it: outputs inside an input folder, and
    --peers without --paired or beside --save-peers."""
    import paired_bootstrap as pb

    inputs = (a.dataset, a.prepared, *(a.paired.split(",") if a.paired else ()))
    for flag, out in (("--json", a.json), ("--save-peers", a.save_peers)):
        if out:
            pb.check_output(out, inputs, flag)
    if a.peers and not a.paired:
        sys.exit(f"--peers {a.peers}: give the runs to pair with them (--paired RUN[,RUN…])")
    if a.peers and (a.save_peers or a.genre_prompts):
        sys.exit(f"--peers {a.peers}: fits nothing, so --save-peers and --genre-prompts have nothing to do")


def pair_with_saved_peers(a, movies, split, genres):
    """--peers FILE: the --paired runs against saved peers, on this data's test movies."""
    genre_ids, y_test, rating_ids, t_test = test_truth(movies, split, genres)
    kept = peer_predictions.load(a.peers, genres, genre_ids, rating_ids)
    out = {"peers": a.peers, "test_movies": {"genres": len(genre_ids), "rating": len(rating_ids)},
           "paired": {run: paired(run, a.resamples, genres, genre_ids, y_test, rating_ids, t_test, kept)
                      for run in a.paired.split(",")}}
    finish(a, out)


if __name__ == "__main__":
    main()
