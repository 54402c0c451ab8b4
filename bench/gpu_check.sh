#!/usr/bin/env bash
# The GPU check (issue 32): one script for a GPU machine, well inside 8 minutes.
#
# Here (with the package registry):  bash bench/gpu_check.sh --fetch
#   downloads the wheels the GPU machine lacks (Optuna and its dependencies, cp312) into
#   bench/wheels/ (ignored by git; the device tool carries it: carry=["bench/wheels"]).
# There (no network, torch with CUDA):  bash bench/gpu_check.sh [OUT_DIR]
#   installs those wheels into a private folder, puts the project on PYTHONPATH and runs:
#   the GPU-marked tests, `autoaccel probe`, `tune` on both examples (2m and 60s), and
#   bench/gpu_advise.py (advise() with the model on the CPU against a small GPU grid).
#   Everything is printed and kept in OUT_DIR/gpu_check.txt (default: $OUT or ./gpu-check).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELS="$ROOT/bench/wheels"
PY="${PYTHON:-python3}"

if [[ "${1:-}" == "--fetch" ]]; then
    "$PY" -m pip download --quiet --only-binary=:all: --python-version 3.12 \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any \
        --no-deps -d "$WHEELS" optuna alembic sqlalchemy colorlog mako greenlet tqdm markupsafe
    ls "$WHEELS"
    exit 0
fi

OUT_DIR="${1:-${OUT:-$ROOT/gpu-check}}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.txt"
exec > >(tee "$LOG") 2>&1

SITE="$(mktemp -d)/site"
if ! "$PY" -c "import optuna" 2>/dev/null; then
    "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" "$WHEELS"/*.whl \
        || { echo "gpu_check: no wheels in $WHEELS: run 'bash bench/gpu_check.sh --fetch' where pip can download"; exit 2; }
fi
export PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
WORK="$(mktemp -d)"
cp -r "$ROOT/examples" "$WORK/examples"
cd "$WORK"
step() { echo; echo "================ $* ($(date -u +%H:%M:%S)) ================"; }
AA() { "$PY" -m autoaccel.cli "$@"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | head -3
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"

step "GPU-marked tests"
(cd "$ROOT" && timeout 120 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" -m gpu \
    tests/runtime/test_device.py tests/test_probe.py 2>&1 | tail -15)

step "autoaccel probe"
timeout 60 "$PY" -m autoaccel.cli probe

step "tune examples/train_cnn.py --budget 2m"
timeout 200 "$PY" -m autoaccel.cli tune examples/train_cnn.py --budget 2m --storage "sqlite:///$WORK/cnn.db"
echo "device written: $(grep '^device:' examples/autoaccel.yaml)"

step "tune examples/train_lm.py --budget 60s (target: >= 5 trials measured)"
timeout 120 "$PY" -m autoaccel.cli tune examples/train_lm.py --budget 60s --storage "sqlite:///$WORK/lm.db" --json > lm.json
"$PY" - <<'PYEOF'
import json
s = json.load(open("lm.json"))
search = s.get("search", {})
print("trials measured:", search.get("trials_measured"), "| device:", s.get("config", {}).get("device"),
      "| speedup:", s.get("speedup"))
PYEOF

step "bench/gpu_advise.py (target: pick >= 0.9x the best of the grid)"
timeout 240 "$PY" "$ROOT/bench/gpu_advise.py" --budget 60

step "done"
