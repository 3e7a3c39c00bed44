#!/usr/bin/env bash
# The prepared GPU check (issue 12, item 4): throughput of every mode and precision, CUDA vs CPU
# losses, DDP over NCCL through torchrun, the study grid at full width, online turbulence
# (turbsim.augment: fields + warps per second, equality with numpy); one JSON + a Markdown
# table in benchmarks/results/ (gpu_check.json, gpu_check.md). At most ~8 minutes on one GPU.
# Without CUDA, or with --dry, it runs a tiny CPU form (tests/test_gpu_check.py runs that).
# Usage: bash benchmarks/gpu_check.sh [--dry] [--out DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! python -c "import turbsim, feedbackseg, torch" 2>/dev/null || ! command -v fbseg >/dev/null; then
    echo "installing the project (pip install -e '.[train]')" >&2
    pip install --quiet -e '.[train]'
fi
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
exec python benchmarks/gpu_check.py "$@"
