#!/usr/bin/env bash
# Set up autoaccel for development in ./.venv (idempotent; safe to run again).
# torch==2.13.0 goes in first when no torch is present: on the project's machines that pin
# is a CPU build lying on disk, while an open range would make pip fetch a multi-GB CUDA
# build. The package itself keeps a range, so users elsewhere keep their own torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# pip byte-compiles what it installs on one core; --no-compile and one compileall over
# every core afterwards is about 20 s sooner on 2 cores (torch alone is 27 s against 9 s).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install --quiet --no-compile torch==2.13.0
fi
.venv/bin/pip install --quiet --no-compile -e ".[dev]"
# DeepSpeed, for the test that parses the DeepSpeed export: built against the torch above
# (build isolation would fetch another torch), without its C++ ops. Optional: without it
# that one test is skipped.
if ! .venv/bin/python -c "import deepspeed" 2>/dev/null; then
    DS_BUILD_OPS=0 .venv/bin/pip install --quiet --no-compile --no-build-isolation "deepspeed>=0.14" \
        || echo "setup: deepspeed did not install; its export check will be skipped"
fi
# The byte-compiling left out above (a file that does not compile, such as a package's
# Python 2 test data, only stays uncompiled: not an error).
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
.venv/bin/python -m compileall -q -j 0 "$SITE" >/dev/null || true
