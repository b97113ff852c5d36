#!/usr/bin/env bash
# Run the whole test suite in the project's own virtual environment (created if missing).
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv requirements-dev.txt
cd "$REPO"
# Tests that concern Label Studio run against a real one, in its own environment (.venv-studio).
"$VENV/bin/python" -c "from hitl.studio import find_binary; find_binary(install=True, echo=print)"
exec "$VENV/bin/python" -m pytest "$@"
