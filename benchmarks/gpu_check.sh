#!/usr/bin/env bash
# GPU check under a hard five-minute limit: a hung NCCL rendezvous or a stuck worker fails the check instead of
# hanging it. Arguments go to benchmarks/gpu_check.py (e.g. --families vae --epochs 2).
#   bash benchmarks/gpu_check.sh            exit 0 passed, 1 a check failed, 2 no CUDA, 124 over five minutes
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
timeout --kill-after=20 300 "$PY" benchmarks/gpu_check.py "$@"
rc=$?
[ "$rc" -eq 124 ] && echo "gpu_check: FAIL: did not finish within 300 s"
exit "$rc"
