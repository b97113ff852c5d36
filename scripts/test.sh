#!/usr/bin/env bash
# Run the test suite in the project's own virtual environment (created if missing).
# Usage: scripts/test.sh [--fast] [pytest args...]
#   --fast  only the tests marked neither studio, browser nor slow (pyproject.toml), in one process
#           more than the cores (about two minutes on two); neither Label Studio nor Chromium is installed
#   (none)  every test; Label Studio and Chromium are installed first when missing, never skipped
# Either way the 20 slowest tests are listed at the end.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
ensure_venv requirements-dev.txt
cd "$REPO"
# Every pytest worker rewrites each test module's asserts and the tests start many `python -m hitl`:
# let them keep their bytecode (CPython's default, turned off on some machines) rather than
# compile it all again in each process, each run (~6 s of each worker's start).
unset PYTHONDONTWRITEBYTECODE
if [ "${1:-}" = "--fast" ]; then
  shift
  # A fast test spends much of its time waiting (a fake server, a subprocess, a poll): a worker more
  # than the cores fills those waits (on two cores: 109-116 s against 120-128 s with two workers).
  # The whole suite keeps two: its Label Studio and demo runs keep the cores busy (three took as long,
  # 590 s against 592 s, for 90 s more CPU time).
  # (nproc would answer OMP_NUM_THREADS, which a test environment may set to 1; getconf: macOS too)
  cores="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)"
  exec "$VENV/bin/python" -m pytest -m "not studio and not browser and not slow" --hypothesis-profile=fast \
    -n "$((cores + 1))" \
    --dist loadgroup --no-loadscope-reorder --durations=20 "$@"
fi
# A fresh environment has no bytecode yet (uv compiles none), and each worker would compile the same
# thousands of modules as it collects (a fresh clone's collection took 23 s against 9 s). One collection
# in the background compiles them once, on the core that installing Label Studio leaves idle; it is
# stopped when the install is done (at once where nothing is installed: then it has nothing to do).
"$VENV/bin/python" -m pytest --collect-only -q -p no:cacheprovider >/dev/null 2>&1 &
warm_up=$!
trap 'kill "$warm_up" 2>/dev/null || true' EXIT
# Tests that concern Label Studio run against a real one, in its own environment (.venv-studio).
"$VENV/bin/python" -c "from hitl.review.studio import find_binary; find_binary(install=True, echo=print)"
# The browser test drives Debian's Chromium (Playwright downloads no browser here).
if [ ! -x /usr/bin/chromium ]; then
  echo "Installing Debian's chromium for the browser test" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
kill "$warm_up" 2>/dev/null || true
wait "$warm_up" 2>/dev/null || true
trap - EXIT
# Two processes: the tests of the session's Label Studio (and of the demo's folder) in one of them,
# and each module's other tests in one (tests/conftest.py groups them), the long groups handed out first.
exec "$VENV/bin/python" -m pytest -n 2 --dist loadgroup --no-loadscope-reorder --durations=20 "$@"
