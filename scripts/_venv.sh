# Sourced by demo.sh and test.sh: create (or reuse) the project's virtual environment and
# install the project into it. Re-running is cheap: pip skips what is already installed.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HITL_VENV:-$REPO/.venv}"
PYTHON_BIN="${PYTHON:-python3}"

ensure_venv() {
  local requirements="$1"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating virtual environment in $VENV" >&2
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  local stamp="$VENV/.hitl-installed"
  local want
  want="$(cat "$REPO/requirements.txt" "$REPO/$requirements" "$REPO/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "Installing dependencies ($requirements)" >&2
    local log="$VENV/pip-install.log"
    if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check -r "$REPO/$requirements" \
           && "$VENV/bin/python" -m pip install --disable-pip-version-check --no-deps -e "$REPO"; } >"$log" 2>&1; then
      cat "$log" >&2
      echo "Installing dependencies failed (log above, also in $log)" >&2
      exit 1
    fi
    echo "$want" > "$stamp"
  fi
}
