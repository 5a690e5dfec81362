#!/usr/bin/env python3
"""Probes on the out-of-fold predictions of bags trained on the same folds (each bag's
oof_predictions.csv): would another way of combining them, or another kind of member, do
better than the blend `cinefuse ensemble` learns? Nothing here reads the test split.

  scripts/.venv/bin/python scripts/oof_probes.py DATASET PREPARED BAG [BAG …]

Prints, judged by 5-fold cross-validation over the bags' own folds (the combiner is fitted on
four folds' out-of-fold predictions and scored on the fifth, thresholds tuned the same way):
  - genres: the blend's greedy probability weights (what cinefuse ships) against greedy logit
    weights and logistic-regression stacking (per genre, and shared weights with per-genre
    biases, and each genre reading every genre's logits), as micro-F1, macro-F1, top-1 and
    micro average precision;
  - other kinds of genre member, alone and added to the greedy blend: a nearest-neighbour vote
    on the cached MiniLM plot embeddings, and TF-IDF logistic regression on "Title. Plot";
  - rating: the blend's greedy rating weights against gradient boosting on the metadata and
    extra columns (scikit-learn's HistGradientBoostingRegressor, the peer of
    baselines_sklearn.py) fitted on the same folds, and the two combined by greedy weights;
    the same without the award words, and without the writers (which columns carry it);
  - with --vote-grid, the neighbour vote's k and temperature over a grid, stacked per genre;
  - with --linear-peer, the strong linear peer of baselines_sklearn.py (block-scaled plot,
    poster and metadata features, C = 1) fitted on the same folds: the bags + vote against the
    peer + vote on the same movies, the same with both votes (plot and metadata) and with
    all three (plot, metadata, credits), and the bags + vote + the linear model as a member;
  - with --more-votes, neighbour votes on the metadata and on all three feature blocks beside
    the plot vote, stacked per genre;
  - with --stackers, the blend's per-genre stacking (bags + three votes) with other penalties,
    and with weights shrunk towards shared ones instead of towards zero.
"""

import argparse
import os
import sys

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baselines_sklearn as peers  # noqa: E402
import paired_bootstrap as pb  # noqa: E402
import bounded_io as bio  # noqa: E402

EPS = 1e-6


def read_oof(bag):
    rows = bio.read_csv_rows(os.path.join(bag, "oof_predictions.csv"))
    return {r["id"]: r for r in rows}, list(rows[0].keys())


def greedy(preds, loss, rounds=25):
    """Caruana et al.'s selection with replacement, as cinefuse's blend learns its weights."""
    counts, current = np.zeros(len(preds)), None
    for r in range(rounds):
        best = None
        for k, p in enumerate(preds):
            cand = p if current is None else (current * r + p) / (r + 1)
            score = loss(cand)
            if best is None or score < best[0]:
                best = (score, k, cand)
        counts[best[1]] += 1
        current = best[2]
    return counts / counts.sum()


def log_loss(p, y):
    p = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def genre_scores(p, y, thresholds):
    pred = p >= thresholds
    tp = (pred & (y == 1)).sum(0)
    fp = (pred & (y == 0)).sum(0)
    fn = (~pred & (y == 1)).sum(0)
    micro = 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum())
    macro = np.mean([2 * a / max(1, 2 * a + b + c) for a, b, c in zip(tp, fp, fn)])
    top1 = (y[np.arange(len(y)), p.argmax(1)] == 1).mean()
    return np.array([micro, macro, top1, average_precision_score(y.ravel(), p.ravel())])


