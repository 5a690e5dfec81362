#!/usr/bin/env python3
"""Stand-in pretrained checkpoints for timing on a machine that cannot fetch the real ones (an
offline GPU box): the same architectures, tensor names, shapes and dtypes as the two checkpoints
scripts/fetch_pretrained.sh unpacks, with random values. Forward and backward passes cost the
same on them, so benchmarks hold; predictions are meaningless, so never train or ship on them.

    scripts/stand_in_pretrained.py --configs-from models/pretrained DEST

copies every non-weight file (config.json, the tokenizer) of SRC/minilm-l6 and
SRC/efficientnet-lite0 into DEST/<same name>, then writes random model.safetensors (BERT,
transformers' initialisation) and model.pth (efficientnet_lite_pytorch's). It refuses to replace
a weight file that is already there. Needs torch, safetensors, transformers and
efficientnet_lite_pytorch.
"""
import argparse
import shutil
import sys
from pathlib import Path

WEIGHTS = {"model.safetensors", "model.pth", "pytorch_model.bin"}
# fetch_pretrained.sh marks the folders it made; stand-ins are not fetched.
SKIP = WEIGHTS | {".fetched-by-cinefuse"}


def copy_configs(src: Path, dest: Path):
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.rglob("*"):
        rel = f.relative_to(src)
        if f.is_file() and f.name not in SKIP:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest / rel)


def refuse_existing(path: Path):
    if path.exists():
        sys.exit(f"error: {path} exists; stand-in weights never replace a checkpoint")


def minilm(src: Path, dest: Path, seed: int):
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel

    target = dest / "model.safetensors"
    refuse_existing(target)
    copy_configs(src, dest)
    torch.manual_seed(seed)
    cfg = BertConfig.from_json_file(src / "config.json")
    state = {k: v.contiguous() for k, v in BertModel(cfg).state_dict().items()}
    # The published checkpoint also stores the position ids buffer.
    state["embeddings.position_ids"] = torch.arange(cfg.max_position_embeddings).unsqueeze(0)
    save_file(state, target)
    print(f"{target}: {len(state)} random tensors")


def efficientnet(src: Path, dest: Path, seed: int):
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    target = dest / "model.pth"
    refuse_existing(target)
    copy_configs(src, dest)
    torch.manual_seed(seed)
    state = EfficientNet.from_name("efficientnet-lite0").state_dict()
    torch.save(state, target)
    print(f"{target}: {len(state)} random tensors")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", type=Path)
    ap.add_argument("--configs-from", type=Path, required=True,
                    help="a folder with minilm-l6/ and efficientnet-lite0/ (configs and tokenizer; weights not needed)")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    minilm(a.configs_from / "minilm-l6", a.dest / "minilm-l6", a.seed)
    efficientnet(a.configs_from / "efficientnet-lite0", a.dest / "efficientnet-lite0", a.seed)


if __name__ == "__main__":
    main()
