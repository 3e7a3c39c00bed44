#!/usr/bin/env bash
# Regenerates docs/study/ from scratch: the built-in synthetic benchmark (procedural scenes +
# the synthetic-benchmark recipe), then `fbseg study` with the CPU grid (erfnet-clean, erfnet,
# restore-seg, feedback, feedback-bf16; 3 seeds), then copies results.json, results.md,
# study.png and curves.png into docs/study/. About 85 minutes on 2 CPU cores.
#
# Usage: bash docs/study.sh [WORK]   (WORK: scratch folder, default study-work; rerunning the
# script resumes: finished runs are kept, an unfinished one continues from its last.pt)
#
# Two lanes train at once, one thread each (two one-thread processes get more out of 2 cores
# than one two-thread process); each lane takes the next unclaimed run, the costliest first
# (a greedy longest-first schedule), through `fbseg study --only CELL:SEED`. The last
# `fbseg study` trains nothing: it finds every run finished and writes the results.
#
# Knobs (environment): STUDY_FILE (study file or shipped name, default cpu), STUDY_SEEDS
# (default: the study's), STUDY_IMAGES (scenes per split, default 96), STUDY_LANES (default 2),
# STUDY_DOCS (where the results are copied; default this script's folder/study; empty: none),
# STUDY_RECIPE (turbsim recipe of the benchmark, default synthetic-benchmark; the studies made with
# its first version name synthetic-benchmark-v1), STUDY_GENERATE_FLAGS (extra `turbsim generate`
# flags, e.g. "--blur none" for tilt only), STUDY_NATIVE (scene size HxW, default 256x512; the
# paper-regime benchmark of docs/study-online.sh: 1024x2048).
#
# Cells that start R from another cell's run (pretrained_restorer = "cell:NAME") train in a
# second round, after every run of the first.
set -euo pipefail

WORK=${1:-study-work}
STUDY=${STUDY_FILE:-cpu}
IMAGES=${STUDY_IMAGES:-96}
RECIPE=${STUDY_RECIPE:-synthetic-benchmark}
NATIVE=${STUDY_NATIVE:-256x512}
LANES=${STUDY_LANES:-2}
DOCS=${STUDY_DOCS-$(dirname "$0")/study}
SEEDS=()
if [[ -n "${STUDY_SEEDS:-}" ]]; then SEEDS=(--seeds "$STUDY_SEEDS"); fi
started=$(date +%s)
mkdir -p "$WORK"

echo "== 1/3 the synthetic benchmark: $IMAGES scenes per split at $NATIVE, recipe $RECIPE"
if [[ ! -f "$WORK/shards/manifest.json" ]]; then
    turbsim sample-cityscapes "$WORK/cityscapes" --n "$IMAGES" --height "${NATIVE%x*}" \
        --width "${NATIVE#*x}" --seed 0 --overwrite
    turbsim generate --cityscapes "$WORK/cityscapes" --out "$WORK/shards" \
        --recipe "$RECIPE" --workers 2 --overwrite --quiet ${STUDY_GENERATE_FLAGS:-}
fi
turbsim verify "$WORK/shards"

echo "== 2/3 fbseg study --study $STUDY: $LANES lanes of one thread"
# The runs, costliest first: feedback in bf16 (slower than float32 on CPUs without bf16
# units), feedback, restore-seg, ERFNet, R alone; "1 " marks the second round.
mapfile -t ALL < <(python - "$STUDY" "${STUDY_SEEDS:-}" <<'PY'
import sys
from feedbackseg.study.study_file import load_study, parse_seeds
study = load_study(sys.argv[1])
seeds = parse_seeds(sys.argv[2]) if sys.argv[2] else study.seeds
cost = {"feedback": 4.0, "restore-seg": 1.5, "erfnet": 1.0, "restore": 0.5}
runs = [(name, seed) for name in study.cells for seed in seeds]
def weight(run):
    cell = study.cells[run[0]]
    return cost.get(cell.mode, 1.0) * (1.4 if cell.values.get("amp") else 1.0)
for name, seed in sorted(runs, key=weight, reverse=True):
    print(f"{int(study.cells[name].depends_on is not None)} {name}:{seed}")
PY
)
CLAIMS="$WORK/claims"
mkdir -p "$CLAIMS"
lane() {
    local run status=0
    for run in "${RUNS[@]}"; do
        [[ "$run" == "$ROUND "* ]] || continue
        run=${run#* }
        # mkdir is atomic: exactly one lane claims each run (claims of an earlier, interrupted
        # invocation are cleared below, and a finished run is skipped by fbseg study anyway).
        mkdir "$CLAIMS/${run/:/-}" 2>/dev/null || continue
        OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 fbseg study "$WORK/shards" --out "$WORK/study" \
            --study "$STUDY" "${SEEDS[@]}" --only "$run" --resume >> "$WORK/lane-$1.log" 2>&1 \
            || { echo "run $run failed: see $WORK/lane-$1.log" >&2; status=1; }
        echo "  [lane $1] $run done after $(( ($(date +%s) - started) / 60 )) min"
    done
    return $status
}
rm -rf "${CLAIMS:?}"/*
RUNS=("${ALL[@]}")
failed=0
for ROUND in 0 1; do
    pids=()
    for ((i = 1; i <= LANES; i++)); do lane "$i" & pids+=($!); done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    if (( failed )); then echo "some runs failed (rerun the script to resume them)" >&2; exit 1; fi
done

echo "== 3/3 results"
fbseg study "$WORK/shards" --out "$WORK/study" --study "$STUDY" "${SEEDS[@]}" --resume
if [[ -n "$DOCS" ]]; then
    mkdir -p "$DOCS"
    cp "$WORK/study/results.json" "$WORK/study/results.md" "$DOCS/"
    for picture in study.png curves.png; do
        if [[ -f "$WORK/study/$picture" ]]; then cp "$WORK/study/$picture" "$DOCS/"; fi
    done
    echo "copied the results to $DOCS"
fi
echo "done in $(( ($(date +%s) - started) / 60 )) min"
