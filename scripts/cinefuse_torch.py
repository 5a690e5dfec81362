#!/usr/bin/env python3
"""A reference implementation of cinefuse's exported models in plain PyTorch.

It rebuilds a model from an export's portable files, `config.json` (architecture,
preprocessing, decisions) and `model.safetensors` (weights with PyTorch's names and layouts,
over the frozen backbones' `backbones/NAME/portable.safetensors` that `shared_weights` names),
using standard PyTorch modules only; no cinefuse code. docs/PORTABLE.md documents both files.

  predict MODEL_DIR MOVIES.jsonl          one JSON line per movie: genre probabilities, rating,
                                          interval (as `cinefuse predict --json` has them)
  onnx MODEL_DIR OUT.onnx [MOVIES.jsonl]  writes the network as ONNX (inputs: the preprocessed
                                          tensors); with MOVIES, predicts them with onnxruntime

Poster paths in MOVIES are read relative to the JSONL file, as `cinefuse predict --jsonl` does.
Setup: scripts/setup_python.sh --torch (torch, safetensors, tokenizers, pillow, onnx, onnxruntime).
"""
import argparse
import io
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bounded_io as bio  # noqa: E402

MASKED_SCORE = -1.0e4
VOTES_COLUMN = 2


# ---------------------------------------------------------------- preprocessing: one movie


class Preprocess:
    """Turns movie records into the model's input tensors, as config.json's `preprocess` says."""

    def __init__(self, model_dir, spec):
        from tokenizers import Tokenizer

        self.spec = spec
        plot = spec["plot"]
        text = bio.read_text(os.path.join(model_dir, plot["tokenizer_file"]), bio.TOKENIZER_CAP)
        self.tokenizer = Tokenizer.from_str(text)
        cls = self.tokenizer.token_to_id(plot["cls_token"])
        self.cls_id = plot["cls_fallback_id"] if cls is None else cls
        self.has_post_processor = json.loads(text).get("post_processor") is not None

    def tokens(self, movie):
        plot = movie.get("plot")
        if not plot or not plot.strip():
            return []
        p = self.spec["plot"]
        title = movie.get("title")
        text = f"{title.strip()}. {plot}" if p["title_in_text"] and title and title.strip() else plot
        text = text.encode("utf-8")[: p["max_plot_bytes"]].decode("utf-8", errors="ignore")
        if self.has_post_processor:
            return self.tokenizer.encode(text, add_special_tokens=True).ids[: p["max_tokens"]]
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return [self.cls_id] + ids[: max(p["max_tokens"] - 1, 0)]

    def numeric(self, movie):
        values, missing = [], []
        for s in self.spec["numeric"]:
            v, m = scale(s, builtin_numeric(movie, s["name"]))
            values.append(v)
            missing.append(m)
        cats = [vocab_id(v, builtin_categorical(movie, v["name"])) for v in self.spec["categorical"]]
        for f in self.spec["extras"]:
            encode_extra(f, movie.get("extra") or {}, values, missing, cats)
        read_absent_as_unknown(self.spec, missing, cats)
        return values, missing, cats

    def extras_absent(self, movie):
        """Whether the movie gives none of the declared extras: every extra's missing flag set
        and every categorical extra's id 0 (EncodedSample::extras_absent)."""
        values, missing, cats = [], [], []
        for f in self.spec["extras"]:
            encode_extra(f, movie.get("extra") or {}, values, missing, cats)
        return len(missing) + len(cats) > 0 and all(m > 0.5 for m in missing) and all(c == 0 for c in cats)

    def credits(self, movie):
        """The movie's credits as Preprocessor::credits_of lists them: "director:…", "cast:…"
        and "NAME:…" for each declared set feature, lower-cased, each once."""
        out = [f"{role}:{n.strip().lower()}" for role, key in (("director", "directors"), ("cast", "cast"))
               for n in movie.get(key) or []]
        extra = movie.get("extra") or {}
        out += [f"{f['name']}:{i}" for f in self.spec["extras"] if f["kind"] == "set" for i in set_items(extra.get(f["name"]))]
        return list(dict.fromkeys(c for c in out if not c.endswith(":")))

    def poster(self, path):
        from PIL import Image

        p = self.spec["poster"]
        # The export's own limits (exports before they were recorded: the tools' cap).
        data = bio.read_bytes(path, int(p.get("max_bytes", bio.POSTER_CAP)))
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > p.get("max_pixels", w * h):
                sys.exit(f"{path}: oversized: {w}x{h} pixels exceeds the limit of {p['max_pixels']} pixels")
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
        fitted = fit_poster(rgb, p["width"], p["height"], p["fit"], p["pad_value"])
        chw = fitted.transpose(2, 0, 1).astype(np.float32)
        mean = np.array(p["mean"], np.float32).reshape(3, 1, 1)
        std = np.array(p["std"], np.float32).reshape(3, 1, 1)
        return (chw / np.float32(255.0) - mean) / std

    def token_batch(self, movies):
        """The plots' token ids and mask, padded to the longest plot, and whether each movie has
        a plot."""
        tokens = [self.tokens(m) for m in movies]
        length = max(1, max(len(t) for t in tokens))
        ids = torch.zeros(len(movies), length, dtype=torch.int64)
        mask = torch.zeros(len(movies), length)
        for i, t in enumerate(tokens):
            ids[i, : len(t)] = torch.tensor(t, dtype=torch.int64)
            mask[i, : len(t)] = 1.0
        return ids, mask, torch.tensor([1.0 if t else 0.0 for t in tokens])

    def batch(self, movies, base):
        """Model inputs for `movies`, as tensors (tokens padded to the longest plot)."""
        ids, mask, plot_present = self.token_batch(movies)
        p = self.spec["poster"]
        posters = np.zeros((len(movies), 3, p["height"], p["width"]), np.float32)
        present = np.zeros(len(movies), np.float32)
        for i, m in enumerate(movies):
            if m.get("poster"):
                posters[i] = self.poster(poster_file(base, m["poster"], m.get("id", "input")))
                present[i] = 1.0
        meta = [self.numeric(m) for m in movies]
        return {
            "posters": torch.from_numpy(posters),
            "poster_present": torch.from_numpy(present),
            "tokens": ids,
            "token_mask": mask,
            "plot_present": plot_present,
            "numeric": torch.tensor([v for v, _, _ in meta], dtype=torch.float32).reshape(len(movies), -1),
            "numeric_missing": torch.tensor([m for _, m, _ in meta], dtype=torch.float32).reshape(len(movies), -1),
            "categorical": torch.tensor([c for _, _, c in meta], dtype=torch.int64).reshape(len(movies), -1),
        }


def poster_file(base, rel, movie_id):
    """A movie's poster path, which must stay inside `base` (the JSONL file's folder), as
    `cinefuse predict --jsonl` requires."""
    root = os.path.realpath(base)
    path = os.path.realpath(os.path.join(root, rel))
    if os.path.commonpath([root, path]) != root:
        sys.exit(f"{movie_id}: poster {rel!r} is outside {base}")
    return path


def builtin_numeric(movie, name):
    v = movie.get(name)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def builtin_categorical(movie, name):
    lists = {"director": "directors", "language": "languages", "country": "countries", "lead_actor": "cast"}
    if name in lists:
        items = movie.get(lists[name]) or []
        return items[0] if items else None
    return movie.get(name)


def scale(s, x):
    """A numeric scaler: (value, missing flag); log1p first when the transform says so."""
    if x is None:
        return 0.0, 1.0
    if s["transform"] == "log1p":
        x = math.log1p(max(x, 0.0))
    return float(np.float32((x - s["mean"]) / s["std"])), 0.0


def vocab_id(vocab, value):
    """0 for missing, 1 for a value not in the vocabulary, else its index + 2."""
    v = (value or "").strip().lower()
    if not v:
        return 0
    try:
        return vocab["values"].index(v) + 2
    except ValueError:
        return 1


MISSING_TEXT = {"", "N/A", "NA", "n/a", "\\N", "null", "None", "-"}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def extra_text(v):
    if v is None or (isinstance(v, str) and v.strip() in MISSING_TEXT):
        return None
    return v.strip() if isinstance(v, str) else json.dumps(v)


def month(text):
    import re

    for w in (w.lower() for w in re.split(r"[\s,]+", text) if w):
        for i, m in enumerate(MONTHS):
            if w.startswith(m):
                return MONTHS[i]
    parts = text.strip().split("-")
    if len(parts) >= 2 and len(parts[0]) == 4 and parts[1].isdigit() and 1 <= int(parts[1]) <= 12:
        return MONTHS[int(parts[1]) - 1]
    return None


