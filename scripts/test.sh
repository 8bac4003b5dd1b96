#!/usr/bin/env bash
# The whole test suite: lint, types, unit tests and the integration tests against real Prosody and ejabberd.
# Arguments go to pytest (e.g. `bash scripts/test.sh tests/unit -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check component tests examples bench
.venv/bin/ruff format --check component tests examples bench
.venv/bin/mypy
# pytest exits 5 when it collects nothing: that is a failure here too.
exec .venv/bin/python -m pytest "$@"
