#!/usr/bin/env bash
# The checks that keep the code honest: lint and format (ruff), types (mypy), the layers
# (import-linter) and the documentation build (MkDocs, strict). Set-up as scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bin=.venv/bin
status=0
run() {
    echo "check: $*" >&2
    "$@" || status=1
}
run "$bin/ruff" check lmmfast tests benchmarks
run "$bin/ruff" format --check lmmfast tests benchmarks
run "$bin/mypy"
run "$bin/lint-imports"
NO_MKDOCS_2_WARNING=1 run "$bin/mkdocs" build --strict --quiet --site-dir "$(mktemp -d)"
exit "$status"