def set_items(v):
    if v is None:
        return []
    if isinstance(v, list):
        return [s.strip().lower() for s in v if s.strip()]
    items = (s.split("(")[0].strip().lower() for s in v.replace("|", ",").split(","))
    return [s for s in items if s and s not in MISSING_TEXT]


def text_words(v):
    t = extra_text(v)
    if t is None:
        return []
    words = "".join(c if c.isalnum() else " " for c in t).split(" ")
    return [w.lower() for w in words if len(w.encode()) > 1]


def read_absent_as_unknown(spec, missing, cats):
    """Fields nearly every training movie had (`absent_as_unknown`, format 15) read as unknown
    where the movie lacks them: a category's id 0 becomes 1, a set or text feature loses its
    missing flags; a movie with no category at all keeps them all (Preprocessor::encode)."""
    unknown = set(spec.get("absent_as_unknown") or [])
    if not unknown or all(c == 0 for c in cats):
        return
    for i, v in enumerate(spec["categorical"]):
        if cats[i] == 0 and v["name"] in unknown:
            cats[i] = 1
    column, slot = len(spec["numeric"]), len(spec["categorical"])
    for f in spec["extras"]:
        if f["kind"] == "numeric":
            column += 1
        elif f["kind"] == "categorical":
            name = "extra." + f["vocab"]["name"].removeprefix("extra.")
            if cats[slot] == 0 and name in unknown:
                cats[slot] = 1
            slot += 1
        else:
            width = len(f["items"] if f["kind"] == "set" else f["words"])
            if "extra." + f["name"] in unknown:
                missing[column:column + width] = [0.0] * width
            column += width


def encode_extra(f, extra, values, missing, cats):
    """One declared extra feature of a movie (`extra` is its `extra` object)."""
    if f["kind"] == "numeric":
        s = f["scaler"]
        raw = extra.get(s["name"].removeprefix("extra."))
        if isinstance(raw, str):
            raw = None if raw.strip() in MISSING_TEXT else float(raw.strip().replace(",", ""))
        v, m = scale(s, raw if raw is None or math.isfinite(raw) else None)
        values.append(v)
        missing.append(m)
    elif f["kind"] == "categorical":
        text = extra_text(extra.get(f["vocab"]["name"].removeprefix("extra.")))
        if text is not None and f.get("extract") == "month":
            text = month(text)
        cats.append(vocab_id(f["vocab"], text))
    else:
        known = f["items"] if f["kind"] == "set" else f["words"]
        raw = extra.get(f["name"])
        present = set_items(raw) if f["kind"] == "set" else text_words(raw)
        for k in known:
            values.append(1.0 if k in present else 0.0)
            missing.append(0.0 if present else 1.0)


# ---------------------------------------------------------------- posters: the Triangle resize


def resize_weights(src, dst):
    """Per output pixel: the first input pixel and the normalised triangle weights (float32,
    in the order and precision of the `image` crate's separable resize)."""
    f32 = np.float32
    ratio = f32(src) / f32(dst)
    sratio = ratio if ratio >= f32(1.0) else f32(1.0)
    support = f32(1.0) * sratio
    out = []
    for o in range(dst):
        centre = (f32(o) + f32(0.5)) * ratio
        left = min(max(math.floor(centre - support), 0), src - 1)
        right = min(max(math.ceil(centre + support), left + 1), src)
        centre = centre - f32(0.5)
        ws = []
        total = f32(0.0)
        for i in range(left, right):
            x = abs((f32(i) - centre) / sratio)
            w = f32(1.0) - x if x < f32(1.0) else f32(0.0)
            ws.append(w)
            total = total + w
        out.append((left, [w / total for w in ws]))
    return out


def resize(rgb, width, height):
    """Triangle-filter resize of an HxWx3 uint8 image: rows first (kept float), then columns
    (rounded half away from zero and clamped to 0-255)."""
    h, w, _ = rgb.shape
    if (w, h) == (width, height):
        return rgb.copy()
    src = rgb.astype(np.float32)
    rows = np.zeros((height, w, 3), np.float32)
    for y, (left, ws) in enumerate(resize_weights(h, height)):
        for i, wt in enumerate(ws):
            rows[y] += src[left + i] * wt
    cols = np.zeros((height, width, 3), np.float32)
    for x, (left, ws) in enumerate(resize_weights(w, width)):
        for i, wt in enumerate(ws):
            cols[:, x] += rows[:, left + i] * wt
    return np.floor(np.clip(cols, 0.0, 255.0) + np.float32(0.5)).astype(np.uint8)


def round_half_away(x):
    return math.floor(x + 0.5)


def fit_poster(rgb, width, height, fit, pad_value):
    h, w, _ = rgb.shape
    if fit == "squash":
        return resize(rgb, width, height)
    if fit == "pad":
        s = min(width / w, height / h)
        nw = min(max(round_half_away(w * s), 1), width)
        nh = min(max(round_half_away(h * s), 1), height)
        out = np.full((height, width, 3), pad_value, np.uint8)
        x, y = (width - nw) // 2, (height - nh) // 2
        out[y : y + nh, x : x + nw] = resize(rgb, nw, nh)
        return out
    s = max(width / w, height / h)
    nw = max(round_half_away(w * s), width)
    nh = max(round_half_away(h * s), height)
    x, y = (nw - width) // 2, (nh - height) // 2
    return resize(rgb, nw, nh)[y : y + height, x : x + width]


# ---------------------------------------------------------------- building blocks


def masked_mean(x, mask):
    m = mask.unsqueeze(2)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def keep_first(mask):
    mask = mask.clone()
    mask[:, 0] = 1.0
    return mask


