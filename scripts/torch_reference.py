#!/usr/bin/env python3
"""PyTorch reference of a cinefuse model and training step, for speed comparisons only.

Builds the same architecture as a cinefuse config (poster ResNet, transformer / bag plot encoder,
metadata MLP, GMU fusion, per-modality heads, BCE + Huber loss with auxiliary heads, AdamW) and
times optimizer steps on batches from the same prepared directory (posters.bin, samples.jsonl).

Usage: scripts/.venv/bin/python scripts/torch_reference.py CONFIG.toml PREPARED_DIR
           [--steps 20] [--warmup 3] [--reps 3] [--device cpu|cuda] [--threads N]
       ... CONFIG.toml PREPARED_DIR --backbones 3     forward passes of the pretrained backbones
                                                      (needs transformers, efficientnet_lite_pytorch)
       ... CONFIG.toml PREPARED_DIR --finetune        training steps of the config's plot branch with
                                                      its BERT fine-tuned (text only; needs transformers)
"""
import argparse
import json
import os
import statistics
import struct
import sys
import time
import tomllib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bounded_io as bio  # noqa: E402


def load_prepared(path, n):
    raw = bio.read_bytes(f"{path}/posters.bin", bio.LARGE_CAP)
    count, ch, h, w = struct.unpack("<4I", raw[8:24])
    posters = np.frombuffer(raw, dtype=np.uint8, offset=24).reshape(count, ch, h, w)
    samples = bio.read_jsonl(f"{path}/samples.jsonl")
    samples = [s for s in samples if s["split"] == "train"][:n]
    return samples, posters, (h, w)


MEAN = torch.tensor([0.45, 0.42, 0.40]).view(1, 3, 1, 1)
STD = torch.tensor([0.27, 0.26, 0.26]).view(1, 3, 1, 1)


def make_batch(samples, posters, hw, device):
    b = len(samples)
    h, w = hw
    px = torch.zeros(b, 3, h, w)
    present = torch.zeros(b)
    for i, s in enumerate(samples):
        if s["poster_slot"] is not None:
            px[i] = (torch.from_numpy(posters[s["poster_slot"]].astype(np.float32)) / 255.0 - MEAN[0]) / STD[0]
            present[i] = 1
    L = max(1, max(len(s["tokens"]) for s in samples))
    tokens = torch.zeros(b, L, dtype=torch.long)
    mask = torch.zeros(b, L)
    for i, s in enumerate(samples):
        t = s["tokens"][:L]
        tokens[i, : len(t)] = torch.tensor(t, dtype=torch.long)
        mask[i, : len(t)] = 1
    f = lambda k: torch.tensor([s[k] for s in samples], dtype=torch.float32)
    batch = dict(
        posters=px, poster_present=present, tokens=tokens, token_mask=mask,
        plot_present=torch.tensor([1.0 if s["plot_present"] else 0.0 for s in samples]),
        numeric=f("numeric"), numeric_missing=f("numeric_missing"),
        categorical=torch.tensor([s["categorical"] for s in samples], dtype=torch.long),
        genres=f("genres"), genres_present=torch.tensor([1.0 if s["genres_present"] else 0.0 for s in samples]),
        rating=torch.tensor([s["rating"] or 0.0 for s in samples]),
        rating_present=torch.tensor([0.0 if s["rating"] is None else 1.0 for s in samples]),
    )
    return {k: v.to(device) for k, v in batch.items()}


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = nn.BatchNorm2d(cout)
        self.short = None
        if cin != cout or stride != 1:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.n2(self.c2(F.relu(self.n1(self.c1(x)))))
        return F.relu(y + (self.short(x) if self.short is not None else x))


