#!/usr/bin/env bash
# Run the whole test suite in the project's own virtual environment (created if missing).
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv requirements-dev.txt
cd "$REPO"
# Tests that concern Label Studio run against a real one, in its own environment (.venv-studio).
"$VENV/bin/python" -c "from hitl.review.studio import find_binary; find_binary(install=True, echo=print)"
# The browser test drives Debian's Chromium (Playwright downloads no browser here).
if [ ! -x /usr/bin/chromium ]; then
  echo "Installing Debian's chromium for the browser test" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
exec "$VENV/bin/python" -m pytest "$@"
