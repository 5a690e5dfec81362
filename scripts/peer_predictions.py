"""The strongest train + validation peers' test predictions, as `baselines_sklearn.py
--save-peers FILE` keeps them, so that a later cinefuse run (another seed, another blend) is
paired with the same peers (`--peers FILE --paired RUN…`) without refitting them. The file
names the genres and the test movies it was fitted for; it is refused on data whose test split
differs."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bounded_io as bio  # noqa: E402

FORMAT = 1
NOT_GENRE_PEERS = ("rating", "votes")


def genre_peers(kept):
    """The genre rules' (probabilities, thresholds) among `kept`'s entries."""
    return {rule: peer for rule, peer in kept.items() if rule not in NOT_GENRE_PEERS}


def to_json(genres, genre_ids, rating_ids, kept):
    """`kept` as baselines_sklearn fills it: each genre rule's (probabilities, thresholds), the
    boosting peer's "rating" and the "votes" label, with what they were fitted for."""
    rules = {rule: {"probs": np.asarray(peer[0]).tolist(), "thresholds": np.asarray(peer[1]).tolist()}
             for rule, peer in genre_peers(kept).items()}
    return {
        "format": FORMAT,
        "genres": list(genres),
        "genre_ids": list(genre_ids),
        "rating_ids": list(rating_ids),
        "votes": kept.get("votes"),
        "genre_peers": rules,
        "rating": np.asarray(kept["rating"]).tolist() if "rating" in kept else None,
    }


def load(path, genres, genre_ids, rating_ids):
    """The peers saved in PATH, checked against this data's genres and test movies; `kept` as
    baselines_sklearn.paired reads it."""
    saved = bio.read_json(path)

    def refuse(why):
        sys.exit(f"--peers {path}: {why}; save them again with --save-peers on this data")

    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        refuse(f"not a peers file of format {FORMAT}")
    if saved.get("genres") != list(genres):
        refuse(f"genres {saved.get('genres')} differ from the prepared data's {list(genres)}")
    if saved.get("genre_ids") != list(genre_ids) or saved.get("rating_ids") != list(rating_ids):
        refuse("fitted for other test movies than this data's test split")
    kept = {}
    try:
        for rule, peer in saved["genre_peers"].items():
            probs, thresholds = np.array(peer["probs"], float), np.array(peer["thresholds"], float)
            if probs.shape != (len(genre_ids), len(genres)) or thresholds.shape != (len(genres),):
                refuse(f"peer {rule!r} holds {probs.shape} probabilities, not one row per test movie")
            kept[rule] = (probs, thresholds)
        if saved["rating"] is not None:
            kept["rating"] = np.array(saved["rating"], float)
            if kept["rating"].shape != (len(rating_ids),):
                refuse("the boosting peer's ratings are not one per rated test movie")
        if saved["votes"] is not None:
            kept["votes"] = str(saved["votes"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        refuse(f"damaged ({type(e).__name__}: {e})")
    return kept
