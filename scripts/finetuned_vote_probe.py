#!/usr/bin/env python3
"""Would a neighbour vote on the fine-tuned bag's own plot embeddings add to the shipped blend?
(A probe: nothing here is built into cinefuse.) Reads a shipped-config run's out-of-fold
predictions and nothing of its test split.

  cinefuse export --run RUN/bag-3 --out FT_EXPORT        (the fine-tuned bag, portable)
  scripts/.venv/bin/python scripts/finetuned_vote_probe.py RUN FT_EXPORT DATASET PREPARED [T,T…]

Each member k of the fine-tuned bag embeds every movie (its MiniLM's pooled output, through
cinefuse_torch.py); a movie of fold k is voted on by the movies outside fold k in member k's
space, which never saw it (k = 50, prior 2, temperatures T, as the plot vote). Printed: the
vote alone, then the blend's parts (RUN/bag-0…3, the three neighbour votes and the prompt vote)
stacked per genre with and without it, cross-validated on the bags' folds, and a paired
bootstrap of the difference.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baselines_sklearn as peers  # noqa: E402
import oof_probes as op  # noqa: E402
import paired_bootstrap as pb  # noqa: E402


def member_embeddings(export, dataset):
    """[members, movies, hidden] pooled embeddings of each movie of DATASET, and the ids."""
    import cinefuse_torch as ct

    part = ct.Part(export, ct.read_config(export))
    movies = ct.read_movies(os.path.join(dataset, "movies.jsonl"))
    # Shortest plots together, so that a chunk pads little.
    order = np.argsort([len(part.pre.tokens(m)) for m in movies])
    out = None
    for s in range(0, len(order), 64):
        rows = order[s:s + 64]
        chunk = [movies[i] for i in rows]
        for k in range(len(part.bag.members)):
            e, _ = part.plot_embeddings(chunk, member=k)
            if out is None:
                out = np.zeros((len(part.bag.members), len(movies), e.shape[1]))
            out[k, rows] = e
    return out, [m["id"] for m in movies]


def fold_space_vote(embeddings, labels, fold, temperature):
    """Out-of-fold probabilities: fold f's movies against the rest, in member f's space (the
    plot vote's k = 50 and prior 2)."""
    out = np.zeros(labels.shape)
    for f in sorted(set(fold)):
        out[fold == f] = op.neighbour_genres(embeddings[f], labels, fold, temperature=temperature)[fold == f]
    return out


def main(run, export, dataset, prepared, temperatures):
    tables = [op.read_oof(os.path.join(run, f"bag-{b}")) for b in range(4)]
    ids = list(tables[0][0])
    fold = np.array([int(tables[0][0][i]["fold"]) for i in ids])
    labelled, probs, labels, fold = op.probe_genres(tables, ids, fold)
    blocks = op.feature_blocks(labelled, prepared)
    votes = [v for v in op.blend_votes(labelled, labels, fold, prepared, blocks) if v is not None]
    sd = peers.sentence_dim(prepared)
    prompts = peers.read_prompt_vote(os.path.join(run, "genre_prompts.safetensors"), labels.shape[1], sd)
    votes.append(peers.prompt_vote_probs(prompts, blocks[0][:, :sd]))
    embeddings, all_ids = member_embeddings(export, dataset)
    where = {m: r for r, m in enumerate(all_ids)}
    embeddings = embeddings[:, [where[i] for i in labelled]]
    base = list(probs) + votes
    shipped = op.stacked_held_out(base, labels, fold)
    print("micro-F1 macro-F1 top-1 micro-AP, cross-validated on the bags' folds")
    print("  the frozen plot vote alone      ", np.round(op.cross_validate(fold, lambda tr: votes[0], labels), 4))
    print("  the shipped parts, stacked      ", op.fold_mean_scores(shipped, labels, fold))
    for t in temperatures:
        vote = fold_space_vote(embeddings, labels, fold, t)
        print(f"  the fine-tuned vote alone, T={t}", np.round(op.cross_validate(fold, lambda tr: vote, labels), 4))
        more = op.stacked_held_out(base + [vote], labels, fold)
        print(f"  + the fine-tuned vote, T={t}    ", op.fold_mean_scores(more, labels, fold))
        pb.print_table(f"with the fine-tuned vote (T={t}) against without, pooled",
                       pb.paired_genres(more, shipped, labels), sys.stdout)


if __name__ == "__main__":
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    temps = [float(t) for t in sys.argv[5].split(",")] if len(sys.argv) == 6 else [0.05, 0.1]
    main(*sys.argv[1:5], temps)
