#!/usr/bin/env bash
# Side-by-side training throughput, cinefuse vs the PyTorch reference (scripts/torch_reference.py):
# same configs, same prepared data, same batch size. Each repetition runs cinefuse then PyTorch
# back to back, so drifting machine load hits both alike; medians, spreads, ratios, time per
# epoch and peak RSS are printed as a Markdown table. Then the data-pipeline numbers (batching,
# prepare, page parsing).
#
#   scripts/bench.sh                          # the four CPU configs below, flex, 5 repetitions,
#                                             # + the quickstart on wgpu/lavapipe (LAVAPIPE_STEPS=0 skips)
#   CONFIGS="configs/quickstart.toml" REPS=7 scripts/bench.sh
#   BACKEND=wgpu TORCH_DEVICE=cuda LAVAPIPE_STEPS=0 scripts/bench.sh   # on a GPU machine
#   PRECISION=f16 BACKEND=wgpu TORCH_DEVICE=cuda ...  # mixed precision on both sides
#   DEVICES=0,1 BACKEND=wgpu ...                     # cinefuse data parallel (PyTorch: one GPU)
#
# Needs scripts/setup_python.sh --torch for the PyTorch side (skipped with a note without it).
set -euo pipefail
cd "$(dirname "$0")/.."
configs="${CONFIGS:-configs/quickstart.toml configs/poster-only.toml configs/plot-only.toml configs/meta-only.toml}"
backend="${BACKEND:-flex}"
steps="${STEPS:-30}"
reps="${REPS:-5}"
torch_device="${TORCH_DEVICE:-cpu}"
lavapipe_steps="${LAVAPIPE_STEPS:-4}"
precision="${PRECISION:-f32}"
# Settings both sides share, and cinefuse's devices for data parallelism.
sets=(--set "train.precision=\"$precision\"")
[ -n "${DEVICES:-}" ] && sets+=(--set "backend.devices=[${DEVICES}]")
out="${OUT:-target/bench}"
mkdir -p "$out"
# Mesa's software Vulkan complains on every start without a runtime directory.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
cargo build --quiet -p cinefuse-cli
bin="${CARGO_TARGET_DIR:-target}/debug/cinefuse"
python=scripts/.venv/bin/python
have_torch=false
if [ -x "$python" ] && "$python" -c "import torch" 2>/dev/null; then have_torch=true; fi

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/{print $2}') GiB; backend $backend; $precision; $steps steps x $reps reps"
: > "$out/runs.jsonl"
for config in $configs; do
  prepared=$(python3 -c "import tomllib,sys; c=tomllib.load(open(sys.argv[1],'rb')); print(c['data'].get('prepared','prepared/demo'))" "$config")
  for rep in $(seq "$reps"); do
    /usr/bin/time -f "%M" -o "$out/rss" "$bin" bench --config "$config" --backends "$backend" \
      "${sets[@]}" --steps "$steps" --reps 1 --json "$out/cinefuse.json" > /dev/null
    python3 - "$config" "$prepared" "$out" <<'PY' >> "$out/runs.jsonl"
import json, sys
config, prepared, out = sys.argv[1:]
r = [x for x in json.load(open(f"{out}/cinefuse.json")) if x["what"].startswith("training")][0]
print(json.dumps({"config": config, "prepared": prepared, "who": "cinefuse", "rate": r["values"][0],
                  "rss_mb": int(open(f"{out}/rss").read().split()[-1]) / 1024}))
PY
    if $have_torch; then
      /usr/bin/time -f "%M" -o "$out/rss" "$python" scripts/torch_reference.py "$config" "$prepared" \
        --steps "$steps" --reps 1 --device "$torch_device" --precision "$precision" > "$out/torch.json"
      python3 - "$config" "$prepared" "$out" <<'PY' >> "$out/runs.jsonl"
import json, sys
config, prepared, out = sys.argv[1:]
t = json.load(open(f"{out}/torch.json"))
print(json.dumps({"config": config, "prepared": prepared, "who": t["framework"], "rate": t["samples_per_sec"][0],
                  "rss_mb": int(open(f"{out}/rss").read().split()[-1]) / 1024}))
PY
    fi
  done
done
$have_torch || echo "PyTorch not installed (scripts/setup_python.sh --torch): cinefuse only"

python3 - "$out/runs.jsonl" "$backend" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
backend = sys.argv[2]
def train_size(prepared):
    return json.load(open(f"{prepared}/summary.json"))["split_sizes"]["train"]
print(f"\n| config | cinefuse ({backend}) samples/s | PyTorch samples/s | ratio | epoch (cinefuse / PyTorch) | peak RSS (cinefuse / PyTorch) |")
print("|---|---|---|---|---|---|")
for config in dict.fromkeys(r["config"] for r in runs):
    mine = [r for r in runs if r["config"] == config and r["who"] == "cinefuse"]
    theirs = [r for r in runs if r["config"] == config and r["who"] != "cinefuse"]
    n = train_size(mine[0]["prepared"])
    def cell(rs):
        v = [r["rate"] for r in rs]
        return statistics.median(v), f"{statistics.median(v):,.0f} ({min(v):,.0f}–{max(v):,.0f})"
    m, mc = cell(mine)
    rss = max(r["rss_mb"] for r in mine)
    if theirs:
        t, tc = cell(theirs)
        print(f"| {config} | {mc} | {tc} | **{m / t:.2f}** | {n / m:.1f} s / {n / t:.1f} s | {rss:.0f} / {max(r['rss_mb'] for r in theirs):.0f} MB |")
    else:
        print(f"| {config} | {mc} | – | – | {n / m:.1f} s / – | {rss:.0f} MB / – |")
PY

if [ "$lavapipe_steps" -gt 0 ]; then
  # wgpu on Mesa's software Vulkan: the GPU code path on a CPU, ~40x slower than flex, so
  # a few steps only. Compared with the PyTorch CPU median of the quickstart row above.
  "$bin" bench --config configs/quickstart.toml --backends lavapipe --steps "$lavapipe_steps" \
    --warmup 2 --reps 2 --json "$out/lavapipe.json" > /dev/null
  python3 - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
r = [x for x in json.load(open(f"{out}/lavapipe.json")) if x["what"].startswith("training")][0]
torch = [json.loads(l) for l in open(f"{out}/runs.jsonl")]
torch = [t["rate"] for t in torch if t["config"].endswith("quickstart.toml") and t["who"] != "cinefuse"]
m = statistics.median(r["values"])
ratio = f"{m / statistics.median(torch):.3f}" if torch else "–"
print(f"| configs/quickstart.toml, wgpu on lavapipe | {m:,.1f} ({min(r['values']):,.1f}–{max(r['values']):,.1f}) | (PyTorch CPU above) | {ratio} | | |")
PY
fi

echo
echo "data pipeline:"
"$bin" bench --config configs/quickstart.toml --backends "$backend" --steps 2 --reps 3 --prepare \
  --pages crates/cinefuse-scrape/tests/fixtures | grep -v "^training"
