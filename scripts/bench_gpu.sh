#!/usr/bin/env bash
# cinefuse on a GPU (wgpu: Vulkan, Metal or DX12) against PyTorch (CUDA) on the same card and the
# same batches:
#   1. the quickstart training step in f32 and f16 (bf16 where the card's wgpu has it)
#   2. the pretrained backbones' forward passes (MiniLM-L6, EfficientNet-Lite0 at 224x224)
#   3. the fine-tuning step of MiniLM's last two layers (the plot branch)
# Each measurement is one process per side with its repetitions inside it and a warm-up that
# covers every batch shape (GPU kernels are compiled and autotuned per shape on both sides), so
# neither side's compilation lands in the timed steps. Prints a Markdown table; raw JSON lines in
# $OUT/gpu.jsonl.
#
#   scripts/bench_gpu.sh
#   BIN=/path/to/cinefuse PYTHON=python3 scripts/bench_gpu.sh     # no cargo on the GPU machine
#   DATASET=datasets/small PREPARED=prepared/small-224 scripts/bench_gpu.sh   # parts 2-3 on another dataset
#
# Needs: the weights (scripts/fetch_pretrained.sh, or scripts/stand_in_pretrained.py where they
# cannot be fetched: same shapes, random values, so the timings hold), and a Python with torch
# (CUDA), transformers and efficientnet_lite_pytorch. Part 1 needs prepared/demo (the quickstart
# makes it). SKIP_PRETRAINED=1 runs part 1 only, SKIP_BACKBONES=1 leaves out part 2;
# PRECISIONS="f32 f16" and FINETUNE_PRECISIONS="f32" narrow parts 1 and 3 (a short GPU lease).
set -uo pipefail
cd "$(dirname "$0")/.."
bin="${BIN:-}"
if [ -z "$bin" ]; then
  cargo build --quiet -p cinefuse-cli || exit 1
  bin="${CARGO_TARGET_DIR:-target}/debug/cinefuse"
fi
python="${PYTHON:-scripts/.venv/bin/python}"
out="${OUT:-target/bench}"
# Few steps over few batches: cinefuse's wgpu backend compiles and autotunes its kernels for each
# new batch shape (each padded plot length), about 3 s per shape for the quickstart step on an
# H200, so a warm-up over 30 distinct batches did not finish in 120 s there. Both sides take the
# same steps.
reps="${REPS:-5}"
steps="${STEPS:-4}"
# BACKEND=lavapipe TORCH_DEVICE=cpu checks this script on a machine without a GPU.
backend="${BACKEND:-wgpu}"
torch_device="${TORCH_DEVICE:-cuda}"
limit="${LIMIT_S:-240}" # seconds per process: a hung driver must not eat the whole run
mkdir -p "$out"
: > "$out/gpu.jsonl"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

"$python" -c "import torch; print('pytorch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))" || exit 1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader

# record WHAT SIDE FILE: appends the first result of a JSON file (cinefuse's list or PyTorch's object).
record() {
  "$python" - "$1" "$2" "$3" >> "$out/gpu.jsonl" <<'PY'
import json, sys
what, side, path = sys.argv[1:]
try:
    r = json.load(open(path))
except (OSError, ValueError) as e:
    print(json.dumps({"what": what, "side": side, "error": str(e)})); sys.exit()
if isinstance(r, dict):  # torch_reference.py training
    v, label = r["samples_per_sec"], r["framework"]
else:
    r = [x for x in r if x["what"].startswith(("training", "plot backbone", "poster backbone"))]
    v, label = r[0]["values"], r[0]["what"]
print(json.dumps({"what": what, "side": side, "values": v, "label": label}))
PY
}

# train_pair WHAT CONFIG PREPARED PRECISION [cinefuse --set ...] -- [torch_reference.py flags]
train_pair() {
  local what=$1 config=$2 prepared=$3 precision=$4
  shift 4
  local cf=() pt=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do cf+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  pt=("$@")
  echo "== $what ($precision)"
  rm -f "$out/cf.json" "$out/pt.json"
  timeout "$limit" "$bin" bench --config "$config" --backends "$backend" --steps "$steps" --warmup "$steps" \
    --reps "$reps" --set "train.precision=\"$precision\"" "${cf[@]}" --json "$out/cf.json" \
    > "$out/cf.log" 2>&1 || tail -5 "$out/cf.log"
  record "$what, $precision" cinefuse "$out/cf.json"
  timeout "$limit" "$python" scripts/torch_reference.py "$config" "$prepared" --device "$torch_device" \
    --steps "$steps" --warmup "$steps" --reps "$reps" --precision "$precision" "${pt[@]}" \
    > "$out/pt.json" 2> "$out/pt.log" || tail -5 "$out/pt.log"
  record "$what, $precision" pytorch "$out/pt.json"
}

