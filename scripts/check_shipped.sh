#!/usr/bin/env bash
# The shipped config end to end on real movies: trains configs/real-omdb-pretrained.toml as
# shipped (every bag, vote, tree and stacking, on every labelled movie; a fine-tuned partner,
# where the config has one, cut to three steps per member), exports the blend, predicts
# movies that lack each kind of input (plot, metadata, vote count, credits, extras, everything), and checks those predictions
# against the PyTorch reference (scripts/cinefuse_torch.py). Its parts are each tested on
# synthetic data; this checks that they work together on the real thing, as shipped (a blend
# that trained but could not be exported was found this way: docs/RESULTS.md).
#
#   scripts/check_shipped.sh [DATASET_DIR]      # default datasets/omdb-dev (see README)
#   KEEP=1 scripts/check_shipped.sh             # keep the run, export and predictions
#
# About 10 minutes on 2 cores once the plot and poster features are cached (the first run
# computes them: about 10 minutes more). Like the config itself, it prepares the config's
# folders under prepared/ when they are not current. Needs scripts/fetch_pretrained.sh, and scripts/setup_python.sh --torch for the
# reference (without it the reference check is skipped, and said so).
set -euo pipefail
cd "$(dirname "$0")/.."
dataset="${1:-datasets/omdb-dev}"
config=configs/real-omdb-pretrained.toml
# The config's own dataset trains into the config's prepared folders (with their cached
# features); another one into folders of its own (`--data`).
data_args=()
[ $# -ge 1 ] && data_args=(--data "$1")
[ -f "$dataset/movies.jsonl" ] || { echo "no dataset at $dataset (see README: import movies-omdb-dev)" >&2; exit 2; }
[ -d models/pretrained/mpnet-base ] || { echo "no pretrained weights: run scripts/fetch_pretrained.sh" >&2; exit 2; }
cargo build --quiet -p cinefuse-cli
bin="${CARGO_TARGET_DIR:-target}/debug/cinefuse"
python=scripts/.venv/bin/python
work="$(mktemp -d)"
# Kept when KEEP is set, or when a step fails (to read its log).
trap '[ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"' EXIT

# A fine-tuned partner (configs/real-omdb-finetune.toml), if the config has one: three steps per
# member; everything else as shipped.
cut='set = ["train.bag_sets=1", "train.epochs=1", "train.max_steps_per_epoch=3"]'
sed "s/^set = \[\"train.bag_sets=1\"\]\$/$cut/" "$config" > "$work/config.toml"
if grep -q '^config = "configs/real-omdb-finetune.toml"' "$config"; then
  grep -q "max_steps_per_epoch=3" "$work/config.toml" || { echo "$config: the fine-tuned entry's set line changed; update this script" >&2; exit 2; }
fi

start=$(date +%s)
"$bin" train --config "$work/config.toml" "${data_args[@]}" --out "$work/run" > "$work/train.log" 2>&1 \
  || { tail -20 "$work/train.log"; echo "FAILED: train" >&2; KEEP=1; exit 1; }
echo "trained in $(( $(date +%s) - start )) s"
"$bin" export --run "$work/run" --out "$work/model" > "$work/export.log" 2>&1 \
  || { tail -5 "$work/export.log"; echo "FAILED: export" >&2; KEEP=1; exit 1; }
echo "exported"

# Five movies as given, and variants lacking each kind of input.
mkdir -p "$work/movies/posters"
"$python" - "$dataset" "$work/movies" <<'EOF'
import json, shutil, sys
sys.path.insert(0, "scripts")
import bounded_io as bio
dataset, out = sys.argv[1], sys.argv[2]
movies = bio.read_jsonl(f"{dataset}/movies.jsonl")[-5:]
for m in movies:
    # Only posters inside the dataset, as cinefuse reads them.
    if m.get("poster") and not m["poster"].startswith("/") and ".." not in m["poster"].split("/"):
        shutil.copy(f"{dataset}/{m['poster']}", f"{out}/posters/{m['id']}.jpg")
        m["poster"] = f"posters/{m['id']}.jpg"
    else:
        m.pop("poster", None)
first, second = movies[0], movies[1]
variants = [
    {**{k: v for k, v in first.items() if k != "plot"}, "id": "without-plot"},
    {"id": "title-and-plot", "title": second.get("title"), "plot": second.get("plot")},
    {**{k: v for k, v in second.items() if k != "votes"}, "id": "without-votes"},
    # Fields nearly every training movie had, absent: read as unknown (absent_fields.rs).
    {**{k: v for k, v in first.items() if k not in ("directors", "cast")},
     "extra": {k: v for k, v in first.get("extra", {}).items() if k != "writer"}, "id": "without-credits"},
    # Without the Metacritic score among other extras: the interval bins of such movies.
    {**second, "extra": {k: v for k, v in second.get("extra", {}).items() if k != "metascore"},
     "id": "without-metascore"},
    # A table's few columns, no extra: the rating without the extras (voteless_rating.rs).
    {**{k: v for k, v in first.items()
        if k in ("title", "year", "runtime_min", "votes", "certificate", "directors")}, "id": "a-table"},
    {"id": "empty"},
]
with open(f"{out}/movies.jsonl", "w", encoding="utf-8") as f:
    for m in movies + variants:
        f.write(json.dumps(m) + "\n")
EOF
"$bin" predict --model "$work/model" --jsonl "$work/movies/movies.jsonl" --json > "$work/rust.jsonl" 2> "$work/predict.log" \
  || { tail -5 "$work/predict.log"; echo "FAILED: predict" >&2; KEEP=1; exit 1; }
echo "predicted $(wc -l < "$work/rust.jsonl") movies"

if ! { [ -x "$python" ] && "$python" -c "import torch" 2>/dev/null; }; then
  echo "SKIPPED the PyTorch reference: no torch (scripts/setup_python.sh --torch)"
  exit 0
fi
"$python" scripts/cinefuse_torch.py predict "$work/model" "$work/movies/movies.jsonl" > "$work/torch.jsonl"
# Posters are decoded by two JPEG decoders, so movies with one differ a little.
"$python" - "$work/rust.jsonl" "$work/torch.jsonl" <<'EOF'
import json, sys
rust = [json.loads(line) for line in open(sys.argv[1])]
torch = [json.loads(line) for line in open(sys.argv[2])]
assert len(rust) == len(torch), (len(rust), len(torch))
worst = 0.0
for r, t in zip(rust, torch):
    probs = {g["genre"]: g["probability"] for g in r["genres"]}
    diffs = [abs(probs[k] - v) for k, v in t["probabilities"].items()]
    diffs += [abs(r["rating"] - t["rating"])]
    diffs += [abs(a - b) for a, b in zip(r["rating_interval"] or [], t["rating_interval"] or [])]
    print(f"  {r['id']:16s} largest difference {max(diffs):.2g}")
    worst = max(worst, max(diffs))
if worst > 0.05:
    sys.exit(f"FAILED: cinefuse and the PyTorch reference differ by {worst:.3g}")
print(f"cinefuse and the PyTorch reference agree to {worst:.2g}")
EOF
echo "OK: the shipped config trains, exports and predicts"
