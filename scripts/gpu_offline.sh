#!/usr/bin/env bash
# The GPU measurements on a box without cargo, internet or the real weights, in one short run:
#
#   scripts/gpu_offline.sh pack DIR     # here: everything the box needs, ~35 MB
#   (copy the repo and DIR there)
#   scripts/gpu_offline.sh run DIR      # there: results under $OUT (default /tmp/gpu-out)
#
# `pack` writes DIR/cinefuse.xz (this checkout's binary, stripped), DIR/small (the first 400 movies
# of datasets/omdb-dev with their posters), DIR/pretrained (the checkpoints' configs and tokenizer,
# no weights) and DIR/py (efficientnet_lite_pytorch from scripts/.venv, which PyTorch images lack).
# `run` makes stand-in weights (scripts/stand_in_pretrained.py: timings only), the demo data, then
#   1. the token buckets on cold processes: 16 distinct quickstart batches with
#      backend.token_bucket = 16 and = 1, no autotune or shader disk cache, two repetitions, so
#      the first repetition's rate shows the per-shape compilation cost;
#   2. scripts/bench_gpu.sh with both sides on the same steps (quickstart f32/f16, fine-tuning f32);
#   3. a 3-epoch quickstart `train` on the GPU, if time is left;
# with nvidia-smi's memory readings in $OUT/smi.csv and phase times in $OUT/phases.txt. A box
# without a Vulkan loader needs one first (Debian's libvulkan1, unpacked with dpkg -x).
# BACKEND=flex TORCH_DEVICE=cpu PY=scripts/.venv/bin/python checks the script on a CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
dir="${2:-}"
case "$mode" in
  pack | run) ;;
  *) echo "usage: $0 pack|run DIR" >&2; exit 2 ;;
esac
[ -n "$dir" ] || { echo "usage: $0 pack|run DIR" >&2; exit 2; }
# Only pack makes DIR; run on a mistyped DIR must not leave an empty folder behind.
[ "$mode" = pack ] && mkdir -p "$dir"
[ -d "$dir" ] || { echo "error: $dir is not a folder (scripts/gpu_offline.sh pack $dir first)" >&2; exit 1; }
dir=$(cd "$dir" && pwd)

pack() {
  local bin="${BIN:-${CARGO_TARGET_DIR:-target}/debug/cinefuse}"
  [ -x "$bin" ] || { echo "error: no binary at $bin (cargo build --workspace)" >&2; exit 1; }
  [ -f datasets/omdb-dev/movies.jsonl ] || { echo "error: datasets/omdb-dev is not imported (README)" >&2; exit 1; }
  mkdir -p "$dir/small" "$dir/py"
  strip -o "$dir/cinefuse" "$bin" && xz -f -T2 "$dir/cinefuse"
  python3 - "$dir/small" <<'PY'
import json, os, shutil, sys
dest = sys.argv[1]
with open("datasets/omdb-dev/movies.jsonl") as f, open(f"{dest}/movies.jsonl", "w") as out:
    for n, line in zip(range(400), f):
        poster = json.loads(line).get("poster")
        if poster and os.path.exists(f"datasets/omdb-dev/{poster}"):
            os.makedirs(os.path.dirname(f"{dest}/{poster}"), exist_ok=True)
            shutil.copyfile(f"datasets/omdb-dev/{poster}", f"{dest}/{poster}")
        out.write(line)
PY
  for m in minilm-l6 efficientnet-lite0; do
    (cd models/pretrained && find "$m" -type f ! -name 'model.*' ! -name '.fetched-by-cinefuse') |
      while read -r f; do mkdir -p "$dir/pretrained/$(dirname "$f")"; cp "models/pretrained/$f" "$dir/pretrained/$f"; done
  done
  cp -r scripts/.venv/lib/python3*/site-packages/efficientnet_lite_pytorch "$dir/py/"
  du -sh "$dir"
}

