#!/usr/bin/env python3
"""Checks the peer's genre-prompt vote (scripts/baselines_sklearn.py, `--genre-prompts`) against
the PyTorch reference's (scripts/cinefuse_torch.py, itself checked against `cinefuse predict`)
on an export that carries the vote: the same probabilities for plot rows near and far from the
prompts. And that the flag refuses, by name and before any fitting, whatever is not such a
file: a FIFO (without waiting on it), a folder, another vote's table, a table for other genres
or another embedding width. Also the reference's interval bins on their edges
(`check_vote_bins`).

Usage: python scripts/check_peer_prompts.py EXPORT_DIR   (the CLI tests call it)
"""
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baselines_sklearn as peer  # noqa: E402
import cinefuse_torch as reference  # noqa: E402
from check_paired_bootstrap import refused  # noqa: E402


def main(export):
    path = os.path.join(export, "genre_prompts.safetensors")
    table, _ = reference.read_vote(path)
    n_genres, dim = table["labels"].shape[1], table["rows"].shape[1]
    vote = peer.read_prompt_vote(path, n_genres, dim)
    rng = np.random.default_rng(0)
    near = table["rows"].astype(np.float64) + table["centre"] + 0.05 * rng.standard_normal(table["rows"].shape)
    rows = np.vstack([rng.standard_normal((16, dim)), near])
    ours = peer.prompt_vote_probs(vote, rows)
    members = reference.neighbour_votes(reference.read_vote(path), rows, np.ones(len(rows), bool))
    assert np.abs(members - members[0]).max() == 0.0, "every member sees every prompt"
    worst = np.abs(ours - members[0]).max()
    assert worst < 1e-6, f"the peer's prompt vote differs from the reference's by {worst}"
    assert np.abs(ours - ours.mean(0)).max() > 1e-3, "the vote does not tell the movies apart"

    with tempfile.TemporaryDirectory() as tmp:
        fifo = os.path.join(tmp, "prompts.fifo")
        os.mkfifo(fifo)
        refused(lambda: peer.read_prompt_vote(fifo, n_genres, dim), "not a regular file")
    refused(lambda: peer.read_prompt_vote(export, n_genres, dim), "not a regular file")
    other = os.path.join(export, "plot_neighbours.safetensors")
    if os.path.isfile(other):
        refused(lambda: peer.read_prompt_vote(other, n_genres, dim), "not a genre-prompt vote")
    refused(lambda: peer.read_prompt_vote(path, n_genres + 1, dim), "not a genre-prompt vote")
    refused(lambda: peer.read_prompt_vote(path, n_genres, dim + 1), f"not {dim + 1}-wide")
    print(f"peer prompt vote matches the reference (max difference {worst:.1e}); bad files refused")
    check_vote_bins(export)


def check_vote_bins(export):
    """The reference's interval bins read a key on an edge as interval.rs does (in the bin
    above): edges are f32 values written as decimals, and 0.7 read as a float64 lies above the
    f32 0.7. Then every edge of the export's own interval, when it has vote bins."""
    assert reference.vote_bin([0.3, 0.7], float(np.float32(0.7))) == 2, "a key on an edge falls below it"
    assert reference.vote_bin([0.3, 0.7], float(np.nextafter(np.float32(0.7), np.float32(0)))) == 1
    assert reference.vote_bin([0.3], float("nan")) == 0
    spec = reference.read_config(export).get("interval") or {}
    edges = spec.get("edges") or []
    for i, e in enumerate(edges):
        assert reference.vote_bin(edges, float(np.float32(e))) == i + 1, f"edge {i} ({e}) falls below itself"
    print(f"the reference's vote bins read keys on the {len(edges)} edges as cinefuse does")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
