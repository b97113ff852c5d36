#!/usr/bin/env bash
# Run the whole test suite in the project's own virtual environment (created if missing).
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv requirements-dev.txt
cd "$REPO"
exec "$VENV/bin/python" -m pytest "$@"