def attention(q, k, v, heads, padding, bias=None):
    """Scaled dot-product attention over `heads` heads; `padding` [B, L] is True on padding;
    `bias` ([1, heads, L, L], MPNet's relative one) is added to the scores."""
    b, l, d = q.shape
    dk = d // heads
    split = lambda t: t.reshape(b, l, heads, dk).transpose(1, 2)
    scores = split(q) @ split(k).transpose(2, 3) / math.sqrt(dk)
    if bias is not None:
        scores = scores + bias
    scores = scores.masked_fill(padding.reshape(b, 1, 1, l), MASKED_SCORE)
    return (scores.softmax(3) @ split(v)).transpose(1, 2).reshape(b, l, d)


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer with one fused q/k/v projection."""

    def __init__(self, d, d_ff, heads):
        super().__init__()
        self.heads = heads
        self.norm_attention = nn.LayerNorm(d, eps=1e-5)
        self.qkv = nn.Linear(d, 3 * d)
        self.attention_out = nn.Linear(d, d)
        self.norm_feed_forward = nn.LayerNorm(d, eps=1e-5)
        self.feed_forward_in = nn.Linear(d, d_ff)
        self.feed_forward_out = nn.Linear(d_ff, d)

    def forward(self, x, padding):
        q, k, v = self.qkv(self.norm_attention(x)).chunk(3, dim=2)
        x = x + self.attention_out(attention(q, k, v, self.heads, padding))
        return x + self.feed_forward_out(F.gelu(self.feed_forward_in(self.norm_feed_forward(x))))


class EncoderStack(nn.Module):
    def __init__(self, n, d, d_ff, heads):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d, d_ff, heads) for _ in range(n))

    def forward(self, x, padding):
        for layer in self.layers:
            x = layer(x, padding)
        return x


class OutputHead(nn.Module):
    def __init__(self, d, n_genres):
        super().__init__()
        self.genre = nn.Linear(d, max(n_genres, 1))
        self.rating = nn.Linear(d, 1)

    def forward(self, x):
        return self.genre(x), self.rating(x).squeeze(1)


# `model.linear_skip`: a linear map from the skip features (the pretrained backbones' features,
# each row standardised, and the metadata encoder's input) straight to the genre logits. Every
# block is scaled to rows of norm about SKIP_BLOCK_NORM whatever its width.
SKIP_BLOCK_NORM = 8.0


def skip_block(x):
    return x * (SKIP_BLOCK_NORM / math.sqrt(max(x.shape[1], 1)))


def standardize_rows(x):
    centred = x - x.mean(1, keepdim=True)
    return centred / (centred.pow(2).mean(1, keepdim=True) + 1e-5).sqrt()


class FeatureAdapter(nn.Module):
    """A pretrained backbone's features → the model's embedding."""

    def __init__(self, d_in, d):
        super().__init__()
        self.norm = nn.LayerNorm(d_in, eps=1e-5)
        self.proj = nn.Linear(d_in, d)

    def forward(self, x):
        return F.gelu(self.proj(self.norm(x)))


# ---------------------------------------------------------------- poster encoders


def conv_bn(c_in, c_out, kernel, stride, padding, eps=1e-5, groups=1):
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, groups=groups, bias=False)
    return conv, nn.BatchNorm2d(c_out, eps=eps)


class ResidualBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1, self.norm1 = conv_bn(c_in, c_out, 3, stride, 1)
        self.conv2, self.norm2 = conv_bn(c_out, c_out, 3, 1, 1)
        self.shortcut = None
        if c_in != c_out or stride != 1:
            self.shortcut = nn.ModuleList(conv_bn(c_in, c_out, 1, stride, 0))

    def forward(self, x):
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        skip = x if self.shortcut is None else self.shortcut[1](self.shortcut[0](x))
        return F.relu(y + skip)


class PosterResnet(nn.Module):
    """The from-scratch poster CNN (`model.poster.kind = "resnet"`)."""

    def __init__(self, c, d):
        super().__init__()
        w = c["widths"]
        self.stem, self.stem_norm = conv_bn(3, w[0], 3, c["stem_stride"], 1)
        blocks, c_in = [], w[0]
        for stage, c_out in enumerate(w):
            for b in range(c["blocks_per_stage"]):
                blocks.append(ResidualBlock(c_in, c_out, 2 if stage > 0 and b == 0 else 1))
                c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.proj = nn.Linear(c_in, d)

    def forward(self, inputs):
        x = F.relu(self.stem_norm(self.stem(inputs["posters"])))
        for block in self.blocks:
            x = block(x)
        return F.relu(self.proj(x.mean((2, 3))))


LITE0_STAGES = [(3, 1, 16, 1, 1), (3, 2, 24, 2, 6), (5, 2, 40, 2, 6), (3, 2, 80, 3, 6),
                (5, 1, 112, 3, 6), (5, 2, 192, 4, 6), (3, 1, 320, 1, 6)]


class SameConv(nn.Module):
    """TensorFlow's "same" padding: symmetric at stride 1, computed from the input at stride 2."""

    def __init__(self, c_in, c_out, kernel, stride, groups=1):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        pad = (kernel - 1) // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, pad, groups=groups, bias=False)

    def forward(self, x):
        if self.stride != 1:
            # Plain ints: an ONNX trace then keeps the padding of the poster size it was traced
            # with (posters have one size per model); traced arithmetic got small maps wrong.
            pads = []
            for size in (int(x.shape[3]), int(x.shape[2])):
                total = max((-(-size // self.stride) - 1) * self.stride + self.kernel - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return self.conv(x)


class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, kernel, stride, expansion):
        super().__init__()
        mid = c_in * expansion
        self.expand = SameConv(c_in, mid, 1, 1) if expansion != 1 else None
        self.expand_norm = nn.BatchNorm2d(mid, eps=1e-3) if expansion != 1 else None
        self.depthwise = SameConv(mid, mid, kernel, stride, groups=mid)
        self.depthwise_norm = nn.BatchNorm2d(mid, eps=1e-3)
        self.project = SameConv(mid, c_out, 1, 1)
        self.project_norm = nn.BatchNorm2d(c_out, eps=1e-3)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        h = x
        if self.expand is not None:
            h = F.relu6(self.expand_norm(self.expand(h)))
        h = F.relu6(self.depthwise_norm(self.depthwise(h)))
        h = self.project_norm(self.project(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = SameConv(3, 32, 3, 2)
        self.stem_norm = nn.BatchNorm2d(32, eps=1e-3)
        blocks, c_in = [], 32
        for kernel, stride, c_out, n, expansion in LITE0_STAGES:
            for i in range(n):
                blocks.append(InvertedResidual(c_in, c_out, kernel, stride if i == 0 else 1, expansion))
                c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.head = SameConv(c_in, 1280, 1, 1)
        self.head_norm = nn.BatchNorm2d(1280, eps=1e-3)

    def forward(self, x):
        h = F.relu6(self.stem_norm(self.stem(x)))
        for block in self.blocks:
            h = block(h)
        return F.relu6(self.head_norm(self.head(h))).mean((2, 3))


class PosterEfficientNet(nn.Module):
    """The pretrained poster encoder: EfficientNet-Lite0 on the checkpoint's pixel scale."""

    def __init__(self, d, poster_spec):
        super().__init__()
        self.net = EfficientNetLite0()
        self.adapter = FeatureAdapter(1280, d)
        f32 = np.float32
        m_in, s_in = f32(poster_spec["efficientnet_input_mean"]), f32(poster_spec["efficientnet_input_std"])
        mul = [f32(s) * f32(255.0) / s_in for s in poster_spec["std"]]
        add = [(f32(m) * f32(255.0) - m_in) / s_in for m in poster_spec["mean"]]
        self.register_buffer("mul", torch.tensor(mul).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("add", torch.tensor(add).reshape(1, 3, 1, 1), persistent=False)

    def encode(self, inputs):
        features = self.net(inputs["posters"] * self.mul + self.add)
        return self.adapter(features), skip_block(standardize_rows(features))

    def forward(self, inputs):
        return self.encode(inputs)[0]


# ---------------------------------------------------------------- plot encoders


class TransformerText(nn.Module):
    def __init__(self, c, shapes, d):
        super().__init__()
        self.max_tokens = max(shapes["max_tokens"], 1)
        self.cls_pooling = c["pooling"] == "cls"
        self.tokens = nn.Embedding(shapes["vocab_size"], c["d_model"])
        self.positions = nn.Embedding(self.max_tokens, c["d_model"])
        self.encoder = EncoderStack(c["n_layers"], c["d_model"], c["d_ff"], c["n_heads"])
        self.proj = nn.Linear(c["d_model"], d)

    def forward(self, tokens, mask):
        tokens, mask = tokens[:, : self.max_tokens], mask[:, : self.max_tokens]
        positions = torch.arange(tokens.shape[1]).unsqueeze(0).expand_as(tokens)
        x = self.tokens(tokens) * 0.5 + self.positions(positions) * 0.5
        h = self.encoder(x, mask == 0)
        return F.gelu(self.proj(h[:, 0] if self.cls_pooling else masked_mean(h, mask)))


class BagText(nn.Module):
    def __init__(self, c, shapes, d):
        super().__init__()
        self.tokens = nn.Embedding(shapes["vocab_size"], c["d_model"])
        self.hidden = nn.Linear(c["d_model"], c["d_ff"])
        self.proj = nn.Linear(c["d_ff"], d)

    def forward(self, tokens, mask):
        return F.gelu(self.proj(F.gelu(self.hidden(masked_mean(self.tokens(tokens), mask)))))


class CnnText(nn.Module):
    def __init__(self, c, shapes, d):
        super().__init__()
        k = c["kernel_size"]
        self.tokens = nn.Embedding(shapes["vocab_size"], c["d_model"])
        self.conv = nn.Conv1d(c["d_model"], c["d_ff"], k, padding=k // 2)
        self.proj = nn.Linear(c["d_ff"], d)

    def forward(self, tokens, mask):
        h = F.relu(self.conv(self.tokens(tokens).transpose(1, 2))) * mask.unsqueeze(1)
        return F.gelu(self.proj(h.max(2).values))


class NgramText(nn.Module):
    PAIR_BASE = 46337

    def __init__(self, c, shapes, d):
        super().__init__()
        self.buckets = c["ngram_buckets"]
        self.unigrams = nn.Embedding(shapes["vocab_size"], c["d_model"])
        self.bigrams = nn.Embedding(self.buckets, c["d_model"])
        self.proj = nn.Linear(c["d_model"], d)

    def forward(self, tokens, mask):
        pooled = masked_mean(self.unigrams(tokens), mask)
        if tokens.shape[1] > 1:
            b = self.PAIR_BASE
            pairs = ((tokens[:, :-1] % b) * b + tokens[:, 1:] % b) % self.buckets
            pooled = pooled + masked_mean(self.bigrams(pairs), mask[:, :-1] * mask[:, 1:])
        return F.gelu(self.proj(pooled))


class FromScratchText(nn.Module):
    """`model.text.kind` other than "bert": the encoder sits under the kind's own name."""

    KINDS = {"transformer": TransformerText, "bag": BagText, "cnn": CnnText, "ngram": NgramText}

    def __init__(self, c, shapes, d):
        super().__init__()
        self.kind = c["kind"]
        setattr(self, self.kind, self.KINDS[self.kind](c, shapes, d))

    def forward(self, inputs):
        return getattr(self, self.kind)(inputs["tokens"], keep_first(inputs["token_mask"]))


class BertLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, eps = c["hidden_size"], c.get("layer_norm_eps", 1e-12)
        self.heads = c["num_attention_heads"]
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.attention_out = nn.Linear(d, d)
        self.attention_norm = nn.LayerNorm(d, eps=eps)
        self.intermediate = nn.Linear(d, c["intermediate_size"])
        self.output = nn.Linear(c["intermediate_size"], d)
        self.output_norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x, padding, bias=None):
        a = attention(self.query(x), self.key(x), self.value(x), self.heads, padding, bias)
        x = self.attention_norm(x + self.attention_out(a))
        return self.output_norm(x + self.output(F.gelu(self.intermediate(x))))


class BertEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.word = nn.Embedding(c["vocab_size"], d)
        self.position = nn.Embedding(c["max_position_embeddings"], d)
        self.token_type = nn.Embedding(max(c.get("type_vocab_size", 1), 1), d)
        self.norm = nn.LayerNorm(d, eps=c.get("layer_norm_eps", 1e-12))
        # An MPNet numbers positions after its padding id and has no segments.
        self.mpnet = c.get("model_type", "bert") == "mpnet"
        self.first = c.get("pad_token_id", 0) + 1 if self.mpnet else 0

    def forward(self, tokens):
        positions = torch.arange(tokens.shape[1]).unsqueeze(0).expand_as(tokens) + self.first
        x = self.word(tokens) + self.position(positions)
        if not self.mpnet:
            x = x + self.token_type(torch.zeros_like(tokens))
        return self.norm(x)


def relative_buckets(length, num_buckets, max_distance=128):
    """MPNet's bucket of each distance key - query, `[L, L]`: half the buckets for keys after
    the query; exact distances below a quarter of them, then logarithmically wider ones."""
    n = torch.arange(length)[:, None] - torch.arange(length)[None, :]
    half = num_buckets // 2
    side = (n < 0).long() * half
    n = n.abs()
    exact = half // 2
    wider = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                     * (half - exact)).long()
    return side + torch.where(n < exact, n, wider.clamp(max=half - 1))


class Bert(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        c = backbone["config"]
        self.pooling = backbone["pooling"]
        # Layers whose mean-pooled states follow the pooled output (format 7; none before).
        self.concat_layers = list(backbone.get("concat_layers", []))
        self.hidden = c["hidden_size"]
        self.width = self.hidden * (1 + len(self.concat_layers))
        self.embeddings = BertEmbeddings(c)
        self.layers = nn.ModuleList(BertLayer(c) for _ in range(c["num_hidden_layers"]))
        if self.embeddings.mpnet:
            self.relative_bias = nn.Embedding(c["relative_attention_num_buckets"], c["num_attention_heads"])

    def forward(self, tokens, mask):
        h = self.embeddings(tokens)
        bias = None
        if self.embeddings.mpnet:
            buckets = relative_buckets(tokens.shape[1], self.relative_bias.num_embeddings)
            bias = self.relative_bias(buckets).permute(2, 0, 1).unsqueeze(0)
        extra = [masked_mean(h, mask)] if 0 in self.concat_layers else []
        for k, layer in enumerate(self.layers, start=1):
            h = layer(h, mask == 0, bias)
            if k in self.concat_layers:
                extra.append(masked_mean(h, mask))
        pooled = h[:, 0] if self.pooling == "cls" else masked_mean(h, mask)
        return torch.cat([pooled, *extra], dim=1) if extra else pooled


class BertText(nn.Module):
    """The pretrained plot encoder (`model.text.kind = "bert"`)."""

    def __init__(self, backbone, d):
        super().__init__()
        self.bert = Bert(backbone)
        self.adapter = FeatureAdapter(self.bert.width, d)

    def encode(self, inputs):
        features = self.bert(inputs["tokens"], keep_first(inputs["token_mask"]))
        return self.adapter(features), skip_block(standardize_rows(features))

    def forward(self, inputs):
        return self.encode(inputs)[0]


# ---------------------------------------------------------------- metadata and fusion


class MetaEncoder(nn.Module):
    def __init__(self, c, shapes, d):
        super().__init__()
        sizes, dims = shapes["categorical_sizes"], shapes.get("categorical_dims") or []
        dim = lambda i: dims[i] if i < len(dims) and dims[i] > 0 else c["cat_dim"]
        self.embeddings = nn.ModuleList(nn.Embedding(max(n, 1), dim(i)) for i, n in enumerate(sizes))
        d_in = 2 * shapes["n_numeric"] + sum(dim(i) for i in range(len(sizes)))
        self.fc1 = nn.Linear(max(d_in, 1), c["hidden"])
        self.norm = nn.LayerNorm(c["hidden"], eps=1e-5)
        self.fc2 = nn.Linear(c["hidden"], d)

    def encode(self, inputs):
        cats = inputs["categorical"]
        parts = [inputs["numeric"], inputs["numeric_missing"]]
        parts += [emb(cats[:, i]) for i, emb in enumerate(self.embeddings)]
        x = torch.cat(parts, 1)
        return F.gelu(self.fc2(F.gelu(self.norm(self.fc1(x))))), skip_block(x)

    def forward(self, inputs):
        return self.encode(inputs)[0]


def masked_softmax(logits, present):
    return logits.masked_fill(present == 0, MASKED_SCORE).softmax(1) * present


class LateFusion(nn.Module):
    def __init__(self, c, m, d, n_genres):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(m))

    def forward(self, embeddings, present, logits, ratings):
        w = masked_softmax(self.weights.unsqueeze(0).expand_as(present), present)
        genre = sum(g * w[:, i : i + 1] for i, g in enumerate(logits))
        return genre, sum(r * w[:, i] for i, r in enumerate(ratings))


class ConcatFusion(nn.Module):
    def __init__(self, c, m, d, n_genres):
        super().__init__()
        self.fc = nn.Linear(m * (d + 1), c["hidden"])
        self.head = OutputHead(c["hidden"], n_genres)

    def forward(self, embeddings, present, logits, ratings):
        return self.head(F.gelu(self.fc(torch.cat(embeddings + [present], 1))))


class GmuFusion(nn.Module):
    def __init__(self, c, m, d, n_genres):
        super().__init__()
        self.projections = nn.ModuleList(nn.Linear(d, c["hidden"]) for _ in range(m))
        self.gate = nn.Linear(m * (d + 1), m)
        self.head = OutputHead(c["hidden"], n_genres)

    def forward(self, embeddings, present, logits, ratings):
        z = masked_softmax(self.gate(torch.cat(embeddings + [present], 1)), present)
        h = sum(torch.tanh(p(x)) * z[:, i : i + 1] for i, (x, p) in enumerate(zip(embeddings, self.projections)))
        return self.head(h)


class AttentionFusion(nn.Module):
    def __init__(self, c, m, d, n_genres):
        super().__init__()
        hidden = c["hidden"]
        heads = max(c["n_heads"], 1)
        while hidden % heads:
            heads -= 1
        self.input = nn.Linear(d, hidden)
        self.fuse_token = nn.Parameter(torch.zeros(hidden))
        self.modality_type = nn.Parameter(torch.zeros(m, hidden))
        self.encoder = EncoderStack(c["n_layers"], hidden, 2 * hidden, heads)
        self.head = OutputHead(hidden, n_genres)

    def forward(self, embeddings, present, logits, ratings):
        b = present.shape[0]
        tokens = [self.fuse_token.unsqueeze(0).expand(b, -1)]
        for i, e in enumerate(embeddings):
            tokens.append((self.input(e) + self.modality_type[i]) * present[:, i : i + 1])
        keep = torch.cat([torch.ones(b, 1), present], 1)
        return self.head(self.encoder(torch.stack(tokens, 1), keep == 0)[:, 0])


class Fusion(nn.Module):
    KINDS = {"late": LateFusion, "concat": ConcatFusion, "gmu": GmuFusion, "attention": AttentionFusion}

    def __init__(self, c, m, d, n_genres):
        super().__init__()
        self.kind = c["kind"]
        setattr(self, self.kind, self.KINDS[self.kind](c, m, d, n_genres))

    def forward(self, *args):
        return getattr(self, self.kind)(*args)


class SkipLinear(nn.Module):
    def __init__(self, d_in, n_genres):
        super().__init__()
        self.linear = nn.Linear(d_in, max(n_genres, 1))

    def forward(self, x):
        return self.linear(x)


# ---------------------------------------------------------------- the model


ORDER = ["poster", "text", "meta"]
PRESENT = {"poster": "poster_present", "text": "plot_present", "meta": None}


class CinefuseModel(nn.Module):
    """One encoder and one output head per modality, and a fusion module over them; attribute
    names are the tensor names of model.safetensors."""

    def __init__(self, arch, poster_spec):
        super().__init__()
        c, shapes = arch["model"], arch["shapes"]
        d, n_genres = c["embed_dim"], shapes["n_genres"]
        self.modalities = [m for m in ORDER if m in arch["modalities"]]
        self.rating_modality = c.get("rating_modality")
        if "poster" in self.modalities:
            if c["poster"]["kind"] == "resnet":
                self.poster = PosterResnet(c["poster"], d)
            else:
                self.poster_pretrained = PosterEfficientNet(d, poster_spec)
        if "text" in self.modalities:
            if c["text"]["kind"] == "bert":
                self.text_pretrained = BertText(shapes["text_backbone"], d)
            else:
                self.text = FromScratchText(c["text"], shapes, d)
        if "meta" in self.modalities:
            self.meta = MetaEncoder(c["meta"], shapes, d)
        for m in self.modalities:
            setattr(self, f"{m}_head", OutputHead(d, n_genres))
        if len(self.modalities) > 1:
            self.fusion = Fusion(c["fusion"], len(self.modalities), d, n_genres)
        if c.get("linear_skip"):
            self.skip = SkipLinear(self.skip_dim(), n_genres)

    def skip_dim(self):
        """The width of the skip's input: each pretrained backbone's features and the metadata
        encoder's input (the encoders without skip features add nothing)."""
        widths = {"poster_pretrained": lambda e: e.adapter.proj.in_features,
                  "text_pretrained": lambda e: e.adapter.proj.in_features,
                  "meta": lambda e: e.fc1.in_features}
        return sum(widths[name](module) for name, module in self._modules.items() if name in widths)

    def encoder(self, m):
        return getattr(self, m, None) or getattr(self, f"{m}_pretrained")

    def forward(self, inputs):
        """Genre logits [B, G] and the standardised rating [B]."""
        embeddings, present, logits, ratings, skips = [], [], [], [], []
        with_skip = hasattr(self, "skip")
        for m in self.modalities:
            p = inputs[PRESENT[m]] if PRESENT[m] else torch.ones(inputs["numeric"].shape[0])
            enc = self.encoder(m)
            e, skip = enc.encode(inputs) if with_skip and hasattr(enc, "encode") else (enc(inputs), None)
            e = e * p.unsqueeze(1)
            g, r = getattr(self, f"{m}_head")(e)
            embeddings.append(e)
            present.append(p)
            logits.append(g)
            ratings.append(r)
            if skip is not None:
                skips.append(skip * p.unsqueeze(1))
        if len(self.modalities) == 1:
            genre, rating = logits[0], ratings[0]
        else:
            genre, rating = self.fusion(embeddings, torch.stack(present, 1), logits, ratings)
            if self.rating_modality in self.modalities:
                rating = ratings[self.modalities.index(self.rating_modality)]
        if with_skip:
            genre = genre + self.skip(torch.cat(skips, 1))
        return genre, rating


def load_weights(model, path, shared=()):
    """Loads model.safetensors over the shared backbone files it leaves out (format 9; its own
    tensors win); every tensor must fill a parameter or buffer and vice versa (PyTorch's
    batch-norm step counters, which cinefuse does not keep, excepted)."""
    state = {}
    for f in shared:
        state.update(bio.read_safetensors(f, framework="pt")[0])
    state.update(bio.read_safetensors(path, framework="pt")[0])
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"{path}: missing tensors {missing}, unexpected tensors {unexpected}")
    return model.eval()


class Bag(nn.Module):
    """An export's members (one for a single model): probabilities and ratings are their mean."""

    def __init__(self, model_dir, config):
        super().__init__()
        arch, poster = config["architecture"], config["preprocess"]["poster"]
        # Frozen backbones are stored once (format 9), relative to this folder; a blend's part
        # names its blend's as ../backbones/NAME.
        shared = [os.path.join(model_dir, f) for f in config.get("shared_weights", [])]
        self.members = nn.ModuleList(
            load_weights(CinefuseModel(arch, poster), os.path.join(model_dir, w), shared)
            for w in config["weights"]
        )
        # A repeated bag (format 6): the weights hold `bag_sets` sets of folds, set by set; since
        # format 8 the rating may average over the sets too (before: the first set's).
        self.sets = int(config.get("bag_sets", 1))
        self.rating_over_sets = bool(config.get("rating_over_sets", False))
        scale = config["rating_scale"]
        self.rating_mean, self.rating_std = scale["mean"], scale["std"]
        # pos_weight trained each genre's logit up by ln w; the export says what to take back.
        shift = config.get("genre_logit_shift") or [0.0] * len(config["genres"])
        self.register_buffer("genre_shift", torch.tensor(shift, dtype=torch.float32))

    def forward(self, inputs):
        """Per member: probabilities [K, B, G] and ratings on the 0-10 scale [K, B]. A repeated
        bag's member k averages every set's member k's probabilities (in set order, as
        bag_sets.rs sums them), and its ratings too with `rating_over_sets` (else it keeps the
        first set's)."""
        probs, ratings = [], []
        for m in self.members:
            g, r = m(inputs)
            probs.append(torch.sigmoid(g - self.genre_shift))
            ratings.append((r.double() * self.rating_std + self.rating_mean).clamp(0.0, 10.0).float())
        probs, ratings = torch.stack(probs), torch.stack(ratings)
        if self.sets > 1:
            k = len(self.members) // self.sets
            share = torch.tensor(1.0 / self.sets, dtype=torch.float32)

            def over_sets(x):
                grouped = share * x[:k]
                for s in range(1, self.sets):
                    grouped = grouped + share * x[s * k:(s + 1) * k]
                return grouped

            probs = over_sets(probs)
            ratings = over_sets(ratings) if self.rating_over_sets else ratings[:k]
        return probs, ratings


# ---------------------------------------------------------------- predictions


def read_config(model_dir):
    config = bio.read_json(os.path.join(model_dir, "config.json"))
    # Version 1 had no genre_logit_shift (read as none); 2 added it; 3 added a blend's
    # plot_neighbours and genre_stacking; 4 its metadata_neighbours; 5 its credit_neighbours;
    # 6 a bag's bag_sets; 7 the text backbone's concat_layers; 8 a bag's rating_over_sets;
    # 9 shared_weights (each frozen backbone stored once); 10 a blend's genre_prompts; 11 a
    # blend's genre_stacking_without_plot; 12 a blend's content_rating and the interval's
    # content bin; 13 a blend's genre_stacking_without_metadata; 14 a blend's
    # rating_without_votes and the interval's bins for it; 15 preprocess.absent_as_unknown; 16
    # a set of rating_without_votes that keeps the vote count, and the interval's
    # lacking_columns and lacking bins; 17 the interval's extras vote bins; 18 the interval's
    # input_scales.
    if config.get("format") != "cinefuse-portable" or config.get("format_version") not in range(1, 19):
        sys.exit(f"{model_dir}/config.json: not a cinefuse portable config of format version 1 to 18")
    return config


class Part:
    """One exported model or bag with its own preprocessing."""

    def __init__(self, model_dir, config):
        self.config = config
        self.bag = Bag(model_dir, config)
        self.pre = Preprocess(model_dir, config["preprocess"])

    def members(self, movies, base, run=None):
        inputs = self.pre.batch(movies, base)
        with torch.no_grad():
            probs, ratings = (run or self.bag)(inputs)
        fields = {k: inputs[k].numpy() for k in ("numeric", "numeric_missing", "categorical")}
        return probs.numpy(), ratings.numpy(), fields

    def plot_features(self, movies, member=0):
        """Member `member`'s whole frozen plot feature row [B, D] (the sentence embedding, then
        the blocks of the concatenated layers), as the content rating reads it."""
        ids, mask, _ = self.pre.token_batch(movies)
        text = getattr(self.bag.members[member], "text_pretrained", None)
        if text is None:
            sys.exit("a content rating needs the first part to read plots with MiniLM")
        with torch.no_grad():
            return text.bert(ids, keep_first(mask)).double().numpy()

    def plot_embeddings(self, movies, member=0):
        """Member `member`'s MiniLM sentence embedding of each plot [B, D] (the pooled output,
        without concatenated layers; the frozen one for the votes) and whether the movie has
        one [B]."""
        ids, mask, present = self.pre.token_batch(movies)
        text = getattr(self.bag.members[member], "text_pretrained", None)
        if text is None:
            sys.exit("a plot-neighbour vote needs the first part to read plots with MiniLM")
        with torch.no_grad():
            e = text.bert(ids, keep_first(mask))
        e = e[:, : text.bert.hidden]
        return e.double().numpy(), present.numpy() > 0.5


def forest_ratings(tensors, k, rows):
    """Forest k of a rating-trees file on `rows` [B, F] (NaN: missing): every tree walked at
    once, one level per step, as tree_forest.rs lays them out (children after parents)."""
    t = {name: tensors[f"member.{k}.{name}"] for name in
         ("base", "roots", "feature", "threshold", "left", "right", "missing", "is_leaf", "value", "is_cat", "cats")}
    # One zero byte past every bitset: a category beyond it goes right.
    cats = np.pad(t["cats"], ((0, 0), (0, 1)))
    node = np.repeat(t["roots"][None, :].astype(np.int64), len(rows), 0)
    at = np.arange(len(rows))[:, None]
    while not t["is_leaf"][node].all():
        v = rows[at, np.maximum(t["feature"][node], 0)]
        c = np.where(np.isfinite(v), v, 0).astype(np.int64)
        bits = cats[node, np.minimum(c // 8, cats.shape[1] - 1)]
        cat_left = (bits >> (c % 8)) & 1 == 1
        go_left = np.where(t["is_cat"][node] == 1, cat_left, v < t["threshold"][node])
        child = np.where(np.isnan(v), t["missing"][node], np.where(go_left, t["left"][node], t["right"][node]))
        node = np.where(t["is_leaf"][node] == 1, node, child)
    return t["base"][0] + t["value"][node].astype(np.float64).sum(1)


def tree_ratings(path, fields, lead_probs=None):
    """Each forest's rating [K, B] for the first part's fields: numeric values, then category
    ids, NaN where missing (id 0), as rating_trees.rs builds a row; trees whose layout reads
    genre probabilities get forest k's rows followed by the first part's member k's
    (`lead_probs` [K, B, G])."""
    tensors, metadata = bio.read_safetensors(path)
    numeric = np.where(fields["numeric_missing"] > 0.5, np.nan, fields["numeric"].astype(np.float64))
    categorical = fields["categorical"].astype(np.float64)
    categorical[categorical == 0] = np.nan
    rows = np.concatenate([numeric, categorical], 1)
    n_genres = json.loads((metadata or {}).get("layout", "{}")).get("n_genres", 0)
    if n_genres and (lead_probs is None or lead_probs.shape[-1] != n_genres):
        raise ValueError(f"{path}: the trees read {n_genres} genre probabilities of the first part")
    k, out = 0, []
    while f"member.{k}.roots" in tensors:
        member_rows = np.concatenate([rows, lead_probs[k].astype(np.float64)], 1) if n_genres else rows
        out.append(forest_ratings(tensors, k, member_rows))
        k += 1
    return np.clip(np.stack(out), 0.0, 10.0).astype(np.float32)


def read_vote(path):
    """A neighbour vote's tables and settings."""
    tensors, metadata = bio.read_safetensors(path)
    return tensors, json.loads(metadata["settings"])


def metadata_rows(fields, sizes):
    """Each movie's metadata row as metadata_neighbours.rs builds it: numeric values, their
    missing flags, then a one-hot block per categorical field (an id past its size sets none)."""
    blocks = [fields["numeric"].astype(np.float64), fields["numeric_missing"].astype(np.float64)]
    for f, size in enumerate(sizes):
        ids = fields["categorical"][:, f].astype(np.int64)
        block = np.zeros((len(ids), size))
        known = ids < size
        block[np.where(known)[0], ids[known]] = 1.0
        blocks.append(block)
    return np.concatenate(blocks, 1)


def neighbour_votes(vote, rows, present):
    """Each member's neighbour vote [K, B, G], as neighbour_vote.rs takes it: cosine similarity
    of the centred, scaled rows to the voters outside fold k, the k nearest weighted by
    exp((s - 1) / T), shrunk to the genre frequencies by `prior` pseudo-neighbours; a movie
    without the features (no plot) gets them. `vote` is read_vote's (tables, settings)."""
    t, meta = vote
    # Plot votes written before the scale was stored scaled nothing.
    scale = t["scale"].astype(np.float64) if "scale" in t else 1.0
    x = (rows - t["centre"].astype(np.float64)) * scale
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    has = present & (norm[:, 0] > 1e-6)
    sims = (x / np.maximum(norm, 1e-30)) @ t["rows"].astype(np.float64).T
    return votes_from_similarities(vote, sims, has)


def votes_from_similarities(vote, sims, has, shared_only=False):
    """Each member's vote [K, B, G] from the movies' similarities to every voter [B, N]: the k
    nearest outside fold k (on equal similarity the earlier voter) weighted by exp((s - 1) / T),
    shrunk to the genre frequencies by `prior` pseudo-neighbours; a movie without `has` gets the
    frequencies. With `shared_only` (the credits) a voter of similarity 0 is no neighbour."""
    t, meta = vote
    k, temperature, prior = int(meta["k"]), float(meta["temperature"]), float(meta["prior"])
    out = []
    for member in range(int(meta["folds"])):
        keep = t["folds"] != member
        labels, s = t["labels"][keep].astype(np.float64), sims[:, keep]
        freq = labels.mean(0)
        near = np.argsort(-s, 1, kind="stable")[:, :min(k, len(labels))]
        s_near = np.take_along_axis(s, near, 1)
        counts = (s_near > 0) if shared_only else np.ones_like(s_near, bool)
        w = np.exp((s_near - 1) / temperature) * counts
        w /= np.maximum(w.sum(1, keepdims=True), 1e-300)
        n = counts.sum(1, keepdims=True)
        vote = (np.einsum("bn,bng->bg", w, labels[near]) * n + freq * prior) / (n + prior)
        vote[~has] = freq
        out.append(vote)
    return np.stack(out).astype(np.float32)


def credit_votes(vote, credits):
    """Each member's credits vote [K, B, G], as credit_neighbours.rs takes it: every credited
    name a voter has, weighted by its stored inverse frequency, the cosine similarity of the
    weighted name sets, then the k nearest as in neighbour_votes; a movie none of whose names a
    voter has gets the genre frequencies. Walks the stored sparse rows, never a dense table."""
    t, meta = vote
    column = {n: c for c, n in enumerate(meta["credit_names"])}
    idf, offsets = t["idf"].astype(np.float64), t["credit_offsets"].astype(np.int64)
    columns = t["credit_columns"].astype(np.int64)
    voter_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    voter_norm = np.sqrt(np.bincount(voter_of, idf[columns] ** 2, len(offsets) - 1))
    sims = np.zeros((len(credits), len(offsets) - 1))
    for b, names in enumerate(credits):
        known = np.unique([column[n] for n in names if n in column]).astype(np.int64)
        hit = np.isin(columns, known)
        np.add.at(sims[b], voter_of[hit], idf[columns[hit]] ** 2)
        sims[b] /= max(np.sqrt((idf[known] ** 2).sum()), 1e-30) * np.maximum(voter_norm, 1e-30)
    return votes_from_similarities(vote, sims, sims.any(1), shared_only=True)


def stacked(coefficients, part_probs):
    """genre_stacking: per genre, sigmoid(bias + sum of weight x logit) over the parts."""
    c = np.asarray(coefficients, np.float64)
    z = c[:, -1].copy()
    for i, p in enumerate(part_probs):
        p = np.clip(p.astype(np.float64), 1e-6, 1 - 1e-6)
        z = z + c[:, i] * np.log(p / (1 - p))
    return (1 / (1 + np.exp(-z))).astype(np.float32)


def member_predictions(model_dir, config, movies, base, run=None):
    """Each member's probabilities [K, B, G] and ratings [K, B] (a blend's member k: member k
    of every part, weighted), and each movie's scaled vote count (NaN: unknown)."""
    parts = config.get("parts")
    if not parts:
        probs, ratings, fields = Part(model_dir, config).members(movies, base, run)
    else:
        probs, ratings, each, part_ratings = 0.0, 0.0, [], []
        for i, part in enumerate(parts):
            sub = os.path.join(model_dir, part["dir"])
            loaded = Part(sub, read_config(sub))
            p, r, f = loaded.members(movies, base)
            each.append(p)
            part_ratings.append(r)
            probs = probs + np.float32(part["genre_weight"]) * p
            ratings = ratings + np.float32(part["rating_weight"]) * r
            if i == 0:
                fields, lead = f, loaded
        vote = config.get("plot_neighbours")
        if vote:
            v = neighbour_votes(read_vote(os.path.join(model_dir, vote["file"])), *lead.plot_embeddings(movies))
            each.append(v)
            probs = probs + np.float32(vote["genre_weight"]) * v
        vote = config.get("metadata_neighbours")
        if vote:
            table = read_vote(os.path.join(model_dir, vote["file"]))
            rows = metadata_rows(fields, table[1].get("categorical_sizes", []))
            v = neighbour_votes(table, rows, np.ones(len(rows), bool))
            each.append(v)
            probs = probs + np.float32(vote["genre_weight"]) * v
        vote = config.get("credit_neighbours")
        if vote:
            table = read_vote(os.path.join(model_dir, vote["file"]))
            v = credit_votes(table, [lead.pre.credits(m) for m in movies])
            each.append(v)
            probs = probs + np.float32(vote["genre_weight"]) * v
        vote = config.get("genre_prompts")
        if vote:
            # The prompts vote like the plot neighbours, on the same plot embeddings; no
            # prompt belongs to a fold, so every member sees them all.
            v = neighbour_votes(read_vote(os.path.join(model_dir, vote["file"])), *lead.plot_embeddings(movies))
            each.append(v)
            probs = probs + np.float32(vote["genre_weight"]) * v
        if config.get("genre_stacking"):
            probs = stacked(config["genre_stacking"]["coefficients"], each)
            plotless = config.get("genre_stacking_without_plot")
            if plotless:
                # A movie without a plot is stacked by the blend's stacking for such movies.
                no_plot = lead.pre.token_batch(movies)[2].numpy() <= 0.5
                probs[:, no_plot] = stacked(plotless["coefficients"], each)[:, no_plot]
            bare_stacking = config.get("genre_stacking_without_metadata")
            if bare_stacking:
                # So is a movie with a plot and no category (lacks_metadata).
                bare = (lead.pre.token_batch(movies)[2].numpy() > 0.5) & lacks_metadata(fields)
                probs[:, bare] = stacked(bare_stacking["coefficients"], each)[:, bare]
        trees = config.get("rating_trees")
        if trees:
            r = tree_ratings(os.path.join(model_dir, trees["file"]), fields, each[0])
            ratings = ratings + np.float32(trees["rating_weight"]) * r
    numeric, missing = fields["numeric"], fields["numeric_missing"]
    votes = np.full(len(movies), np.nan, np.float32)
    if numeric.shape[1] > VOTES_COLUMN:
        known = missing[:, VOTES_COLUMN] <= 0.5
        votes[known] = numeric[known, VOTES_COLUMN]
    voteless = config.get("rating_without_votes") if parts else None
    if voteless and numeric.shape[1] > VOTES_COLUMN:
        no_extras = np.array([lead.pre.extras_absent(m) for m in movies], bool)
        if (missing[:, VOTES_COLUMN] > 0.5).any() or no_extras.any():
            ratings = np.array(ratings, np.float32)
            inputs = (fields, lead, movies, part_ratings, each[0], no_extras)
            voteless_ratings(model_dir, config, inputs, ratings, votes)
    content = config.get("content_rating") if parts else None
    if content:
        rated = lead.pre.token_batch(movies)[2].numpy() > 0.5
        rated &= lacks_metadata(fields)
        if rated.any():
            r = content_ratings(os.path.join(model_dir, content["file"]), lead.plot_features(movies))
            ratings = np.array(ratings, np.float32)
            ratings[:, rated] = r[:, rated]
            votes[rated] = CONTENT_KEY
    spec = config.get("interval") or {}
    if parts and spec.get("lacking_columns"):
        votes = lacking_keys(spec, votes, missing)
    return probs, ratings, votes


def lacking_keys(spec, votes, missing):
    """The interval keys (format 16, interval.rs: Calibration::key): a movie with a vote count
    (a finite key of no other kind) that lacks every column of one of `lacking_columns`' fields
    has `lacking_key_offset` added, and is calibrated with the `lacking` bins."""
    offset = np.float32(spec["lacking_key_offset"])
    out = votes.copy()
    for i, key in enumerate(votes):
        # Below half the offset: not a lacking key already, nor an extras key (format 17).
        plain = math.isfinite(key) and voteless_set(key) is None and key < 0.5 * offset
        lacks = any(cols and all(missing[i, c] > 0.5 for c in cols) for cols in spec["lacking_columns"])
        if plain and lacks:
            out[i] = np.float32(key) + offset
    return out


# The interval key of a movie rated from its plot alone (interval.rs: RATED_FROM_CONTENT).
CONTENT_KEY = -np.inf
# The interval keys of a blend's sets of ratings without the vote count (interval.rs:
# voteless_key): NaN for the first set, -s * 1e30 for set s > 0.
VOTELESS_KEY_SCALE = np.float32(1e30)


def voteless_key(s):
    return np.float32(np.nan) if s == 0 else np.float32(-s) * VOTELESS_KEY_SCALE


def voteless_set(key):
    """The set of the rating without the vote count that interval key `key` marks, or None."""
    if math.isnan(key):
        return 0
    if math.isfinite(key) and key <= -0.5 * float(VOTELESS_KEY_SCALE):
        s = round(-key / float(VOTELESS_KEY_SCALE))
        return s if s <= 16 else None
    return None


def voteless_ratings(model_dir, config, inputs, ratings, votes):
    """Rates each movie that lacks every field of some set of trees in place (ratings [K, B],
    votes [B]) as voteless_rating.rs does: by the set of those that never saw the most columns
    (since format 16 a set may keep the vote count; it rates only a movie given without any
    declared extra), mixed by that set's weights with every
    part's own rating of the movie and with the content rating's ridges (the trees' rating for
    a movie without a plot); trees that read genre probabilities read the first part's
    members' (`inputs`' fifth entry, [K, B, G]); the last says which movies give no extra."""
    fields, lead, movies, part_ratings, lead_probs, no_extras = inputs
    entry, missing = config["rating_without_votes"], fields["numeric_missing"]
    sets = [(f, info, voteless_key(k)) for k, (f, info) in enumerate(zip(entry["files"], entry["info"]["sets"]))]
    # Of the sets whose fields the movie lacks all, the one with the most columns (the first
    # of equals); a set that keeps the vote count only for a movie without any extra.
    chosen, widest = np.full(len(movies), -1), np.full(len(movies), -1)
    for k, (_, info, _) in enumerate(sets):
        fits = (missing[:, info["columns"]] > 0.5).all(1) & (len(info["columns"]) > widest)
        if VOTES_COLUMN not in info["columns"]:
            fits &= no_extras
        chosen[fits], widest[fits] = k, len(info["columns"])
    content = config.get("content_rating")
    plot = lead.pre.token_batch(movies)[2].numpy() > 0.5
    ridge = None
    if content and plot.any():
        ridge = content_ratings(os.path.join(model_dir, content["file"]), lead.plot_features(movies))
    for k, (file, info, key) in enumerate(sets):
        rows = chosen == k
        if not rows.any():
            continue
        trees = tree_ratings(os.path.join(model_dir, file), fields, lead_probs)
        on_plot = np.where(plot[None, :], ridge, trees) if ridge is not None else trees
        r = np.zeros_like(trees)
        for w, own in zip(info["part_weights"], part_ratings):
            r = r + np.float32(w) * own
        r = r + np.float32(info["trees_weight"]) * trees + np.float32(info["plot_weight"]) * on_plot
        ratings[:, rows] = r[:, rows]
        spec = config.get("interval") or {}
        if VOTES_COLUMN not in info["columns"] and spec.get("extras"):
            # Format 17: with vote bins for its movies, the set that keeps the vote count keys
            # a movie with its own vote count (interval.rs: EXTRAS_KEY_OFFSET).
            keyed = rows & np.isfinite(votes)
            votes[keyed] = np.float32(spec["extras_key_offset"]) + votes[keyed]
            votes[rows & ~keyed] = key
        else:
            votes[rows] = key


def lacks_metadata(fields):
    """Movies given without metadata: every category missing (id 0), whatever the numeric
    fields, as content_rating.rs decides since format 13 (format 12 also required every numeric
    field but the year to be missing; cinefuse and this reference read both with this rule)."""
    return (fields["categorical"] == 0).all(1)


def content_ratings(path, rows):
    """Each ridge's rating [K, B] of the plot feature rows [B, D], clipped to 0-10."""
    tensors, _ = bio.read_safetensors(path)
    w, b = tensors["weights"].astype(np.float64), tensors["bias"].astype(np.float64)
    return np.clip(rows @ w.T + b, 0.0, 10.0).T.astype(np.float32)


def interval(spec, member_ratings, rating, votes, without=(False, False)):
    """The rating interval: CV+ over the movie's vote bin, or a fixed half-width; `without`
    (no plot, no poster) widens it by the interval's scale for such movies."""
    if spec is None:
        return None
    if spec["kind"] == "half_width":
        w = spec["half_width"]
        return [max(rating - w, 0.0), min(rating + w, 10.0)]
    scale = input_scale(spec, votes, without)
    edges, bins = spec["edges"], spec["bins"]
    extras = spec.get("extras_key_offset")
    if extras and math.isfinite(votes) and votes >= 0.5 * extras:
        # A movie of the set that keeps the vote count, keyed with it (format 17): the extras
        # vote bins.
        votes = float(np.float32(np.float32(votes) - np.float32(extras)))
        own = spec.get("extras")
        if own:
            edges, bins = own["edges"], own["bins"]
        return cv_plus(spec, member_ratings, bins[vote_bin(edges, votes)], scale)
    offset = spec.get("lacking_key_offset")
    if offset and math.isfinite(votes) and votes >= 0.5 * offset:
        # A movie without some extras (lacking_keys): the lacking bins, or the vote bins.
        votes -= float(np.float32(offset))
        own = spec.get("lacking")
        if own:
            edges, bins = own["edges"], own["bins"]
    bin_ = bins[vote_bin(edges, votes)]
    if votes == CONTENT_KEY and spec.get("content"):
        bin_ = spec["content"]
    elif voteless_set(votes) is not None:
        own = spec.get("without_votes") or []
        s = voteless_set(votes)
        if s < len(own) and own[s]:
            bin_ = own[s]
        elif own and own[0]:
            bin_ = own[0]
    return cv_plus(spec, member_ratings, bin_, scale)


def input_scale(spec, key, without):
    """The factor on the residuals of a movie keyed `key` and given without its plot and/or
    poster (format 18; interval.rs: Calibration::scale_of): the scale learnt for those inputs
    and the rating that rated it, the reduced rating that keeps the vote count (an extras key,
    or its set's key) or the blend's own (a vote count's key, lacking or not); 1 otherwise."""
    plot, poster = without
    if not (plot or poster):
        return 1.0
    extras, s = spec.get("extras_key_offset"), voteless_set(key)
    if (extras and math.isfinite(key) and key >= 0.5 * extras) or s in (spec.get("extras_sets") or []):
        rated_by = "extras"
    elif math.isfinite(key) and s is None:
        rated_by = "blend"
    else:
        return 1.0
    for e in spec.get("input_scales") or []:
        if e["without"] == {"plot": plot, "poster": poster} and e["rated_by"] == rated_by:
            return float(np.float32(e["scale"]))
    return 1.0


def given_without(model_dir, config, movies):
    """Whether each movie comes without its plot (no tokens) and without its poster, as the
    first part reads it (interval.rs: GivenWithout)."""
    parts = config.get("parts")
    lead_dir = os.path.join(model_dir, parts[0]["dir"]) if parts else model_dir
    pre = Preprocess(lead_dir, read_config(lead_dir)["preprocess"])
    return [(not pre.tokens(m), not m.get("poster")) for m in movies]


def cv_plus(spec, member_ratings, bin_, scale=1.0):
    """The CV+ interval of a movie from its bin's [member, residual] pairs, each residual
    times `scale`, clipped to 0-10; None when the bin is too small for the coverage."""
    n, alpha = len(bin_), 1.0 - spec["coverage"]
    k_lo, k_hi = math.floor(alpha * (n + 1)), math.ceil((1.0 - alpha) * (n + 1))
    if k_lo < 1 or k_hi > n:
        return None
    pred = lambda m: float(member_ratings[min(m, len(member_ratings) - 1)])
    # In f32, as interval.rs computes `prediction ± scale · residual`.
    f = np.float32
    lows = sorted(float(f(pred(m)) - f(scale) * f(r)) for m, r in bin_)
    highs = sorted(float(f(pred(m)) + f(scale) * f(r)) for m, r in bin_)
    return [max(lows[k_lo - 1], 0.0), min(highs[k_hi - 1], 10.0)]


def vote_bin(edges, key):
    """The bin of interval key `key` (an f32 value) among the sorted `edges`, compared in f32 as
    interval.rs's Calibration::bin does: an edge is an f32 written as its shortest decimal,
    which read as a float64 may lie above the f32 (0.7 reads 0.69999998807907 as f32), so a key
    on the edge would fall below it."""
    if not math.isfinite(key):
        return 0
    key = np.float32(key)
    return sum(1 for e in edges if key >= np.float32(e))


def predict(model_dir, movies, base, run=None):
    config = read_config(model_dir)
    probs, ratings, votes = member_predictions(model_dir, config, movies, base, run)
    without = given_without(model_dir, config, movies)
    out = []
    for i, movie in enumerate(movies):
        p, rating = probs[:, i].mean(0), float(ratings[:, i].mean())
        out.append({
            "id": movie.get("id", "input"),
            "probabilities": {g: float(x) for g, x in zip(config["genres"], p)},
            "predicted": [g for g, x, t in zip(config["genres"], p, config["thresholds"]) if x >= t],
            "rating": rating,
            "rating_interval": interval(config["interval"], ratings[:, i], rating, float(votes[i]), without[i]),
        })
    return out


def read_movies(path):
    return bio.read_jsonl(path)


# ---------------------------------------------------------------- ONNX

INPUTS = ["posters", "poster_present", "tokens", "token_mask", "plot_present", "numeric", "numeric_missing", "categorical"]


class TensorInputs(nn.Module):
    """A bag with the preprocessed tensors as positional inputs, for ONNX."""

    def __init__(self, bag):
        super().__init__()
        self.bag = bag

    def forward(self, *tensors):
        return self.bag(dict(zip(INPUTS, tensors)))


def export_onnx(model_dir, out, movies, base):
    config = read_config(model_dir)
    if config.get("parts"):
        sys.exit(f"{model_dir}: a blend; export each part-K folder to ONNX on its own")
    part = Part(model_dir, config)
    inputs = part.pre.batch(movies, base)
    args = tuple(inputs[k] for k in INPUTS)
    dynamic = {k: {0: "batch"} for k in INPUTS}
    for k in ("tokens", "token_mask"):
        dynamic[k] = {0: "batch", 1: "tokens"}
    torch.onnx.export(TensorInputs(part.bag).eval(), args, out, input_names=INPUTS,
                      output_names=["probabilities", "ratings"], dynamic_axes=dynamic,
                      opset_version=17, dynamo=False)
    return part


def onnx_runner(path):
    """A function with the bag's signature that runs the ONNX file in onnxruntime."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(inputs):
        probs, ratings = session.run(None, {k: inputs[k].numpy() for k in names})
        return torch.from_numpy(probs), torch.from_numpy(ratings)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict")
    p.add_argument("model_dir")
    p.add_argument("movies")
    o = sub.add_parser("onnx")
    o.add_argument("model_dir")
    o.add_argument("out")
    o.add_argument("movies")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    movies = read_movies(args.movies)
    base = os.path.dirname(os.path.abspath(args.movies))
    if args.command == "predict":
        results = predict(args.model_dir, movies, base)
    else:
        export_onnx(args.model_dir, args.out, movies, base)
        results = predict(args.model_dir, movies, base, run=onnx_runner(args.out))
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
