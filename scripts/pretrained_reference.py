#!/usr/bin/env python3
"""Reference outputs of the pretrained checkpoints, computed with PyTorch by the reference
implementations (Hugging Face `transformers` BertModel and MPNetModel + mean pooling; the
`efficientnet_lite_pytorch` port of EfficientNet-Lite0), for cinefuse's correctness test.

Writes crates/cinefuse-model/tests/fixtures/pretrained_reference.json: for three plots, the
token ids and the pooled MiniLM and MPNet embeddings (MPNet also for the three plots as one
padded batch, and for a plot longer than its relative-distance buckets reach); for two
generated 224x224 images (a formula, so the Rust test rebuilds them exactly), the pooled
1280-d EfficientNet features. To keep the fixture small, every vector is stored at 48 evenly
spaced positions plus its L2 norm.

Setup: scripts/setup_python.sh --torch && scripts/.venv/bin/pip install transformers efficientnet_lite_pytorch
Usage: scripts/.venv/bin/python scripts/pretrained_reference.py [models/pretrained]
"""
import json
import sys

import numpy as np
import torch

PLOTS = [
    "A retired hitman is pulled back into the criminal underworld to avenge his dog.",
    "Two strangers fall in love during one night in Vienna, talking until dawn.",
    "A group of children in a small town face a shape-shifting monster that feeds on fear.",
]
MAX_TOKENS = 128
KEEP = 48


def image(k):
    """224x224 RGB uint8, HWC; the Rust test builds the same pixels."""
    y, x = np.meshgrid(np.arange(224), np.arange(224), indexing="ij")
    chans = [(x * (3 + k) + y * (5 + 2 * k) + c * 70 + 40 * k) % 256 for c in range(3)]
    return np.stack(chans, axis=-1).astype(np.uint8)


def summary(v):
    v = np.asarray(v, dtype=np.float64)
    idx = np.linspace(0, len(v) - 1, KEEP).round().astype(int)
    return {"dim": len(v), "index": idx.tolist(), "values": [float(v[i]) for i in idx],
            "norm": float(np.linalg.norm(v))}


def plot_tokenizer(folder):
    """A checkpoint's tokenizer as cinefuse reads plots: its own template, no padding, at most
    MAX_TOKENS ids."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(f"{folder}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(MAX_TOKENS)
    return tok


def minilm(root):
    from transformers import BertModel

    folder = f"{root}/minilm-l6"
    tok = plot_tokenizer(folder)
    model = BertModel.from_pretrained(folder).eval()
    out = []
    for plot in PLOTS:
        ids = tok.encode(plot).ids
        with torch.no_grad():
            t = torch.tensor([ids])
            states = model(input_ids=t, attention_mask=torch.ones_like(t)).last_hidden_state[0]
        pooled = states.mean(0).numpy()
        out.append({"text": plot, "ids": ids, "embedding": summary(pooled)})
    return out


def mpnet(root):
    from transformers import MPNetModel

    folder = f"{root}/mpnet-base"
    tok = plot_tokenizer(folder)
    model = MPNetModel.from_pretrained(folder).eval()
    # A long plot: keys farther than MPNet's 128-token bucket range share its last bucket.
    plots = PLOTS + [" ".join(PLOTS * 6)]
    ids = [tok.encode(p).ids for p in plots]
    width = max(len(i) for i in ids)
    # One padded batch, padded with id 0 as cinefuse pads (the mask hides it).
    batch = torch.tensor([i + [0] * (width - len(i)) for i in ids])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])
    with torch.no_grad():
        states = model(input_ids=batch, attention_mask=mask).last_hidden_state
    pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    return [{"text": p, "ids": i, "embedding": summary(v.numpy())} for p, i, v in zip(plots, ids, pooled)]


def efficientnet(root):
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(f"{root}/efficientnet-lite0/model.pth", map_location="cpu")
    model.load_state_dict(state, strict=True)
    model.eval()
    out = []
    for k in range(2):
        px = torch.from_numpy(image(k)).permute(2, 0, 1).float().unsqueeze(0)
        with torch.no_grad():
            feats = model.extract_features((px - 127.0) / 128.0)
            pooled = feats.mean(dim=(2, 3))[0].numpy()
        out.append({"image": k, "features": summary(pooled)})
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "models/pretrained"
    torch.set_num_threads(2)
    fixture = {
        "max_tokens": MAX_TOKENS,
        "minilm": minilm(root),
        "mpnet": mpnet(root),
        "efficientnet_lite0": efficientnet(root),
        "made_with": f"torch {torch.__version__}",
    }
    path = "crates/cinefuse-model/tests/fixtures/pretrained_reference.json"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