for p in ${PRECISIONS:-f32 f16 bf16}; do
  train_pair "quickstart training step, batch 32" configs/quickstart.toml prepared/demo "$p"
done

if [ -z "${SKIP_PRETRAINED:-}" ]; then
  dataset="${DATASET:-datasets/omdb-dev}"
  prepared="${PREPARED:-prepared/omdb-dev-pretrained-squash}"
  data=(--set "data.dataset=\"$dataset\"" --set "data.prepared=\"$prepared\"")
  wgpu=(--set "backend.kind=\"$backend\"")
  if [ ! -f "$prepared/samples.jsonl" ]; then
    "$bin" prepare --config configs/real-omdb-finetune.toml --data "$dataset" --out "$prepared" \
      > "$out/prepare.log" 2>&1 || { tail -5 "$out/prepare.log"; exit 1; }
  fi
fi
if [ -z "${SKIP_PRETRAINED:-}" ] && [ -z "${SKIP_BACKBONES:-}" ]; then
  echo "== pretrained backbones, forward"
  timeout "$limit" "$bin" bench --config configs/real-omdb-finetune.toml "${data[@]}" "${wgpu[@]}" \
    --backends "" --backbones "${BACKBONE_BATCHES:-3}" --reps "$reps" --json "$out/cf.json" > "$out/cf.log" 2>&1 || tail -5 "$out/cf.log"
  timeout "$limit" "$python" scripts/torch_reference.py configs/real-omdb-finetune.toml "$prepared" \
    --device "$torch_device" --backbones "${BACKBONE_BATCHES:-3}" --reps "$reps" > "$out/pt.json" 2> "$out/pt.log" || tail -5 "$out/pt.log"
  "$python" - "$out" >> "$out/gpu.jsonl" <<'PY'
import json, sys
out = sys.argv[1]
def load(p):
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return []
cf = [r for r in load(f"{out}/cf.json") if "backbone" in r["what"]]
for side, rows in (("cinefuse", cf), ("pytorch", load(f"{out}/pt.json"))):
    for r in rows:
        kind = "MiniLM-L6 forward, batch 32" if r["what"].startswith("plot") else "EfficientNet-Lite0 forward, batch 32, 224x224"
        print(json.dumps({"what": kind, "side": side, "values": r["values"], "label": r["what"], "unit": r["unit"]}))
PY
fi
if [ -z "${SKIP_PRETRAINED:-}" ]; then
  # The plot branch with MiniLM's last two layers fine-tuned; PyTorch runs the same branch.
  steps="${FINETUNE_STEPS:-2}" # the last use of the training steps
  for p in ${FINETUNE_PRECISIONS:-f32 bf16}; do
    train_pair "MiniLM fine-tuning step (last 2 layers), batch 32" configs/real-omdb-finetune.toml \
      "$prepared" "$p" "${data[@]}" --set 'model.modalities=["text","meta"]' -- --finetune
  done
fi

"$python" - "$out/gpu.jsonl" "$backend" "$torch_device" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\n| what | cinefuse ({sys.argv[2]}) | PyTorch ({sys.argv[3]}) | ratio |")
print("|---|---|---|---|")
for what in dict.fromkeys(r["what"] for r in rows):
    cell = {}
    for side in ("cinefuse", "pytorch"):
        r = [x for x in rows if x["what"] == what and x["side"] == side]
        if not r or "error" in r[0]:
            cell[side] = None
        else:
            v = r[0]["values"]
            cell[side] = (statistics.median(v), f"{statistics.median(v):,.0f} ({min(v):,.0f}–{max(v):,.0f})")
    a, b = cell["cinefuse"], cell["pytorch"]
    ratio = f"**{a[0] / b[0]:.2f}**" if a and b else "–"
    print(f"| {what} | {a[1] if a else 'failed'} | {b[1] if b else 'failed'} | {ratio} |")
PY
