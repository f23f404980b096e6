#!/usr/bin/env bash
# The main job: set up, then fit the sleepstudy example and print its summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/lmmfast fit sleepstudy "Reaction ~ Days + (Days | Subject)"
