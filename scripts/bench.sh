#!/usr/bin/env bash
# Side-by-side training throughput: cinefuse (each backend) vs the PyTorch reference, same
# config, same prepared data, same batch size; plus batching, prepare and page-parse numbers.
#   scripts/bench.sh [CONFIG] [BACKENDS]     e.g. scripts/bench.sh configs/quickstart.toml flex,lavapipe
# Needs scripts/setup_python.sh --torch for the PyTorch side.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-configs/quickstart.toml}"
backends="${2:-flex}"
steps="${STEPS:-20}"; reps="${REPS:-3}"
cargo build --quiet -p cinefuse-cli
bin=target/debug/cinefuse
prepared=$(python3 -c "import tomllib,sys; c=tomllib.load(open(sys.argv[1],'rb')); print(c['data'].get('prepared','prepared/demo'))" "$config")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/{print $2}') GiB"
$bin bench --config "$config" --backends "$backends" --steps "$steps" --reps "$reps" --prepare \
  --pages crates/cinefuse-scrape/tests/fixtures --json /tmp/cinefuse-bench.json
if [ -x scripts/.venv/bin/python ] && scripts/.venv/bin/python -c "import torch" 2>/dev/null; then
  scripts/.venv/bin/python scripts/torch_reference.py "$config" "$prepared" --steps "$steps" --reps "$reps" > /tmp/torch-bench.json
  python3 - <<'PY'
import json
c = json.load(open("/tmp/cinefuse-bench.json"))
t = json.load(open("/tmp/torch-bench.json"))
print(f"pytorch ({t['framework']}, {t['device']}, {t['threads']} threads): median {t['median']:.1f} samples/s {[round(x,1) for x in t['samples_per_sec']]}")
for r in c:
    if r["what"].startswith("training"):
        print(f"ratio cinefuse/pytorch [{r['what']}]: {r['median'] / t['median']:.2f}")
PY
else
  echo "PyTorch not installed (scripts/setup_python.sh --torch); skipping the comparison"
fi