def genre_combiners(probs, logits, labels):
    """Each combiner maps the training rows to probabilities for every movie."""
    n, g = labels.shape

    def prob_greedy(tr):
        w = greedy([p[tr] for p in probs], lambda q: log_loss(q, labels[tr]))
        return np.tensordot(w, probs, 1)

    def logit_greedy(tr):
        w = greedy([z[tr] for z in logits], lambda z: log_loss(sigmoid(z), labels[tr]))
        return sigmoid(np.tensordot(w, logits, 1))

    def per_genre_lr(tr, c=0.1):
        out = np.zeros((n, g))
        for k in range(g):
            x, y = logits[:, :, k].T, labels[tr, k]
            if y.min() == y.max():  # a genre without positives (or negatives) in these folds
                out[:, k] = y[0]
                continue
            out[:, k] = LogisticRegression(C=c, max_iter=1000).fit(x[tr], y).predict_proba(x)[:, 1]
        return out

    def shared_lr(tr):
        x = np.hstack([logits.transpose(1, 2, 0).reshape(n * g, -1), np.tile(np.eye(g), (n, 1))])
        rows = (tr[:, None] * g + np.arange(g)).ravel()
        model = LogisticRegression(C=1.0, max_iter=2000, fit_intercept=False)
        return model.fit(x[rows], labels.ravel()[rows]).predict_proba(x)[:, 1].reshape(n, g)

    def cross_genre_lr(tr, c=0.03):
        # Each genre reads every genre's logit of every bag: co-occurrence (Crime lowers Drama's
        # chance of being the top genre, say) that per-genre stacking cannot see.
        x = logits.transpose(1, 0, 2).reshape(n, -1)
        x = (x - x[tr].mean(0)) / (x[tr].std(0) + EPS)
        out = np.zeros((n, g))
        for k in range(g):
            y = labels[tr, k]
            if y.min() == y.max():
                out[:, k] = y[0]
                continue
            out[:, k] = LogisticRegression(C=c, max_iter=2000).fit(x[tr], y).predict_proba(x)[:, 1]
        return out

    return {
        "greedy probability weights (shipped)": prob_greedy,
        "greedy logit weights": logit_greedy,
        "logistic stacking per genre (C=0.1)": per_genre_lr,
        "logistic stacking, shared weights + genre biases": shared_lr,
        "logistic stacking across genres (C=0.03)": cross_genre_lr,
    }


def cross_validate(fold, fit, labels):
    scores = []
    for k in sorted(set(fold)):
        tr, te = np.where(fold != k)[0], np.where(fold == k)[0]
        p = fit(tr)
        scores.append(genre_scores(p[te], labels[te], peers.tune_thresholds(p[tr], labels[tr])))
    return np.mean(scores, 0)


def probe_genres(tables, ids, fold):
    cols = tables[0][1]
    pc, yc = [c for c in cols if c.startswith("p_")], [c for c in cols if c.startswith("y_")]
    labelled = [i for i in ids if tables[0][0][i][yc[0]] != ""]
    keep = np.array([i in set(labelled) for i in ids])
    probs = np.stack([[[float(t[0][i][c]) for c in pc] for i in labelled] for t in tables])
    labels = np.array([[float(tables[0][0][i][c]) for c in yc] for i in labelled])
    clipped = np.clip(probs, EPS, 1 - EPS)
    logits = np.log(clipped / (1 - clipped))
    print(f"genres, {len(labelled)} movies: micro-F1 macro-F1 top-1 micro-AP")
    for b in range(len(tables)):
        print(f"  bag {b} alone{'':38s}", np.round(cross_validate(fold[keep], lambda tr, b=b: probs[b], labels), 4))
    for name, fit in genre_combiners(probs, logits, labels).items():
        print(f"  {name:50s}", np.round(cross_validate(fold[keep], fit, labels), 4))
    return labelled, probs, labels, fold[keep]


def neighbour_genres(features, labels, fold, k=50, temperature=0.05, prior=2.0):
    """Out-of-fold genre probabilities of a k-nearest-neighbour vote: cosine similarity of the
    centred embeddings, neighbours weighted by softmax(similarity / temperature), the vote
    shrunk towards the genre frequencies by `prior` pseudo-neighbours."""
    x = features - features.mean(0)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), EPS)
    out = np.zeros(labels.shape)
    for f in sorted(set(fold)):
        tr, te = np.where(fold != f)[0], np.where(fold == f)[0]
        sim = x[te] @ x[tr].T
        near = np.argsort(-sim, 1)[:, :k]
        w = np.exp((np.take_along_axis(sim, near, 1) - 1) / temperature)
        w /= w.sum(1, keepdims=True)
        vote = np.einsum("nk,nkg->ng", w, labels[tr][near])
        n = near.shape[1]
        out[te] = (vote * n + labels[tr].mean(0) * prior) / (n + prior)
    return out


