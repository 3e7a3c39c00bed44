#!/usr/bin/env bash
# Regenerates docs/study-online/: the paper-regime benchmark (96 procedural scenes per split at
# 1024 x 2048, the BMVC 2020 air, stored at 128 x 256 with the area-averaged flow) and the
# "online" study on it (feedbackseg/study/studies/online.toml: 9 cells x 3 seeds, online turbulence),
# through docs/study.sh; then the fold fractions of the benchmark and of its blurred twin.
# About 100 minutes on 2 CPU cores. Usage: bash docs/study-online.sh [WORK] (rerunning resumes).
set -euo pipefail
HERE=$(dirname "$0")
WORK=${1:-study-online-work}
STUDY_FILE=online STUDY_RECIPE=paper-regime STUDY_NATIVE=1024x2048 \
    STUDY_DOCS=${STUDY_DOCS-$HERE/study-online} bash "$HERE/study.sh" "$WORK"
if [[ -n "${STUDY_DOCS-$HERE/study-online}" ]]; then
    for recipe in paper-regime paper-regime-blur; do
        turbsim params --recipe "$recipe" --fold-fields 8 --json \
            > "${STUDY_DOCS-$HERE/study-online}/params-$recipe.json"
    done
fi
