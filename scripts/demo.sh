#!/usr/bin/env bash
# The demo: a private Prosody on loopback, the example echo bot, the component, and a client that says
# "hello" and prints the bot's reply. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m examples.demo "$@"   # --stay: keep running, with the send API on 127.0.0.1:8088