def credit_genres(credits, labels, fold, k=50, temperature=0.3, prior=2.0):
    """Out-of-fold genre probabilities of cinefuse's credits vote (credit_neighbours.rs): the
    movies' "role:name" credits weighted by inverse frequency over all voters, cosine
    similarity, only voters sharing a name are neighbours."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    x = TfidfVectorizer(analyzer=lambda names: names, binary=True).fit_transform(credits)
    out = np.zeros(labels.shape)
    for f in sorted(set(fold)):
        tr, te = np.where(fold != f)[0], np.where(fold == f)[0]
        out[te] = peers.shared_name_vote(x[te], x[tr], labels[tr], k, temperature, prior)
    return out


def tfidf_genres(texts, labels, fold, c=10.0):
    """Out-of-fold probabilities of a one-vs-rest logistic regression on the plots' TF-IDF
    (baselines_sklearn.py's encoding), fitted on the other folds."""
    out = np.zeros(labels.shape)
    for f in sorted(set(fold)):
        tr, te = fold != f, fold == f
        vec = peers.plot_vectorizer()
        x = vec.fit_transform(texts[tr])
        (out[te],) = peers.ovr_logreg(x, labels[tr], [vec.transform(texts[te])], c)
    return out


def probe_members(genres, movies, prepared):
    """Would another kind of member help the blend? Each candidate's out-of-fold probabilities
    on the bags' own folds, alone and added to the greedy blend."""
    labelled, probs, labels, fold = genres
    candidates = {}
    table = peers.load_feature_cache(prepared, "plot")
    if table is None:
        print("  members: no cached plot features in", prepared, "- skipping the neighbour vote")
    else:
        samples = peers.load_samples(prepared)
        plot = table[[samples[i]["row"] for i in labelled], :peers.sentence_dim(prepared)]
        candidates["plot-embedding neighbours (k=50, T=0.05)"] = neighbour_genres(plot, labels, fold)
    texts = np.array([f"{movies[i].get('title', '')}. {movies[i].get('plot') or ''}" for i in labelled], dtype=object)
    try:
        candidates["TF-IDF logistic regression (C=10)"] = tfidf_genres(texts, labels, fold)
    except ValueError as e:  # too few words (tiny datasets)
        print("  members: no TF-IDF member:", e)
    for name, member in candidates.items():
        print(f"  {name + ' alone':50s}", np.round(cross_validate(fold, lambda tr, m=member: m, labels), 4))
        everyone = np.concatenate([probs, member[None]])
        clipped = np.clip(everyone, EPS, 1 - EPS)
        for combiner, fit in genre_combiners(everyone, np.log(clipped / (1 - clipped)), labels).items():
            print(f"    + the bags, {combiner:36s}", np.round(cross_validate(fold, fit, labels), 4))


def probe_vote_grid(genres, prepared, ks=(20, 50, 100), temperatures=(0.02, 0.05, 0.1)):
    """The neighbour vote's k and temperature over a grid, each stacked per genre with the bags
    (the combiner a blend with the vote uses), cross-validated as above."""
    labelled, probs, labels, fold = genres
    table = peers.load_feature_cache(prepared, "plot")
    if table is None:
        print("  vote grid: no cached plot features in", prepared)
        return
    samples = peers.load_samples(prepared)
    plot = table[[samples[i]["row"] for i in labelled], :peers.sentence_dim(prepared)]
    print("the vote's settings, stacked per genre with the bags: micro-F1 macro-F1 top-1 micro-AP")
    for k in ks:
        for t in temperatures:
            everyone = np.concatenate([probs, neighbour_genres(plot, labels, fold, k=k, temperature=t)[None]])
            clipped = np.clip(everyone, EPS, 1 - EPS)
            fit = genre_combiners(everyone, np.log(clipped / (1 - clipped)), labels)["logistic stacking per genre (C=0.1)"]
            print(f"  k={k:<4d} T={t:<5g}", np.round(cross_validate(fold, fit, labels), 4))


def gbm_features(movies, fit_ids, all_ids):
    """The metadata + extra columns of baselines_sklearn.py's rating peer, vocabularies from
    the fitting rows only; and the columns of the writers and of the award words."""
    vocabs = []
    for key in ("certificate", "directors", "languages", "countries", "cast"):
        seen = {}
        for i in fit_ids:
            v = movies[i].get(key)
            v = (v[0] if isinstance(v, list) and v else v) if v else None
            if v:
                seen.setdefault(v.lower(), len(seen))
        vocabs.append(seen)
    x = np.array([peers.meta_features(movies[i], vocabs) for i in all_ids], dtype=float)
    x[:, 5:] = np.where((x[:, 5:] < 0) | (x[:, 5:] > 250), np.nan, x[:, 5:])
    fit = [movies[i] for i in fit_ids]
    extra = peers.extra_features({"train": fit, "all": [movies[i] for i in all_ids]})
    if extra is None:
        return x, {}
    # The extras: metascore, month, then the writers' and the award words' multi-hots.
    writers, words = (len(v) for v in peers.extra_vocab(fit))
    start = x.shape[1] + 2
    groups = {"writers": range(start, start + writers), "award words": range(start + writers, start + writers + words)}
    return np.hstack([x, extra["all"]]), groups


def probe_rating(tables, ids, fold, movies):
    rated = np.array([tables[0][0][i]["rating_true"] != "" for i in ids])
    rid = [i for i, r in zip(ids, rated) if r]
    rfold = fold[rated]
    preds = np.array([[float(t[0][i]["rating"]) for i in rid] for t in tables])
    truth = np.array([float(tables[0][0][i]["rating_true"]) for i in rid])
    mae = lambda p: np.abs(p - truth).mean()  # noqa: E731
    weights = greedy(list(preds), mae)
    blend = weights @ preds
    folds = [(np.where(rfold != k)[0], np.where(rfold == k)[0]) for k in sorted(set(rfold))]
    tables_k = [gbm_features(movies, [rid[i] for i in tr], rid) for tr, _ in folds]
    print(f"rating, {len(rid)} movies, out-of-fold MAE:")
    print(f"  the bags' greedy blend (weights {np.round(weights, 2)}): {mae(blend):.4f}")
    for dropped in (None, "award words", "writers"):
        if dropped and dropped not in tables_k[0][1]:
            continue
        gbm = np.zeros(len(rid))
        for (tr, te), (x, groups) in zip(folds, tables_k):
            gone = set(groups[dropped]) if dropped else set()
            cols = [c for c in range(x.shape[1]) if c not in gone and not np.isnan(x[tr, c]).all()]
            cats = [j for j, c in enumerate(cols) if 5 <= c < 10 or c == 11]
            model = HistGradientBoostingRegressor(max_iter=400, learning_rate=0.05, max_leaf_nodes=15,
                                                  l2_regularization=1.0, random_state=0, categorical_features=cats)
            gbm[te] = model.fit(x[tr][:, cols], truth[tr]).predict(x[te][:, cols])
        mixed = greedy([blend, gbm], mae)
        name = f"without the {dropped}" if dropped else "on all the peer's columns"
        print(f"  gradient boosting on the same folds, {name}: {mae(gbm):.4f}; "
              f"with the blend (weights {np.round(mixed, 2)}): {mae(mixed @ np.stack([blend, gbm])):.4f}")


def stacked_held_out(members, labels, fold):
    """The members stacked per genre (C = 0.1), cross-validated: each fold's probabilities from
    a stacker fitted on the other folds, and its thresholds (pulled 0.25 toward a shared one,
    as cinefuse's default) tuned there too; both one row per movie."""
    clipped = np.clip(np.stack(members), EPS, 1 - EPS)
    fit = genre_combiners(clipped, np.log(clipped / (1 - clipped)), labels)["logistic stacking per genre (C=0.1)"]
    return held_out(fit, labels, fold)


def held_out(fit, labels, fold):
    """Each fold's probabilities from `fit` on the other folds' rows, and its thresholds (pulled
    0.25 toward a shared one) tuned there too; both one row per movie."""
    probs, thresholds = np.zeros(labels.shape), np.zeros(labels.shape)
    for k in sorted(set(fold)):
        tr, te = np.where(fold != k)[0], np.where(fold == k)[0]
        p = fit(tr)
        probs[te], thresholds[te] = p[te], peers.tune_thresholds(p[tr], labels[tr], 0.25)
    return probs, thresholds


def fold_mean_scores(held_out, labels, fold):
    """The mean over the folds of each fold's scores, from stacked_held_out's output."""
    probs, thresholds = held_out
    scores = [genre_scores(probs[fold == k], labels[fold == k], thresholds[fold == k][0]) for k in sorted(set(fold))]
    return np.round(np.mean(scores, 0), 4)


def stacked_scores(members, labels, fold):
    """Cross-validated scores (the mean over the folds) of the members stacked per genre."""
    return fold_mean_scores(stacked_held_out(members, labels, fold), labels, fold)


def feature_blocks(labelled, prepared):
    """The cached plot and poster features and cinefuse's metadata encoding of the movies, as
    the strong linear peer reads them; None without cached features."""
    samples = peers.load_samples(prepared)
    plot, poster = (peers.load_feature_cache(prepared, m) for m in ("plot", "poster"))
    if plot is None or poster is None:
        return None
    n_cat = [len(v["values"]) + 2 for v in bio.read_json(os.path.join(prepared, "preprocess.json"))["categorical"]]
    rows = [samples[i]["row"] for i in labelled]
    return [plot[rows], poster[rows], peers.cinefuse_meta(samples, labelled, n_cat)]


def blend_votes(labelled, labels, fold, prepared, blocks):
    """The blend's three neighbour votes out of fold, as cinefuse takes them: plot (k = 50,
    T = 0.05), standardised metadata (T = 0.2) and credits (T = 0.3); the credits vote is left
    out (None) for data prepared before credits were recorded."""
    vote = neighbour_genres(blocks[0][:, :peers.sentence_dim(prepared)], labels, fold)
    meta_vote = neighbour_genres(peers.scaled_blocks(blocks[2:], blocks[2:])[0], labels, fold, temperature=0.2)
    samples = peers.load_samples(prepared)
    credits = [samples[i].get("credits", []) for i in labelled]
    credit_vote = credit_genres(credits, labels, fold) if any(credits) else None
    return vote, meta_vote, credit_vote


def probe_linear_peer(genres, prepared):
    """The bags against the strong linear peer on the same out-of-fold movies and folds, each
    with the plot vote and then with both votes (plot and metadata), and the linear model as a
    fourth member."""
    labelled, probs, labels, fold = genres
    blocks = feature_blocks(labelled, prepared)
    if blocks is None:
        print("  linear peer: no cached plot and poster features in", prepared)
        return
    linear = np.zeros(labels.shape)
    for k in sorted(set(fold)):
        tr, te = fold != k, fold == k
        x_fit, x_held = peers.scaled_blocks([b[tr] for b in blocks], [b[te] for b in blocks])
        (linear[te],) = peers.ovr_logreg(x_fit, labels[tr], [x_held], 1.0)
    vote, meta_vote, credit_vote = blend_votes(labelled, labels, fold, prepared, blocks)
    print("stacked per genre, thresholds pulled 0.25: micro-F1 macro-F1 top-1 micro-AP")
    print("  the bags + vote                ", stacked_scores(list(probs) + [vote], labels, fold))
    print("  the bags + vote + linear model ", stacked_scores(list(probs) + [vote, linear], labels, fold))
    print("  linear model + vote (the peer) ", stacked_scores([linear, vote], labels, fold))
    print("  the bags + both votes          ", stacked_scores(list(probs) + [vote, meta_vote], labels, fold))
    print("  linear model + both votes      ", stacked_scores([linear, vote, meta_vote], labels, fold))
    if credit_vote is None:
        print("  credits vote: no credits in", prepared, "(prepared before they were recorded)")
        return
    votes = [vote, meta_vote, credit_vote]
    ours, theirs = (stacked_held_out(m, labels, fold) for m in (list(probs) + votes, [linear] + votes))
    print("  the bags + three votes         ", fold_mean_scores(ours, labels, fold))
    print("  linear model + three votes     ", fold_mean_scores(theirs, labels, fold))
    result = pb.paired_genres(ours, theirs, labels)
    pb.print_table("linear model + three votes, out of fold (pooled over the folds)", result, sys.stdout)


def shrunk_stacking(labels, c=1.0, spread=0.3):
    """Logistic stacking whose per-genre weights are shrunk towards weights shared by every
    genre instead of towards zero: shared weights penalised as C = c, each genre's deviation
    from them as C = c·spread² (the deviation's inputs scaled by `spread`), genre biases all
    but free; one logistic regression over every (movie, genre) row."""
    n, g = labels.shape

    def fit(logits, tr):
        z = logits.transpose(1, 2, 0)  # movie × genre × part
        eye = np.eye(g)
        deviations = (z[:, :, :, None] * eye[None, :, None, :]).reshape(n, g, -1) * spread
        biases = np.broadcast_to(eye * 30.0, (n, g, g))
        x = np.concatenate([z, deviations, biases], 2).reshape(n * g, -1)
        rows = (tr[:, None] * g + np.arange(g)).ravel()
        model = LogisticRegression(C=c, max_iter=5000, fit_intercept=False)
        return model.fit(x[rows], labels.ravel()[rows]).predict_proba(x)[:, 1].reshape(n, g)

    return fit


def probe_stackers(genres, prepared):
    """The blend's genre stacking (per genre, C = 0.1) against a weaker and a stronger penalty
    and against weights shrunk towards shared ones, over the bags and the three votes; each
    cross-validated (stacker and thresholds fitted on four folds, scored on the fifth)."""
    labelled, probs, labels, fold = genres
    blocks = feature_blocks(labelled, prepared)
    if blocks is None:
        print("  stackers: no cached plot and poster features in", prepared)
        return
    votes = [v for v in blend_votes(labelled, labels, fold, prepared, blocks) if v is not None]
    clipped = np.clip(np.stack(list(probs) + votes), EPS, 1 - EPS)
    logits = np.log(clipped / (1 - clipped))
    per_genre = genre_combiners(clipped, logits, labels)["logistic stacking per genre (C=0.1)"]
    stackers = {
        "per genre, C = 0.1 (shipped)": per_genre,
        "per genre, C = 0.03": lambda tr: per_genre(tr, c=0.03),
        "per genre, C = 1": lambda tr: per_genre(tr, c=1.0),
        "shrunk to shared weights, C = 1, spread 0.3": lambda tr: shrunk_stacking(labels)(logits, tr),
        "shrunk to shared weights, C = 0.1, spread 0.3": lambda tr: shrunk_stacking(labels, 0.1)(logits, tr),
    }
    print(f"stackers over the bags + {len(votes)} votes, thresholds pulled 0.25: micro-F1 macro-F1 top-1 micro-AP")
    for name, fit in stackers.items():
        print(f"  {name:46s}", fold_mean_scores(held_out(fit, labels, fold), labels, fold))


def probe_more_votes(genres, prepared, temperatures=(0.1, 0.2)):
    """Neighbour votes in other spaces beside the plot vote: the standardised metadata, and all
    three blocks scaled to equal variance (as the linear peer reads them), stacked per genre."""
    labelled, probs, labels, fold = genres
    blocks = feature_blocks(labelled, prepared)
    if blocks is None:
        print("  more votes: no cached plot and poster features in", prepared)
        return
    plot_vote = neighbour_genres(blocks[0][:, :peers.sentence_dim(prepared)], labels, fold)
    spaces = {"metadata": blocks[2:], "plot + poster + metadata": blocks}
    print("votes stacked per genre, thresholds pulled 0.25: micro-F1 macro-F1 top-1 micro-AP")
    print("  the bags + plot vote            ", stacked_scores(list(probs) + [plot_vote], labels, fold))
    for name, space in spaces.items():
        # Scaled on all rows: unsupervised, like the centring the plot vote does.
        x, _ = peers.scaled_blocks(space, space)
        for t in temperatures:
            vote = neighbour_genres(x, labels, fold, temperature=t)
            print(f"  + a {name} vote (T={t})", stacked_scores(list(probs) + [plot_vote, vote], labels, fold))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("prepared")
    ap.add_argument("bags", nargs="+")
    ap.add_argument("--vote-grid", action="store_true", help="also the neighbour vote's k and temperature over a grid")
    ap.add_argument("--linear-peer", action="store_true", help="also the bags against the strong linear peer on the same folds")
    ap.add_argument("--more-votes", action="store_true", help="also neighbour votes on the metadata and on all features")
    ap.add_argument("--stackers", action="store_true", help="also other penalties of the genre stacking")
    a = ap.parse_args()
    movies, _, _ = peers.load(a.dataset, a.prepared)
    tables = [read_oof(b) for b in a.bags]
    ids = sorted(tables[0][0])
    if any(sorted(t[0]) != ids for t in tables):
        sys.exit("the bags' out-of-fold predictions are not on the same movies (other folds or data?)")
    fold = np.array([int(tables[0][0][i]["fold"]) for i in ids])
    genres = probe_genres(tables, ids, fold)
    probe_members(genres, movies, a.prepared)
    if a.vote_grid:
        probe_vote_grid(genres, a.prepared)
    if a.linear_peer:
        probe_linear_peer(genres, a.prepared)
    if a.more_votes:
        probe_more_votes(genres, a.prepared)
    if a.stackers:
        probe_stackers(genres, a.prepared)
    probe_rating(tables, ids, fold, movies)


if __name__ == "__main__":
    main()