class Poster(nn.Module):
    def __init__(self, c, d):
        super().__init__()
        w = c["widths"]
        self.stem = nn.Conv2d(3, w[0], 3, c["stem_stride"], 1, bias=False)
        self.norm = nn.BatchNorm2d(w[0])
        blocks, cin = [], w[0]
        for i, cout in enumerate(w):
            for k in range(c["blocks_per_stage"]):
                blocks.append(Block(cin, cout, 2 if i > 0 and k == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.proj = nn.Linear(cin, d)

    def forward(self, b):
        x = self.blocks(F.relu(self.norm(self.stem(b["posters"]))))
        return F.relu(self.proj(x.mean((2, 3))))


def masked_mean(x, m):
    m = m.unsqueeze(2)
    return (x * m).sum(1) / m.sum(1).clamp_min(1)


class Text(nn.Module):
    def __init__(self, c, vocab, max_len, d):
        super().__init__()
        self.kind = c["kind"]
        self.tok = nn.Embedding(vocab, c["d_model"])
        if self.kind == "transformer":
            self.pos = nn.Embedding(max_len, c["d_model"])
            layer = nn.TransformerEncoderLayer(c["d_model"], c["n_heads"], c["d_ff"], c["dropout"], activation="gelu", batch_first=True, norm_first=True)
            self.enc = nn.TransformerEncoder(layer, c["n_layers"], enable_nested_tensor=False)
            self.proj = nn.Linear(c["d_model"], d)
        else:
            self.hidden = nn.Linear(c["d_model"], c["d_ff"])
            self.drop = nn.Dropout(c["dropout"])
            self.proj = nn.Linear(c["d_ff"], d)

    def forward(self, b):
        mask = b["token_mask"].clone()
        mask[:, 0] = 1
        if self.kind == "transformer":
            L = b["tokens"].shape[1]
            pos = torch.arange(L, device=mask.device).unsqueeze(0)
            x = self.tok(b["tokens"]) * 0.5 + self.pos(pos) * 0.5
            h = self.enc(x, src_key_padding_mask=mask == 0)
            return F.gelu(self.proj(masked_mean(h, mask)))
        h = self.drop(F.gelu(self.hidden(masked_mean(self.tok(b["tokens"]), mask))))
        return F.gelu(self.proj(h))


class Meta(nn.Module):
    def __init__(self, c, n_num, cat_sizes, d):
        super().__init__()
        self.emb = nn.ModuleList([nn.Embedding(n, c["cat_dim"]) for n in cat_sizes])
        self.fc1 = nn.Linear(2 * n_num + c["cat_dim"] * len(cat_sizes), c["hidden"])
        self.norm = nn.LayerNorm(c["hidden"])
        self.drop = nn.Dropout(c["dropout"])
        self.fc2 = nn.Linear(c["hidden"], d)

    def forward(self, b):
        parts = [b["numeric"], b["numeric_missing"]] + [e(b["categorical"][:, i]) for i, e in enumerate(self.emb)]
        return F.gelu(self.fc2(self.drop(F.gelu(self.norm(self.fc1(torch.cat(parts, 1)))))))


class Head(nn.Module):
    def __init__(self, d, g, p):
        super().__init__()
        self.drop = nn.Dropout(p)
        self.genre = nn.Linear(d, g)
        self.rating = nn.Linear(d, 1)

    def forward(self, x):
        x = self.drop(x)
        return self.genre(x), self.rating(x).squeeze(1)


class Model(nn.Module):
    def __init__(self, cfg, shapes):
        super().__init__()
        m = cfg["model"]
        d = m["embed_dim"]
        self.mods = [x for x in ("poster", "text", "meta") if x in m["modalities"]]
        enc = {"poster": lambda: Poster(m["poster"], d), "text": lambda: Text(m["text"], shapes["vocab"], shapes["max_tokens"], d),
               "meta": lambda: Meta(m["meta"], shapes["n_num"], shapes["cat_sizes"], d)}
        self.enc = nn.ModuleDict({k: enc[k]() for k in self.mods})
        fh = m["fusion"]["hidden"]
        self.heads = nn.ModuleDict({k: Head(d, shapes["g"], m["fusion"]["dropout"]) for k in self.mods})
        self.proj = nn.ModuleList([nn.Linear(d, fh) for _ in self.mods])
        self.gate = nn.Linear(len(self.mods) * (d + 1), len(self.mods))
        self.head = Head(fh, shapes["g"], m["fusion"]["dropout"])

    def forward(self, b):
        present = {"poster": b["poster_present"], "text": b["plot_present"], "meta": torch.ones_like(b["poster_present"])}
        embs, pres, aux = [], [], []
        for k in self.mods:
            p = present[k]
            e = self.enc[k](b) * p.unsqueeze(1)
            aux.append(self.heads[k](e))
            embs.append(e)
            pres.append(p)
        pm = torch.stack(pres, 1)
        z = self.gate(torch.cat(embs + [pm], 1)).masked_fill(pm == 0, -1e4).softmax(1) * pm
        h = sum(torch.tanh(p(e)) * z[:, i : i + 1] for i, (p, e) in enumerate(zip(self.proj, embs)))
        return self.head(h), aux


class FineTunedPlot(nn.Module):
    """The plot branch of a config whose BERT (or MPNet) is fine-tuned, as cinefuse builds it:
    transformers' AutoModel (BertModel, MPNetModel) with the embeddings and all but the last
    `trainable_layers` layers frozen, mean pooling over the mask (first position always kept),
    then the adapter (LayerNorm, dropout, Linear, GELU) and the genre and rating head."""

    def __init__(self, cfg, shapes):
        super().__init__()
        from transformers import AutoModel

        t, d = cfg["model"]["text"], cfg["model"]["embed_dim"]
        self.bert = AutoModel.from_pretrained(t["pretrained"], add_pooling_layer=False)
        n = t.get("trainable_layers")
        if n is not None:
            frozen = [self.bert.embeddings] + list(self.bert.encoder.layer[: len(self.bert.encoder.layer) - n])
            for module in frozen:
                module.requires_grad_(False)
        hidden = self.bert.config.hidden_size
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(t.get("feature_dropout", 0.1))
        self.proj = nn.Linear(hidden, d)
        self.head = Head(d, shapes["g"], cfg["model"]["fusion"]["dropout"])

    def forward(self, b):
        mask = b["token_mask"].clone()
        mask[:, 0] = 1
        states = self.bert(input_ids=b["tokens"], attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1)
        pooled = (states * m).sum(1) / m.sum(1)
        e = F.gelu(self.proj(self.drop(self.norm(pooled)))) * b["plot_present"].unsqueeze(1)
        return self.head(e), []


def optimizer_of(cfg, model, finetune):
    """AdamW as the config says; a fine-tuned backbone steps at lr x lr_scale."""
    o = cfg["optim"]
    lr, wd = o["lr"], o.get("weight_decay", 0.01)
    if not finetune:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    backbone = [p for p in model.bert.parameters() if p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("bert.")]
    scale = cfg["model"]["text"].get("lr_scale", 0.1)
    return torch.optim.AdamW([{"params": backbone, "lr": lr * scale}, {"params": rest, "lr": lr}], weight_decay=wd)


def loss_fn(out, b, scale, delta=1.0):
    (g, r) = out
    bce = F.binary_cross_entropy_with_logits(g, b["genres"], reduction="none").mean(1)
    genre = (bce * b["genres_present"]).sum() / b["genres_present"].sum().clamp_min(1)
    diff = r - (b["rating"] - scale[0]) / scale[1]
    rating = (F.huber_loss(diff, torch.zeros_like(diff), reduction="none", delta=delta) * b["rating_present"]).sum() / b["rating_present"].sum().clamp_min(1)
    return genre + rating


def bench_backbones(cfg, prepared, n_batches, reps, dev):
    """Forward throughput of the config's pretrained backbones (transformers' AutoModel, a
    BertModel or MPNetModel, with mean pooling; the efficientnet_lite_pytorch port, pooled
    features) on the batches `cinefuse bench --backbones` uses: the first n_batches x 32 training movies with a plot /
    with a poster, in sample order, from the same prepared directory."""
    from transformers import AutoModel
    from efficientnet_lite_pytorch import EfficientNet

    raw = bio.read_bytes(f"{prepared}/posters.bin", bio.LARGE_CAP)
    count, ch, h, w = struct.unpack("<4I", raw[8:24])
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=24).reshape(count, ch, h, w)
    samples = bio.read_jsonl(f"{prepared}/samples.jsonl")
    train = [s for s in samples if s["split"] == "train"]
    n, bs = n_batches * 32, 32
    out = []

    def timed(what, unit, batches, forward):
        with torch.no_grad():
            for b in batches:  # every padded length once (cuDNN/cuBLAS pick kernels per shape)
                forward(b)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            rates = []
            for _ in range(reps):
                start = time.perf_counter()
                for b in batches:
                    forward(b)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                rates.append(sum(len(b[0]) for b in batches) / (time.perf_counter() - start))
        out.append({"what": what, "unit": unit, "values": rates})

    text_dir = cfg["model"].get("text", {}).get("pretrained")
    if text_dir:
        bert = AutoModel.from_pretrained(text_dir).eval().to(dev)
        plots = [s["tokens"] for s in train if s["plot_present"] and s["tokens"]][:n]
        batches = []
        for i in range(0, len(plots), bs):
            chunk = plots[i : i + bs]
            L = max(len(t) for t in chunk)
            ids = torch.zeros(len(chunk), L, dtype=torch.long)
            mask = torch.zeros(len(chunk), L)
            for j, t in enumerate(chunk):
                ids[j, : len(t)] = torch.tensor(t)
                mask[j, : len(t)] = 1
            batches.append((ids.to(dev), mask.to(dev)))

        def plot_forward(b):
            states = bert(input_ids=b[0], attention_mask=b[1]).last_hidden_state
            m = b[1].unsqueeze(-1)
            return (states * m).sum(1) / m.sum(1)

        timed(f"plot backbone {text_dir} forward, batch 32", "plots/s", batches, plot_forward)
    poster_dir = cfg["model"].get("poster", {}).get("pretrained")
    if poster_dir:
        net = EfficientNet.from_name("efficientnet-lite0")
        net.load_state_dict(torch.load(f"{poster_dir}/model.pth", map_location="cpu"))
        net = net.eval().to(dev)
        slots = [s["poster_slot"] for s in train if s["poster_slot"] is not None][:n]
        batches = []
        for i in range(0, len(slots), bs):
            x = torch.from_numpy(pixels[slots[i : i + bs]].astype(np.float32))
            batches.append((((x - 127.0) / 128.0).to(dev),))
        timed(f"poster backbone {poster_dir} forward, batch 32, {h}x{w}", "posters/s", batches,
              lambda b: net.extract_features(b[0]).mean(dim=(2, 3)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("prepared")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--precision", choices=["f32", "f16", "bf16"], default="f32",
                    help="autocast the forward pass (f16 with a GradScaler), like train.precision")
    ap.add_argument("--backbones", type=int, default=0, metavar="BATCHES",
                    help="time the pretrained backbones' forward passes instead of training")
    ap.add_argument("--finetune", action="store_true",
                    help="time the plot branch with its BERT fine-tuned (as `cinefuse bench --set "
                         "'model.modalities=[\"text\"]'` on a config with model.text.freeze = false)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = tomllib.loads(bio.read_text(a.config, bio.CONFIG_CAP))
    if a.backbones:
        print(json.dumps(bench_backbones(cfg, a.prepared, a.backbones, a.reps, torch.device(a.device)), indent=1))
        return
    state = bio.read_json(f"{a.prepared}/preprocess.json")
    bs = cfg["train"]["batch_size"]
    samples, posters, hw = load_prepared(a.prepared, bs * a.steps)
    shapes = dict(vocab=state["tokenizer_vocab_size"], max_tokens=state["config"]["max_tokens"], n_num=len(state["numeric"]),
                  cat_sizes=[len(v["values"]) + 2 for v in state["categorical"]], g=len(state["genres"]["genres"]))
    scale = (state["rating_mean"], state["rating_std"])
    dev = torch.device(a.device)
    batches = [make_batch(samples[i : i + bs], posters, hw, dev) for i in range(0, len(samples) - bs + 1, bs)]
    aux_w = cfg["model"].get("aux_loss_weight", 0.3)
    amp = {"f16": torch.float16, "bf16": torch.bfloat16}.get(a.precision)
    f32 = lambda o: tuple(x.float() for x in o)  # losses in f32, as cinefuse computes them
    results = []
    for rep in range(a.reps):
        torch.manual_seed(cfg.get("seed", 7))
        model = (FineTunedPlot if a.finetune else Model)(cfg, shapes).to(dev).train()
        opt = optimizer_of(cfg, model, a.finetune)
        clip = cfg["optim"].get("grad_clip_norm") if a.finetune else None
        scaler = torch.amp.GradScaler(dev.type, enabled=a.precision == "f16")
        for s in range(a.warmup + a.steps):
            if s == a.warmup:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            b = batches[s % len(batches)]
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                out, aux = model(b)
            out, aux = f32(out), [f32(x) for x in aux]
            loss = loss_fn(out, b, scale)
            if aux:
                loss = loss + aux_w * sum(loss_fn(x, b, scale) for x in aux) / len(aux)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            scaler.step(opt)
            scaler.update()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        results.append(a.steps * bs / (time.perf_counter() - start))
    print(json.dumps({"framework": f"pytorch {torch.__version__}", "device": a.device, "precision": a.precision,
                      "threads": torch.get_num_threads(),
                      "params": sum(p.numel() for p in model.parameters()),
                      "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad), "samples_per_sec": results,
                      "median": statistics.median(results)}))


if __name__ == "__main__":
    main()
