#!/usr/bin/env bash
# FT of a BiGRU student on the local real-code data, with this checkout's BiGRU (the authors' model since
# 2026-12-07) and with an older commit's (e.g. a7fa9ef: a plain embedding, no positions, a linear head), so the
# change of architecture is measured, not assumed. Prints one JSON object: per layout and task, the test score of
# each seed and the majority baseline.
#
#   benchmarks/bigru_layout_compare.sh OLD_COMMIT OUT_DIR [STUDENT] [TASKS] [EPOCHS]
#   e.g. benchmarks/bigru_layout_compare.sh a7fa9ef /tmp/bigru bigru-1.5m "defect exception" 5
#
# Two trials at a time, one thread each (2 cores: about 25 min for the default). The local profile's recipe: lr 3e-4,
# batch 32, 256 tokens, 1200 samples per split. OUT_DIR keeps the data and every trial's result.json.
set -euo pipefail
old=$1
out=$(mkdir -p "$2" && cd "$2" && pwd)
student=${3:-bigru-1.5m}
tasks=${4:-"defect exception"}
epochs=${5:-5}
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
python=${PYTHON:-python}
tree=$(mktemp -d)
cleanup() { git -C "$root" worktree remove --force "$tree/old" >/dev/null 2>&1 || true; rm -rf "$tree"; }
trap cleanup EXIT
git -C "$root" worktree add --detach "$tree/old" "$old" >/dev/null
[ -d "$out/data" ] || PYTHONPATH="$root" "$python" -m tasks.build_local --out "$out/data" >/dev/null

run() {  # layout source task seed
    local dir="$out/$1-$3-$4"
    mkdir -p "$dir"
    (cd "$dir" && OMP_NUM_THREADS=1 PYTHONPATH="$2" "$python" -m orchestrator.trial --task "$3" \
        --student "$student" --method ft --data "$out/data" --seed "$4" --epochs "$epochs" --lr 3e-4 \
        --batch-size 32 --max-length 256 --max-samples 1200 --device cpu --out "$dir/out" >"$dir/log.txt" 2>&1)
}
for task in $tasks; do
    for seed in 0 1 2; do
        run new "$root" "$task" "$seed" &
        run old "$tree/old" "$task" "$seed" &
        wait
    done
done
"$python" - "$out" "$student" "$old" <<'EOF'
import json, pathlib, sys
out, student, old = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
table = {"student": student, "old_commit": old, "method": "ft", "results": {}}
for result in sorted(out.glob("*/out/result.json")):
    layout, task, seed = result.parent.parent.name.split("-")
    test = json.loads(result.read_text())["test"]
    row = table["results"].setdefault(f"{layout}/{task}", {"scores": {}, "majority_baseline": test["majority_baseline"]})
    row["scores"][seed] = round(test["score"], 4)
for row in table["results"].values():
    row["mean"] = round(sum(row["scores"].values()) / len(row["scores"]), 4)
print(json.dumps(table, indent=2))
EOF
