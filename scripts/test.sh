#!/usr/bin/env bash
# Quick start, command 2: install what the tests need (extras, moto server, OpenSSH server) and run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
exec .venv/bin/python -m pytest "$@"
