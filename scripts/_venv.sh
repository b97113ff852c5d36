# Sourced by demo.sh and test.sh: create (or reuse) the project's virtual environment and
# install the project into it. Re-running is cheap: an install stamp per requirements file
# records what is installed, and the dev stamp (a superset) satisfies the runtime one, so
# running demo.sh and test.sh alternately installs nothing again.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HITL_VENV:-$REPO/.venv}"
PYTHON_BIN="${PYTHON:-python3}"

_stamp_of() {  # the content an install of requirements file $1 depends on
  cat "$REPO/requirements.txt" "$REPO/$1" "$REPO/pyproject.toml" | sha256sum | cut -d' ' -f1
}

_installed() {  # is requirements file $1 installed as it is now?
  local stamp="$VENV/.hitl-installed-$1"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(_stamp_of "$1")" ]
}

ensure_venv() {
  local requirements="$1"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating virtual environment in $VENV" >&2
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  if _installed "$requirements"; then return 0; fi
  if [ "$requirements" = "requirements.txt" ] && _installed requirements-dev.txt; then return 0; fi
  echo "Installing dependencies ($requirements)" >&2
  local log="$VENV/pip-install.log"
  if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check -r "$REPO/$requirements" \
         && "$VENV/bin/python" -m pip install --disable-pip-version-check --no-deps -e "$REPO"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "Installing dependencies failed (log above, also in $log)" >&2
    exit 1
  fi
  _stamp_of "$requirements" > "$VENV/.hitl-installed-$requirements"
}
