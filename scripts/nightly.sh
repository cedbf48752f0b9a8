#!/usr/bin/env bash
# Quick start, command 1: install perfdesk and run the nightly profile headless (local targets; no cloud account).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec .venv/bin/perfdesk --headless profiles/nightly.toml "$@"
