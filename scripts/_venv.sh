# Sourced by demo.sh and test.sh: create (or reuse) the project's virtual environment and
# install the project into it: with uv (requirements.txt names it: seconds), else with pip (minutes).
# Re-running is cheap: an install stamp per requirements file records what is installed, and the
# dev stamp (a superset) satisfies the runtime one, so running demo.sh and test.sh alternately
# installs nothing again; started together, the second waits for the first (a lock in the
# environment's folder).
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

ensure_venv() {  # create the environment and install requirements file $1, one set-up at a time
  local requirements="$1"
  # A signal during the set-up ends the script (128 + its number) once the command it reached has
  # exited. Without these traps bash goes on whenever that command catches the signal and exits with
  # an error of its own, as pip does on Ctrl+C: a Ctrl+C while pip installed uv was taken for uv's
  # failure, and the set-up started again with pip. Reset after the set-up: the caller sets its own.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  # demo.sh and test.sh started together would both create the environment, and the second would
  # call pip before the first's venv had put pip in. So the whole set-up holds a lock: an flock on
  # this shell's descriptor 9, taken by Python (macOS has no flock command); the lock belongs to
  # the open file, so it stays held after Python exits, until `exec 9>&-` or this shell's end
  # (a crash too). Servers started later must not inherit it, hence the close.
  mkdir -p "$VENV"
  exec 9>"$VENV/.hitl-setup.lock"
  "$PYTHON_BIN" -c '
import fcntl, sys
try:
    fcntl.flock(9, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    print(f"Waiting for another set-up of {sys.argv[1]} to finish", file=sys.stderr)
    fcntl.flock(9, fcntl.LOCK_EX)' "$VENV"
  _set_up "$requirements"
  exec 9>&-
  trap - INT TERM HUP
}

_set_up() {  # ensure_venv's work, under its lock
  local requirements="$1"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating virtual environment in $VENV" >&2
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  if _installed "$requirements"; then return 0; fi
  if [ "$requirements" = "requirements.txt" ] && _installed requirements-dev.txt; then return 0; fi
  echo "Installing dependencies ($requirements)" >&2
  local log="$VENV/pip-install.log" uv_spec
  uv_spec="$(grep -E '^uv *[<>=~!]' "$REPO/requirements.txt" || true)"
  : > "$log"
  if ! { [ -n "$uv_spec" ] && _install_with_uv "$uv_spec" "$requirements" >>"$log" 2>&1; }; then
    [ -z "$uv_spec" ] || echo "uv could not install them (log: $log): installing with pip, which takes minutes" >&2
    if ! _install_with_pip "$requirements" >>"$log" 2>&1; then
      cat "$log" >&2
      echo "Installing dependencies failed (log above, also in $log)" >&2
      exit 1
    fi
  fi
  _stamp_of "$requirements" > "$VENV/.hitl-installed-$requirements"
}

_install_with_uv() {  # uv (pip installs it: seconds), then requirements file $2 and the project with uv
  "$VENV/bin/python" -m pip install --disable-pip-version-check "$1" \
    && "$VENV/bin/uv" pip install --python "$VENV/bin/python" -r "$REPO/$2" \
    && "$VENV/bin/uv" pip install --python "$VENV/bin/python" --no-deps -e "$REPO"
}

_install_with_pip() {  # requirements file $1 and the project with pip: minutes, but it honours pip's own settings
  "$VENV/bin/python" -m pip install --disable-pip-version-check -r "$REPO/$1" \
    && "$VENV/bin/python" -m pip install --disable-pip-version-check --no-deps -e "$REPO"
}
