#!/usr/bin/env bash
# Forward throughput of the pretrained backbones, cinefuse (Burn, flex) vs PyTorch, on the same
# batches of 32 real movies (first training movies of the config's prepared data), run back to
# back in each repetition; prints plots/s and posters/s of both and their ratio.
#   scripts/bench_backbones.sh [CONFIG] [BATCHES] [REPS]
# Needs the weights (scripts/fetch_pretrained.sh) and the PyTorch venv with transformers and
# efficientnet_lite_pytorch (scripts/setup_python.sh --torch; pip install both).
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-configs/real-omdb-pretrained.toml}"
batches="${2:-3}"
reps="${3:-3}"
out="${OUT:-target/bench}"
mkdir -p "$out"
cargo build --quiet -p cinefuse-cli
bin="${CARGO_TARGET_DIR:-target}/debug/cinefuse"
prepared=$(python3 -c "import tomllib,sys; print(tomllib.load(open(sys.argv[1],'rb'))['data']['prepared'])" "$config")
: > "$out/backbones.jsonl"
for rep in $(seq "$reps"); do
  "$bin" bench --config "$config" --backends "" --backbones "$batches" --reps 1 --json "$out/cf.json" > /dev/null
  scripts/.venv/bin/python scripts/torch_reference.py "$config" "$prepared" --backbones "$batches" --reps 1 --threads "$(nproc)" > "$out/pt.json"
  python3 - "$out" >> "$out/backbones.jsonl" <<'PY'
import json, sys
out = sys.argv[1]
cf = [r for r in json.load(open(f"{out}/cf.json")) if "backbone" in r["what"]]
pt = json.load(open(f"{out}/pt.json"))
for a, b in zip(cf, pt):
    print(json.dumps({"what": a["what"], "unit": a["unit"], "cinefuse": a["values"][0], "pytorch": b["values"][0]}))
PY
done
python3 - "$out/backbones.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| backbone forward | cinefuse (median) | PyTorch (median) | ratio (per run, median) |")
print("|---|---|---|---|")
for what in dict.fromkeys(r["what"] for r in rows):
    rs = [r for r in rows if r["what"] == what]
    cf = statistics.median(r["cinefuse"] for r in rs)
    pt = statistics.median(r["pytorch"] for r in rs)
    ratio = statistics.median(r["cinefuse"] / r["pytorch"] for r in rs)
    print(f"| {what} | {cf:.1f} {rs[0]['unit']} | {pt:.1f} | {ratio:.2f}x |")
PY