# phase NAME: prints the elapsed seconds and stamps NAME in nvidia-smi's clock format.
phase() {
  echo "== [$(($(date +%s) - t0)) s] $*"
  echo "$(date '+%Y/%m/%d %H:%M:%S.%3N') $*" >> "$out/phases.txt"
}

setup() {
  "$py" -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open('/tmp/cinefuse', 'wb'))" "$dir/cinefuse.xz"
  chmod +x /tmp/cinefuse
  [ -f models/pretrained/minilm-l6/model.safetensors ] ||
    "$py" scripts/stand_in_pretrained.py --configs-from "$dir/pretrained" models/pretrained > /tmp/standin.log 2>&1 || tail -5 /tmp/standin.log
  [ -f datasets/demo/movies.jsonl ] || "$bin" synth > /tmp/synth.log 2>&1 || tail -5 /tmp/synth.log
  [ -f prepared/demo/samples.jsonl ] ||
    "$bin" prepare --config configs/quickstart.toml --data datasets/demo --out prepared/demo > /tmp/prep.log 2>&1 || tail -5 /tmp/prep.log
  rm -rf datasets/gpu-small && cp -r "$dir/small" datasets/gpu-small
}

# Cold processes without the autotune or the driver's shader disk cache: each compiles every
# kernel it meets, so the first repetition carries the whole per-shape cost.
token_buckets() {
  for b in 16 1; do
    phase "token_bucket $b, cold"
    local t
    t=$(date +%s%3N)
    CUBECL_AUTOTUNE_CACHE=0 __GL_SHADER_DISK_CACHE=0 timeout "${AB_LIMIT:-150}" "$bin" bench \
      --config configs/quickstart.toml --backends "$backend" --steps "${AB_STEPS:-16}" --warmup 0 \
      --reps 2 --set "backend.token_bucket=$b" --json "$out/buckets-$b.json" 2>&1 | grep "^training"
    echo "token_bucket $b: $(($(date +%s%3N) - t)) ms wall"
  done
}

run() {
  [ -f "$dir/cinefuse.xz" ] || { echo "error: $dir has no cinefuse.xz (scripts/gpu_offline.sh pack $dir first)" >&2; exit 1; }
  out="${OUT:-/tmp/gpu-out}"
  backend="${BACKEND:-wgpu}"
  py="${PY:-python3}"
  bin=/tmp/cinefuse
  smi=
  t0=$(date +%s)
  mkdir -p "$out"
  export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" PYTHONPATH="$dir/py" PYTHONUNBUFFERED=1
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader -lms 200 > "$out/smi.csv" &
    smi=$!
  fi
  phase setup
  setup
  token_buckets
  phase "bench_gpu.sh"
  mkdir -p /tmp/bench
  OUT=/tmp/bench BIN="$bin" PYTHON="$py" BACKEND="$backend" DATASET=datasets/gpu-small \
    PREPARED=prepared/gpu-small REPS="${REPS:-3}" LIMIT_S="${LIMIT_S:-150}" PRECISIONS="f32 f16" \
    FINETUNE_PRECISIONS=f32 SKIP_BACKBONES=1 bash scripts/bench_gpu.sh 2>&1 | tee /tmp/bench/run.log | tail -12
  cp /tmp/bench/gpu.jsonl "$out/" 2> /dev/null
  if [ $(($(date +%s) - t0)) -lt "${TRAIN_IF_UNDER_S:-380}" ]; then
    phase "train quickstart, 3 epochs"
    timeout 120 "$bin" train --config configs/quickstart.toml --set "backend.kind=\"$backend\"" \
      --set train.epochs=3 --out /tmp/gpu-train 2>&1 | grep -i "^epoch\|error\|^backend"
  fi
  phase end
  tar czf "$out/logs.tgz" /tmp/bench /tmp/*.log 2> /dev/null
  [ -n "${smi:-}" ] && kill "$smi"
  true
}

case "$mode" in
  pack) pack ;;
  run) run ;;
  *) echo "usage: $0 pack|run DIR" >&2; exit 2 ;;
esac
